// What the C++ tests that drive the connection table over real sockets share: the
// events a connection is armed with (as the host arms them), the holder value a test
// claims with, and a connected pair (the server side registered in the table as `id`).
// Include it after check.h, conn_table.h and table_stubs.h.
#pragma once
#include <fcntl.h>
#include <sys/epoll.h>

#include <cstdint>

namespace {

constexpr uint32_t kEvents = EPOLLIN | EPOLLRDHUP | EPOLLET | EPOLLONESHOT;
constexpr int kHolder = 1000;

struct Pair {
  int server, client;
  uint64_t id;
};

// A socket pair, one end opened in the table as a connection of `epfd` held by kHolder, its
// open done, and added to the epoll set armed with kEvents; the other end non-blocking.
inline Pair OpenPair(int epfd) {
  int sv[2];
  tcpmod_test::NonBlockingPair(sv);
  fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
  int64_t id = tcpmod::ConnOpen(sv[0], epfd, 8, kHolder, tcpmod::kKindConn, 0, 0);
  CHECK(id > 0);
  CHECK(tcpmod::ConnOpened(sv[0], id) == 0);
  CHECK(tcpmod::ConnAdd(epfd, sv[0], id, kEvents) == 0);
  return {sv[0], sv[1], static_cast<uint64_t>(id)};
}

}  // namespace
