// sources: registry.cc conn_state.cc ownership.cc direct.cc loans.cc due.cc conn_input.cc conn_output.cc conn_close.cc conn_proxy.cc generations.cc close_phase.cc timers.cc input_buffer.cc output_queue.cc sender.cc mailbox.cc proxy_protocol.cc
// The connection table's core without Node, on real sockets and a real epoll
// set: the registry (ids, the fd index, listings), a connection's states as a
// claimer sees them (PROXY header, open, close phase, lingering), timers that
// leave with their connection, and worker threads racing as the server's do --
// claims from epoll and from the due list, re-arms outside the lock, module
// timers firing through the timerfd, batches lent and handed back by the timer
// -- with an ownership check on every event (never two holders at once).
#include "conn.h"
#include "conn_table.h"

#include "check.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace tcpmod;

#include "table_stubs.h"
#include "conn_pair.h"

constexpr int kAcceptor = 1000;  // the holder a connection is opened by

// A connection as the server makes one: opened held by the acceptor, added to epoll, re-armed.
static Pair Accept(int epfd, bool met = true) {
  int sv[2];
  tcpmod_test::NonBlockingPair(sv);
  fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
  int64_t id = ConnOpen(sv[0], epfd, 8, kAcceptor, kKindConn, 0, 0);
  CHECK(id > 0);
  if (met) CHECK(ConnOpened(sv[0], id) == 0);
  CHECK(ConnAdd(epfd, sv[0], id, kEvents) == 0);
  return {sv[0], sv[1], static_cast<uint64_t>(id)};
}

static int NewServer(int* timerfd) {
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  *timerfd = TimersConfigure(epfd, 0, 0);
  CHECK(*timerfd >= 0);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLONESHOT;
  ev.data.u64 = EpollPack(kKindTimer, *timerfd, 0);
  CHECK(epoll_ctl(epfd, EPOLL_CTL_ADD, *timerfd, &ev) == 0);
  return epfd;
}

static void Registry() {
  int timerfd;
  int epfd = NewServer(&timerfd);
  Pair a = Accept(epfd, false), b = Accept(epfd);
  CHECK(a.id != b.id);
  CHECK(ConnCount(epfd) == 2);
  // The fd is taken: a second entry on it is refused.
  CHECK(ConnOpen(a.server, epfd, 0, kAcceptor, kKindConn, 0, 0) == -EEXIST);
  // A listing tells a connection the module has not met from one it has.
  auto list = ConnListing(epfd, false, 0);
  CHECK(list.size() == 2);
  for (const EntryRef& e : list) CHECK(e.kind == (e.id == a.id ? kKindUnopened : kKindConn));
  // Held by the acceptor until re-armed.
  CHECK(ConnListing(epfd, true, kAcceptor).size() == 2);
  CHECK(ConnRearm(epfd, a.server, a.id, kEvents) == 0);
  CHECK(ConnListing(epfd, true, kAcceptor).size() == 1);
  // A stale (fd, id) finds nothing.
  CHECK(ConnWant(a.server, a.id + 1, 1) == -EBADF);
  CHECK(ConnClose(a.server, a.id, 0) == 0);
  CHECK(ConnClose(a.server, a.id, 0) == -EBADF);
  CHECK(ConnCount(epfd) == 1);
  // Ids near the module id space's wrap: a module id is never 0 and never shared by two open connections.
  ConnSetNextId(static_cast<int64_t>(limits::kModuleIdSpace) - 2);
  std::vector<Pair> near;
  for (int i = 0; i < 4; i++) near.push_back(Accept(epfd));
  for (size_t i = 0; i < near.size(); i++) {
    CHECK(near[i].id % limits::kModuleIdSpace != 0);
    for (size_t j = 0; j < i; j++) CHECK(near[i].id % limits::kModuleIdSpace != near[j].id % limits::kModuleIdSpace);
  }
  for (Pair& p : near) {
    ConnClose(p.server, p.id, 0);
    close(p.client);
  }
  // A timer leaves with its connection: nothing stays in the heap.
  CHECK(TimerSet(b.server, b.id, 60000) == 0);
  // The timerfd was set (after the lock was released, before the call returned): it fires within the minute.
  itimerspec its{};
  CHECK(timerfd_gettime(timerfd, &its) == 0 && its.it_value.tv_sec > 50 && its.it_value.tv_sec <= 60);
  CHECK(TimersArmed(epfd) == 1);
  CHECK(TimerHeapSize(epfd) == 1);
  CHECK(ConnClose(b.server, b.id, 0) == 0);
  CHECK(TimerHeapSize(epfd) == 0 && TimersArmed(epfd) == 0 && ConnCount(epfd) == 0);
  close(a.client);
  close(b.client);
  CHECK(TimersForget(epfd) == 0);
  close(epfd);
}

// Waits for one connection event and claims it: its due bits, or -1 for none in time.
static int64_t ClaimNext(int epfd, int holder, uint64_t* id_out = nullptr) {
  epoll_event ev;
  for (int tries = 0; tries < 20; tries++) {
    int n = epoll_wait(epfd, &ev, 1, 100);
    if (n <= 0) continue;
    int kind = EpollKind(ev.data.u64);
    if (kind == kKindTimer) {
      RunTimers(epfd);
      continue;
    }
    if (kind == kKindDue) {
      uint64_t v;
      (void)!read(EpollFd(ev.data.u64), &v, sizeof(v));
      int fd;
      double id;
      uint32_t due;
      if (TakeDue(epfd, holder, &fd, &id, &due)) {
        if (id_out) *id_out = static_cast<uint64_t>(id);
        return due;
      }
      continue;
    }
    double id;
    uint32_t due;
    if (ClaimEvent(EpollFd(ev.data.u64), EpollTag(ev.data.u64), epfd, holder, &id, &due)) {
      if (id_out) *id_out = static_cast<uint64_t>(id);
      return due;
    }
  }
  return -1;
}

// A connection's life through the table as its claimer sees it.
static void States() {
  int timerfd;
  int epfd = NewServer(&timerfd);
  CHECK(ProxyConfigure(epfd, 3) == 0);
  CHECK(LingerConfigure(epfd, 30000, 5000) == 0);
  Pair p = Accept(epfd, false);
  CHECK(ConnRearm(epfd, p.server, p.id, kEvents) == 0);
  // The PROXY header comes first: nothing else is offered before it.
  const char hdr[] = "PROXY TCP4 192.0.2.7 198.51.100.1 4567 80\r\n";
  CHECK(send(p.client, hdr, 10, 0) == 10);
  CHECK(ClaimNext(epfd, 1) == kDueProxy);
  CHECK(ConnProxy(p.server, p.id) == 0);  // incomplete: kept
  CHECK(ConnRearm(epfd, p.server, p.id, kEvents) == 0);
  CHECK(send(p.client, hdr + 10, sizeof(hdr) - 11, 0) == static_cast<ssize_t>(sizeof(hdr) - 11));
  CHECK(send(p.client, "ping", 4, 0) == 4);
  CHECK(ClaimNext(epfd, 1) == kDueProxy);
  CHECK(ConnProxy(p.server, p.id) == 1);
  CHECK(ConnProxy(p.server, p.id) == 2);  // read before: nothing to do
  std::string peer;
  CHECK(ConnPeer(p.server, p.id, &peer) == 0 && peer == "192.0.2.7:4567");
  // Plain after the header: ready for the module, which has not been told.
  CHECK(ConnRearm(epfd, p.server, p.id, kEvents) == 0);
  CHECK(ClaimNext(epfd, 1) == kDueOpen);
  CHECK(ConnListing(epfd, false, 0)[0].kind == kKindUnopened);
  CHECK(ConnOpened(p.server, p.id) == 0);
  CHECK(ConnOpened(p.server, p.id) == 0);  // once only: a second call changes nothing
  // Open: the header's bytes were never the module's, "ping" is.
  uint8_t mem[64];
  int64_t received = 0;
  int64_t rc = ConnLoad(p.server, p.id, mem, 32, mem, sizeof(mem), 40, false, &received);
  CHECK(rc == 4 && std::memcmp(mem, "ping", 4) == 0 && received == 4);
  CHECK(ConnLoad(p.server, p.id, mem, 32, mem, sizeof(mem), 60, false, &received) == kStateOutside);
  CHECK(TimerSet(p.server, p.id, 60000) == 0);
  // The module closes it after its reply: the close phase keeps it, lingering; no timer is left.
  CHECK(ConnLinger(p.server, p.id) == 1);
  CHECK(TimersArmed(epfd) == 0);
  char buf[8];
  CHECK(recv(p.client, buf, sizeof(buf), 0) == 0);  // writing was shut down: the client sees EOF
  CHECK(ConnRearm(epfd, p.server, p.id, kEvents) == 0);
  // What the client still sends is discarded; its close ends the phase.
  CHECK(send(p.client, "late", 4, 0) == 4);
  CHECK(ClaimNext(epfd, 1) == kDueClosing);
  CHECK(ConnCloseStep(p.server, p.id, kDueClosing) == 1);
  CHECK(ConnRearm(epfd, p.server, p.id, kEvents) == 0);
  close(p.client);
  CHECK(ClaimNext(epfd, 1) == kDueClosing);
  CHECK(ConnCloseStep(p.server, p.id, kDueClosing) == 0);
  CHECK(ConnClose(p.server, p.id, 0) == 1);  // its close was counted when the phase began
  CHECK(TimerHeapSize(epfd) == 0 && ConnCount(epfd) == 0);
  CHECK(TimersForget(epfd) == 0);
  close(epfd);
}

// Worker threads as the server runs them, one epoll set, batches of up to 4
// with a 1 ms budget (so the timer hands loans back while they wait), module
// timers of 1..3 ms set from inside events; a writer keeps every connection busy.
static void Races() {
  int timerfd;
  int epfd = NewServer(&timerfd);
  CHECK(BatchConfigure(epfd, kEvents, kEvents, 1) == 0);
  constexpr int kConns = 48, kWorkers = 4;
  std::vector<Pair> conns;
  for (int i = 0; i < kConns; i++) {
    conns.push_back(Accept(epfd));
    CHECK(ConnRearm(epfd, conns.back().server, conns.back().id, kEvents) == 0);
  }
  std::vector<std::atomic<int>> inside(1 << 16);
  std::atomic<int> overlaps{0}, bad{0};
  std::atomic<uint64_t> events{0}, ticks{0}, sets{0};
  std::atomic<bool> stop{false};

  // The table must say this worker holds what it was handed, from the claim to the re-arm.
  auto mine = [&](int fd, uint64_t id, int holder) {
    Conn* c = Find(fd, static_cast<int64_t>(id));
    return c != nullptr && c->holder.load() == holder;
  };
  auto handle = [&](int holder, int fd, uint64_t id, uint32_t due, std::mt19937& rng) {
    if (inside[fd].exchange(1) != 0) overlaps++;
    if (!mine(fd, id, holder)) overlaps++;
    events++;
    // Now and then a slow callback: its timers and due marks come while it is held.
    if (rng() % 64 == 0) usleep(2000);
    if (due & kDueTimer) ticks++;
    uint8_t mem[4096];
    int64_t received = 0;
    int64_t rc = ConnLoad(fd, id, mem, 2048, mem, sizeof(mem), 4000, false, &received);
    if (rc < 0 && rc != -EAGAIN) bad++;
    if (rng() % 4 == 0 && TimerSet(fd, id, 1 + rng() % 3) == 0) sets++;
    if (!mine(fd, id, holder)) overlaps++;
    inside[fd].store(0);
    // Saved and re-armed in one call, as the server ends an event.
    if (ConnSave(fd, id, mem, 0, mem, sizeof(mem), 4000, epfd, kEvents, 0, 0) != 0) bad++;
    (void)holder;
  };

  auto worker = [&](int holder) {
    std::mt19937 rng(holder);
    epoll_event evs[4];
    Lent got[4];
    while (!stop.load()) {
      Lent e;
      if (PopLent(epfd, holder, &e)) {
        handle(holder, e.fd, static_cast<uint64_t>(e.id), e.due, rng);
        continue;
      }
      int fd;
      double id;
      uint32_t due;
      if (TakeDue(epfd, holder, &fd, &id, &due)) {
        handle(holder, fd, static_cast<uint64_t>(id), due, rng);
        continue;
      }
      int n = epoll_wait(epfd, evs, 4, 20);
      int m = 0;
      bool due_woken = false;
      for (int i = 0; i < n; i++) {
        int kind = EpollKind(evs[i].data.u64);
        int efd = EpollFd(evs[i].data.u64);
        if (kind == kKindDue) {
          uint64_t v;
          (void)!read(efd, &v, sizeof(v));
          due_woken = true;
        } else if (kind == kKindTimer) {
          RunTimers(epfd);
        } else if (ClaimEvent(efd, EpollTag(evs[i].data.u64), epfd, holder, &got[m].id, &got[m].due)) {
          got[m].fd = efd;
          got[m].kind = kind;
          got[m].events = evs[i].events;
          m++;
        }
      }
      if (due_woken && m < 4 && TakeDue(epfd, holder, &got[m].fd, &got[m].id, &got[m].due)) {
        got[m].kind = kKindConn;
        m++;
      }
      if (m > 1) LendBatch(epfd, holder, got + 1, m - 1);
      if (m > 0) handle(holder, got[0].fd, static_cast<uint64_t>(got[0].id), got[0].due, rng);
    }
  };

  std::thread writer([&] {
    std::mt19937 rng(7);
    for (int i = 0; i < 40000 && !stop.load(); i++) {
      const Pair& p = conns[rng() % kConns];
      (void)!send(p.client, "0123456789", 1 + rng() % 10, MSG_DONTWAIT);
      if (i % 64 == 0) usleep(200);
    }
  });
  std::vector<std::thread> workers;
  for (int w = 1; w <= kWorkers; w++) workers.emplace_back(worker, w);
  writer.join();
  usleep(50 * 1000);  // the last timers fire
  stop = true;
  for (std::thread& t : workers) t.join();
  for (int w = 1; w <= kWorkers; w++) BatchRelease(epfd, w);

  std::printf("races: %llu events, %llu timers set, %llu fired; rearm stats %llu/%llu\n",
              static_cast<unsigned long long>(events.load()), static_cast<unsigned long long>(sets.load()),
              static_cast<unsigned long long>(ticks.load()), static_cast<unsigned long long>(RearmStats().first),
              static_cast<unsigned long long>(RearmStats().second));
  CHECK(overlaps.load() == 0);
  CHECK(bad.load() == 0);
  CHECK(events.load() > 1000);
  CHECK(ticks.load() > 0);
  // Nothing is held once every worker has stopped and its loans were handed back.
  for (int w = 1; w <= kWorkers; w++) CHECK(ConnListing(epfd, true, w).empty());
  for (Pair& p : conns) {
    CHECK(ConnClose(p.server, p.id, 0) == 0);
    close(p.client);
  }
  CHECK(TimerHeapSize(epfd) == 0 && TimersArmed(epfd) == 0 && ConnCount(epfd) == 0);
  CHECK(TimersForget(epfd) == 0);
  close(epfd);
}

// Migration in one call: a pair's verdict told once, then each connection's move decided natively.
static void Generations() {
  int timerfd;
  int epfd = NewServer(&timerfd);
  Pair a = Accept(epfd), b = Accept(epfd), u = Accept(epfd, false);
  // No verdict for 0 -> 1: pinned.
  CHECK(ConnMoveTo(a.server, a.id, 1) == 0);
  CHECK(GenerationVerdict(epfd, 0, 1, true, 8, 16) == 0);
  CHECK(GenerationVerdict(epfd, 0, 2, false, 8, 16) == 0);
  CHECK(GenerationVerdict(epfd, 0, 3, true, 4, 1024) == 0);
  // Allowed: it moves, once; a forbidden pair pins.
  CHECK(ConnMoveTo(a.server, a.id, 1) == 1);
  CHECK(ConnGeneration(a.server, a.id) == 1);
  CHECK(ConnMoveTo(a.server, a.id, 1) == 1);
  CHECK(ConnMoveTo(b.server, b.id, 2) == 0);
  // A carry-over larger than the new in_cap stays where it is.
  uint8_t mem[64] = {};
  CHECK(ConnSave(b.server, b.id, mem, 32, mem, sizeof(mem), 40, -1, 0, 0, 0) == 0);
  CHECK(ConnMoveTo(b.server, b.id, 1) == 0);
  // A state size that differs: the module has met it, so it stays; one it has not met takes the new size.
  CHECK(ConnMoveTo(b.server, b.id, 3) == 0);
  CHECK(ConnMoveTo(u.server, u.id, 3) == 3);
  // Verdicts naming a generation go with it.
  CHECK(GenerationForget(epfd, 1) == 1);
  CHECK(ConnMoveTo(b.server, b.id, 1) == 0);
  CHECK(GenerationVerdict(epfd + 1000, 0, 1, true, 8, 16) == -EBADF);
  for (Pair* p : {&a, &b, &u}) {
    ConnClose(p->server, p->id, 0);
    close(p->client);
  }
  CHECK(TimersForget(epfd) == 0);
  close(epfd);
}

// A batch's steal deadline: the timerfd is armed for it only while another
// worker is not busy, and disarmed when the last loan is taken (it never fires
// for nothing); a worker about to block takes over what another has lent
// (StealLent), with no timer.
static void Loans() {
  int timerfd;
  int epfd = NewServer(&timerfd);
  CHECK(BatchConfigure(epfd, kEvents, kEvents, 1) == 0);
  Pair a = Accept(epfd), b = Accept(epfd);
  Lent lent[2] = {{a.server, kKindConn, EPOLLIN, static_cast<double>(a.id), 0},
                  {b.server, kKindConn, EPOLLIN, static_cast<double>(b.id), 0}};
  auto armed = [&] {
    itimerspec its{};
    timerfd_gettime(timerfd, &its);
    return its.it_value.tv_sec != 0 || its.it_value.tv_nsec != 0;
  };
  auto steal_at = [&] {
    TableLock lock(table().mu);
    return ServerOf(epfd)->steal_at;
  };
  int32_t busy = 1, workers = 2;  // the lender and one other worker, busy
  LendBatch(epfd, kAcceptor, lent, 2, &busy, &workers);
  CHECK(steal_at() != 0);
  CHECK(!armed());
  Lent e;
  CHECK(PopLent(epfd, kAcceptor, &e) && e.fd == a.server);
  CHECK(steal_at() != 0);
  CHECK(PopLent(epfd, kAcceptor, &e) && e.fd == b.server);
  CHECK(steal_at() == 0);  // nothing lent: nothing for the timer to do
  CHECK(!PopLent(epfd, kAcceptor, &e));
  // The other worker waits: the timer must fire by the deadline.
  busy = 0;
  LendBatch(epfd, kAcceptor, lent, 2, &busy, &workers);
  CHECK(armed());
  CHECK(PopLent(epfd, kAcceptor, &e) && PopLent(epfd, kAcceptor, &e));
  CHECK(steal_at() == 0);
  CHECK(!armed());  // all taken: the timer would have fired for nothing
  // Lent while the other was busy: the other, about to block, takes them over, oldest first, no timer.
  busy = 1;
  LendBatch(epfd, kAcceptor, lent, 2, &busy, &workers);
  CHECK(!armed());
  constexpr int kOther = kAcceptor + 1;
  CHECK(!StealLent(epfd, kAcceptor, &e));  // its own loans are not stolen
  CHECK(StealLent(epfd, kOther, &e) && e.fd == a.server);
  CHECK(Find(a.server, static_cast<int64_t>(a.id))->holder.load() == kOther);
  CHECK(PopLent(epfd, kAcceptor, &e) && e.fd == b.server);  // the lender goes on with the rest
  CHECK(steal_at() == 0);
  CHECK(!StealLent(epfd, kOther, &e));
  CHECK(!armed());
  for (Pair* p : {&a, &b}) {
    ConnClose(p->server, p->id, 0);
    close(p->client);
  }
  CHECK(TimersForget(epfd) == 0);
  close(epfd);
}

// An upstream's mark pokes the due eventfd only when someone may need waking: not when the
// marking worker takes the list itself (poke false), nor while every other worker is busy
// (DueShareCells): each takes the list before it sleeps again.
static void DuePokes() {
  int timerfd;
  int epfd = NewServer(&timerfd);
  Pair a = Accept(epfd);
  int duefd;
  {
    TableLock lock(table().mu);
    duefd = ServerOf(epfd)->duefd;
  }
  auto poked = [&] {
    uint64_t v;
    bool r = read(duefd, &v, sizeof(v)) == sizeof(v);
    // Back to an empty list and an unmarked entry for the next case (held by the acceptor: not taken).
    int fd;
    double id;
    uint32_t due;
    CHECK(!TakeDue(epfd, 7, &fd, &id, &due));
    TableLock lock(table().mu);
    FindLocked(a.server, a.id)->due = 0;
    return r;
  };
  int32_t busy = 1, workers = 2;
  MarkConnDue(a.server, a.id, kDueUpstreamEvent, true);
  CHECK(poked());
  MarkConnDue(a.server, a.id, kDueUpstreamEvent, false);
  CHECK(!poked());
  DueShareCells(&busy, &workers);  // the other worker is busy
  MarkConnDue(a.server, a.id, kDueUpstreamEvent, true);
  CHECK(!poked());
  busy = 0;  // it may be asleep
  MarkConnDue(a.server, a.id, kDueUpstreamEvent, true);
  CHECK(poked());
  DueShareCells(nullptr, nullptr);
  ConnClose(a.server, a.id, 0);
  close(a.client);
  CHECK(TimersForget(epfd) == 0);
  close(epfd);
}

int main() {
  DuePokes();
  Registry();
  Generations();
  States();
  Races();
  Loans();
  return tcpmod_test::Summary();
}
