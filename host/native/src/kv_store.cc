// The key-value store of ABI v1: one per process, shared by every worker and
// module instance — unless the calling thread was pointed at a Redis server
// (kv_redis.h, kvBackend): then each export hands its call to that client. Sharded so that workers touching different keys rarely meet
// on a lock; bounded by a byte budget (key + value + a fixed per-entry cost).
#include "kv_store.h"

#include <atomic>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

#include "args.h"
#include "kv_redis.h"

namespace tcpmod {
namespace {

constexpr size_t kShards = 64;
constexpr int64_t kEntryCost = 64;  // rough cost of a node and two string headers

struct Shard {
  std::mutex mu;
  std::unordered_map<std::string, std::string> map;
};

Shard shards[kShards];
std::atomic<int64_t> used_bytes{0};
std::atomic<int64_t> max_bytes{64ll << 20};

Shard& ShardFor(const std::string& key) { return shards[std::hash<std::string>{}(key) % kShards]; }

int64_t Cost(size_t key, size_t val) { return static_cast<int64_t>(key + val) + kEntryCost; }

// Reserves delta bytes against the budget; false when it would exceed it.
// Shrinking (delta <= 0) always succeeds.
bool Reserve(int64_t delta) {
  int64_t cur = used_bytes.load();
  for (;;) {
    if (delta > 0 && cur + delta > max_bytes.load()) return false;
    if (used_bytes.compare_exchange_weak(cur, cur + delta)) return true;
  }
}

// Parses a whole string as a signed 64-bit decimal, as Redis' INCR accepts it:
// optional '-', digits, no spaces, no '+', no leading zeros except "0".
bool ParseI64(const std::string& s, int64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  size_t i = 0;
  bool neg = s[0] == '-';
  if (neg) i = 1;
  if (i == s.size()) return false;
  if (s[i] == '0' && s.size() > i + 1) return false;
  if (neg && s[i] == '0') return false;
  int64_t v = 0;
  for (; i < s.size(); i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    int d = s[i] - '0';
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, neg ? -d : d, &v)) return false;
  }
  *out = v;
  return true;
}

bool ArgKey(const Napi::CallbackInfo& info, std::string* key) {
  uint8_t* p;
  size_t len;
  if (!ArgRegion(info, 0, &p, &len)) return false;
  key->assign(reinterpret_cast<char*>(p), len);
  return true;
}

// kvGet(keyBuf, keyOff, keyLen, outBuf, outOff, outCap) -> value length | -1 when missing (| -3, Redis unavailable).
// Nothing is copied when the value is longer than outCap.
Napi::Value KvGet(const Napi::CallbackInfo& info) {
  std::string key;
  uint8_t* out;
  size_t cap;
  if (!ArgKey(info, &key) || !ArgRegion(info, 3, &out, &cap)) return info.Env().Undefined();
  if (RedisActive()) return Num(info, static_cast<double>(RedisGet(key, out, cap)));
  Shard& s = ShardFor(key);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.map.find(key);
  if (it == s.map.end()) return Num(info, -1);
  if (it->second.size() <= cap) std::memcpy(out, it->second.data(), it->second.size());
  return Num(info, static_cast<double>(it->second.size()));
}

// kvSet(keyBuf, keyOff, keyLen, valBuf, valOff, valLen) -> 0 | -2 when the store is full.
Napi::Value KvSet(const Napi::CallbackInfo& info) {
  std::string key;
  uint8_t* val;
  size_t len;
  if (!ArgKey(info, &key) || !ArgRegion(info, 3, &val, &len)) return info.Env().Undefined();
  if (RedisActive()) return Num(info, static_cast<double>(RedisSet(key, val, len)));
  Shard& s = ShardFor(key);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.map.find(key);
  int64_t old_cost = it == s.map.end() ? 0 : Cost(key.size(), it->second.size());
  if (!Reserve(Cost(key.size(), len) - old_cost)) return Num(info, -2);
  if (it == s.map.end()) s.map.emplace(std::move(key), std::string(reinterpret_cast<char*>(val), len));
  else it->second.assign(reinterpret_cast<char*>(val), len);
  return Num(info, 0);
}

// kvDel(keyBuf, keyOff, keyLen) -> 1 deleted | 0 missing
Napi::Value KvDel(const Napi::CallbackInfo& info) {
  std::string key;
  if (!ArgKey(info, &key)) return info.Env().Undefined();
  if (RedisActive()) return Num(info, static_cast<double>(RedisDel(key)));
  Shard& s = ShardFor(key);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.map.find(key);
  if (it == s.map.end()) return Num(info, 0);
  Reserve(-Cost(key.size(), it->second.size()));
  s.map.erase(it);
  return Num(info, 1);
}

// kvIncr(keyBuf, keyOff, keyLen, delta: bigint, outBuf, outOff) -> 0 | -1 | -2.
// Atomic under the shard lock; a missing key counts as 0; the new value is
// stored as decimal text and written as a little-endian i64 at out.
Napi::Value KvIncr(const Napi::CallbackInfo& info) {
  std::string key;
  uint8_t* out;
  if (!ArgKey(info, &key)) return info.Env().Undefined();
  if (info.Length() < 4 || !info[3].IsBigInt()) {
    Napi::TypeError::New(info.Env(), "delta must be a bigint").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  bool lossless;
  int64_t delta = info[3].As<Napi::BigInt>().Int64Value(&lossless);
  if (!ArgFixedRegion(info, 4, 8, &out)) return info.Env().Undefined();
  if (!lossless) {
    Napi::RangeError::New(info.Env(), "delta must fit in i64").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  if (RedisActive()) {
    int64_t next = 0;
    int64_t rc = RedisIncr(key, delta, &next);
    if (rc == 0) std::memcpy(out, &next, 8);
    return Num(info, static_cast<double>(rc));
  }
  Shard& s = ShardFor(key);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.map.find(key);
  int64_t cur = 0;
  if (it != s.map.end() && !ParseI64(it->second, &cur)) return Num(info, -1);
  int64_t next;
  if (__builtin_add_overflow(cur, delta, &next)) return Num(info, -1);
  std::string text = std::to_string(next);
  int64_t old_cost = it == s.map.end() ? 0 : Cost(key.size(), it->second.size());
  if (!Reserve(Cost(key.size(), text.size()) - old_cost)) return Num(info, -2);
  if (it == s.map.end()) s.map.emplace(std::move(key), std::move(text));
  else it->second = std::move(text);
  std::memcpy(out, &next, 8);  // x86-64 and aarch64 are little-endian, as the ABI is
  return Num(info, 0);
}

// kvConfigure(maxBytes) -> previous maximum
Napi::Value KvConfigure(const Napi::CallbackInfo& info) {
  int64_t max;
  if (!ArgInt(info, 0, &max)) return info.Env().Undefined();
  return Num(info, static_cast<double>(max_bytes.exchange(max)));
}

// kvClear() -> number of keys removed
Napi::Value KvClear(const Napi::CallbackInfo& info) {
  size_t n = 0;
  for (auto& s : shards) {
    std::lock_guard<std::mutex> lock(s.mu);
    for (auto& kv : s.map) Reserve(-Cost(kv.first.size(), kv.second.size()));
    n += s.map.size();
    s.map.clear();
  }
  return Num(info, static_cast<double>(n));
}

// kvStats() -> { keys, bytes, maxBytes }
Napi::Value KvStats(const Napi::CallbackInfo& info) {
  size_t keys = 0;
  for (auto& s : shards) {
    std::lock_guard<std::mutex> lock(s.mu);
    keys += s.map.size();
  }
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("keys", static_cast<double>(keys));
  out.Set("bytes", static_cast<double>(used_bytes.load()));
  out.Set("maxBytes", static_cast<double>(max_bytes.load()));
  return out;
}

}  // namespace

void InitKvStore(Napi::Env env, Napi::Object exports) {
  exports.Set("kvGet", Napi::Function::New(env, KvGet, "kvGet"));
  exports.Set("kvSet", Napi::Function::New(env, KvSet, "kvSet"));
  exports.Set("kvDel", Napi::Function::New(env, KvDel, "kvDel"));
  exports.Set("kvIncr", Napi::Function::New(env, KvIncr, "kvIncr"));
  exports.Set("kvConfigure", Napi::Function::New(env, KvConfigure, "kvConfigure"));
  exports.Set("kvClear", Napi::Function::New(env, KvClear, "kvClear"));
  exports.Set("kvStats", Napi::Function::New(env, KvStats, "kvStats"));
}

}  // namespace tcpmod
