// sources: sender.cc output_queue.cc
// Unit tests of the one sender over a real socket pair (plain; the TLS branch
// is exercised end to end by test/tls*.test.ts): WriteSome takes what the
// socket takes and never waits; Drain sends a queue in order and stops when the
// socket is full; SendAll waits for a reader and reports the time it waited,
// or gives up with -ETIMEDOUT when nobody reads.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <thread>
#include <vector>

#include "output_queue.h"
#include "sender.h"
#include "check.h"

namespace tcpmod {
// The plain paths never reach TLS; these stand in for tls.cc (OpenSSL, N-API).
int64_t TlsWriteSome(TlsSession*, const uint8_t*, size_t) { return -EINVAL; }
void TlsFailWait(TlsSession*, int) {}
}  // namespace tcpmod

using namespace tcpmod;

static uint8_t At(size_t i) { return static_cast<uint8_t>((i * 131 + i / 977) & 0xff); }

// A connected pair, the sending end non-blocking (as the server's sockets are).
static void Pair(int* tx, int* rx) {
  int sv[2];
  tcpmod_test::NonBlockingPair(sv);
  int small = 64 * 1024;
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
  *tx = sv[0];
  *rx = sv[1];
}

// Reads n bytes from fd (blocking) and checks they are the stream from `from`.
static bool ReadStream(int fd, size_t from, size_t n) {
  std::vector<uint8_t> buf(65536);
  size_t got = 0;
  bool ok = true;
  while (got < n) {
    ssize_t r = read(fd, buf.data(), std::min(buf.size(), n - got));
    if (r <= 0) return false;
    for (ssize_t i = 0; i < r; i++) ok = ok && buf[i] == At(from + got + i);
    got += static_cast<size_t>(r);
  }
  return ok;
}

static void TestWriteSomeAndDrain() {
  int tx, rx;
  Pair(&tx, &rx);
  const size_t total = 8 << 20;  // far more than the pair buffers
  std::vector<uint8_t> v(total);
  for (size_t i = 0; i < total; i++) v[i] = At(i);
  Sink s{tx, nullptr};
  int64_t n = WriteSome(s, v.data(), total);
  CHECK(n > 0 && static_cast<size_t>(n) < total);  // took what fits, did not wait
  OutputQueue q;
  CHECK(q.Append(v.data() + n, total - static_cast<size_t>(n)));
  int64_t left = Drain(s, q);
  CHECK(left > 0 && static_cast<size_t>(left) == q.size());  // full: stops, keeps the rest
  // A reader takes everything; Drain, called as the socket frees, sends the rest in order.
  std::atomic<bool> ok{false};
  std::thread reader([&] { ok = ReadStream(rx, 0, total); });
  for (int i = 0; i < 100000 && !q.empty(); i++) {
    left = Drain(s, q);
    CHECK(left >= 0);
    if (left > 0) WaitWritable(tx, 1000);
  }
  reader.join();
  CHECK(q.empty() && q.allocated() == 0);
  CHECK(ok.load());
  close(tx);
  close(rx);
}

static void TestSendAll() {
  int tx, rx;
  Pair(&tx, &rx);
  const size_t total = 4 << 20;
  std::vector<uint8_t> v(total);
  for (size_t i = 0; i < total; i++) v[i] = At(i);
  std::atomic<bool> ok{false};
  std::thread reader([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the sender must wait for it
    ok = ReadStream(rx, 0, total);
  });
  int64_t waited = 0;
  int64_t rc = SendAll(Sink{tx, nullptr}, v.data(), total, 5000, &waited);
  reader.join();
  CHECK(rc == static_cast<int64_t>(total));
  CHECK(ok.load());
  CHECK(waited > 0);
  // Nobody reads: -ETIMEDOUT after the timeout, which counts as waited.
  waited = 0;
  auto t0 = std::chrono::steady_clock::now();
  rc = SendAll(Sink{tx, nullptr}, v.data(), total, 100, &waited);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  CHECK(rc == -ETIMEDOUT);
  CHECK(waited >= 90 && ms >= 90);
  // A closed peer is an error, not a wait.
  close(rx);
  rc = SendAll(Sink{tx, nullptr}, v.data(), 1000, 100, nullptr);
  CHECK(rc == -EPIPE || rc == -ECONNRESET);
  close(tx);
}

int main() {
  TestWriteSomeAndDrain();
  TestSendAll();
  return tcpmod_test::Summary();
}
