// Deadlines and the due list: each connection's single item in its server's
// timer heap (timers.h) at the deadline its state gives (conn_state.h), the
// timer event that marks what has come due, and the due list through which
// the next waiting worker takes a marked connection (TakeDue), since a socket
// whose client neither reads nor sends reports nothing to epoll.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cassert>
#include <cerrno>
#include <mutex>

#include "conn.h"
#include "mailbox.h"

namespace tcpmod {

namespace {

// Wakes one waiter for the due list: the eventfd is written and its one-shot
// item re-armed, once the lock is released (DeferIo).
void PokeDue(Server& s) {
  if (s.duefd >= 0) DeferIo(s, kIoPoke);
}

// What this thread deferred, by server (a lock scope touches one or two).
thread_local std::vector<std::pair<std::shared_ptr<ServerIo>, uint8_t>> deferred;

}  // namespace

bool io_deferred = false;

void DeferIo(Server& s, uint8_t what) {
  assert(s.io != nullptr);
  io_deferred = true;
  for (auto& [io, bits] : deferred)
    if (io == s.io) {
      bits |= what;
      return;
    }
  deferred.emplace_back(s.io, what);
}

void RunDeferredIo() {
  if (deferred.empty()) return;
  auto todo = std::move(deferred);
  deferred.clear();
  for (auto& [io, what] : todo) {
    std::lock_guard<std::mutex> lock(io->mu);
    if (io->closed) continue;
    if (what & kIoArm) {
      // The latest decision, whoever made it: each decision is followed by its
      // maker's call here, so the last call sets the last decision.
      const int64_t at = io->want_at.load();
      if (at != io->set_at) {
        ServerTimers::Set(io->timerfd, at);
        io->set_at = at;
      }
    }
    if (what & kIoTimerItem) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLONESHOT;
      ev.data.u64 = EpollPack(kKindTimer, io->timerfd, 0);
      epoll_ctl(io->epfd, EPOLL_CTL_MOD, io->timerfd, &ev);
    }
    if (what & kIoPoke) {
      uint64_t one = 1;
      ssize_t n;
      do n = write(io->duefd, &one, sizeof(one)); while (n < 0 && errno == EINTR);
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLONESHOT;
      ev.data.u64 = EpollPack(kKindDue, io->duefd, 0);
      epoll_ctl(io->epfd, EPOLL_CTL_MOD, io->duefd, &ev);
    }
  }
}

void ArmTimerfd(Server& s) {
  int64_t also = s.trim_at;
  if (s.steal_at && (also == 0 || s.steal_at < also)) also = s.steal_at;
  if (!s.heap.Decide(also)) return;
  s.io->want_at = s.heap.armed_at();
  DeferIo(s, kIoArm);
}

void Schedule(Conn* c, Server& s) {
  assert(c->kind == kKindConn);
  if (s.heap.Schedule(&c->wake, NextDeadline(c->life, c->phase, c->Times(), s.deadlines))) ArmTimerfd(s);
}

namespace {

// The pool's cells for this thread's wait (DueShareCells), or nullptr.
thread_local const int32_t* share_busy = nullptr;
thread_local const int32_t* share_workers = nullptr;

// Whether a poke may find a worker asleep: false when every worker but this
// one is busy, since each takes the due list before it sleeps again (poller.cc
// Wait). Read under the table lock after the mark is queued, against a
// worker's clearing of its busy flag before the lock of its TakeDue: one of the
// two sees the other (as LendBatch's steal timer, loans.cc). This thread comes
// back to TakeDue itself in any case: it is a worker in its wait.
bool OthersIdle() {
  return share_busy == nullptr ||
         __atomic_load_n(share_busy, __ATOMIC_SEQ_CST) < __atomic_load_n(share_workers, __ATOMIC_SEQ_CST) - 1;
}

// Queues c on the due list with `bits`; the first in an empty list wakes a waiter unless `poke`
// is false: the caller then takes the list itself next (TakeDue), which pokes for any it leaves.
void QueueDue(Server& s, Conn* c, int fd, uint32_t bits, bool poke) {
  c->due |= bits;
  s.due_list.push_back({fd, c->id});
  if (s.due_count++ == 0 && poke) PokeDue(s);
}

}  // namespace

void MarkDue(Server& s, Conn* c, int fd, uint32_t bits) { QueueDue(s, c, fd, bits, true); }

void MarkConnDueLocked(int fd, uint64_t id, uint32_t bits) {
  Conn* c = FindLocked(fd, id);
  if (c == nullptr || c->srv == nullptr || (c->due & bits) == bits) return;  // marked already: queued, or its holder's re-arm queues it
  if (bits == kDueMessage && c->paused) return;  // its output drains first: the re-arm after that marks it
  MarkDue(*c->srv, c, fd, bits);
}

void MarkConnDue(int fd, uint64_t id, uint32_t bits, bool poke) {
  TableLock lock(table().mu);
  Conn* c = FindLocked(fd, id);
  if (c == nullptr || c->kind != kKindConn || InClosePhase(c->life) || c->srv == nullptr || (c->due & bits) == bits)
    return;
  QueueDue(*c->srv, c, fd, bits, poke && OthersIdle());
}

void DueShareCells(const int32_t* busy, const int32_t* workers) {
  share_busy = busy != nullptr && workers != nullptr ? busy : nullptr;
  share_workers = share_busy != nullptr ? workers : nullptr;
}

bool TakeDue(int group, int holder, int* fd, double* id, uint32_t* due) {
  TableLock lock(table().mu);
  Server* s = ServerOf(group);
  if (s == nullptr || s->due_count.load() == 0) return false;
  while (!s->due_list.empty()) {
    auto [f, i] = s->due_list.front();
    s->due_list.pop_front();
    s->due_count--;
    Conn* c = FindLocked(f, i);
    if (c == nullptr || c->due == 0) continue;  // closed, or its mark was taken with an event
    // Held: its holder's re-arm queues it again (a re-arm in flight is done again, and queues it then).
    if (!Claim(c, holder)) continue;
    *due = c->due | PhaseBits(c->life);
    c->due = 0;
    *fd = f;
    *id = static_cast<double>(c->id);
    // More waiting: wake another worker to share them, if one may be asleep.
    if (s->due_count.load() > 0 && OthersIdle()) PokeDue(*s);
    return true;
  }
  return false;
}

namespace {
// Timer events handled, and those of them that found nothing to do (timerWakes(), for tests).
std::atomic<uint64_t> timer_wakes{0}, timer_wakes_empty{0};
}  // namespace

int64_t TimerWakes(int64_t empty) { return static_cast<int64_t>(empty ? timer_wakes_empty.load() : timer_wakes.load()); }

int RunTimers(int group) {
  Table& t = table();
  std::shared_ptr<ServerIo> io;
  {
    TableLock lock(t.mu);
    if (Server* s = ServerOf(group)) io = s->io;
  }
  if (io == nullptr) return 0;
  {
    // The timerfd fired: its count is read (resetting it) outside the table lock.
    std::lock_guard<std::mutex> lock(io->mu);
    if (io->closed) return 0;
    uint64_t expirations;
    while (read(io->timerfd, &expirations, sizeof(expirations)) < 0 && errno == EINTR) {
    }
    io->set_at = 0;  // a fired timerfd is disarmed
  }
  TableLock lock(t.mu);
  Server* s = ServerOf(group);
  if (s == nullptr || s->io != io) return 0;
  s->heap.BeginWakeRead();
  int64_t now = MonoMs();
  int marked = 0;
  // At most ServerTimers::kMaxPerWake items: the rest are left for the next
  // wake, which the timerfd (set to their past deadline below) brings at once,
  // to whichever worker waits next, so other workers get the lock in between.
  while (TimerSlot* slot = s->heap.PopDue(now)) {
    Conn* c = static_cast<Conn*>(slot->owner);
    assert(c->fd >= 0 && static_cast<size_t>(c->fd) < t.by_fd.size() && t.by_fd[c->fd] == c);
    uint32_t due = DueAt(c->life, c->phase, c->Times(), s->deadlines, now);
    if (due & kDueTimer) {  // a due module timer is consumed
      c->timer_at = 0;
      s->timers--;
    }
    if (due == 0) {
      Schedule(c, *s);  // came early (a deadline moved later): back in at its real time
      continue;
    }
    // Taken by the next waiter (TakeDue), or by its holder's re-arm if one
    // holds it now; the claim decides ownership either way. Out of the heap
    // until then: the re-arm after its event schedules it again.
    MarkDue(*s, c, c->fd, due);
    marked++;
  }
  bool worked = marked > 0;
  if (s->trim_at && s->trim_at <= now) {
    worked = true;
    s->trim_at = 0;
    s->last_trim = 0;
    if (s->in_total_max && s->in_alloc > s->in_total_max) Trim(*s, group, true, s->in_total_max);
    if (s->out_total_max && s->out_alloc > s->out_total_max) Trim(*s, group, false, s->out_total_max);
  }
  if (s->steal_at && s->steal_at <= now) {
    // Loans left untouched past the budget (their worker is in a slow callback) go back to epoll.
    if (ReturnLoans(*s, 0, now - s->batch_budget) > 0) worked = true;
    s->steal_at = NextSteal(*s);
  }
  // Empty: nothing came due, nothing to scan, no loan past its budget (an item
  // that came early and was scheduled again counts as nothing: a lazy deadline's cost).
  timer_wakes++;
  if (!worked) timer_wakes_empty++;
  ArmTimerfd(*s);
  DeferIo(*s, kIoTimerItem);  // the timer item is one-shot: re-armed once the lock is released
  return marked;
}

// timersConfigure: creates the server's state with its timerfd (the caller
// adds it to the epoll set with KIND_TIMER, EPOLLIN | EPOLLONESHOT) and due
// eventfd, and sets the read and frame timeouts (0: off).
int TimersConfigure(int group, int64_t read_ms, int64_t frame_ms) {
  Table& t = table();
  TableLock lock(t.mu);
  Server& s = t.servers[group];
  if (s.heap.fd() < 0) {
    s.epfd = group;
    int err = s.heap.Open();
    s.duefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.u64 = EpollPack(kKindDue, s.duefd, 0);
    if (err < 0 || s.duefd < 0 || epoll_ctl(s.epfd, EPOLL_CTL_ADD, s.duefd, &ev) < 0) {
      if (err >= 0) err = -errno;
      s.heap.Close();
      if (s.duefd >= 0) close(s.duefd);
      t.servers.erase(group);
      return err;
    }
    s.io = std::make_shared<ServerIo>();
    s.io->epfd = s.epfd;
    s.io->timerfd = s.heap.fd();
    s.io->duefd = s.duefd;
  }
  s.deadlines.read_timeout = read_ms;
  s.deadlines.frame_timeout = frame_ms;
  return s.heap.fd();
}

// timersForget: closes the server's timerfd and drops its state (at release).
int TimersForget(int group) {
  Table& t = table();
  TableLock lock(t.mu);
  auto it = t.servers.find(group);
  if (it == t.servers.end()) return -EBADF;
  {
    // Closed under the descriptors' own lock: a syscall deferred by another
    // thread finds them closed and is dropped, never made on a reused number.
    std::lock_guard<std::mutex> io_lock(it->second.io->mu);
    it->second.io->closed = true;
    it->second.heap.Close();  // its connections' slots are unqueued: they may outlive it
    close(it->second.duefd);
  }
  t.servers.erase(it);
  return 0;
}

// timerSet: the module's single timer, ms from now, replacing any; 0 cancels
// (and a firing not yet delivered). -EINVAL outside 0..limits::kTimerMaxMs.
int TimerSet(int fd, uint64_t id, int64_t ms) {
  if (ms < 0 || ms > limits::kTimerMaxMs) return -EINVAL;
  TableLock lock(table().mu);
  Conn* c = FindLocked(fd, id);
  Server* s = c ? ServerOf(c->group) : nullptr;
  if (c == nullptr || s == nullptr || c->kind != kKindConn) return -EBADF;
  if (c->timer_at) s->timers--;
  c->due &= ~kDueTimer;
  c->timer_at = ms ? MonoMs() + ms : 0;
  if (c->timer_at) s->timers++;
  Schedule(c, *s);
  return 0;
}

// timersDrain: the server is stopping: a connection with no unconsumed input
// that receives nothing for grace_ms from now (or from its last input) is
// marked kDueDrainIdle. Returns the connections looked at.
int TimersDrain(int group, int64_t grace_ms) {
  Table& t = table();
  TableLock lock(t.mu);
  Server* s = ServerOf(group);
  if (s == nullptr) return -EBADF;
  s->deadlines.drain_start = MonoMs();
  s->deadlines.drain_grace = grace_ms;
  int n = 0;
  for (size_t fd = 0; fd < t.by_fd.size(); fd++) {
    Conn* c = t.by_fd[fd];
    if (c == nullptr || c->group != group || c->kind != kKindConn) continue;
    Schedule(c, *s);
    n++;
  }
  return n;
}

// timerHeapSize: items in the server's timer heap: at most one per open
// connection with a deadline, whatever its module does with set_timer.
int64_t TimerHeapSize(int group) {
  TableLock lock(table().mu);
  Server* s = ServerOf(group);
  return s ? static_cast<int64_t>(s->heap.size()) : 0;
}

// timersArmed: connections with a module timer armed.
int TimersArmed(int group) {
  TableLock lock(table().mu);
  Server* s = ServerOf(group);
  return s ? s->timers : 0;
}

}  // namespace tcpmod
