// epoll and eventfd. An epoll item's 64-bit data carries (tag << 32) | fd, so a
// waiter learns both the socket and the connection id without a table lookup.
#include "poller.h"

#include <cerrno>
#include <cstdint>
#include <ctime>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "args.h"

namespace tcpmod {
namespace {

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// epollCreate() -> fd | -errno
Napi::Value EpollCreate(const Napi::CallbackInfo& info) {
  int fd = epoll_create1(EPOLL_CLOEXEC);
  return Num(info, fd < 0 ? -errno : fd);
}

// epollCtl(epfd, op, fd, events, tag) -> 0 | -errno
Napi::Value EpollCtl(const Napi::CallbackInfo& info) {
  int64_t epfd, op, fd, events, tag;
  if (!ArgInt(info, 0, &epfd) || !ArgInt(info, 1, &op) || !ArgInt(info, 2, &fd) || !ArgInt(info, 3, &events) ||
      !ArgInt(info, 4, &tag))
    return info.Env().Undefined();
  epoll_event ev{};
  ev.events = static_cast<uint32_t>(events);
  ev.data.u64 = (static_cast<uint64_t>(static_cast<uint32_t>(tag)) << 32) | static_cast<uint32_t>(fd);
  int rc = epoll_ctl(static_cast<int>(epfd), static_cast<int>(op), static_cast<int>(fd), &ev);
  return Num(info, rc < 0 ? -errno : 0);
}

// epollWait(epfd, timeoutMs, out: Int32Array(3)) -> 1 | 0 on timeout | -errno.
// maxevents is 1 by design: each waiter takes exactly one ready item, so with
// EPOLLONESHOT a connection is never in two threads. out = [fd, tag, events].
// EINTR resumes the wait with what is left of the timeout.
Napi::Value EpollWait(const Napi::CallbackInfo& info) {
  int64_t epfd, timeout;
  if (!ArgInt(info, 0, &epfd) || !ArgInt(info, 1, &timeout)) return info.Env().Undefined();
  if (info.Length() < 3 || !info[2].IsTypedArray() ||
      info[2].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      info[2].As<Napi::TypedArray>().ElementLength() < 3) {
    Napi::TypeError::New(info.Env(), "out must be an Int32Array of at least 3 elements").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Napi::Int32Array out = info[2].As<Napi::Int32Array>();
  int64_t deadline = timeout >= 0 ? NowMs() + timeout : -1;
  epoll_event ev;
  int n;
  for (;;) {
    int wait_ms = deadline < 0 ? -1 : static_cast<int>(std::max<int64_t>(0, deadline - NowMs()));
    n = epoll_wait(static_cast<int>(epfd), &ev, 1, wait_ms);
    if (n >= 0 || errno != EINTR) break;
  }
  if (n < 0) return Num(info, -errno);
  if (n == 1) {
    out[0] = static_cast<int32_t>(ev.data.u64 & 0xffffffffu);
    out[1] = static_cast<int32_t>(ev.data.u64 >> 32);
    out[2] = static_cast<int32_t>(ev.events);
  }
  return Num(info, n);
}

// eventfdCreate() -> fd | -errno (non-blocking, close-on-exec)
Napi::Value EventfdCreate(const Napi::CallbackInfo& info) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  return Num(info, fd < 0 ? -errno : fd);
}

// eventfdWrite(fd) -> 0 | -errno. Makes the eventfd readable; registered
// level-triggered, it then wakes every waiter of the epoll set in turn.
Napi::Value EventfdWrite(const Napi::CallbackInfo& info) {
  int64_t fd;
  if (!ArgInt(info, 0, &fd)) return info.Env().Undefined();
  uint64_t one = 1;
  ssize_t n;
  do n = write(static_cast<int>(fd), &one, sizeof(one)); while (n < 0 && errno == EINTR);
  return Num(info, n < 0 ? -errno : 0);
}

}  // namespace

void InitPoller(Napi::Env env, Napi::Object exports) {
  exports.Set("epollCreate", Napi::Function::New(env, EpollCreate, "epollCreate"));
  exports.Set("epollCtl", Napi::Function::New(env, EpollCtl, "epollCtl"));
  exports.Set("epollWait", Napi::Function::New(env, EpollWait, "epollWait"));
  exports.Set("eventfdCreate", Napi::Function::New(env, EventfdCreate, "eventfdCreate"));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventfdWrite, "eventfdWrite"));
}

}  // namespace tcpmod
