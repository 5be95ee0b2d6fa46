// Ownership (conn.h states the rule): claiming an entry when epoll hands its
// event over (ClaimEvent) and giving it back (the re-arm), with the re-arm's
// epoll_ctl outside the table lock.
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <mutex>

#include "conn.h"
#include "direct.h"
#include "mailbox.h"
#include "tls.h"

namespace tcpmod {

namespace {

// Holder values while a re-arm is in flight without the table lock (RearmHeld):
// nobody may claim the entry then; a claim that comes (an event the re-arm
// made epoll report at once, a due mark taken) turns kRearming into
// kRearmingMissed and is dropped, and the re-arming thread does it over.
constexpr int kRearming = -1;
constexpr int kRearmingMissed = -2;
// How many re-arms were done over because a claim was turned away, and how many
// claims took an entry whose re-arm finished while they looked (rearmStats(), for tests).
std::atomic<uint64_t> rearm_retries{0}, claim_rescues{0};
// Re-arms that found the item still armed with the same events and made no epoll_ctl (RearmSkips()).
std::atomic<uint64_t> rearm_skips{0};
// Test hook (testClaimPause): µs a claim waits between seeing kRearming and
// marking it, so that the re-arming thread's swap to 0 lands in between.
std::atomic<int> claim_pause_us{0};

uint64_t EpollData(const Conn* c, int fd) { return EpollPack(c->kind, fd, c->id); }

// The epoll event an entry is re-armed with: `events` and what its state adds.
// Schedules its next wake and queues a due mark that came while it was held.
// Caller holds the lock.
epoll_event RearmEvent(Conn* c, int fd, uint32_t events) {
  epoll_event ev{};
  // Its input ended (half-close, conn_state.h): a socket at EOF is readable for ever, so asking for input
  // would report at once, in a loop; only what its output needs (below) and errors are reported.
  if (c->kind == kKindConn && c->half.input_ended) events &= ~static_cast<uint32_t>(EPOLLIN | EPOLLRDHUP);
  ev.events = events;
  // Input OpenSSL holds already is invisible to epoll; asking for writability
  // as well makes a (writable) socket report at once, so it is not stranded.
  if (c->tls != nullptr && (events & EPOLLIN) && TlsHasPending(c->tls)) ev.events |= EPOLLOUT;
  ev.data.u64 = EpollData(c, fd);
  if (c->kind == kKindConn) {
    const bool closing = InClosePhase(c->life);
    if (Server* s = ServerOf(c->group)) Schedule(c, *s);
    // An upstream event that came while it was held, or one its holder left unreported (upstream.h).
    if (!closing && !ConnOutputOver(c) && UpstreamsPending(c->id)) c->due |= kDueUpstreamEvent;
    // Half-closed both ways with no upstream left: nothing more can happen; the next claimer closes it (reason 0).
    if (!closing && BothEnded(c->half) && !UpstreamsAny(c->id)) c->due |= kDuePeerDone;
    if (c->due && c->srv) MarkDue(*c->srv, c, fd, 0);  // a time came while it was held: the next waiter takes it
    size_t queued = c->out.size();
    if (queued) {
      ev.events |= EPOLLOUT;  // report when the socket takes more
      // Backpressure: above the high-water mark, read nothing until it drains.
      if (c->srv && static_cast<int64_t>(queued) > c->srv->out_high) c->paused = true;
      if (c->paused || closing) ev.events &= ~static_cast<uint32_t>(EPOLLIN);
    }
    // Messages left after an event (it delivers a bounded number) are due next, unless the client is not reading its
    // output (backpressure): then they wait in the mailbox, whose bound closes a subscriber that never catches up.
    // A connection in its close phase takes no messages (the module closed it): its mailbox is dropped.
    if (c->topics && closing) c->topics->mail.Clear();
    if (c->topics && !c->topics->mail.empty() && !c->paused && !(c->due & kDueMessage))
      MarkConnDueLocked(fd, c->id, kDueMessage);
  }
  return ev;
}

// Whether the holder can give the entry back without an epoll_ctl: its one-shot item is
// still armed with exactly these events (`armed`, conn.h). That is so when it was taken from
// the due list (an upstream's reply, a timer, a message) and no event of its own fired since:
// a fired one-shot event always reaches ClaimEvent, which clears `armed`, and one still on its
// way there finds the entry free and takes it. Nothing is lost by skipping the MOD: at the last
// MOD the socket reported nothing for these events (else the item would have fired), and what
// came since would have fired it too. Then the holder is cleared (the item may fire any time).
// Caller holds the lock.
bool StillArmed(Conn* c, const epoll_event& ev) {
  if (c->armed.load(std::memory_order_relaxed) != ev.events) return false;
  c->holder.store(0);
  rearm_skips++;
  return true;
}

// RearmLocked for the holder, with the epoll_ctl outside the table lock: the
// end of nearly every event, and a syscall that wakes a waiter is too long to
// hold the one lock every worker needs (measured: futex wake/wait were a fifth
// of the server's CPU). While the call is in flight the holder is kRearming, so
// no one claims the entry (and nothing frees it); a claim turned away meanwhile
// makes the thread re-arm again the locked way, so no event is lost. An entry
// with a due mark to queue takes the locked way at once. Caller is the holder
// and does not hold the lock.
}  // namespace

int RearmHeld(Conn* c, int fd, int epfd, uint32_t events) {
  if (!c->held.empty()) (void)Flush(c, fd);  // kv_send's held run (conn_output.cc) ends with the event; a failure shows at the next
  DirectFlush();  // the frames this event published (direct.h): before the lock below, never under it
  if (c->kind == kKindConn && c->life == ConnState::kOpen) HalfCloseStep(c, fd);  // the event's end
  Table& t = table();
  epoll_event ev;
  int prev;
  {
    TableLock lock(t.mu);
    if (c->due || (c->topics && !c->topics->mail.empty())) return RearmLocked(c, fd, epfd, events);
    ev = RearmEvent(c, fd, events);
    if (StillArmed(c, ev)) return 0;
    // Set before the call: an event it makes epoll report at once clears it again (ClaimEvent).
    c->armed.store(ev.events, std::memory_order_relaxed);
    prev = c->holder.exchange(kRearming);
  }
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0) {
    int err = errno;
    c->armed.store(0);
    c->holder.store(prev);
    return -err;
  }
  int expect = kRearming;
  if (c->holder.compare_exchange_strong(expect, 0)) return 0;
  c->holder.store(prev);
  rearm_retries++;
  TableLock lock(t.mu);
  return RearmLocked(c, fd, epfd, events);
}

// Gives the entry back to epoll (EPOLL_CTL_MOD) with `events` and what its
// state adds: clears the holder first, since another worker may take the event
// the moment the item is re-armed. On failure the holder stays: -errno.
// Caller holds the lock, so that the timer event sees either this holder or a
// re-armed item. The epoll_ctl runs under the lock here: the way taken only
// when a due mark must be queued with the re-arm, or a claim was turned away
// (RearmHeld), or a loan is handed back by the timer event (loans.cc).
int RearmLocked(Conn* c, int fd, int epfd, uint32_t events) {
  epoll_event ev = RearmEvent(c, fd, events);
  if (StillArmed(c, ev)) return 0;
  int prev = c->holder.exchange(0);
  c->armed.store(ev.events, std::memory_order_relaxed);
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0) {
    int err = errno;
    c->armed.store(0);
    c->holder.store(prev);
    return -err;
  }
  return 0;
}

// Takes the entry for `holder` if no one holds it. An entry whose re-arm is in
// flight without the lock (kRearming) is not taken: the claim marks it
// kRearmingMissed, so the re-arming thread does it again (RearmHeld) and the
// event comes back. The mark and the re-arming thread's own swap to 0 race: if
// that swap wins, the entry is free and the claim takes it -- a claim is never
// lost in between.
bool Claim(Conn* c, int holder) {
  for (;;) {
    int v = 0;
    if (c->holder.compare_exchange_strong(v, holder)) return true;
    if (v != kRearming) return false;  // held, or already marked
    if (int us = claim_pause_us.load(std::memory_order_relaxed)) usleep(static_cast<useconds_t>(us));
    if (c->holder.compare_exchange_strong(v, kRearmingMissed)) return false;
    // v changed meanwhile: freed (claim again), or marked by another claimer (nothing to do).
    if (v == 0) claim_rescues++;
  }
}

// A direct delivery (direct.cc) lends an entry nobody holds to the publishing thread for one write:
// to claimers it looks like a re-arm in flight (they mark it and turn away), so its callbacks and
// its holder's own output never meet the write. Caller holds the lock.
bool LendForWrite(Conn* c) {
  int v = 0;
  return c->holder.compare_exchange_strong(v, kRearming);
}

// The lent entry back, under the lock: free again when no claim was turned away and nothing is
// queued (marked due if its mailbox holds more); else the locked re-arm (the missed event reported
// again, EPOLLOUT for what is queued, due marks queued).
void ReturnLentLocked(Conn* c, int fd) {
  Server& s = *c->srv;
  if (c->out.empty()) {
    int expect = kRearming;
    if (c->holder.compare_exchange_strong(expect, 0)) {
      if (c->topics && !c->topics->mail.empty()) MarkConnDueLocked(fd, c->id, kDueMessage);
      return;
    }
  } else if (c->send_since == 0) {
    c->send_since = MonoMs();  // the send timeout counts from now
  }
  if (RearmLocked(c, fd, s.epfd, s.conn_events) < 0) c->holder.store(0);  // never left lent
}

bool ClaimEvent(int fd, uint64_t tag, int group, int holder, double* id, uint32_t* due) {
  Table& t = table();
  TableLock lock(t.mu);
  if (fd < 0 || static_cast<size_t>(fd) >= t.by_fd.size()) return false;
  Conn* c = t.by_fd[fd];
  if (c == nullptr || c->group != group) return false;
  // Reported for an earlier connection on this fd number, closed since: not this one's event.
  if ((c->id & kEpollTagMask) != tag) return false;
  c->armed.store(0, std::memory_order_relaxed);  // the one-shot item fired: the next re-arm must MOD, claimed here or not
  if (!Claim(c, holder)) return false;
  *id = static_cast<double>(c->id);
  *due = c->due | (c->kind == kKindConn ? PhaseBits(c->life) : 0u);
  c->due = 0;
  return true;
}

// connAdd: puts a new entry into the epoll set; the caller stays its holder
// until it re-arms. A new item cannot be reported before it is added, so no lock.
int ConnAdd(int epfd, int fd, uint64_t id, uint32_t events) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = EpollData(c, fd);
  return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

// connRearm: gives the entry back to epoll (RearmHeld). On failure the caller stays holder.
int ConnRearm(int epfd, int fd, uint64_t id, uint32_t events) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  return RearmHeld(c, fd, epfd, events);
}

std::pair<uint64_t, uint64_t> RearmStats() { return {rearm_retries.load(), claim_rescues.load()}; }
uint64_t RearmSkips() { return rearm_skips.load(); }

int SetClaimPause(int64_t us) {
  claim_pause_us = static_cast<int>(std::clamp<int64_t>(us, 0, 100000));
  return 0;
}

}  // namespace tcpmod
