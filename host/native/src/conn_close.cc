// The close glue: a connection the module closed enters its close phase
// (close_phase.h: its queued reply goes out, then it lingers), and the entry is
// unlinked and its socket closed.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <mutex>

#include "conn.h"
#include "direct.h"
#include "tls.h"

namespace tcpmod {

namespace {

// The close phase's next step for its holder: sends what is queued; once all
// of it is out, begins lingering, then discards what arrives. 1 the entry
// stays (re-arm), 0 close now, -errno. Caller does not hold the lock.
int64_t CloseStep(Conn* c, int fd) {
  assert(InClosePhase(c->life));
  if (!c->out.empty()) {
    int64_t left = Flush(c, fd);
    if (left != 0) return left < 0 ? left : 1;
  }
  if (c->life == ConnState::kClosing) {
    if (c->srv == nullptr || c->srv->deadlines.linger.time <= 0) return 0;
    if (c->tls != nullptr) TlsCloseNotify(c->tls);  // the alert goes before the FIN (once only; connClose skips it then)
    if (!LingerBegin(c->srv->deadlines.linger, fd)) return 0;
    TableLock lock(table().mu);  // the deadline rules read the state under it
    c->life = LingerBegun(c->life);
    c->phase.lingering = true;
    c->phase.since = NowMs();
  }
  int64_t got = 0;
  int rc = LingerDiscard(fd, &got);
  if (got > 0) c->last_input = NowMs();
  return rc > 0 ? 1 : rc;
}

}  // namespace

// connClose: forgets the entry, then closes the socket; with drain_bytes, it
// first shuts down writing and discards up to that much already-received
// input. 1 when its close phase had kept it (its close was counted already),
// 0, or -EBADF (closed already).
int ConnClose(int fd, uint64_t id, int64_t drain_bytes) {
  DirectFlush();  // frames its last event published (direct.h), as a re-arm would have
  Conn* c = Unlink(fd, id);
  if (c == nullptr) return -EBADF;
  const bool counted = c->close_counted;
  // A close phase that lingered has shut down writing and read what came already (close_phase.h).
  if (c->life == ConnState::kLingering) drain_bytes = 0;
  if (c->tls != nullptr) {
    TlsCloseNotify(c->tls);  // only after a completed handshake, and never blocking
    TlsSessionFree(c->tls);
  }
  delete c;
  if (drain_bytes > 0) {
    // Closing with unread input makes the kernel answer with a reset, which can
    // destroy a reply the peer has not read yet (a 413 to a client still
    // uploading). So: FIN after the reply, then discard what has arrived.
    shutdown(fd, SHUT_WR);
    uint8_t sink[16384];
    for (int64_t left = drain_bytes; left > 0;) {
      ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      left -= n;
    }
  }
  // The fd is ours alone until this close: after it the number may be reused.
  close(fd);
  return counted ? 1 : 0;
}

// connLinger: the module closed the connection after its reply (its close is
// counted by the caller): the entry enters its close phase -- no deadline but
// its send and linger deadlines, no module timer -- and stays while its queued
// output goes out and then while it lingers (CloseStep). 1 it stays, 0 nothing
// keeps it (lingering is off, or the client has closed already: the caller
// closes it now, and counts that close itself), -EBADF.
int ConnLinger(int fd, uint64_t id) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  {
    TableLock lock(table().mu);  // a drain and the timer event read these under it
    c->life = CloseBegun(c->life);
    if (c->timer_at && c->srv) c->srv->timers--;
    c->timer_at = 0;
    c->due &= ~static_cast<uint32_t>(kDueTimer | kDueTimeout | kDueDrainIdle);
  }
  if (CloseStep(c, fd) <= 0) return 0;
  c->close_counted = true;
  return 1;
}

// connCloseStep: an event of a connection in its close phase (kDueClosing),
// with the due bits it came with. 1 the entry stays (re-arm) | 0 close now (all
// sent, and the client closed or the linger time passed) | -ETIMEDOUT the send
// timeout passed with output queued | -ENOBUFS a memory bound chose it | -errno.
int64_t ConnCloseStep(int fd, uint64_t id, uint32_t due) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  if (due & kDueSendTimeout) return -ETIMEDOUT;
  if (due & kDueOverflow) return -ENOBUFS;
  if (due & kDueLinger) return 0;
  return CloseStep(c, fd);
}

// lingerConfigure: the linger bounds (close_phase.h; time 0: no lingering).
// Call after timersConfigure.
int LingerConfigure(int group, int64_t time_ms, int64_t timeout_ms) {
  TableLock lock(table().mu);
  Server* s = ServerOf(group);
  if (s == nullptr) return -EBADF;
  s->deadlines.linger.time = std::max<int64_t>(0, time_ms);
  s->deadlines.linger.timeout = std::max<int64_t>(0, timeout_ms);
  return 0;
}

}  // namespace tcpmod
