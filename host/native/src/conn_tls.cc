// TLS glue: the handshake phase of a connection (kHandshake in conn_state.h),
// the one call that steps a connection through the phases before the module
// (connPhase: its PROXY header, then its handshake, then open), and what the
// session tells about itself. tls.cc does the TLS; conn_proxy.cc the header.
#include <cerrno>
#include <cstring>
#include <mutex>

#include "conn.h"
#include "tls.h"

namespace tcpmod {

// The failure labels of tls.cc, in the order of the metrics' label list
// (host/pool/counters.ts TLS_FAILURES; a test checks that they agree).
const char* const kTlsFailureLabels[kTlsFailureCount] = {"protocol", "version", "certificate", "alpn",
                                                         "timeout",  "socket",  "other"};

int TlsFailureIndex(const char* label) {
  for (int i = 0; i < kTlsFailureCount; i++)
    if (label != nullptr && std::strcmp(label, kTlsFailureLabels[i]) == 0) return i;
  return kTlsFailureCount - 1;  // '' (no failure recorded) and anything unknown: other
}

namespace {

// One handshake step of an entry in kHandshake (its holder calls): 1 completed
// now (the entry moved on to kAccepted), 0 needs more input, -errno failed.
int HandshakeStep(Conn* c, int64_t timeout_ms) {
  int rc = TlsHandshake(c->tls, static_cast<int>(timeout_ms));
  TableLock lock(table().mu);
  c->last_input = MonoMs();
  if (rc == 1) {
    c->life = Handshaken(c->life);
    c->frame_since = 0;
  }
  return rc;
}

}  // namespace

// connPhase: the event of a connection the module has not met, decided here in
// one call: its PROXY header step (ConnProxy), then, once that is read, its
// handshake step, then -- with `open` -- the move to kOpen (the caller calls
// on_open next and has nothing left that can fail first; without it the
// connection stays kAccepted and the caller calls connOpened). A step that
// needs more input re-arms the entry with `events` in the same call.
int ConnPhase(int fd, uint64_t id, int epfd, uint32_t events, int64_t timeout_ms, bool open, PhaseResult* r) {
  r->micros = -1;
  r->tls_failure = -1;
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  int rc = 1;
  if (c->life == ConnState::kProxy) rc = ConnProxy(fd, id);
  if (rc == 0) return RearmHeld(c, fd, epfd, events);  // 0, or the re-arm's -errno (a PROXY phase failure)
  if (rc < 0) return rc;
  if (c->life == ConnState::kHandshake) {
    rc = HandshakeStep(c, timeout_ms);
    if (rc == 0) rc = RearmHeld(c, fd, epfd, events);
    if (rc == 0) return 0;
    // A failure of the handshake (or of its re-arm): the session names it.
    if (rc < 0) {
      if (rc != -ENOTCONN) r->tls_failure = TlsFailureIndex(TlsFailure(c->tls));
      return rc;
    }
    r->micros = TlsHandshakeMicros(c->tls);
  }
  if (open && c->life == ConnState::kAccepted) {
    TableLock lock(table().mu);
    c->life = Opened(c->life);
  }
  return 1;
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
