// sources: registry.cc conn_state.cc ownership.cc direct.cc loans.cc due.cc conn_input.cc conn_output.cc conn_close.cc conn_proxy.cc generations.cc close_phase.cc timers.cc input_buffer.cc output_queue.cc sender.cc mailbox.cc proxy_protocol.cc
// connShutdown and connShutdownGroup make their shutdown() outside the table
// lock (registry.cc): the entry is pinned under the lock, and a close by its
// holder meanwhile leaves the fd open until the unpin, so the number is never
// another connection's when the syscall runs. Checked deterministically (a
// close during a paused shutdown is deferred, the fd number is not reused
// meanwhile, and closed after) and by threads racing shutdowns against closes
// and fd reuse: a connection of another server that takes a just-closed fd
// number must never find its socket shut down.
#include "conn.h"
#include "conn_table.h"

#include "check.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <dirent.h>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

using namespace tcpmod;

#include "table_stubs.h"

namespace {

constexpr int kShutGroup = 101;  // the server whose connections are shut down
constexpr int kOtherGroup = 202;  // another server's: never shut down

int OpenFds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d) != nullptr) n++;
    closedir(d);
  }
  return n;
}

bool FdOpen(int fd) { return fcntl(fd, F_GETFD) != -1; }

// Whether the server side `fd` (peer `peer`) still reads and writes: a byte each way.
bool Alive(int fd, int peer) {
  char b = 'x';
  if (send(peer, &b, 1, MSG_NOSIGNAL) != 1) return false;
  ssize_t n;
  for (int i = 0; i < 1000; i++) {
    n = recv(fd, &b, 1, 0);
    if (n == 1) break;
    if (n == 0 || errno != EAGAIN) return false;
    std::this_thread::yield();
  }
  return n == 1 && send(fd, &b, 1, MSG_NOSIGNAL) == 1;
}

// A close while a shutdown is in flight (paused after the pin) leaves the fd
// open, so a new socket cannot take its number; the shutdown then closes it.
void DeferredClose() {
  int sv[2];
  tcpmod_test::NonBlockingPair(sv);
  int64_t id = ConnOpen(sv[0], kShutGroup, 0, 1, kKindConn, 0, 0);
  CHECK(id > 0);
  SetShutdownPause(100000);  // 100 ms
  std::atomic<int> rc{1};
  std::thread t([&] { rc = ConnShutdown(sv[0], static_cast<uint64_t>(id), SHUT_RDWR); });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));  // the shutdown has pinned it and waits
  CHECK(ConnClose(sv[0], static_cast<uint64_t>(id), 0) == 0);
  CHECK(ConnCount(kShutGroup) == 0);   // unlinked at once
  CHECK(FdOpen(sv[0]));                // but the fd stays open while the shutdown is in flight
  int other[2];
  tcpmod_test::NonBlockingPair(other);
  CHECK(other[0] != sv[0] && other[1] != sv[0]);  // so its number is not reused
  t.join();
  CHECK(rc == 0);  // shut down the right socket
  CHECK(!FdOpen(sv[0]) || sv[0] == other[0] || sv[0] == other[1]);  // the deferred close ran
  CHECK(ConnShutdown(sv[0], static_cast<uint64_t>(id), SHUT_RDWR) == -EBADF);
  SetShutdownPause(0);
  close(other[0]);
  close(other[1]);
  close(sv[1]);
}

// Threads: one churns connections of kShutGroup (open, close), one churns
// connections of kOtherGroup (open, check it is alive, close) -- they take each
// other's fd numbers all the time -- and one shuts down kShutGroup's newest
// connection and, now and then, the whole group, with a pause after the pin
// half of the time. Any shutdown landing on kOtherGroup's socket is a failure.
void Race() {
  const int before = OpenFds();
  std::atomic<bool> stop{false};
  std::atomic<int> shut_calls{0}, dead_others{0}, others{0};
  std::mutex mu;
  std::pair<int, uint64_t> newest{-1, 0};
  std::thread churn([&] {
    for (int i = 0; i < 4000; i++) {
      int sv[2];
      tcpmod_test::NonBlockingPair(sv);
      int64_t id = ConnOpen(sv[0], kShutGroup, 0, 1, kKindConn, 0, 0);
      if (id < 0) std::abort();
      {
        std::lock_guard<std::mutex> l(mu);
        newest = {sv[0], static_cast<uint64_t>(id)};
      }
      if (i % 3 == 0) std::this_thread::sleep_for(std::chrono::microseconds(20));
      ConnClose(sv[0], static_cast<uint64_t>(id), 0);
      close(sv[1]);
    }
    stop = true;
  });
  std::thread other([&] {
    while (!stop) {
      int sv[2];
      tcpmod_test::NonBlockingPair(sv);
      int64_t id = ConnOpen(sv[0], kOtherGroup, 0, 2, kKindConn, 0, 0);
      if (id < 0) std::abort();
      std::this_thread::sleep_for(std::chrono::microseconds(30));
      if (!Alive(sv[0], sv[1])) dead_others++;
      others++;
      ConnClose(sv[0], static_cast<uint64_t>(id), 0);
      close(sv[1]);
    }
  });
  std::thread shutter([&] {
    for (int k = 0; !stop; k++) {
      SetShutdownPause(k % 2 ? 50 : 0);
      std::pair<int, uint64_t> n;
      {
        std::lock_guard<std::mutex> l(mu);
        n = newest;
      }
      if (k % 16 == 0) ConnShutdownGroup(kShutGroup, SHUT_RDWR);
      else if (n.first >= 0) ConnShutdown(n.first, n.second, SHUT_RDWR);
      shut_calls++;
    }
    SetShutdownPause(0);
  });
  churn.join();
  other.join();
  shutter.join();
  std::printf("race: %d shutdown calls, %d connections of the other server checked, %d found shut down\n",
              shut_calls.load(), others.load(), dead_others.load());
  CHECK(shut_calls > 100 && others > 100);
  CHECK(dead_others == 0);
  CHECK(ConnCount(kShutGroup) == 0 && ConnCount(kOtherGroup) == 0);
  CHECK(OpenFds() == before);  // every deferred close ran
}

}  // namespace

int main() {
  DeferredClose();
  Race();
  return tcpmod_test::Summary();
}
