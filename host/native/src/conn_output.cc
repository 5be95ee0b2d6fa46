// Output and the memory budget: queued output (output_queue.h) sent through
// the one sender (sender.h), backpressure's pause, blocking sends, and the
// server-wide bounds on what input and output buffers hold, which shed the
// connections that cost most, never the server.
#include <sys/socket.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <functional>
#include <mutex>

#include "conn.h"
#include "sender.h"
#include "tls.h"

namespace tcpmod {

namespace {

// Where c's bytes go (sender.h).
Sink SinkOf(const Conn* c, int fd) { return Sink{fd, c->tls}; }

}  // namespace

// At most one scan per 50 ms; a bound passed during the pause is looked at
// again when it ends (the timerfd wakes for it).
void Trim(Server& s, int group, bool input, int64_t max) {
  Table& t = table();
  int64_t now = MonoMs();
  if (now - s.last_trim < 50) {
    if (s.trim_at == 0) {
      s.trim_at = s.last_trim + 50;
      ArmTimerfd(s);
    }
    return;
  }
  s.last_trim = now;
  std::vector<std::pair<int64_t, int>> sizes;
  int64_t total = 0;
  for (size_t fd = 0; fd < t.by_fd.size(); fd++) {
    Conn* c = t.by_fd[fd];
    if (c == nullptr || c->group != group || c->kind != kKindConn) continue;
    if (c->due & kDueOverflow) continue;  // already on its way out
    int64_t n = input ? c->in_held.load() : c->out_held.load();
    total += n;
    if (n > 0) sizes.push_back({n, static_cast<int>(fd)});
  }
  std::sort(sizes.begin(), sizes.end(), std::greater<std::pair<int64_t, int>>());
  for (auto& [n, fd] : sizes) {
    if (total <= max) break;
    MarkDue(s, t.by_fd[fd], fd, kDueOverflow);
    total -= n;
  }
}

// Bytes in use (the gauges) and bytes allocated (what --max-input-memory and
// --max-output-memory bound, since that is what the process holds).
void AccountBuffers(Conn* c) {
  Server* s = c->srv;
  if (s == nullptr) return;
  const int64_t in_alloc = static_cast<int64_t>(c->pending.allocated());
  const int64_t out_alloc = static_cast<int64_t>(c->out.allocated());
  const int64_t d_in = in_alloc - c->in_held.exchange(in_alloc);
  const int64_t d_out = out_alloc - c->out_held.exchange(out_alloc);
  s->in_bytes += static_cast<int64_t>(c->pending.size()) - c->in_used;
  s->out_bytes += static_cast<int64_t>(c->out.size()) - c->out_used;
  c->in_used = static_cast<int64_t>(c->pending.size());
  c->out_used = static_cast<int64_t>(c->out.size());
  const int64_t in_total = (s->in_alloc += d_in);
  const int64_t out_total = (s->out_alloc += d_out);
  assert(in_total >= 0 && out_total >= 0);
  const bool over_in = d_in > 0 && s->in_total_max && in_total > s->in_total_max;
  const bool over_out = d_out > 0 && s->out_total_max && out_total > s->out_total_max;
  if (!over_in && !over_out) return;
  TableLock lock(table().mu);
  if (over_in) Trim(*s, c->group, true, s->in_total_max);
  if (over_out) Trim(*s, c->group, false, s->out_total_max);
}

int64_t Flush(Conn* c, int fd) {
  if (!c->held.empty()) {
    int64_t rc = SendHeld(c, fd, nullptr, 0, nullptr, 0);
    if (rc < 0) return rc;
  }
  const size_t before = c->out.size();
  const int64_t left = Drain(SinkOf(c, fd), c->out);
  AccountBuffers(c);
  if (left < 0) return left;
  if (static_cast<size_t>(left) != before || left == 0) {
    TableLock lock(table().mu);
    c->send_since = left ? MonoMs() : 0;  // the send timeout counts from the last progress
  }
  return left;
}

void HalfCloseStep(Conn* c, int fd) {
  HalfCloseEventEnd(c->half);
  if (!FinDue(c->half, c->out.empty())) return;
  // The holder's fd (named by its id through the caller's lookup): never another connection's.
  if (c->tls != nullptr) TlsCloseNotify(c->tls);  // a TLS peer sees the end of the stream first
  shutdown(fd, SHUT_WR);  // an error (the peer reset) shows at the next send or claim
  c->half.output = OutputEnd::kEnded;
}

// The event's last output sent without waiting (connSave's out region): bytes taken, or -errno.
// A held run (kv_send's) goes in front of it, in the same sendmsg.
int64_t WriteNow(Conn* c, int fd, const uint8_t* p, size_t len) {
  if (!c->held.empty()) return SendHeld(c, fd, p, len, nullptr, 0);
  return WriteSome(SinkOf(c, fd), p, len);
}

namespace {

// Output was queued (the socket is full): the send timeout runs from now if it was not running already.
void NoteQueued(Conn* c, Server& s) {
  AccountBuffers(c);
  TableLock lock(table().mu);
  if (c->send_since == 0) {
    c->send_since = MonoMs();
    Schedule(c, s);
  }
}

}  // namespace

int64_t SendHeld(Conn* c, int fd, const uint8_t* a, size_t alen, const uint8_t* b, size_t blen) {
  HeldRun& h = c->held;
  assert(!h.empty() && c->out.empty() && c->tls == nullptr);
  const size_t hh = h.head_len(), hlen = hh + h.run_len();
  if (OutputDiscards(c->half)) {  // shut by the module (§20) since: discarded, as the rest is
    h.Release();
    return static_cast<int64_t>(alen + blen);
  }
  const int64_t n = WriteSome4(SinkOf(c, fd), h.head(), hh, h.run(), h.run_len(), a, alen, b, blen);
  if (n < 0 || static_cast<size_t>(n) >= hlen) {
    h.Release();
    return n < 0 ? n : n - static_cast<int64_t>(hlen);
  }
  // The socket is full: the held run's rest is copied into the queue (as kv_send's rest always was),
  // and the borrowed bytes given back; a and b are the caller's to queue behind it.
  const size_t sent = static_cast<size_t>(n);
  Server* s = c->srv;
  int64_t rc = 0;
  if (s != nullptr && s->out_max && static_cast<int64_t>(hlen - sent) > s->out_max) rc = -ENOBUFS;
  else if (!(sent < hh ? c->out.Append(h.head() + sent, hh - sent, h.run(), h.run_len())
                       : c->out.Append(h.run() + (sent - hh), hlen - sent)))
    rc = -ENOMEM;
  h.Release();
  if (rc == 0 && s != nullptr) NoteQueued(c, *s);
  return rc;
}

// connWrite: queued send mode, plain or TLS alike: sends what the socket takes
// now and queues the rest, in order behind anything queued before; never
// waits. Bytes queued after it (>= 0); -ENOBUFS when the rest would pass the
// per-connection bound (nothing of it is queued), -ENOMEM when memory for it
// cannot be had.
int64_t ConnWrite(int fd, uint64_t id, const uint8_t* p, size_t len) { return ConnWrite2(fd, id, p, len, nullptr, 0); }

// ConnWrite of a then b, as one write (kv_send's head and stored value): plain
// TCP sends both in one sendmsg; TLS writes them as two.
int64_t ConnWrite2(int fd, uint64_t id, const uint8_t* a, size_t alen, const uint8_t* b, size_t blen) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr || c->srv == nullptr) return -EBADF;
  Server& s = *c->srv;
  if (OutputDiscards(c->half)) return static_cast<int64_t>(c->out.size());  // shut by the module (§20): discarded
  const size_t len = alen + blen;
  size_t sent = 0;
  if (!c->held.empty()) {
    int64_t n = SendHeld(c, fd, a, alen, b, blen);
    if (n < 0) return n;
    sent = static_cast<size_t>(n);
  } else if (c->out.empty()) {
    int64_t n = blen == 0 ? WriteSome(SinkOf(c, fd), a, alen)
                : c->tls == nullptr ? WriteSome2(SinkOf(c, fd), a, alen, b, blen)
                : WriteSome(SinkOf(c, fd), a, alen);
    if (n < 0) return n;
    sent = static_cast<size_t>(n);
    if (c->tls != nullptr && blen > 0 && sent == alen) {
      n = WriteSome(SinkOf(c, fd), b, blen);
      if (n < 0) return n;
      sent += static_cast<size_t>(n);
    }
  }
  size_t rest = len - sent;
  size_t queued = c->out.size();
  if (rest == 0) return static_cast<int64_t>(queued);
  if (s.out_max && static_cast<int64_t>(queued + rest) > s.out_max) return -ENOBUFS;
  const size_t a_rest = sent < alen ? alen - sent : 0;
  const size_t b_off = sent > alen ? sent - alen : 0;
  if (!c->out.Append(a + sent, a_rest, b + b_off, blen - b_off)) return -ENOMEM;
  NoteQueued(c, s);
  return static_cast<int64_t>(queued + rest);
}

// kv_send's write on the process store: the head (copied) and the pinned value
// are held (HeldRun) when nothing is queued on a plain connection, to go out
// in front of the event's next write or at its end (one sendmsg for head,
// value and what follows); else written as ConnWrite2. `release` is called
// exactly once, here or when the held run is sent. A kv_send while one is held
// sends the held one with this one's head, and holds this value.
int64_t ConnWriteStored(int fd, uint64_t id, const uint8_t* head, size_t hlen, const uint8_t* p, size_t n,
                        HeldRun::ReleaseFn release, void* ra, uint64_t rb) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  const bool can_hold = c != nullptr && c->srv != nullptr && c->srv->queued && c->tls == nullptr &&
                        !OutputDiscards(c->half) && hlen <= kHeldHeadMax;
  if (can_hold && !c->held.empty()) {
    int64_t k = SendHeld(c, fd, head, hlen, nullptr, 0);
    if (k < 0) {
      release(ra, rb);
      return k;
    }
    head += k;
    hlen -= static_cast<size_t>(k);
  }
  if (can_hold && c->out.empty() && hlen + n > 0) {
    c->held.Hold(head, hlen, p, n, release, ra, rb);
    return 0;
  }
  const int64_t w = ConnWrite2(fd, id, head, hlen, p, n);
  release(ra, rb);
  return w;
}

// connSend: sends in full like send(), through TLS when the connection has it,
// waiting up to timeout_ms for progress: len | -ETIMEDOUT | -errno | -EPROTO.
int64_t ConnSend(int fd, uint64_t id, const uint8_t* p, size_t len, int64_t timeout_ms, int64_t* waited) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  if (OutputDiscards(c->half)) return static_cast<int64_t>(len);  // shut by the module (§20): discarded
  if (!c->held.empty()) {  // not held in blocking mode; sent first should a connection have one
    int64_t rc = Flush(c, fd);
    if (rc < 0) return rc;
  }
  return SendAll(SinkOf(c, fd), p, len, static_cast<int>(timeout_ms), waited);
}

// connEndOutput: the module ends its output to the client (shutdown_output, §20). What this event
// gives still goes; its end (HalfCloseStep) closes the output to more, and the FIN follows the queue.
int ConnEndOutput(int fd, uint64_t id) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  if (c->half.output == OutputEnd::kOpen) c->half.output = OutputEnd::kAsked;
  return 0;
}

// connFlush: sends queued output now: bytes still queued | -errno.
int64_t ConnFlush(int fd, uint64_t id) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  return Flush(c, fd);
}

// queueConfigure: call after timersConfigure. Bounds are bytes, 0 for none.
int QueueConfigure(int group, bool queued, int64_t send_timeout, int64_t high, int64_t per_conn, int64_t out_total,
                   int64_t in_total) {
  TableLock lock(table().mu);
  Server* s = ServerOf(group);
  if (s == nullptr) return -EBADF;
  s->queued = queued;
  s->deadlines.send_timeout = queued ? send_timeout : 0;  // blocking mode times sends itself
  s->out_high = high;
  s->out_max = per_conn;
  s->out_total_max = out_total;
  ChunkPoolBound(static_cast<size_t>(out_total));  // free pooled chunks count toward it too
  s->in_total_max = in_total;
  return 0;
}

// groupMemory: bytes queued for sending and held as unconsumed input, and the
// memory their buffers hold (what the bounds count).
MemoryTotals GroupMemory(int group) {
  TableLock lock(table().mu);
  MemoryTotals m;
  if (Server* s = ServerOf(group)) {
    m.output = s->out_bytes.load();
    m.input = s->in_bytes.load();
    m.output_allocated = s->out_alloc.load();
    m.input_allocated = s->in_alloc.load();
  }
  return m;
}

bool ConnOutputOver(const Conn* c) {
  return c->paused || (c->srv && static_cast<int64_t>(c->out.size()) > c->srv->out_high);
}

bool ConnOutputOver(int fd, uint64_t id) {
  const Conn* c = Find(fd, static_cast<int64_t>(id));
  return c != nullptr && ConnOutputOver(c);
}

}  // namespace tcpmod
