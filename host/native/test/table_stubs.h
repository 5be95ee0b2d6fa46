// What the connection table calls in TLS, pub/sub and upstreams, stubbed for
// the C++ tests that link the table without them (none of it is exercised there).
#pragma once
#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace tcpmod {
TlsSession* TlsSessionNew(int, int) { return nullptr; }
void TlsSessionFree(TlsSession*) {}
bool TlsHasPending(TlsSession*) { return false; }
void TlsCloseNotify(TlsSession*) {}
int64_t TlsRead(TlsSession*, uint8_t*, size_t, bool*, int) { return -EINVAL; }
int64_t TlsWriteSome(TlsSession*, const uint8_t*, size_t) { return -EINVAL; }
void TlsFailWait(TlsSession*, int) {}
void TopicsForgetLocked(int, uint64_t, ConnTopics*) {}
void UpstreamsDrop(uint64_t) {}
bool UpstreamsPending(uint64_t) { return false; }
bool UpstreamsAny(uint64_t) { return false; }
// Not a stub: due.cc's, declared in upstream.h, which needs napi.h; the tests mark entries due with it.
void MarkConnDue(int fd, uint64_t id, uint32_t bits, bool poke);
}  // namespace tcpmod
