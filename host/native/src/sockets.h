#pragma once
#include <napi.h>
#include <cstddef>
#include <cstdint>

namespace tcpmod {

// Blocking send of a whole region on a non-blocking socket: on EAGAIN it polls
// for POLLOUT up to timeout_ms, restarting the wait whenever bytes go out.
// Returns len on success, -ETIMEDOUT when the peer stopped reading, -errno otherwise.
// waited_ms, when given, gains the milliseconds spent waiting for writability.
int64_t SendAll(int fd, const uint8_t* p, size_t len, int timeout_ms, int64_t* waited_ms = nullptr);

void InitSockets(Napi::Env env, Napi::Object exports);

}  // namespace tcpmod
