// sources: registry.cc conn_state.cc ownership.cc direct.cc loans.cc due.cc conn_input.cc conn_output.cc conn_close.cc conn_proxy.cc generations.cc close_phase.cc timers.cc input_buffer.cc output_queue.cc sender.cc mailbox.cc proxy_protocol.cc
// kv_send's held run (conn_output.cc ConnWriteStored, sender.h HeldRun) in the
// connection table, on real sockets without Node: the head and the borrowed
// value are not written at kv_send but in front of the event's next write or
// at its end, in one write, and the borrow (the store's pin) is given back
// exactly once on every path: the event's out region, a tcpmod.send, a second
// kv_send, a re-arm without output, the close of a module that trapped, a
// client gone, a socket that takes only part (the rest copied into the
// queue), --max-output-buffer passed, and an output shut by the module.
#include "conn.h"
#include "conn_table.h"

#include "check.h"

#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

using namespace tcpmod;

#include "table_stubs.h"
#include "conn_pair.h"

namespace {

int NewServer(int64_t per_conn = 0) {
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  CHECK(TimersConfigure(epfd, 0, 0) >= 0);
  CHECK(QueueConfigure(epfd, true, 0, 1 << 20, per_conn, 0, 0) == 0);
  return epfd;
}

uint8_t mem[4096];
constexpr size_t kIn = 0, kState = 2048, kOut = 3072;

int64_t Save(int epfd, const Pair& p, const char* out) {
  size_t n = std::strlen(out);
  std::memcpy(mem + kOut, out, n);
  return ConnSave(p.server, p.id, mem + kIn, 0, mem, sizeof(mem), kState, epfd, kEvents, n ? kOut : 0, static_cast<int64_t>(n));
}

// The borrow's owner: how often each borrow was given back (a borrow is named by its b).
int released[8];
void Release(void* a, uint64_t b) {
  CHECK(a == &released);
  CHECK(b < 8);
  released[b]++;
}

// A stored value: `n` bytes that tell their offsets apart.
std::string Value(size_t n, char salt) {
  std::string v(n, 0);
  for (size_t i = 0; i < n; i++) v[i] = static_cast<char>('a' + (i * 7 + static_cast<size_t>(salt)) % 26);
  return v;
}

int64_t Stored(const Pair& p, const std::string& head, const std::string& value, uint64_t borrow) {
  return ConnWriteStored(p.server, p.id, reinterpret_cast<const uint8_t*>(head.data()), head.size(),
                         reinterpret_cast<const uint8_t*>(value.data()), value.size(), Release, &released, borrow);
}

int Readable(int fd) {
  int n = 0;
  CHECK(ioctl(fd, FIONREAD, &n) == 0);
  return n;
}

std::string ReadAll(int fd) {
  std::string s;
  char b[65536];
  for (;;) {
    ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
    if (n <= 0) break;
    s.append(b, static_cast<size_t>(n));
  }
  return s;
}

void Reset() { std::memset(released, 0, sizeof(released)); }

// Held at kv_send, sent with the event's out region; then with a tcpmod.send; then a second
// kv_send sends the first with its head and holds its own value; a re-arm alone sends what is held.
void HeldUntilNextWrite() {
  Reset();
  int epfd = NewServer();
  Pair p = OpenPair(epfd);
  const std::string v = Value(100 * 1024, 1), w = Value(3000, 2);
  CHECK(Stored(p, "VALUE k 0 102400\r\n", v, 0) == 0);
  CHECK(Readable(p.client) == 0);  // nothing written yet: it waits for what follows
  CHECK(released[0] == 0);
  CHECK(Save(epfd, p, "\r\nEND\r\n") == 0);
  CHECK(released[0] == 1);
  CHECK(ReadAll(p.client) == "VALUE k 0 102400\r\n" + v + "\r\nEND\r\n");
  // The next event: a kv_send, then a tcpmod.send (the SDK's flush of the out region before more).
  CHECK(Stored(p, "H1 ", w, 1) == 0);
  CHECK(ConnWrite(p.server, p.id, reinterpret_cast<const uint8_t*>(" T1"), 3) == 0);
  CHECK(released[1] == 1);
  // Two kv_sends in a row: the first goes with the second's head, the second is held.
  CHECK(Stored(p, "H2 ", v, 2) == 0);
  CHECK(Stored(p, "H3 ", w, 3) == 0);
  CHECK(released[2] == 1 && released[3] == 0);
  CHECK(ReadAll(p.client) == "H1 " + w + " T1" + "H2 " + v + "H3 ");
  // The event ends with no out region: the re-arm sends it.
  CHECK(ConnRearm(epfd, p.server, p.id, kEvents) == 0);
  CHECK(released[3] == 1);
  CHECK(ReadAll(p.client) == w);
  CHECK(ConnClose(p.server, p.id, 0) == 0);
  for (int i = 0; i < 4; i++) CHECK(released[i] == 1);
  close(p.client);
  CHECK(TimersForget(epfd) == 0);
  close(epfd);
}

// The module trapped after kv_send (the worker closes without saving): what was given goes, as far as
// the socket takes it, then the FIN; the borrow is given back once. A client gone: the save fails, given back.
void ClosedOrGone() {
  Reset();
  int epfd = NewServer();
  Pair p = OpenPair(epfd);
  const std::string v = Value(5000, 3);
  CHECK(Stored(p, "VALUE\r\n", v, 0) == 0);
  CHECK(ConnClose(p.server, p.id, 0) == 0);
  CHECK(released[0] == 1);
  CHECK(ReadAll(p.client) == "VALUE\r\n" + v);
  char b[4];
  CHECK(recv(p.client, b, sizeof(b), MSG_DONTWAIT) == 0);
  close(p.client);

  Pair q = OpenPair(epfd);
  CHECK(Stored(q, "VALUE\r\n", v, 1) == 0);
  close(q.client);  // the client is gone before the event ends
  const int64_t rc = Save(epfd, q, "\r\nEND\r\n");
  CHECK(rc == -EPIPE || rc == -ECONNRESET);
  CHECK(released[1] == 1);
  CHECK(ConnClose(q.server, q.id, 0) == 0);
  CHECK(released[1] == 1);

  // The output shut by the module (§20) before kv_send: nothing is held, nothing sent, given back at once.
  Pair r = OpenPair(epfd);
  CHECK(Save(epfd, r, "") == 0);
  CHECK(ConnEndOutput(r.server, r.id) == 0);
  CHECK(Save(epfd, r, "") == 0);  // the event ends: the output is ended
  CHECK(Stored(r, "VALUE\r\n", v, 2) >= 0);
  CHECK(released[2] == 1);
  CHECK(Save(epfd, r, "") == 0);
  CHECK(ReadAll(r.client).empty());
  CHECK(ConnClose(r.server, r.id, 0) == 0);
  close(r.client);
  CHECK(TimersForget(epfd) == 0);
  close(epfd);
}

// A socket that takes only part: the held run's rest is copied into the queue behind what was sent, the
// out region behind it (the caller's way: connSave reports it unsent), and all of it arrives in order.
void SocketFull() {
  Reset();
  int epfd = NewServer();
  Pair p = OpenPair(epfd);
  int small = 4096;
  CHECK(setsockopt(p.server, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0);
  const std::string v = Value(2 * 1024 * 1024, 4);
  CHECK(Stored(p, "BIG\r\n", v, 0) == 0);
  const int64_t left = Save(epfd, p, "\r\nEND\r\n");
  CHECK(left == 7);  // the out region is the caller's to queue behind the held rest
  CHECK(released[0] == 1);  // copied into the queue: the store's entry is given back at once
  CHECK(ConnWrite(p.server, p.id, mem + kOut, 7) > 7);
  std::string got;
  for (int i = 0; i < 100000 && got.size() < 5 + v.size() + 7; i++) {
    got += ReadAll(p.client);
    CHECK(ConnFlush(p.server, p.id) >= 0);
  }
  CHECK(got == "BIG\r\n" + v + "\r\nEND\r\n");
  CHECK(ConnClose(p.server, p.id, 0) == 0);
  close(p.client);
  CHECK(TimersForget(epfd) == 0);
  close(epfd);

  // --max-output-buffer passed by the rest: -ENOBUFS, given back, nothing queued.
  epfd = NewServer(64 * 1024);
  Pair q = OpenPair(epfd);
  CHECK(setsockopt(q.server, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0);
  CHECK(Stored(q, "BIG\r\n", v, 1) == 0);
  CHECK(Save(epfd, q, "\r\nEND\r\n") == -ENOBUFS);
  CHECK(released[1] == 1);
  CHECK(ConnClose(q.server, q.id, 0) == 0);
  CHECK(released[1] == 1);
  close(q.client);
  CHECK(TimersForget(epfd) == 0);
  close(epfd);
}

}  // namespace

int main() {
  HeldUntilNextWrite();
  ClosedOrGone();
  SocketFull();
  return tcpmod_test::Summary();
}
