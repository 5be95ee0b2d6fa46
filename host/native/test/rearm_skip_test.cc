// sources: registry.cc conn_state.cc ownership.cc direct.cc loans.cc due.cc conn_input.cc conn_output.cc conn_close.cc conn_proxy.cc generations.cc close_phase.cc timers.cc input_buffer.cc output_queue.cc sender.cc mailbox.cc proxy_protocol.cc
// A connection taken from the due list (an upstream's reply, a timer, a
// message) while its one-shot item is still armed in epoll is given back with
// no epoll_ctl when it would be re-armed with the same events (ownership.cc
// StillArmed). The danger is an event of its own that fires while it is held:
// the claim of that event is turned away, and the re-arm must then re-arm for
// real, or the input is stranded (edge-triggered: nothing reports it again).
// Checked step by step on one connection, then by worker threads racing due
// marks against input on many, with every byte sent required to be read and
// never two holders of one connection at once.
#include "conn.h"
#include "conn_table.h"

#include "check.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

using namespace tcpmod;

#include "table_stubs.h"
#include "conn_pair.h"

namespace {

constexpr int kAcceptor = 1000;

struct Conn2 {
  int server, client;
  uint64_t id;
};

int NewServer() {
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  CHECK(TimersConfigure(epfd, 0, 0) >= 0);  // the server's state (the due list lives there)
  return epfd;
}

// Accepted, added and re-armed as the server does: armed in epoll, nobody holds it.
Conn2 Open(int epfd) {
  int sv[2];
  tcpmod_test::NonBlockingPair(sv);
  int64_t id = ConnOpen(sv[0], epfd, 0, kAcceptor, kKindConn, 0, 0);
  CHECK(id > 0);
  CHECK(ConnOpened(sv[0], id) == 0);
  CHECK(ConnAdd(epfd, sv[0], id, kEvents) == 0);
  CHECK(ConnRearm(epfd, sv[0], static_cast<uint64_t>(id), kEvents) == 0);
  return {sv[0], sv[1], static_cast<uint64_t>(id)};
}

// One epoll event within `ms`, claimed for `holder`: whether it was this connection's and the claim took it.
bool ClaimNext(int epfd, const Conn2& c, int holder, int ms, bool* reported) {
  epoll_event ev{};
  *reported = false;
  if (epoll_wait(epfd, &ev, 1, ms) != 1 || EpollFd(ev.data.u64) != c.server) return false;
  *reported = true;
  double id;
  uint32_t due;
  return ClaimEvent(c.server, EpollTag(ev.data.u64), epfd, holder, &id, &due) && static_cast<uint64_t>(id) == c.id;
}

bool TakeDueConn(int epfd, const Conn2& c, int holder) {
  int fd;
  double id;
  uint32_t due;
  return TakeDue(epfd, holder, &fd, &id, &due) && fd == c.server && static_cast<uint64_t>(id) == c.id;
}

void Drain(int fd) {
  char b[256];
  while (recv(fd, b, sizeof(b), 0) > 0) {
  }
}

void Steps() {
  int epfd = NewServer();
  Conn2 c = Open(epfd);
  bool reported;
  char b = 'x';

  // Taken from the due list: still armed, so giving it back makes no epoll_ctl...
  uint64_t skips = RearmSkips();
  MarkConnDue(c.server, c.id, kDueTimer, false);
  CHECK(TakeDueConn(epfd, c, 1));
  CHECK(ConnRearm(epfd, c.server, c.id, kEvents) == 0);
  CHECK(RearmSkips() == skips + 1);
  // ...and the item does report what comes next.
  CHECK(send(c.client, &b, 1, 0) == 1);
  CHECK(ClaimNext(epfd, c, 1, 1000, &reported));
  Drain(c.server);
  // Claimed by its event: the one-shot item fired, so the re-arm must tell epoll.
  CHECK(ConnRearm(epfd, c.server, c.id, kEvents) == 0);
  CHECK(RearmSkips() == skips + 1);

  // Taken from the due list, and its input comes while it is held: the event's claim is turned away
  // (the item fired), so the re-arm must re-arm for real and the input is reported again.
  MarkConnDue(c.server, c.id, kDueTimer, false);
  CHECK(TakeDueConn(epfd, c, 1));
  CHECK(send(c.client, &b, 1, 0) == 1);
  CHECK(!ClaimNext(epfd, c, 2, 1000, &reported));
  CHECK(reported);
  CHECK(ConnRearm(epfd, c.server, c.id, kEvents) == 0);
  CHECK(RearmSkips() == skips + 1);
  CHECK(ClaimNext(epfd, c, 2, 1000, &reported));  // stranded here if the re-arm had been skipped
  Drain(c.server);

  // Events that differ (output queued would add EPOLLOUT): a real re-arm, not a skip.
  CHECK(ConnRearm(epfd, c.server, c.id, kEvents) == 0);
  MarkConnDue(c.server, c.id, kDueTimer, false);
  CHECK(TakeDueConn(epfd, c, 1));
  CHECK(ConnRearm(epfd, c.server, c.id, kEvents | EPOLLOUT) == 0);
  CHECK(RearmSkips() == skips + 1);
  CHECK(ClaimNext(epfd, c, 1, 1000, &reported));  // writable at once: reported by the MOD

  CHECK(ConnClose(c.server, c.id, 0) == 0);
  close(c.client);
  CHECK(TimersForget(epfd) == 0);
  close(epfd);
}

// Workers claim from epoll and from the due list; a marker keeps marking connections due (so most
// claims are of armed items), a writer keeps sending, and a holder sometimes lingers between reading
// to EAGAIN and re-arming, which is when input fires the held item. Every byte must be read.
void Races() {
  int epfd = NewServer();
  constexpr int kConns = 32, kWorkers = 3, kSends = 30000;
  std::vector<Conn2> conns;
  for (int i = 0; i < kConns; i++) conns.push_back(Open(epfd));
  std::vector<std::atomic<int>> inside(1 << 16);
  std::vector<std::atomic<int64_t>> got(kConns), sent(kConns);
  std::atomic<int> overlaps{0}, bad{0};
  std::atomic<uint64_t> events{0}, dues{0};
  std::atomic<bool> stop{false}, sending{true};
  uint64_t skips = RearmSkips();

  auto index = [&](int fd) {
    for (int i = 0; i < kConns; i++)
      if (conns[i].server == fd) return i;
    return -1;
  };
  auto handle = [&](int fd, uint64_t id, std::mt19937& rng) {
    int i = index(fd);
    if (i < 0 || conns[i].id != id) {
      bad++;
      return;
    }
    if (inside[fd].exchange(1) != 0) overlaps++;
    events++;
    char b[512];
    ssize_t n;
    while ((n = recv(fd, b, sizeof(b), 0)) > 0) got[i] += n;
    if (n == 0 || (n < 0 && errno != EAGAIN)) bad++;
    if (rng() % 8 == 0) usleep(50 + rng() % 200);  // input that comes now fires the item while it is held
    inside[fd].store(0);
    if (ConnRearm(epfd, fd, id, kEvents) != 0) bad++;
  };
  auto worker = [&](int holder) {
    std::mt19937 rng(holder);
    while (!stop.load()) {
      int fd;
      double id;
      uint32_t due;
      if (TakeDue(epfd, holder, &fd, &id, &due)) {
        dues++;
        handle(fd, static_cast<uint64_t>(id), rng);
        continue;
      }
      epoll_event ev{};
      if (epoll_wait(epfd, &ev, 1, 5) != 1) continue;
      int kind = EpollKind(ev.data.u64), efd = EpollFd(ev.data.u64);
      if (kind == kKindDue) {
        uint64_t v;
        (void)!read(efd, &v, sizeof(v));
      } else if (kind == kKindConn && ClaimEvent(efd, EpollTag(ev.data.u64), epfd, holder, &id, &due)) {
        handle(efd, static_cast<uint64_t>(id), rng);
      }
    }
  };
  std::thread marker([&] {
    std::mt19937 rng(11);
    while (sending.load()) {
      const Conn2& c = conns[rng() % kConns];
      MarkConnDue(c.server, c.id, kDueTimer, false);
      if (rng() % 16 == 0) usleep(20);
    }
  });
  std::thread writer([&] {
    std::mt19937 rng(7);
    for (int k = 0; k < kSends; k++) {
      int i = static_cast<int>(rng() % kConns);
      ssize_t n = send(conns[i].client, "0123456789", 1 + rng() % 10, MSG_DONTWAIT);
      if (n > 0) sent[i] += n;
      if (k % 32 == 0) usleep(100);
    }
    sending = false;
  });
  std::vector<std::thread> workers;
  for (int w = 1; w <= kWorkers; w++) workers.emplace_back(worker, w);
  writer.join();
  marker.join();
  // Every byte is read within a bound (an input stranded by a skipped re-arm never is).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  auto all_read = [&] {
    for (int i = 0; i < kConns; i++)
      if (got[i].load() != sent[i].load()) return false;
    return true;
  };
  while (!all_read() && std::chrono::steady_clock::now() < deadline) usleep(1000);
  stop = true;
  for (std::thread& t : workers) t.join();

  int64_t total_sent = 0, total_got = 0;
  for (int i = 0; i < kConns; i++) {
    total_sent += sent[i].load();
    total_got += got[i].load();
  }
  std::printf("races: %llu events (%llu from the due list), %llu re-arms skipped, %lld of %lld bytes read\n",
              static_cast<unsigned long long>(events.load()), static_cast<unsigned long long>(dues.load()),
              static_cast<unsigned long long>(RearmSkips() - skips), static_cast<long long>(total_got),
              static_cast<long long>(total_sent));
  CHECK(all_read());
  CHECK(overlaps.load() == 0);
  CHECK(bad.load() == 0);
  CHECK(RearmSkips() - skips > 1000);  // the path under test was taken, many times
  for (Conn2& c : conns) {
    CHECK(ConnClose(c.server, c.id, 0) == 0);
    close(c.client);
  }
  CHECK(TimersForget(epfd) == 0);
  close(epfd);
}

}  // namespace

int main() {
  Steps();
  Races();
  return tcpmod_test::Summary();
}
