#include "conn_state.h"

#include <algorithm>
#include <cassert>

#include "conn_table.h"
#include "timers.h"

namespace tcpmod {

const char* ConnStateName(ConnState s) {
  switch (s) {
    case ConnState::kProxy: return "proxy";
    case ConnState::kHandshake: return "handshake";
    case ConnState::kAccepted: return "accepted";
    case ConnState::kOpen: return "open";
    case ConnState::kClosing: return "closing";
    case ConnState::kLingering: return "lingering";
  }
  return "?";
}

ConnState InitialState(bool proxy, bool tls) {
  return proxy ? ConnState::kProxy : tls ? ConnState::kHandshake : ConnState::kAccepted;
}

ConnState ProxyRead(ConnState s, bool tls) {
  assert(s == ConnState::kProxy);
  (void)s;
  return tls ? ConnState::kHandshake : ConnState::kAccepted;
}

ConnState Handshaken(ConnState s) {
  assert(s == ConnState::kHandshake);
  (void)s;
  return ConnState::kAccepted;
}

ConnState Opened(ConnState s) {
  assert(s == ConnState::kAccepted);
  (void)s;
  return ConnState::kOpen;
}

ConnState CloseBegun(ConnState s) {
  assert(s == ConnState::kOpen);
  (void)s;
  return ConnState::kClosing;
}

ConnState LingerBegun(ConnState s) {
  assert(s == ConnState::kClosing);
  (void)s;
  return ConnState::kLingering;
}

void HalfCloseEventEnd(HalfClose& h) {
  if (h.eof_loaded) h.input_ended = true;
  h.eof_loaded = false;
  if (h.output == OutputEnd::kAsked) h.output = OutputEnd::kEnding;
}

uint32_t PhaseBits(ConnState s) {
  switch (s) {
    case ConnState::kProxy: return kDueProxy;  // on the wire before any TLS: nothing else applies yet
    case ConnState::kHandshake: return kDueHandshake;
    case ConnState::kAccepted: return kDueOpen;
    case ConnState::kOpen: return 0;
    case ConnState::kClosing:
    case ConnState::kLingering: return kDueClosing;
  }
  return 0;
}

int64_t NextDeadline(ConnState s, const ClosePhase& phase, const ConnTimes& t, const ServerDeadlines& d) {
  // Closed by the module: no read, frame, drain-idle or timer deadline, only its send or linger deadline.
  if (InClosePhase(s)) return ClosingDeadline(phase, d.linger, t.send_since, d.send_timeout, t.last_input);
  int64_t w = kNever;
  if (t.timer_at) w = std::min(w, t.timer_at);
  if (d.read_timeout) w = std::min(w, t.last_input + d.read_timeout);
  if (d.frame_timeout && t.frame_since) w = std::min(w, t.frame_since + d.frame_timeout);
  if (d.send_timeout && t.send_since) w = std::min(w, t.send_since + d.send_timeout);
  if (d.drain_start && t.frame_since == 0) w = std::min(w, std::max(t.last_input, d.drain_start) + d.drain_grace);
  return w;
}

uint32_t DueAt(ConnState s, const ClosePhase& phase, const ConnTimes& t, const ServerDeadlines& d, int64_t now) {
  uint32_t due = 0;
  if (InClosePhase(s)) {  // as NextDeadline
    if (d.send_timeout && t.send_since && t.send_since + d.send_timeout <= now) due |= kDueSendTimeout;
    if (LingerExpired(phase, d.linger, t.last_input, now)) due |= kDueLinger;
    return due;
  }
  if (t.timer_at && t.timer_at <= now) due |= kDueTimer;
  if (d.read_timeout && t.last_input + d.read_timeout <= now) due |= kDueTimeout;
  if (d.frame_timeout && t.frame_since && t.frame_since + d.frame_timeout <= now) due |= kDueTimeout;
  if (d.send_timeout && t.send_since && t.send_since + d.send_timeout <= now) due |= kDueSendTimeout;
  if (d.drain_start && t.frame_since == 0 && std::max(t.last_input, d.drain_start) + d.drain_grace <= now)
    due |= kDueDrainIdle;
  return due;
}

}  // namespace tcpmod
