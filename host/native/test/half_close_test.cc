// sources: registry.cc conn_state.cc ownership.cc direct.cc loans.cc due.cc conn_input.cc conn_output.cc conn_close.cc conn_proxy.cc generations.cc close_phase.cc timers.cc input_buffer.cc output_queue.cc sender.cc mailbox.cc proxy_protocol.cc
// Half-close (docs/abi.md §20) in the connection table, on real sockets and a
// real epoll set, without Node: the load that hands the module EOF and the
// re-arm that ends the event make the input ended, and from then on the
// socket (readable for ever at EOF) is re-armed without EPOLLIN, so epoll
// reports nothing (no wake-up loop) while a reset still is; shutdown_output's
// FIN follows the event's output and the queue; both ended marks the
// connection due to be closed (kDuePeerDone); output after the shut is discarded.
#include "conn.h"
#include "conn_table.h"

#include "check.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

using namespace tcpmod;

#include "table_stubs.h"
#include "conn_pair.h"

namespace {

int NewServer() {
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  CHECK(TimersConfigure(epfd, 0, 0) >= 0);
  return epfd;
}

// What epoll reports for `fd` now (0: nothing), without waiting.
uint32_t Reported(int epfd, int fd) {
  epoll_event evs[8];
  int n = epoll_wait(epfd, evs, 8, 0);
  for (int i = 0; i < n; i++)
    if (EpollFd(evs[i].data.u64) == fd) return evs[i].events;
  return 0;
}

uint8_t mem[4096];
constexpr size_t kIn = 0, kCap = 1024, kState = 2048, kOut = 3072;

// One event of the holder: load, then (as the module) the output `out`, then save and re-arm.
int64_t Load(const Pair& p) {
  int64_t received;
  return ConnLoad(p.server, p.id, mem + kIn, kCap, mem, sizeof(mem), kState, false, &received);
}
int64_t Save(int epfd, const Pair& p, const char* out) {
  size_t n = std::strlen(out);
  std::memcpy(mem + kOut, out, n);
  return ConnSave(p.server, p.id, mem + kIn, 0, mem, sizeof(mem), kState, epfd, kEvents, n ? kOut : 0, static_cast<int64_t>(n));
}
// Takes the entry back as a claimer does (from epoll or the due list): its due bits, or -1 when not claimed.
int64_t Claim(int epfd, const Pair& p) {
  uint32_t due = 0;
  double id;
  int fd;
  if (TakeDue(epfd, kHolder, &fd, &id, &due)) {
    CHECK(fd == p.server);
    return due;
  }
  return ClaimEvent(p.server, p.id & kEpollTagMask, epfd, kHolder, &id, &due) ? static_cast<int64_t>(due) : -1;
}

std::string ReadAll(int fd) {
  std::string s;
  char b[256];
  for (;;) {
    ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
    if (n <= 0) break;
    s.append(b, static_cast<size_t>(n));
  }
  return s;
}

// The client's EOF kept: no wake-up loop; the answer, then FIN, then the due close.
void InputThenOutput() {
  int epfd = NewServer();
  Pair p = OpenPair(epfd);
  CHECK(send(p.client, "req", 3, 0) == 3);
  CHECK(shutdown(p.client, SHUT_WR) == 0);
  CHECK(Load(p) == 3);  // one receive: the bytes; the EOF at the next
  CHECK(Save(epfd, p, "") == 0);
  CHECK(Reported(epfd, p.server) & EPOLLIN);
  CHECK(Claim(epfd, p) == 0);
  CHECK(Load(p) == kLoadEof);
  CHECK(Save(epfd, p, "") == 0);  // the module answered EOF with CONTINUE: kept
  // At EOF the socket is readable for ever: re-armed for input it would be reported at once.
  CHECK(Reported(epfd, p.server) == 0);
  CHECK(Reported(epfd, p.server) == 0);
  // A wake (here: an upstream's due mark) loads nothing and calls nothing: EAGAIN, re-armed quietly again.
  MarkConnDue(p.server, p.id, kDueUpstreamEvent, false);
  CHECK(Claim(epfd, p) >= 0);
  CHECK(Load(p) == -EAGAIN);
  CHECK(ConnRearm(epfd, p.server, p.id, kEvents) == 0);
  CHECK(Reported(epfd, p.server) == 0);
  // Its answer, then shutdown_output in the same event: the answer goes, then the FIN, then the close is due.
  MarkConnDue(p.server, p.id, kDueUpstreamEvent, false);
  CHECK(Claim(epfd, p) >= 0);
  CHECK(ConnEndOutput(p.server, p.id) == 0);
  CHECK(Save(epfd, p, "answer") == 0);
  char b[16];
  CHECK(ReadAll(p.client) == "answer");
  CHECK(recv(p.client, b, sizeof(b), MSG_DONTWAIT) == 0);  // the FIN
  int64_t due = Claim(epfd, p);
  CHECK(due >= 0 && (due & kDuePeerDone) != 0);
  CHECK(ConnClose(p.server, p.id, 0) == 0);
  close(p.client);
  CHECK(TimersForget(epfd) == 0);
  close(epfd);
}

// shutdown_output first: the client sends on and is read; output of later events is discarded;
// the client's reset is seen (epoll reports errors without EPOLLIN) and ends it.
void OutputThenReset() {
  int epfd = NewServer();
  Pair p = OpenPair(epfd);
  CHECK(ConnEndOutput(p.server, p.id) == 0);
  CHECK(Save(epfd, p, "bye") == 0);
  CHECK(ReadAll(p.client) == "bye");
  char b[16];
  CHECK(recv(p.client, b, sizeof(b), MSG_DONTWAIT) == 0);
  CHECK(send(p.client, "more", 4, 0) == 4);
  CHECK(Reported(epfd, p.server) & EPOLLIN);
  CHECK(Claim(epfd, p) == 0);  // no due: its input goes on
  CHECK(Load(p) == 4);
  CHECK(ConnWrite(p.server, p.id, reinterpret_cast<const uint8_t*>("late"), 4) == 0);  // discarded
  CHECK(Save(epfd, p, "late too") == 0);
  CHECK(recv(p.client, b, sizeof(b), MSG_DONTWAIT) == 0);  // nothing after the FIN
  // The client ends too: EOF handed, kept; both ended: due.
  CHECK(shutdown(p.client, SHUT_WR) == 0);
  CHECK(Reported(epfd, p.server) & EPOLLIN);
  CHECK(Claim(epfd, p) == 0);
  CHECK(Load(p) == kLoadEof);
  CHECK(Save(epfd, p, "") == 0);
  int64_t due = Claim(epfd, p);
  CHECK(due >= 0 && (due & kDuePeerDone) != 0);
  CHECK(ConnClose(p.server, p.id, 0) == 0);
  close(p.client);
  // A half-closed client that goes away: reported though EPOLLIN is not asked for.
  Pair q = OpenPair(epfd);
  CHECK(shutdown(q.client, SHUT_WR) == 0);
  CHECK(Load(q) == kLoadEof);
  CHECK(Save(epfd, q, "") == 0);
  CHECK(Reported(epfd, q.server) == 0);
  close(q.client);  // the peer gone: a hang-up, reported without EPOLLIN asked for
  CHECK(Reported(epfd, q.server) != 0);
  CHECK(Claim(epfd, q) >= 0);
  CHECK(ConnClose(q.server, q.id, 0) == 0);
  CHECK(TimersForget(epfd) == 0);
  close(epfd);
}

}  // namespace

int main() {
  InputThenOutput();
  OutputThenReset();
  return tcpmod_test::Summary();
}
