// Socket syscalls: each export is one syscall (or the usual short sequence,
// like socket+setsockopt+bind+listen), EINTR retried, failures as -errno.
#include "sockets.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <ctime>
#include <mutex>
#include <sys/socket.h>
#include <unistd.h>

#include "args.h"
#include "sender.h"

namespace tcpmod {
namespace {

// Parses a numeric IPv4 or IPv6 address (no name lookup: the host layer resolves
// names, so a blocking DNS query never runs on a worker).
bool ParseAddr(const std::string& host, int port, sockaddr_storage* ss, socklen_t* len) {
  std::memset(ss, 0, sizeof(*ss));
  auto* v4 = reinterpret_cast<sockaddr_in*>(ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

bool ArgAddr(const Napi::CallbackInfo& info, sockaddr_storage* ss, socklen_t* len) {
  int64_t port;
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(info.Env(), "host must be a string").ThrowAsJavaScriptException();
    return false;
  }
  if (!Args(info).Skip().Int(&port)) return false;
  if (port < 0 || port > 65535 || !ParseAddr(info[0].As<Napi::String>(), static_cast<int>(port), ss, len)) {
    Napi::TypeError::New(info.Env(), "host must be a numeric IPv4 or IPv6 address and port 0..65535")
        .ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

// listenTcp(host, port, backlog, reusePort = 0) -> fd | -errno. Non-blocking,
// close-on-exec, SO_REUSEADDR; SO_REUSEPORT when asked (processes share the port).
Napi::Value ListenTcp(const Napi::CallbackInfo& info) {
  sockaddr_storage ss;
  socklen_t len;
  int64_t backlog, reuse_port = 0;
  // The host and port (ArgAddr), then the numbers after them.
  if (!ArgAddr(info, &ss, &len) || !Args(info).Skip().Skip().Int(&backlog).Opt(&reuse_port)) return info.Env().Undefined();
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Num(info, -errno);
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
      bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0 ||
      listen(fd, static_cast<int>(backlog)) < 0) {
    int err = errno;
    close(fd);
    return Num(info, -err);
  }
  return Num(info, fd);
}

// connectTcp(host, port) -> fd | -errno. A blocking connect, then the socket is
// switched to non-blocking; used by tests and tools, never on the hot path.
Napi::Value ConnectTcp(const Napi::CallbackInfo& info) {
  sockaddr_storage ss;
  socklen_t len;
  if (!ArgAddr(info, &ss, &len)) return info.Env().Undefined();
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Num(info, -errno);
  int rc;
  do rc = connect(fd, reinterpret_cast<sockaddr*>(&ss), len); while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    int err = errno;
    close(fd);
    return Num(info, -err);
  }
  return Num(info, fd);
}

// sockName(fd) -> { address, port, family } | -errno
Napi::Value SockName(const Napi::CallbackInfo& info) {
  int64_t fd;
  if (!Args(info).Int(&fd)) return info.Env().Undefined();
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&ss), &len) < 0) return Num(info, -errno);
  char text[INET6_ADDRSTRLEN] = {0};
  int port;
  const char* family;
  if (ss.ss_family == AF_INET6) {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text));
    port = ntohs(v6->sin6_port);
    family = "IPv6";
  } else {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text));
    port = ntohs(v4->sin_port);
    family = "IPv4";
  }
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("address", text);
  out.Set("port", port);
  out.Set("family", family);
  return out;
}

// The exports whose arguments and result are all numbers (args.h's Ints<Fn>).

// accept(listenFd) -> fd | -errno (-EAGAIN when the backlog is empty).
int Accept(int fd) {
  int c;
  do c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (c < 0 && (errno == EINTR || errno == ECONNABORTED));
  return c < 0 ? -errno : c;
}

// setsockoptInt(fd, level, name, value) -> 0 | -errno
int SetSockOptInt(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof(value)) < 0 ? -errno : 0;
}

// getsockoptInt(fd, level, name) -> value | -errno
int GetSockOptInt(int fd, int level, int name) {
  int v = 0;
  socklen_t len = sizeof(v);
  return getsockopt(fd, level, name, &v, &len) < 0 ? -errno : v;
}

// shutdown(fd, how) -> 0 | -errno
int Shutdown(int fd, int how) { return shutdown(fd, how) < 0 ? -errno : 0; }

// close(fd) -> 0 | -errno. Not retried on EINTR: on Linux the fd is gone either way.
int Close(int fd) { return close(fd) < 0 ? -errno : 0; }

// recv(fd, buffer, offset, length) -> bytes | 0 at EOF | -errno; straight into the buffer.
Napi::Value Recv(const Napi::CallbackInfo& info) {
  int64_t fd;
  uint8_t* p;
  size_t len;
  if (!Args(info).Int(&fd).Region(&p, &len)) return info.Env().Undefined();
  ssize_t n;
  do n = recv(static_cast<int>(fd), p, len, 0); while (n < 0 && errno == EINTR);
  return Num(info, n < 0 ? -errno : static_cast<double>(n));
}

// send(fd, buffer, offset, length, timeoutMs, waited?: Int32Array) -> length | -errno; straight
// from the buffer. waited[0] is set to the milliseconds spent waiting for writability.
Napi::Value Send(const Napi::CallbackInfo& info) {
  int64_t fd, timeout;
  uint8_t* p;
  size_t len;
  if (!Args(info).Int(&fd).Region(&p, &len).Int(&timeout)) return info.Env().Undefined();
  int64_t waited = 0;
  int64_t rc = SendAll(Sink{static_cast<int>(fd), nullptr}, p, len, static_cast<int>(timeout), &waited);
  SetOutInt(info, 5, waited);
  return Num(info, static_cast<double>(rc));
}

}  // namespace

// raiseNofile() -> { soft, hard }: raises the soft RLIMIT_NOFILE to the hard limit
// (a server should use what it is allowed) and returns the limits now in force.
Napi::Value RaiseNofile(const Napi::CallbackInfo& info) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit want = rl;
    want.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
  }
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("soft", static_cast<double>(rl.rlim_cur == RLIM_INFINITY ? (1 << 30) : rl.rlim_cur));
  out.Set("hard", static_cast<double>(rl.rlim_max == RLIM_INFINITY ? (1 << 30) : rl.rlim_max));
  return out;
}

// One descriptor per process held in reserve (/dev/null), so that when accept
// fails with EMFILE one can be freed to accept and close the waiting connection
// instead of leaving it hanging in the backlog. Process-wide and touched only
// inside single native calls, so no thread can die holding it half-released.
std::mutex spare_mu;
int spare_fd = -1;

// spareInit() -> 0 | -errno: takes the reserve descriptor (idempotent).
Napi::Value SpareInit(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(spare_mu);
  if (spare_fd < 0) spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  return Num(info, spare_fd < 0 ? -errno : 0);
}

// acceptRefuse(listenFd) -> 1 a waiting connection was accepted and closed |
// 0 none was waiting | -EMFILE no reserve to spend (or another thread took the
// freed slot first). Releases the reserve, accepts, closes, retakes the reserve.
int AcceptRefuse(int lfd) {
  std::lock_guard<std::mutex> lock(spare_mu);
  if (spare_fd < 0) spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (spare_fd < 0) return -EMFILE;
  close(spare_fd);
  int c = Accept(lfd);
  if (c >= 0) close(c);
  spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (c >= 0) return 1;
  return c == -EAGAIN ? 0 : c;
}

void InitSockets(Napi::Env env, Napi::Object exports) {
  exports.Set("raiseNofile", Napi::Function::New(env, RaiseNofile, "raiseNofile"));
  exports.Set("spareInit", Napi::Function::New(env, SpareInit, "spareInit"));
  exports.Set("acceptRefuse", Napi::Function::New(env, Ints<AcceptRefuse>, "acceptRefuse"));
  exports.Set("listenTcp", Napi::Function::New(env, ListenTcp, "listenTcp"));
  exports.Set("connectTcp", Napi::Function::New(env, ConnectTcp, "connectTcp"));
  exports.Set("sockName", Napi::Function::New(env, SockName, "sockName"));
  exports.Set("accept", Napi::Function::New(env, Ints<Accept>, "accept"));
  exports.Set("setsockoptInt", Napi::Function::New(env, Ints<SetSockOptInt>, "setsockoptInt"));
  exports.Set("getsockoptInt", Napi::Function::New(env, Ints<GetSockOptInt>, "getsockoptInt"));
  exports.Set("shutdown", Napi::Function::New(env, Ints<Shutdown>, "shutdown"));
  exports.Set("close", Napi::Function::New(env, Ints<Close>, "close"));
  exports.Set("recv", Napi::Function::New(env, Recv, "recv"));
  exports.Set("send", Napi::Function::New(env, Send, "send"));
}

}  // namespace tcpmod
