// The PROXY protocol phase (kProxy in conn_state.h; proxy_protocol.h parses)
// and the client's address it names.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "conn.h"

namespace tcpmod {

// ConnProxy, connPhase's PROXY step (conn_tls.cc): 2 nothing to do (no header
// expected, or read before) | 1 the PROXY header was read in this call | 0 it
// is not complete (re-arm) | -EPROTO not a valid header (or cut short by the
// peer's close) | -ENOTCONN the peer closed before sending a byte | -errno.
// Never waits.
//
// Never reads past the header: what follows belongs to the module, or to the
// TLS handshake, which reads the socket itself. So the socket is peeked, and
// only the header's bytes are taken: all of what was peeked while the header
// is incomplete (a valid prefix is all header; taking it keeps the socket from
// reporting the same bytes again), exactly its end once complete. The bytes
// taken so far wait in the carry-over, which is empty until the module runs.
int ConnProxy(int fd, uint64_t id) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr || c->srv == nullptr) return -EBADF;
  if (c->life != ConnState::kProxy) return 2;
  uint8_t buf[kProxyMax];
  // What was kept is an incomplete header's prefix, shorter than the longest header (a longer one
  // parses as bad): checked all the same, since it is copied onto the stack.
  const size_t have = c->pending.size();
  if (have >= sizeof(buf)) return -EPROTO;
  if (have) std::memcpy(buf, c->pending.data(), have);
  ssize_t n;
  do n = recv(fd, buf + have, sizeof(buf) - have, MSG_PEEK); while (n < 0 && errno == EINTR);
  if (n < 0) return errno == EAGAIN ? 0 : -errno;
  if (n == 0) return have ? -EPROTO : -ENOTCONN;
  c->last_input = MonoMs();
  ProxyHeader h;
  int rc = ProxyParse(buf, have + static_cast<size_t>(n), c->srv->proxy_versions, &h);
  if (rc == kProxyBad) return -EPROTO;
  // Takes the header's bytes just peeked off the socket: all of them while it is incomplete, up to its end once complete.
  size_t take = rc == kProxyMore ? static_cast<size_t>(n) : static_cast<size_t>(rc) - have;
  ssize_t got;
  do got = recv(fd, buf + have, take, 0); while (got < 0 && errno == EINTR);
  if (got != static_cast<ssize_t>(take)) return got < 0 ? -errno : -EPROTO;
  if (rc == kProxyMore) {
    bool kept = c->pending.Append(buf + have, take);
    AccountBuffers(c);
    return kept ? 0 : -ENOMEM;
  }
  c->pending.Clear();
  AccountBuffers(c);
  TableLock lock(table().mu);
  c->proxied = h;
  const bool tls = c->tls != nullptr;
  c->life = ProxyRead(c->life, tls);
  if (!tls) c->frame_since = 0;  // with TLS, the handshake's frame goes on
  return 1;
}

// proxyConfigure: connections accepted from now on must start with a PROXY
// header of one of `versions` (1 v1, 2 v2, 3 either; 0 none).
int ProxyConfigure(int group, int64_t versions) {
  TableLock lock(table().mu);
  Server* s = ServerOf(group);
  if (s == nullptr) return -EBADF;
  s->proxy_versions = static_cast<unsigned>(versions) & kProxyAny;
  return 0;
}

// connPeer: the client's address: the one a PROXY header named
// (--proxy-protocol), else the socket's peer (getpeername).
int ConnPeer(int fd, uint64_t id, std::string* out) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  // Behind a balancer speaking the PROXY protocol, the client is the one its header named.
  const ProxyHeader& h = c->proxied;
  if (h.family) {
    *out = FormatAddress(h.family, h.src, h.src_port);
    return 0;
  }
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return -errno;
  if (ss.ss_family == AF_INET6) {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    *out = FormatAddress(AF_INET6, v6->sin6_addr.s6_addr, ntohs(v6->sin6_port));
  } else {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    *out = FormatAddress(AF_INET, reinterpret_cast<const uint8_t*>(&v4->sin_addr), ntohs(v4->sin_port));
  }
  return 0;
}

}  // namespace tcpmod
