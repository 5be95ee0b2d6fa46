// The bus (--bus, docs/abi.md §15): topics across processes through a Redis
// or Valkey server's PUBLISH/SUBSCRIBE. Plain C++ with its own thread per
// server and two connections to Redis, whatever the number of clients:
//
// - the publisher connection carries every local publish as one PUBLISH,
//   pipelined, in publish order (so one publisher's messages keep their order
//   across processes: Redis delivers a connection's publishes in order);
// - the subscriber connection holds one Redis subscription per distinct local
//   subscription: SUBSCRIBE for an exact topic, PSUBSCRIBE for a Redis glob, and
//   PSUBSCRIBE of a wider glob for an MQTT filter (the exact MQTT match is then
//   made locally). A message Redis delivers reaches only the local
//   subscriptions of the channel or pattern it came through, so a connection
//   gets it once per matching subscription, as from a local publish.
//
// A message a tcpmod process publishes carries a 12-byte tag (kTag, then the
// process's random 64-bit origin) before its bytes; its echo back from Redis is
// recognised by that origin and dropped (it was delivered locally at publish).
// A message without the tag (a plain Redis client's PUBLISH) is delivered as it is.
//
// At most once: nothing is stored or sent again. A publish made while the
// publisher connection is down, or with kMaxQueued bytes already waiting, is
// dropped and counted (`dropped`); one written whose reply never came before
// the connection failed is counted as `unconfirmed` (it may or may not have been
// delivered). Messages other processes publish while this one's subscriber
// connection is down are never seen here and cannot be counted here: they are
// in the publishers' counts only when those publishers lost them too. A failed
// connection is retried after a backoff (50 ms doubling to 2 s), as the store
// does (kv_redis.cc); a connection that leaves a command unanswered for
// kReplyTimeoutMs is taken as dead (a stopped server), and the subscriber
// connection sends a PING after kPingIdleMs without traffic to find that out.
// With rediss:// both connections speak TLS, the handshake within the connect
// timeout, with the host's one client-side TLS code (tls_client.h).
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

struct ssl_ctx_st;  // OpenSSL's SSL_CTX (tls_client.h)

namespace tcpmod {

struct BusTarget {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string where;  // HOST:PORT, for errors
  std::string username, password;
  int64_t connect_timeout_ms = 2000;
  // rediss://: both connections speak TLS (tls_client.h); the certificate must
  // verify against the context's CAs and name `servername` (the URL's host).
  std::shared_ptr<ssl_ctx_st> tls;
  std::string servername;
};

struct BusStats {
  bool connected = false;  // both connections up
  double published = 0;    // publishes Redis acknowledged
  double received = 0;     // messages from other processes (or plain clients) delivered here
  double echoes = 0;       // this process's own messages coming back, dropped
  double dropped = 0;      // publishes never sent (down, or kMaxQueued waiting)
  double unconfirmed = 0;  // publishes sent, their connection lost before Redis acknowledged them
  double failures = 0;     // connections lost or refused
  size_t channels = 0, patterns = 0;  // Redis subscriptions held
  std::string last_error;
};

// The Redis channel (*pattern = false) or pattern (true) a local subscription of
// `kind` (topics.h) with `text` is carried by.
std::string BusRedisName(int kind, const std::string& text, bool* pattern);
// Whether a 12-byte tagged frame; its origin in *origin.
bool BusUntag(const std::string& frame, uint64_t* origin);
// Appends the 12-byte tag of `origin` (what BusUntag reads).
void BusTag(uint64_t origin, std::string* out);
constexpr size_t kBusTagSize = 12;

class Bus {
 public:
  // Called from the bus thread for each message to deliver: its topic, the Redis pattern it
  // came through (null: the channel subscription), and its bytes (tag removed).
  using Deliver = std::function<void(const std::string& topic, const std::string* pattern, const std::string& body)>;

  Bus(BusTarget target, Deliver deliver);
  ~Bus();  // stops the thread and closes both connections
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;

  // Queues a PUBLISH; never waits for the network. Any thread (the table lock may be held).
  void Publish(const std::string& topic, const uint8_t* msg, size_t len);
  // One local subscription added (+1) or removed (-1) that Redis should carry.
  void Want(bool pattern, const std::string& name, int delta);
  BusStats Stats();

  static constexpr size_t kMaxQueued = 16u << 20;
  static constexpr int64_t kReplyTimeoutMs = 3000;
  static constexpr int64_t kPingIdleMs = 1000;

 private:
  struct Link;
  void Run();
  void Wake();

  const BusTarget target_;
  const Deliver deliver_;
  const uint64_t origin_;
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};

  std::mutex mu_;  // guards what follows (never held while delivering)
  std::string queued_;      // PUBLISH commands not yet taken by the thread
  size_t queued_count_ = 0;
  bool pub_up_ = false;
  // The bus connects on first use (a publish or a subscription), so a server whose module never uses
  // topics opens no connection to Redis; set once, never cleared.
  bool used_ = false;
  std::map<std::string, int> want_channels_, want_patterns_;  // name -> local subscriptions
  bool want_changed_ = false;
  BusStats stats_;
};

}  // namespace tcpmod
