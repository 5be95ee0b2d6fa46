#pragma once
#include <napi.h>
#include <cstddef>
#include <cstdint>

namespace tcpmod {

void InitSockets(Napi::Env env, Napi::Object exports);

}  // namespace tcpmod
