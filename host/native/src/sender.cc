#include "sender.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cassert>
#include <cerrno>
#include <ctime>

#include "output_queue.h"
#include "tls.h"

namespace tcpmod {

namespace {

// Writes the runs in order on a plain socket until they are sent or the socket
// is full: bytes taken, or -errno. One run left goes by send() (so a plain
// reply stays one sendto), more by one sendmsg() of their iovecs.
int64_t PlainWrite(int fd, const iovec* runs, int count) {
  iovec iov[4];
  int n_iov = 0;
  size_t len = 0;
  for (int i = 0; i < count; i++) {
    if (runs[i].iov_len == 0) continue;
    iov[n_iov++] = runs[i];
    len += runs[i].iov_len;
  }
  size_t done = 0;
  int first = 0;  // iov[first..] are what is left, iov[first] advanced by what was taken of it
  while (done < len) {
    ssize_t n;
    if (first == n_iov - 1) {
      n = send(fd, iov[first].iov_base, iov[first].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    } else {
      msghdr m{};
      m.msg_iov = iov + first;
      m.msg_iovlen = static_cast<size_t>(n_iov - first);
      n = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (n > 0) {
      done += static_cast<size_t>(n);
      for (size_t k = static_cast<size_t>(n); k > 0 && first < n_iov;) {
        const size_t take = k < iov[first].iov_len ? k : iov[first].iov_len;
        iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + take;
        iov[first].iov_len -= take;
        k -= take;
        if (iov[first].iov_len == 0) first++;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return -errno;
    break;
  }
  return static_cast<int64_t>(done);
}

iovec Run(const uint8_t* p, size_t len) { return {const_cast<uint8_t*>(p), len}; }

}  // namespace

int64_t WriteSome(const Sink& s, const uint8_t* p, size_t len) {
  if (s.tls != nullptr) return TlsWriteSome(s.tls, p, len);
  const iovec run = Run(p, len);
  return PlainWrite(s.fd, &run, 1);
}

int64_t WriteSome2(const Sink& s, const uint8_t* a, size_t alen, const uint8_t* b, size_t blen) {
  assert(s.tls == nullptr);
  const iovec runs[2] = {Run(a, alen), Run(b, blen)};
  return PlainWrite(s.fd, runs, 2);
}

int64_t WriteSome4(const Sink& s, const uint8_t* a, size_t alen, const uint8_t* b, size_t blen, const uint8_t* c,
                   size_t clen, const uint8_t* d, size_t dlen) {
  assert(s.tls == nullptr);
  const iovec runs[4] = {Run(a, alen), Run(b, blen), Run(c, clen), Run(d, dlen)};
  return PlainWrite(s.fd, runs, 4);
}

void HeldRun::Hold(const uint8_t* head, size_t head_len, const uint8_t* p, size_t n, ReleaseFn release, void* a,
                   uint64_t b) {
  assert(empty() && release != nullptr);
  head_.assign(reinterpret_cast<const char*>(head), head_len);
  p_ = p;
  n_ = n;
  release_ = release;
  a_ = a;
  b_ = b;
}

void HeldRun::Release() {
  if (release_ == nullptr) return;
  ReleaseFn fn = release_;
  release_ = nullptr;
  p_ = nullptr;
  n_ = 0;
  head_.clear();
  fn(a_, b_);
}

int WaitWritable(int fd, int timeout_ms, int64_t* waited_ms) {
  pollfd pfd{fd, POLLOUT, 0};
  timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc;
  do rc = poll(&pfd, 1, timeout_ms); while (rc < 0 && errno == EINTR);
  int err = errno;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (waited_ms) *waited_ms += (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
  if (rc < 0) return -err;
  return rc == 0 ? -ETIMEDOUT : 0;
}

int64_t Drain(const Sink& s, OutputQueue& q) {
  while (!q.empty()) {
    size_t len;
    const uint8_t* p = q.Front(&len);
    int64_t n = WriteSome(s, p, len);
    if (n < 0) return n;
    assert(static_cast<size_t>(n) <= len);
    q.Consume(static_cast<size_t>(n));
    if (static_cast<size_t>(n) < len) break;  // the socket is full
  }
  return static_cast<int64_t>(q.size());
}

int64_t SendAll(const Sink& s, const uint8_t* p, size_t len, int timeout_ms, int64_t* waited_ms) {
  size_t done = 0;
  while (done < len) {
    int64_t n = WriteSome(s, p + done, len - done);
    if (n < 0) return n;
    done += static_cast<size_t>(n);
    if (done == len) break;
    int w = WaitWritable(s.fd, timeout_ms, waited_ms);
    if (w < 0) {
      if (s.tls != nullptr) TlsFailWait(s.tls, w);
      return w;
    }
  }
  return static_cast<int64_t>(len);
}

}  // namespace tcpmod
