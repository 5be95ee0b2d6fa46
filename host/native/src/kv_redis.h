// The Redis (or Valkey) backend of the key-value store: a minimal blocking
// RESP2 client, one connection per worker thread. kv_store.cc's exports call
// these when the calling thread was given a Redis target (kvBackend); results
// follow ABI §10, plus -3 (kKvUnavailable) when the store cannot be reached.
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace tcpmod {

constexpr int64_t kKvUnavailable = -3;

// One RESP2 reply, as ParseReply found it. Bulk and simple strings, and error
// text, are [off, off + len) of the parsed bytes; nil is a null bulk string.
struct RedisReply {
  char type = 0;  // '+', '-', ':' or '$'
  bool nil = false;
  int64_t integer = 0;
  size_t off = 0;
  size_t len = 0;
};

// Parses one reply at the start of p[0, n). Returns the bytes it takes (> 0),
// 0 when more bytes are needed, or -1 when the bytes are not a reply this client
// accepts: an unknown type (arrays included: no command sent here returns one),
// a line longer than kMaxLine, a bulk longer than kMaxBulk, a malformed number,
// a bulk body not followed by "\r\n".
constexpr size_t kMaxLine = 4096;
constexpr int64_t kMaxBulk = 512ll << 20;  // Redis' own proto-max-bulk-len default
int64_t ParseReply(const uint8_t* p, size_t n, RedisReply* r);
// The same for a reply's first line only: a bulk string's header ($N) is taken
// alone (r->len = N, its body would start at r->off), so a client can stream
// the body instead of buffering it. ParseReply is this plus the body.
int64_t ParseHead(const uint8_t* p, size_t n, RedisReply* r);

// True when this thread's kv calls go to Redis.
bool RedisActive();
// ABI semantics (docs/abi.md §10, §14), -3 when the store is unavailable.
// Every write and every v1.2 call but kv_ttl is one run of a Lua script on the
// server (atomic there); versions live beside the value (kv_redis.cc).
int64_t RedisGet(const std::string& key, uint8_t* out, size_t cap);
int64_t RedisSet(const std::string& key, const uint8_t* val, size_t len, int flags, int64_t ttl_ms);
int64_t RedisDel(const std::string& key);
int64_t RedisIncr(const std::string& key, int64_t delta, int flags, int64_t* out);
int64_t RedisIncrAt(const std::string& key, int64_t offset, uint64_t delta, int flags, uint64_t* out);
int64_t RedisGetVer(const std::string& key, uint8_t* out, size_t cap, uint64_t* version);
int64_t RedisGetRange(const std::string& key, int64_t offset, uint8_t* out, size_t cap, uint64_t* version);
int64_t RedisGetDel(const std::string& key, uint8_t* out, size_t cap);
int64_t RedisCas(const std::string& key, const uint8_t* val, size_t len, int flags, int64_t ttl_ms, uint64_t version);
int64_t RedisExpire(const std::string& key, int64_t ttl_ms);
int64_t RedisExpireIf(const std::string& key, int64_t ttl_ms, int flags);
int64_t RedisPersist(const std::string& key);
int64_t RedisTtl(const std::string& key, int64_t* ms);
int64_t RedisAppend(const std::string& key, const uint8_t* val, size_t len, int flags);
int64_t RedisScan(const std::string& prefix, int64_t cursor, int32_t count, uint8_t* out, size_t cap, int64_t* next);
int64_t RedisDelPrefix(const std::string& prefix);

// Exports kvBackend, kvLastError and kvParseReply.
void InitKvRedis(Napi::Env env, Napi::Object exports);

}  // namespace tcpmod
