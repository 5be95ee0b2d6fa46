// sources: close_phase.cc
// The close phase's policy and socket steps, on real socketpairs (no Node):
// its one deadline (send, then linger), the linger bounds, LingerBegin's
// half-close, and LingerDiscard's results and read budget.
#include "close_phase.h"

#include "check.h"

#include <cerrno>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <vector>

using namespace tcpmod;

static void Deadlines() {
  LingerConfig cfg{30000, 5000};
  ClosePhase p;
  // Sending: the send deadline only, and none with nothing queued or no send timeout.
  CHECK(ClosingDeadline(p, cfg, 1000, 20000, 0) == 21000);
  CHECK(ClosingDeadline(p, cfg, 0, 20000, 0) == INT64_MAX);
  CHECK(ClosingDeadline(p, cfg, 1000, 0, 0) == INT64_MAX);
  CHECK(!LingerExpired(p, cfg, 0, INT64_MAX - 1));
  // Lingering since 100000: the timeout runs from the later of the last input and the start.
  p.lingering = true;
  p.since = 100000;
  CHECK(ClosingDeadline(p, cfg, 1000, 20000, 0) == 105000);
  CHECK(ClosingDeadline(p, cfg, 0, 0, 103000) == 108000);
  // ... and never past the linger time, however often the client sends.
  CHECK(ClosingDeadline(p, cfg, 0, 0, 128000) == 130000);
  CHECK(!LingerExpired(p, cfg, 128000, 129999));
  CHECK(LingerExpired(p, cfg, 128000, 130000));
  LingerConfig no_timeout{30000, 0};
  CHECK(ClosingDeadline(p, no_timeout, 0, 0, 0) == 130000);
}

static void BeginAndDiscard() {
  int sv[2];
  tcpmod_test::NonBlockingPair(sv);
  CHECK(!LingerBegin(LingerConfig{0, 5000}, sv[0]));  // off: the caller closes now
  char b[8];
  CHECK(recv(sv[1], b, sizeof(b), MSG_DONTWAIT) < 0);  // nothing was shut down
  CHECK(LingerBegin(LingerConfig{30000, 5000}, sv[0]));
  CHECK(recv(sv[1], b, sizeof(b), 0) == 0);  // the peer reads EOF after the reply
  int64_t got = -1;
  CHECK(LingerDiscard(sv[0], &got) == 1 && got == 0);  // nothing yet: wait
  std::vector<char> data(100000, 'x');
  CHECK(send(sv[1], data.data(), data.size(), 0) == static_cast<ssize_t>(data.size()));
  CHECK(LingerDiscard(sv[0], &got) == 1 && got == 100000);
  close(sv[1]);
  CHECK(LingerDiscard(sv[0], &got) == 0 && got == 0);  // the client closed: close now
  close(sv[0]);
}

static void Budget() {
  int sv[2];
  tcpmod_test::NonBlockingPair(sv);
  int big = 4 << 20;
  setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
  fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
  std::vector<char> data(64 * 1024, 'y');
  int64_t sent = 0;
  while (sent < 2 * kLingerReadBudget) {
    ssize_t n = send(sv[1], data.data(), data.size(), 0);
    if (n <= 0) break;
    sent += n;
  }
  int64_t got = 0;
  int rc = LingerDiscard(sv[0], &got);
  if (sent > kLingerReadBudget) {
    CHECK(rc == 1 && got >= kLingerReadBudget && got < kLingerReadBudget + 16384);  // one event reads a bounded amount
  } else {
    CHECK(rc == 1 && got == sent);
  }
  close(sv[0]);
  close(sv[1]);
}

// A connected TCP pair on 127.0.0.1: sv[0] the server's side (non-blocking), sv[1] the client's.
static void TcpPair(int sv[2]) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  listen(l, 1);
  getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
  sv[1] = socket(AF_INET, SOCK_STREAM, 0);
  connect(sv[1], reinterpret_cast<sockaddr*>(&a), sizeof(a));
  sv[0] = accept(l, nullptr, nullptr);
  fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
  close(l);
}

static void Failure() {
  int sv[2];
  TcpPair(sv);
  CHECK(LingerBegin(LingerConfig{30000, 5000}, sv[0]));
  // The client resets (closes with SO_LINGER 0): an error, not an orderly end.
  linger lg{1, 0};
  setsockopt(sv[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(sv[1]);
  usleep(20000);
  int64_t got = 0;
  CHECK(LingerDiscard(sv[0], &got) == -ECONNRESET);
  close(sv[0]);
  CHECK(LingerDiscard(sv[0], &got) == -EBADF);
}

int main() {
  Deadlines();
  BeginAndDiscard();
  Budget();
  Failure();
  return tcpmod_test::Summary();
}
