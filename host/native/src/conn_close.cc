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
#include "sender.h"
#include "tls.h"

namespace tcpmod {

namespace {

// The close phase's next step for its holder: sends what is queued; once all
// of it is out, begins lingering, then discards what arrives. 1 the entry
// stays (re-arm), 0 close now, -errno. Caller does not hold the lock.
int64_t CloseStep(Conn* c, int fd) {
  assert(InClosePhase(c->life));
  if (!c->out.empty() || !c->held.empty()) {
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
    c->phase.since = MonoMs();
  }
  int64_t got = 0;
  int rc = LingerDiscard(fd, &got);
  if (got > 0) c->last_input = MonoMs();
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
  // kv_send's held run was given before the close: it goes as far as the socket takes it now (as
  // what was queued, the rest is dropped with the entry), then the pin is given back.
  if (!c->held.empty()) {
    (void)WriteSome2(Sink{fd, nullptr}, c->held.head(), c->held.head_len(), c->held.run(), c->held.run_len());
    c->held.Release();
  }
  const bool counted = c->close_counted;
  // A close phase that lingered has shut down writing and read what came already (close_phase.h).
  if (c->life == ConnState::kLingering) drain_bytes = 0;
  if (c->tls != nullptr) {
    TlsCloseNotify(c->tls);  // only after a completed handshake, and never blocking
    TlsSessionFree(c->tls);
    c->tls = nullptr;
  }
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
  CloseUnlinked(c);
  return counted ? 1 : 0;
}

void CloseUnlinked(Conn* c) {
  {
    TableLock lock(table().mu);
    // A syscall on it is in flight outside the lock (connShutdown): its caller finishes the close.
    if (c->pins > 0) {
      c->close_deferred = true;
      return;
    }
  }
  FinishClose(c);
}

// ConnLinger, connEnd's first step: the module closed the connection after its
// reply (its close is counted by the caller): the entry enters its close phase -- no deadline but
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

// ConnCloseStep, connClosing's step: an event of a connection in its close
// phase (kDueClosing), with the due bits it came with. 1 the entry stays
// (re-arm) | 0 close now (all sent, and the client closed or the linger time
// passed) | -ETIMEDOUT the send timeout passed with output queued | -ENOBUFS a
// memory bound chose it | -errno.
int64_t ConnCloseStep(int fd, uint64_t id, uint32_t due) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  if (due & kDueSendTimeout) return -ETIMEDOUT;
  if (due & kDueOverflow) return -ENOBUFS;
  if (due & kDueLinger) return 0;
  return CloseStep(c, fd);
}

// connEnd: the module closed the connection (on_close ran; the caller counts
// the close by the result). With epfd >= 0 (its reply may still be on its way:
// the caller asks for a lingering close) it enters its close phase (ConnLinger)
// and, when that keeps it, is re-armed with `events` in the same call: 2 it
// stays (its close counts now). Otherwise, or when nothing keeps it or the
// re-arm fails, it is closed now as connClose(drain_bytes) closes it: 0, 1 (its
// close was counted already), -EBADF.
int ConnEnd(int fd, uint64_t id, int epfd, uint32_t events, int64_t drain_bytes) {
  if (epfd >= 0 && ConnLinger(fd, id) > 0) {
    Conn* c = Find(fd, static_cast<int64_t>(id));
    if (c != nullptr && RearmHeld(c, fd, epfd, events) == 0) return kCloseKept;
    if (c != nullptr) c->close_counted = false;  // closed below, counted by the caller now
  }
  return ConnClose(fd, id, drain_bytes);
}

// connClosing: an event of a connection in its close phase, decided in one
// call: its step (ConnCloseStep with the due bits it came with), then the
// re-arm with `events` when the step keeps it (2), else the close (connClose
// with drain_bytes when the step ended it cleanly, else none): 0, 1 (counted
// already: the usual case), -EBADF. *step: the step's result (connCloseStep's).
int ConnClosing(int fd, uint64_t id, uint32_t due, int epfd, uint32_t events, int64_t drain_bytes, int64_t* step) {
  *step = ConnCloseStep(fd, id, due);
  if (*step > 0) {
    Conn* c = Find(fd, static_cast<int64_t>(id));
    if (c != nullptr && RearmHeld(c, fd, epfd, events) == 0) return kCloseKept;
  }
  return ConnClose(fd, id, *step == 0 ? drain_bytes : 0);
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
