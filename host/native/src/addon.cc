// tcpmod's native shim: syscalls (sockets, epoll, eventfd) and bookkeeping (the
// connection table, the key-value store). No policy lives here. The addon keeps
// no per-environment state, so any number of worker threads may load it.
#include <napi.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "conn_table.h"
#include "napi_conn.h"
#include "kv_redis.h"
#include "kv_store.h"
#include "poller.h"
#include "pubsub.h"
#include "sockets.h"
#include "tls.h"
#include "upstream.h"

namespace {

void Put(Napi::Object& c, const char* name, int64_t value) {
  c.Set(name, Napi::Number::New(c.Env(), static_cast<double>(value)));
}

Napi::Object Constants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  Put(c, "EPOLLIN", EPOLLIN);
  Put(c, "EPOLLOUT", EPOLLOUT);
  Put(c, "EPOLLERR", EPOLLERR);
  Put(c, "EPOLLHUP", EPOLLHUP);
  Put(c, "EPOLLRDHUP", EPOLLRDHUP);
  Put(c, "EPOLLET", static_cast<uint32_t>(EPOLLET));
  Put(c, "EPOLLONESHOT", EPOLLONESHOT);
  Put(c, "EPOLL_CTL_ADD", EPOLL_CTL_ADD);
  Put(c, "EPOLL_CTL_MOD", EPOLL_CTL_MOD);
  Put(c, "EPOLL_CTL_DEL", EPOLL_CTL_DEL);
  Put(c, "SOL_SOCKET", SOL_SOCKET);
  Put(c, "SO_REUSEADDR", SO_REUSEADDR);
  Put(c, "SO_KEEPALIVE", SO_KEEPALIVE);
  Put(c, "SO_SNDBUF", SO_SNDBUF);
  Put(c, "SO_RCVBUF", SO_RCVBUF);
  Put(c, "SO_ERROR", SO_ERROR);
  Put(c, "IPPROTO_TCP", IPPROTO_TCP);
  Put(c, "TCP_NODELAY", TCP_NODELAY);
  Put(c, "TCP_KEEPIDLE", TCP_KEEPIDLE);
  Put(c, "TCP_KEEPINTVL", TCP_KEEPINTVL);
  Put(c, "TCP_KEEPCNT", TCP_KEEPCNT);
  Put(c, "SHUT_RD", SHUT_RD);
  Put(c, "SHUT_WR", SHUT_WR);
  Put(c, "SHUT_RDWR", SHUT_RDWR);
  Put(c, "KIND_CONN", tcpmod::kKindConn);
  Put(c, "KIND_LISTEN", tcpmod::kKindListen);
  Put(c, "KIND_WAKE", tcpmod::kKindWake);
  Put(c, "KIND_TIMER", tcpmod::kKindTimer);
  Put(c, "KIND_UNOPENED", tcpmod::kKindUnopened);
  return c;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  tcpmod::InitSockets(env, exports);
  tcpmod::InitPoller(env, exports);
  tcpmod::InitConnTable(env, exports);
  tcpmod::InitPubSub(env, exports);
  tcpmod::InitKvStore(env, exports);
  tcpmod::InitKvRedis(env, exports);
  tcpmod::InitTls(env, exports);
  tcpmod::InitUpstreams(env, exports);
  exports.Set("constants", Constants(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(tcpmod_native, Init)
