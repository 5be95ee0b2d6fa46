// The close phase of a connection: what happens between the module closing it
// (its close counted, on_close run) and its socket being closed.
//
//   closing   output the module sent is still queued: it goes out first, bounded
//             by the send timeout (no progress for that long: give up).
//   lingering all of it went out: writing is shut down (the client sees EOF after
//             the reply) and what the client still sends is read and thrown
//             away, bounded by the linger time (in all) and the linger timeout
//             (between two reads), until the client closes its side.
//
// Why lingering (nginx's lingering_close): closing a socket with unread input,
// or one that receives more after the close, makes the kernel answer with a
// reset, and a reset can destroy a reply the client has not read yet -- a 413
// to a client still uploading. A client that reads its reply and closes ends
// the phase at once.
//
// A connection in its close phase has no read, frame or drain-idle deadline and
// no module timer (nginx's ngx_close_connection deletes the timers): only its
// send deadline while output is queued, then its linger deadline.
//
// Plain C++ (no N-API): conn_close.cc keeps a ClosePhase in each entry and
// calls these under its ownership rule (only the holder acts on a socket).
#pragma once
#include <cstdint>

namespace tcpmod {

// The server's linger bounds (ms). time 0: no lingering (close once sent).
struct LingerConfig {
  int64_t time = 0;     // at most this long in all (nginx lingering_time)
  int64_t timeout = 0;  // at most this long without a byte from the client (lingering_timeout)
};

struct ClosePhase {
  bool lingering = false;  // writing is shut down, input is discarded
  int64_t since = 0;       // when lingering began (CLOCK_MONOTONIC ms)
};

// How many bytes one LingerDiscard reads at most before it lets the event end
// (the caller re-arms; a socket with more to read reports again at once).
constexpr int64_t kLingerReadBudget = 256 * 1024;

// The one deadline of a connection in its close phase (INT64_MAX: none):
// while output is queued, the send deadline (send_since: its last progress,
// 0 with nothing queued; send_timeout 0: none); once lingering, the earlier of
// the linger time and the linger timeout since the last input.
int64_t ClosingDeadline(const ClosePhase& p, const LingerConfig& cfg, int64_t send_since, int64_t send_timeout,
                        int64_t last_input);

// Whether the linger deadline has come (the send deadline is the caller's, as a due time).
bool LingerExpired(const ClosePhase& p, const LingerConfig& cfg, int64_t last_input, int64_t now);

// Everything queued went out: shuts down writing on socket fd, so that the
// connection can linger; the caller then marks its ClosePhase lingering (under
// its own lock). False when lingering is off: the caller closes now.
bool LingerBegin(const LingerConfig& cfg, int fd);

// Reads and discards what the client sent, up to kLingerReadBudget bytes:
// 1 it may send more (re-arm and wait), 0 it closed its side (close now),
// -errno the socket failed. *got: the bytes discarded (the caller's last input time moves).
int LingerDiscard(int fd, int64_t* got);

}  // namespace tcpmod
