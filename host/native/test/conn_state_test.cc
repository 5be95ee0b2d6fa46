// sources: conn_state.cc close_phase.cc
// The connection state machine (conn_state.h) without Node: every legal path
// from accept to the close phase, the phase bits a claimer is handed in each
// state, each state's deadlines (a closing connection has only its send and
// linger deadlines), and that an illegal transition stops the program (run in
// a child process: the assert must fire).
#include "conn_state.h"

#include "check.h"
#include "conn_table.h"
#include "timers.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

using namespace tcpmod;
using S = ConnState;

static void Paths() {
  // Plain, TLS, PROXY, PROXY + TLS: each reaches kOpen through its phases only.
  CHECK(InitialState(false, false) == S::kAccepted);
  CHECK(InitialState(false, true) == S::kHandshake);
  CHECK(InitialState(true, false) == S::kProxy);
  CHECK(InitialState(true, true) == S::kProxy);
  CHECK(ProxyRead(S::kProxy, false) == S::kAccepted);
  CHECK(ProxyRead(S::kProxy, true) == S::kHandshake);
  CHECK(Handshaken(S::kHandshake) == S::kAccepted);
  CHECK(Opened(S::kAccepted) == S::kOpen);
  CHECK(CloseBegun(S::kOpen) == S::kClosing);
  CHECK(LingerBegun(S::kClosing) == S::kLingering);
  // The module has met it from kOpen on; the close phase is kClosing and kLingering.
  CHECK(!MetModule(S::kAccepted) && !MetModule(S::kHandshake) && !MetModule(S::kProxy));
  CHECK(MetModule(S::kOpen) && MetModule(S::kClosing) && MetModule(S::kLingering));
  CHECK(!InClosePhase(S::kOpen) && InClosePhase(S::kClosing) && InClosePhase(S::kLingering));
  for (S s : {S::kProxy, S::kHandshake, S::kAccepted, S::kOpen, S::kClosing, S::kLingering})
    CHECK(ConnStateName(s)[0] != '?');
}

static void Bits() {
  // What the claimer is told to do next, one bit per state before kOpen, none in it.
  CHECK(PhaseBits(S::kProxy) == kDueProxy);
  CHECK(PhaseBits(S::kHandshake) == kDueHandshake);
  CHECK(PhaseBits(S::kAccepted) == kDueOpen);
  CHECK(PhaseBits(S::kOpen) == 0);
  CHECK(PhaseBits(S::kClosing) == kDueClosing);
  CHECK(PhaseBits(S::kLingering) == kDueClosing);
}

static void Deadlines() {
  ServerDeadlines d;
  d.read_timeout = 1000;
  d.frame_timeout = 300;
  d.send_timeout = 5000;
  d.linger = {30000, 2000};
  ConnTimes t;
  t.last_input = 100;
  t.frame_since = 100;  // a header or a handshake in progress
  t.timer_at = 50;
  ClosePhase none;
  // Before the close phase: the earliest of timer, read, frame (and send, drain).
  CHECK(NextDeadline(S::kProxy, none, t, d) == 50);
  t.timer_at = 0;
  CHECK(NextDeadline(S::kHandshake, none, t, d) == 400);
  CHECK(DueAt(S::kHandshake, none, t, d, 400) == kDueTimeout);
  CHECK(DueAt(S::kHandshake, none, t, d, 399) == 0);
  t.frame_since = 0;
  CHECK(NextDeadline(S::kOpen, none, t, d) == 1100);
  t.timer_at = 700;
  CHECK(DueAt(S::kOpen, none, t, d, 700) == kDueTimer);
  CHECK(DueAt(S::kOpen, none, t, d, 1100) == (kDueTimer | kDueTimeout));
  // A drain: idle with nothing pending -> the drain-idle deadline.
  d.drain_start = 2000;
  d.drain_grace = 500;
  t.timer_at = 0;
  t.last_input = 1900;
  d.read_timeout = 0;
  CHECK(NextDeadline(S::kOpen, none, t, d) == 2500);
  CHECK(DueAt(S::kOpen, none, t, d, 2500) == kDueDrainIdle);
  // The close phase: no read, frame, drain-idle or timer deadline, whatever the times say ...
  t.timer_at = 10;
  t.frame_since = 10;
  d.read_timeout = 1;
  CHECK(NextDeadline(S::kClosing, none, t, d) == kNever);
  CHECK(DueAt(S::kClosing, none, t, d, 1000000) == 0);
  // ... only its send deadline while output is queued ...
  t.send_since = 3000;
  CHECK(NextDeadline(S::kClosing, none, t, d) == 8000);
  CHECK(DueAt(S::kClosing, none, t, d, 8000) == kDueSendTimeout);
  // ... then its linger deadline (the earlier of the linger time and the linger timeout).
  t.send_since = 0;
  ClosePhase lingering{true, 9000};
  t.last_input = 9500;
  CHECK(NextDeadline(S::kLingering, lingering, t, d) == 11500);
  CHECK(DueAt(S::kLingering, lingering, t, d, 11500) == kDueLinger);
  CHECK(DueAt(S::kLingering, lingering, t, d, 11499) == 0);
}

// Runs fn in a child; true when it died of SIGABRT (an assert).
template <typename Fn>
static bool Aborts(Fn fn) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    // The assert's message is expected: keep the test's output clean.
    freopen("/dev/null", "w", stderr);
    fn();
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

// Half-close (docs/abi.md §20): what an event's end makes of what happened during it.
static void HalfCloseSteps() {
  HalfClose h;
  HalfCloseEventEnd(h);  // an ordinary event: nothing changes
  CHECK(!h.input_ended && h.output == OutputEnd::kOpen && !OutputDiscards(h) && !FinDue(h, true));
  h.output = OutputEnd::kAsked;  // shutdown_output during an event: that event's output still goes
  CHECK(!OutputDiscards(h) && !FinDue(h, true));
  HalfCloseEventEnd(h);  // its end: later output discarded; the FIN once the queue is empty
  CHECK(h.output == OutputEnd::kEnding && OutputDiscards(h));
  CHECK(!FinDue(h, false) && FinDue(h, true));
  h.output = OutputEnd::kEnded;  // the holder sent it
  CHECK(!FinDue(h, true) && OutputDiscards(h) && !BothEnded(h));
  h.eof_loaded = true;  // the load handed the module EOF, and the connection was kept (the event ended)
  HalfCloseEventEnd(h);
  CHECK(h.input_ended && !h.eof_loaded && BothEnded(h));
  HalfClose g;  // an event that ended without a load handing EOF leaves the input open
  g.output = OutputEnd::kEnded;
  HalfCloseEventEnd(g);
  CHECK(!g.input_ended && !BothEnded(g));
}

static void Illegal() {
#ifdef NDEBUG
  std::printf("asserts are off (NDEBUG): illegal transitions not checked\n");
#else
  CHECK(Aborts([] { Opened(S::kProxy); }));         // the module before the PROXY header
  CHECK(Aborts([] { Opened(S::kHandshake); }));     // ... or before the handshake
  CHECK(Aborts([] { Handshaken(S::kProxy); }));     // the handshake before the header
  CHECK(Aborts([] { CloseBegun(S::kAccepted); }));  // a close phase for a module that never met it
  CHECK(Aborts([] { LingerBegun(S::kOpen); }));     // lingering before the module closed it
  CHECK(Aborts([] { ProxyRead(S::kOpen, false); }));
  CHECK(Aborts([] { Opened(S::kClosing); }));       // nothing goes back
  CHECK(!Aborts([] { Opened(S::kAccepted); }));     // and the harness can tell
#endif
}

int main() {
  Paths();
  Bits();
  Deadlines();
  HalfCloseSteps();
  Illegal();
  return tcpmod_test::Summary();
}
