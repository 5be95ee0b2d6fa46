// A connection's life as one state machine, so that each step is decided once,
// natively, and a claimer is told only what to do next (the phase bits):
//
//   kProxy ──ProxyRead──▶ kHandshake ──Handshaken──▶ kAccepted ──Opened──▶ kOpen
//      └───────ProxyRead (plain)──────────────────────▲                      │
//                                                                       CloseBegun
//   kLingering ◀──LingerBegin── kClosing ◀───────────────────────────────────┘
//
//   kProxy      --proxy-protocol: its header has not been read (nothing else
//               may touch the socket's bytes before it)
//   kHandshake  TLS: the handshake has not completed (the module waits)
//   kAccepted   ready, but the module has not been told (on_open not started;
//               a connection whose acceptor died waits here for another worker)
//   kOpen       the module handles it
//   kClosing    the module closed it (on_close ran, its close counted): its
//               queued reply goes out, bounded by the send timeout
//   kLingering  all of it went out, writing is shut down, and what the client
//               still sends is discarded (close_phase.h)
// Any state ends in kClosed when the entry is unlinked (connClose); that is
// not a transition the table records (the entry is freed at once).
//
// Each state has its own deadlines (Deadlines()): the states before kClosing
// have the read, frame, send, drain-idle and module-timer deadlines (in
// kProxy and kHandshake the header/handshake counts as a frame in progress);
// a closing connection has only its send deadline, then its linger deadline.
//
// Plain C++, no locking of its own: the connection table changes a state under
// its lock (listings and the timer event read it there), and only the entry's
// holder makes a transition. An illegal transition is a bug and asserts.
#pragma once
#include <cstdint>

#include "close_phase.h"

namespace tcpmod {

enum class ConnState : uint8_t { kProxy, kHandshake, kAccepted, kOpen, kClosing, kLingering };

const char* ConnStateName(ConnState s);

// The first state of a connection entry: its PROXY header first, else its TLS
// handshake, else ready for the module.
ConnState InitialState(bool proxy, bool tls);

// The named transitions. Each asserts that `s` is a state it leaves from.
ConnState ProxyRead(ConnState s, bool tls);  // kProxy -> kHandshake (tls) | kAccepted
ConnState Handshaken(ConnState s);           // kHandshake -> kAccepted
ConnState Opened(ConnState s);               // kAccepted -> kOpen
ConnState CloseBegun(ConnState s);           // kOpen -> kClosing
ConnState LingerBegun(ConnState s);          // kClosing -> kLingering

// Whether the module has been told of the connection (on_open started).
inline bool MetModule(ConnState s) { return s >= ConnState::kOpen; }
// Whether the module closed it (its close phase: no deadline but send and linger).
inline bool InClosePhase(ConnState s) { return s >= ConnState::kClosing; }

// Half-close (docs/abi.md §20), for a module that imports upstream_shutdown:
// the client's two directions end separately. Input: the load that returned
// EOF marks it (eof_loaded); the event's end (the holder's re-arm) makes it
// ended when the module kept the connection, and from then on nothing is read
// and the socket is re-armed without EPOLLIN (it would report at once, for
// ever). Output: the module asks (shutdown_output) during a call; that event's
// own output still goes, then its end closes the output to new bytes
// (kEnding: what later calls give is discarded) and the FIN follows once the
// queue has drained (kEnded). Both ended, and no upstream left: the
// connection closes with reason 0 (kDuePeerDone). Only the holder changes it.
enum class OutputEnd : uint8_t { kOpen, kAsked, kEnding, kEnded };
struct HalfClose {
  bool eof_loaded = false;   // this event's load handed the module EOF
  bool input_ended = false;  // the module kept the connection after its EOF: nothing more is read
  OutputEnd output = OutputEnd::kOpen;
};
// The end of an event (the holder's re-arm): EOF handed and kept -> input
// ended; output asked -> ending.
void HalfCloseEventEnd(HalfClose& h);
// Output given after the event that shut it is discarded.
inline bool OutputDiscards(const HalfClose& h) { return h.output >= OutputEnd::kEnding; }
// The FIN is due: the output is ending and nothing is queued.
inline bool FinDue(const HalfClose& h, bool queue_empty) { return h.output == OutputEnd::kEnding && queue_empty; }
// Both directions are over: the connection has nothing more to do (reason 0) once it has no upstream.
inline bool BothEnded(const HalfClose& h) { return h.input_ended && h.output == OutputEnd::kEnded; }

// The phase bits a claimer is handed (conn_table.h's kDue* values that are not
// times): what the connection's state says to do next.
uint32_t PhaseBits(ConnState s);

// What the deadlines of a connection are computed from (CLOCK_MONOTONIC ms;
// 0 = not running).
struct ConnTimes {
  int64_t last_input = 0;   // the last input (or the accept)
  int64_t frame_since = 0;  // since when a frame (carry-over, a header, a handshake) is incomplete
  int64_t send_since = 0;   // queued output's last progress while non-empty
  int64_t timer_at = 0;     // the module's timer
};
// The server's timeouts that apply to every connection (0 = off).
struct ServerDeadlines {
  int64_t read_timeout = 0, frame_timeout = 0, send_timeout = 0;
  int64_t drain_start = 0, drain_grace = 0;  // the drain grace, once the server drains
  LingerConfig linger;
};

// When the connection next needs attention in state `s` (kNever: never).
int64_t NextDeadline(ConnState s, const ClosePhase& phase, const ConnTimes& t, const ServerDeadlines& d);

// What is due at `now` in state `s` (kDue* time bits). A due module timer is
// reported (kDueTimer) and the caller clears timer_at.
uint32_t DueAt(ConnState s, const ClosePhase& phase, const ConnTimes& t, const ServerDeadlines& d, int64_t now);

}  // namespace tcpmod
