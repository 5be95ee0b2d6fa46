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
