// TLS glue: the handshake phase of a connection (kHandshake in conn_state.h)
// and what the session tells about itself. tls.cc does the TLS.
#include <cerrno>
#include <mutex>

#include "conn.h"
#include "tls.h"

namespace tcpmod {

// connHandshake: one handshake step. 2 nothing to do (plain TCP, or done
// before) | 1 the handshake completed in this call (the connection is ready
// for the module) | 0 it needs more input (re-arm) | -errno, -EPROTO or
// -ETIMEDOUT: it failed (close). Writes wait up to timeout_ms.
int ConnHandshake(int fd, uint64_t id, int64_t timeout_ms) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  if (c->tls == nullptr || c->life != ConnState::kHandshake) return 2;
  int rc = TlsHandshake(c->tls, static_cast<int>(timeout_ms));
  TableLock lock(table().mu);
  c->last_input = NowMs();
  if (rc == 1) {
    c->life = Handshaken(c->life);
    c->frame_since = 0;
  }
  return rc;
}

int ConnTlsInfo(int fd, uint64_t id, ConnTlsFacts* out) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  TlsSession* s = c->tls;
  // Past kHandshake once it completed; a PROXY header comes before it.
  const bool done = s != nullptr && c->life > ConnState::kHandshake;
  out->tls = s != nullptr;
  out->handshaken = done;
  out->alpn = done ? TlsAlpn(s) : std::string();
  out->peer_cert = done && TlsPeerCertPresented(s);
  out->failure = s ? TlsFailure(s) : "";
  out->detail = s ? TlsFailureDetail(s) : std::string();
  out->micros = s ? TlsHandshakeMicros(s) : 0.0;
  return 0;
}

}  // namespace tcpmod
