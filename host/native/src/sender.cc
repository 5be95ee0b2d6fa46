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

// Writes a then b (b may be empty) on a plain socket until they are sent or the
// socket is full: bytes taken, or -errno. One buffer left goes by send() (so a
// plain reply stays one sendto), two by one sendmsg() of two iovecs.
int64_t PlainWrite(int fd, const uint8_t* a, size_t alen, const uint8_t* b, size_t blen) {
  const size_t len = alen + blen;
  size_t done = 0;
  while (done < len) {
    ssize_t n;
    if (done >= alen) {
      const size_t boff = done - alen;
      n = send(fd, b + boff, blen - boff, MSG_NOSIGNAL | MSG_DONTWAIT);
    } else if (blen == 0) {
      n = send(fd, a + done, alen - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    } else {
      iovec iov[2] = {{const_cast<uint8_t*>(a + done), alen - done}, {const_cast<uint8_t*>(b), blen}};
      msghdr m{};
      m.msg_iov = iov;
      m.msg_iovlen = 2;
      n = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return -errno;
    break;
  }
  return static_cast<int64_t>(done);
}

}  // namespace

int64_t WriteSome(const Sink& s, const uint8_t* p, size_t len) {
  if (s.tls != nullptr) return TlsWriteSome(s.tls, p, len);
  return PlainWrite(s.fd, p, len, nullptr, 0);
}

int64_t WriteSome2(const Sink& s, const uint8_t* a, size_t alen, const uint8_t* b, size_t blen) {
  assert(s.tls == nullptr);
  return PlainWrite(s.fd, a, alen, b, blen);
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
