// Batches: events one epoll_wait claimed for a worker beyond the one it is
// handed, lent to its next epollWait calls (oldest first), and handed back to
// epoll by the timer event when left untouched past the batch budget.
#include <sys/epoll.h>

#include <algorithm>
#include <climits>
#include <cerrno>
#include <mutex>

#include "conn.h"

namespace tcpmod {

// The due bits that are times (kept in the entry until a claim takes them), as
// opposed to those a claim works out from the entry's state.
constexpr uint32_t kDueTimes =
    kDueTimer | kDueTimeout | kDueDrainIdle | kDueSendTimeout | kDueOverflow | kDueLinger | kDueMessage;

int ReturnLoans(Server& s, int holder, int64_t before) {
  int n = 0;
  for (size_t h = holder ? holder : 1; h < s.loans.size() && (holder == 0 || h == static_cast<size_t>(holder)); h++) {
    std::deque<Loan>& q = s.loans[h];
    std::vector<Loan> failed;
    while (!q.empty() && q.front().at <= before) {
      Lent e = q.front().event;
      q.pop_front();
      if (e.kind == kKindWake) continue;  // level-triggered: the next wait reports it again
      Conn* c = FindLocked(e.fd, static_cast<uint64_t>(e.id));
      // Gone, or no longer this worker's (the main thread finished what a dead worker held): not ours to re-arm.
      if (c == nullptr || c->holder.load() != static_cast<int>(h)) continue;
      c->due |= e.due & kDueTimes;
      // A connection the module has not met may have nothing to report: writability makes it.
      uint32_t events = e.kind == kKindListen ? s.listen_events
                                              : s.conn_events | (MetModule(c->life) ? 0u : static_cast<uint32_t>(EPOLLOUT));
      if (RearmLocked(c, e.fd, s.epfd, events) < 0) {
        // Stays with its holder (the set is being torn down), tried again a budget from now: a
        // loan dated in the past would make the timer fire again at once, round and round.
        failed.push_back({e, MonoMs()});
        continue;
      }
      n++;
    }
    for (auto it = failed.rbegin(); it != failed.rend(); ++it) q.push_front(*it);
  }
  return n;
}

static void ArmSteal(Server& s);

int64_t NextSteal(const Server& s) {
  int64_t at = 0;
  for (const std::deque<Loan>& q : s.loans)
    if (!q.empty() && (at == 0 || q.front().at + s.batch_budget < at)) at = q.front().at + s.batch_budget;
  return at;
}

// batchConfigure: call after timersConfigure: what a loan handed back is
// re-armed with, and how long a loan may wait untouched.
int BatchConfigure(int group, uint32_t conn_events, uint32_t listen_events, int64_t budget_ms) {
  TableLock lock(table().mu);
  Server* s = ServerOf(group);
  if (s == nullptr) return -EBADF;
  s->conn_events = conn_events;
  s->listen_events = listen_events;
  s->batch_budget = std::max<int64_t>(0, budget_ms);
  return 0;
}

// batchRelease: every loan of `holder`, whatever its age, handed back (a worker
// that exited or was stopped never took them). Returns how many.
int BatchRelease(int group, int holder) {
  if (holder <= 0) return 0;
  TableLock lock(table().mu);
  Server* s = ServerOf(group);
  if (s == nullptr) return -EBADF;
  return ReturnLoans(*s, holder, INT64_MAX);
}

void LendBatch(int group, int holder, const Lent* events, int n, const int32_t* busy, const int32_t* workers) {
  TableLock lock(table().mu);
  // epollWait lends only to a worker (holder > 0) of a group configured for
  // batches (BatchConfigured), so the server is there, unless it has just
  // been forgotten (timersForget, at release: every connection is being closed).
  Server* s = ServerOf(group);
  if (s == nullptr || holder <= 0) return;
  if (s->loans.size() <= static_cast<size_t>(holder)) s->loans.resize(static_cast<size_t>(holder) + 1);
  int64_t now = MonoMs();
  for (int i = 0; i < n; i++) s->loans[holder].push_back({events[i], now});
  if (s->steal_at == 0) s->steal_at = now + s->batch_budget;
  // Usually the batch is taken within microseconds and nothing needs the
  // timer. It must fire by the steal deadline only for a worker asleep in its
  // wait now, which nothing else would wake: a worker that is busy takes what
  // is still lent when it comes back to wait (StealLent), with no timer. Read
  // after steal_at is set, under the lock, against a worker's clearing of its
  // busy flag before the lock of its StealLent: one of the two sees the other.
  // The last loan taken disarms it again (LoanTaken), so an armed timer that
  // fires finds a loan past the budget to hand back.
  if (busy == nullptr || workers == nullptr ||
      __atomic_load_n(busy, __ATOMIC_SEQ_CST) < __atomic_load_n(workers, __ATOMIC_SEQ_CST) - 1)
    ArmSteal(*s);
}

// The timerfd set to fire by the steal deadline. No timerfd_settime when it
// fires by then anyway (set for the heap's next item, or for an earlier steal
// deadline); when it fires, RunTimers hands back what is past the budget and arms for the rest.
static void ArmSteal(Server& s) {
  const int64_t armed = s.heap.armed_at();
  if (s.steal_at != 0 && (armed == 0 || armed > s.steal_at)) ArmTimerfd(s);
}

// A loan was just taken from `q`: when it was the queue's last, the steal
// deadline moves to the next queue's (0: none), and a timerfd set for the old
// deadline alone is set for what still needs it (the heap's next item, or
// nothing): one timerfd_settime now instead of, when it fires, a waiting
// worker's wake-up, a read, a re-arm of the timer item and a timerfd_settime.
static void LoanTaken(Server& s, const std::deque<Loan>& q) {
  if (!q.empty() || s.steal_at == 0) return;
  const int64_t was = s.steal_at;
  s.steal_at = NextSteal(s);
  if (s.heap.armed_at() == was && s.steal_at != was) ArmTimerfd(s);
}

// The entry a loan names, if it is still the lender's (never hand out a stale
// entry), with the times marked while it waited merged into the event (the
// claim is now).
static Conn* LoanEntry(Lent* e, int lender) {
  Conn* c = FindLocked(e->fd, static_cast<uint64_t>(e->id));
  if (c == nullptr || c->holder.load() != lender) return nullptr;
  e->due |= c->due;
  c->due = 0;
  return c;
}

bool StealLent(int group, int holder, Lent* out) {
  TableLock lock(table().mu);
  Server* s = ServerOf(group);
  if (s == nullptr || s->steal_at == 0 || holder <= 0) return false;
  for (;;) {
    // The oldest loan of another worker: it has waited longest.
    std::deque<Loan>* from = nullptr;
    int lender = 0;
    for (size_t h = 1; h < s->loans.size(); h++) {
      std::deque<Loan>& q = s->loans[h];
      // A wake is the last of its batch, and level-triggered: left to its lender (or the next wait).
      if (h == static_cast<size_t>(holder) || q.empty() || q.front().event.kind == kKindWake) continue;
      if (from == nullptr || q.front().at < from->front().at) {
        from = &q;
        lender = static_cast<int>(h);
      }
    }
    if (from == nullptr) return false;
    *out = from->front().event;
    from->pop_front();
    LoanTaken(*s, *from);
    Conn* c = LoanEntry(out, lender);
    if (c == nullptr) continue;
    // Never started by its lender, whose JavaScript has not seen it: it changes hands under the lock.
    c->holder.store(holder);
    return true;
  }
}

bool BatchConfigured(int group) {
  TableLock lock(table().mu);
  Server* s = ServerOf(group);
  return s != nullptr && s->heap.fd() >= 0 && s->conn_events != 0;
}

bool PopLent(int group, int holder, Lent* out) {
  TableLock lock(table().mu);
  Server* s = ServerOf(group);
  if (s == nullptr || holder <= 0 || static_cast<size_t>(holder) >= s->loans.size()) return false;
  std::deque<Loan>& q = s->loans[holder];
  while (!q.empty()) {
    *out = q.front().event;
    q.pop_front();
    LoanTaken(*s, q);
    if (out->kind == kKindWake) return true;
    if (LoanEntry(out, holder) != nullptr) return true;  // not possible while held; never hand out a stale entry
  }
  return false;
}

}  // namespace tcpmod
