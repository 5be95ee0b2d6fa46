// The one sender: every byte a connection sends, plain or TLS, queued or
// blocking, goes through WriteSome (never waits) and, when the caller must
// wait, WaitWritable (the only place a send blocks). The three ways to send
// are built from those two:
// - WriteSome: what the socket takes now (the fast path, connSave's out region);
// - Drain: an OutputQueue's front, until the socket is full (queued mode);
// - SendAll: everything, waiting up to a timeout (blocking mode).
//
// The watchdog (host/pool) must not count a wait for a slow reader as the
// module's time: WaitWritable adds what it waited to the caller's `waited`,
// which the JavaScript side reports beside its blocking-send mark
// (host/worker/loop.ts, `blocking`). In queued mode nothing waits.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace tcpmod {

struct TlsSession;
class OutputQueue;

// Where a connection's bytes go: the socket, through TLS when `tls` is set
// (the handshake must be complete).
struct Sink {
  int fd;
  TlsSession* tls;
};

// Sends what the socket takes now: bytes taken (0..len), or -errno / -EPROTO.
// With TLS, a record begun and not fully sent is not counted: the next call
// must start with the same bytes (and at least as many), which OutputQueue's
// Front and the callers' "send the rest" both give.
int64_t WriteSome(const Sink& s, const uint8_t* p, size_t len);

// WriteSome over two runs, in one sendmsg where the socket takes them: bytes
// taken of a then b (0..alen + blen), or -errno. Plain TCP only (s.tls null).
int64_t WriteSome2(const Sink& s, const uint8_t* a, size_t alen, const uint8_t* b, size_t blen);

// WriteSome2 with a third and fourth run (either may be empty): bytes taken of
// a, b, c, d in that order, in one sendmsg where the socket takes them. Plain TCP only.
int64_t WriteSome4(const Sink& s, const uint8_t* a, size_t alen, const uint8_t* b, size_t blen, const uint8_t* c,
                   size_t clen, const uint8_t* d, size_t dlen);

// Output held back to be sent with the next (kv_send, docs/abi.md §17.1): a
// head (copied) and a run borrowed from its owner (a pinned store entry) that
// the owner's release function gives back. Not sent when held: the connection
// sends it in front of its next write, or at the end of the event, in the same
// sendmsg (conn_output.cc SendHeld), so a reply of head, stored value and
// trailer costs one write and one TCP segment train, not two. Release is
// called exactly once per Hold: by SendHeld (sent, queued or failed), or by
// the destructor when the connection is freed with it still held.
class HeldRun {
 public:
  using ReleaseFn = void (*)(void* a, uint64_t b);
  HeldRun() = default;
  HeldRun(const HeldRun&) = delete;
  HeldRun& operator=(const HeldRun&) = delete;
  ~HeldRun() { Release(); }

  bool empty() const { return release_ == nullptr; }
  // Holds head (copied) then [p, p+n), which `release(a, b)` gives back. Must be empty().
  void Hold(const uint8_t* head, size_t head_len, const uint8_t* p, size_t n, ReleaseFn release, void* a, uint64_t b);
  const uint8_t* head() const { return reinterpret_cast<const uint8_t*>(head_.data()); }
  size_t head_len() const { return head_.size(); }
  const uint8_t* run() const { return p_; }
  size_t run_len() const { return n_; }
  // Gives the borrowed run back (nothing when empty).
  void Release();

 private:
  std::string head_;  // its capacity is kept across holds
  const uint8_t* p_ = nullptr;
  size_t n_ = 0;
  ReleaseFn release_ = nullptr;
  void* a_ = nullptr;
  uint64_t b_ = 0;
};

// Waits until fd is writable (or has an error the next send reports): 0, or
// -ETIMEDOUT after timeout_ms, or -errno. Adds the milliseconds waited to
// *waited_ms when given.
int WaitWritable(int fd, int timeout_ms, int64_t* waited_ms = nullptr);

// Sends q's bytes until the socket is full: the bytes left (>= 0) or the error.
int64_t Drain(const Sink& s, OutputQueue& q);

// Sends all of [p, p+len), waiting (WaitWritable) up to timeout_ms whenever the
// socket is full, restarted on progress: len, -ETIMEDOUT, or the error. A TLS
// session is failed by a timeout ("timeout") as by any other failure.
int64_t SendAll(const Sink& s, const uint8_t* p, size_t len, int timeout_ms, int64_t* waited_ms = nullptr);

}  // namespace tcpmod
