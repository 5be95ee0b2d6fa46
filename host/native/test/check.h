// The C++ unit tests' shared harness: CHECK counts each check, a failed one
// prints where it is, and Summary() prints the last line the runner
// (scripts/native-test.mjs) reads, `N passed, M failed`, and gives main()'s
// exit status. Plus a socketpair helper the socket tests share.
#ifndef TCPMOD_TEST_CHECK_H_
#define TCPMOD_TEST_CHECK_H_

#include <fcntl.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>

namespace tcpmod_test {

// Counted from the main thread only (CHECK is not for use inside test threads).
inline int passed = 0, failed = 0;

// Prints the summary line and returns main()'s exit status.
inline int Summary() {
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

// A connected AF_UNIX stream pair, sv[0] non-blocking (as the server's sockets are).
// Exits the program when the pair cannot be made: no test could run.
inline void NonBlockingPair(int sv[2]) {
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
    std::perror("socketpair");
    std::exit(2);
  }
  fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
}

}  // namespace tcpmod_test

#define CHECK(cond)                                                       \
  do {                                                                    \
    if (cond) {                                                           \
      tcpmod_test::passed++;                                              \
    } else {                                                              \
      tcpmod_test::failed++;                                              \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);         \
    }                                                                     \
  } while (0)

#endif  // TCPMOD_TEST_CHECK_H_
