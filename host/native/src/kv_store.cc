// The key-value store's N-API face: one per process (kv_core.h), shared by
// every worker and module instance — unless the calling thread was pointed at a
// Redis server (kv_redis.h, kvBackend): then the v1 calls go to that client and
// the v1.2 calls return -3 (unavailable; docs/abi.md §14 says so).
#include "kv_store.h"

#include <cerrno>
#include <cstdint>
#include <algorithm>
#include <climits>
#include <cstring>
#include <string>

#include "args.h"
#include "kv_core.h"
#include "conn_table.h"
#include "kv_redis.h"

namespace tcpmod {
namespace {

// args.h's reader with the store's slices: Key reads a (buffer, offset, length)
// triple as a kv::Slice of that memory (a key, a value or a prefix).
class KvArgs : public Args {
 public:
  using Args::Args;
  KvArgs& Key(kv::Slice* s) {
    uint8_t* p = nullptr;
    size_t n = 0;
    Region(&p, &n);
    *s = {p, n};
    return *this;
  }
};

// kvSendStored: not done here (the caller's own path sends it).
constexpr int64_t kKvSendFallback = -100;

std::string KeyString(kv::Slice k) { return std::string(reinterpret_cast<const char*>(k.p), k.n); }

Napi::Value Result(const Napi::CallbackInfo& info, int64_t rc) { return Num(info, static_cast<double>(rc)); }

// kvGet(key×3, out×3) -> value length | -1 missing (| -3, Redis unavailable).
Napi::Value KvGet(const Napi::CallbackInfo& info) {
  kv::Slice key;
  uint8_t* out;
  size_t cap;
  if (!KvArgs(info).Key(&key).Region(&out, &cap)) return info.Env().Undefined();
  if (RedisActive()) return Result(info, RedisGet(KeyString(key), out, cap));
  return Result(info, kv::Get(key, out, cap, nullptr));
}

// kvSet(key×3, val×3) -> 0 | -2 full. Clears any TTL (as Redis' SET).
Napi::Value KvSet(const Napi::CallbackInfo& info) {
  kv::Slice key, val;
  if (!KvArgs(info).Key(&key).Key(&val)) return info.Env().Undefined();
  if (RedisActive()) return Result(info, RedisSet(KeyString(key), val.p, val.n, 0, 0));
  return Result(info, kv::Set(key, val, 0, 0));
}

// kvDel(key×3) -> 1 deleted | 0 missing
Napi::Value KvDel(const Napi::CallbackInfo& info) {
  kv::Slice key;
  if (!KvArgs(info).Key(&key)) return info.Env().Undefined();
  if (RedisActive()) return Result(info, RedisDel(KeyString(key)));
  return Result(info, kv::Del(key));
}

// kvIncr(key×3, delta: bigint, outBuf, outOff) -> 0 | -1 (not an integer, overflow) | -2 full.
// The new value is written as a little-endian i64 at out.
Napi::Value KvIncr(const Napi::CallbackInfo& info) {
  kv::Slice key;
  int64_t delta, next = 0;
  uint8_t* out;
  if (!KvArgs(info).Key(&key).I64(&delta).Fixed(8, &out)) return info.Env().Undefined();
  int64_t rc = RedisActive() ? RedisIncr(KeyString(key), delta, 0, &next) : kv::Incr(key, delta, 0, &next);
  if (rc == 0) std::memcpy(out, &next, 8);  // x86-64 and aarch64 are little-endian, as the ABI is
  return Result(info, rc == kv::kNotInteger ? kv::kMissing : rc);
}

// v1.2 (docs/abi.md §14). On a Redis-backed thread each goes to kv_redis.h's twin.

// kvGetVer(key×3, out×3, verBuf, verOff) -> as kvGet; the version (u64 LE) at ver when found.
Napi::Value KvGetVer(const Napi::CallbackInfo& info) {
  kv::Slice key;
  uint8_t *out, *ver;
  size_t cap;
  if (!KvArgs(info).Key(&key).Region(&out, &cap).Fixed(8, &ver)) return info.Env().Undefined();
  uint64_t v = 0;
  int64_t rc = RedisActive() ? RedisGetVer(KeyString(key), out, cap, &v) : kv::Get(key, out, cap, &v);
  if (rc >= 0) std::memcpy(ver, &v, 8);
  return Result(info, rc);
}

// kvGetRange(key×3, offset, out×3, verBuf, verOff) -> the value's length | -1 | -4 (offset < 0);
// bytes [offset, offset + cap) of the value (those there are) at out, the version (u64 LE) at ver when found.
Napi::Value KvGetRange(const Napi::CallbackInfo& info) {
  kv::Slice key;
  int64_t offset;
  uint8_t *out, *ver;
  size_t cap;
  if (!KvArgs(info).Key(&key).I64(&offset).Region(&out, &cap).Fixed(8, &ver)) return info.Env().Undefined();
  uint64_t v = 0;
  int64_t rc = RedisActive() ? RedisGetRange(KeyString(key), offset, out, cap, &v) : kv::GetRange(key, offset, out, cap, &v);
  if (rc >= 0) std::memcpy(ver, &v, 8);
  return Result(info, rc);
}

// A pinned entry given back (ConnWriteStored's release): the node and hash Unpin needs.
void UnpinHeld(void* node, uint64_t hash) { kv::Unpin(kv::Pinned{nullptr, 0, 0, node, hash}); }

// kvSendStored(fd, id, key×3, offset, len, version, head×3, out) -> value bytes
// sent | -1 | -4 | -5 | -8 (the write failed: -errno at out[0]) | -100 (the
// store is Redis: the caller reads the value and sends it itself). kv_send on
// the process store in queued send mode (docs/abi.md §17.1): the value's bytes
// go from the store entry, pinned, not copied, to the socket in one sendmsg
// with the head -- and, on a plain connection with nothing queued, with the
// bytes the event writes next (the pin is held until then, ConnWriteStored);
// only what the socket does not take is copied, into the connection's output queue. out[0] (an Int32Array) gets the bytes queued after it.
Napi::Value KvSendStored(const Napi::CallbackInfo& info) {
  int64_t fd, id, offset, len, version;
  kv::Slice key, head;
  KvArgs args(info);
  args.Int(&fd, &id);
  args.Key(&key).Int(&offset, &len).I64(&version);
  if (!args.Key(&head)) return info.Env().Undefined();
  if (RedisActive()) return Result(info, kKvSendFallback);
  if (offset < 0 || len < 0) return Result(info, kv::kInvalid);
  kv::Pinned pin;
  int64_t rc = kv::Pin(key, static_cast<uint64_t>(version), &pin);
  if (rc < 0) return Result(info, rc);
  const size_t from = std::min<size_t>(static_cast<size_t>(offset), pin.len);
  const size_t n = std::min<size_t>(static_cast<size_t>(len), pin.len - from);
  // The pin goes with the write: the connection may hold it until its next write (ConnWriteStored).
  int64_t w = ConnWriteStored(static_cast<int>(fd), static_cast<uint64_t>(id), head.p, head.n, pin.p + from, n,
                              UnpinHeld, pin.node, pin.hash);
  SetOutInt(info, 10, std::min<int64_t>(w, INT32_MAX));
  return Result(info, w < 0 ? kv::kNotSent : static_cast<int64_t>(n));
}

// kvGetDel(key×3, out×3) -> value length (deleted only when it fitted) | -1.
Napi::Value KvGetDel(const Napi::CallbackInfo& info) {
  kv::Slice key;
  uint8_t* out;
  size_t cap;
  if (!KvArgs(info).Key(&key).Region(&out, &cap)) return info.Env().Undefined();
  if (RedisActive()) return Result(info, RedisGetDel(KeyString(key), out, cap));
  return Result(info, kv::GetDel(key, out, cap));
}

// kvSetEx(key×3, val×3, flags, ttlMs) -> 0 | -1 | -2 | -4 | -5.
Napi::Value KvSetEx(const Napi::CallbackInfo& info) {
  kv::Slice key, val;
  int64_t flags, ttl;
  if (!KvArgs(info).Key(&key).Key(&val).Int(&flags).I64(&ttl)) return info.Env().Undefined();
  if (RedisActive()) return Result(info, RedisSet(KeyString(key), val.p, val.n, static_cast<int>(flags), ttl));
  return Result(info, kv::Set(key, val, static_cast<int>(flags), ttl));
}

// kvCas(key×3, val×3, flags, ttlMs, version) -> 0 | -1 | -2 | -4 | -5.
Napi::Value KvCas(const Napi::CallbackInfo& info) {
  kv::Slice key, val;
  int64_t flags, ttl, version;
  if (!KvArgs(info).Key(&key).Key(&val).Int(&flags).I64(&ttl).I64(&version)) return info.Env().Undefined();
  if (RedisActive())
    return Result(info, RedisCas(KeyString(key), val.p, val.n, static_cast<int>(flags), ttl, static_cast<uint64_t>(version)));
  return Result(info, kv::Cas(key, val, static_cast<int>(flags), ttl, static_cast<uint64_t>(version)));
}

// kvExpire(key×3, ttlMs) -> 0 | -1 | -4.
Napi::Value KvExpire(const Napi::CallbackInfo& info) {
  kv::Slice key;
  int64_t ttl;
  if (!KvArgs(info).Key(&key).I64(&ttl)) return info.Env().Undefined();
  if (RedisActive()) return Result(info, RedisExpire(KeyString(key), ttl));
  return Result(info, kv::Expire(key, ttl));
}

// kvExpireIf(key×3, ttlMs, flags) -> 1 set | 0 the condition did not hold | -1 | -4.
Napi::Value KvExpireIf(const Napi::CallbackInfo& info) {
  kv::Slice key;
  int64_t ttl, flags;
  if (!KvArgs(info).Key(&key).I64(&ttl).Int(&flags)) return info.Env().Undefined();
  if (RedisActive()) return Result(info, RedisExpireIf(KeyString(key), ttl, static_cast<int>(flags)));
  return Result(info, kv::ExpireIf(key, ttl, static_cast<int>(flags)));
}

// kvPersist(key×3) -> 1 | 0 | -1.
Napi::Value KvPersist(const Napi::CallbackInfo& info) {
  kv::Slice key;
  if (!KvArgs(info).Key(&key)) return info.Env().Undefined();
  if (RedisActive()) return Result(info, RedisPersist(KeyString(key)));
  return Result(info, kv::Persist(key));
}

// kvTtl(key×3, outBuf, outOff) -> 1 (ms left, i64 LE at out) | 0 no TTL | -1.
Napi::Value KvTtl(const Napi::CallbackInfo& info) {
  kv::Slice key;
  uint8_t* out;
  if (!KvArgs(info).Key(&key).Fixed(8, &out)) return info.Env().Undefined();
  int64_t ms = 0;
  int64_t rc = RedisActive() ? RedisTtl(KeyString(key), &ms) : kv::Ttl(key, &ms);
  if (rc == 1) std::memcpy(out, &ms, 8);
  return Result(info, rc);
}

// kvAppend(key×3, val×3, flags) -> new length | -1 | -2 | -4.
Napi::Value KvAppend(const Napi::CallbackInfo& info) {
  kv::Slice key, val;
  int64_t flags;
  if (!KvArgs(info).Key(&key).Key(&val).Int(&flags)) return info.Env().Undefined();
  if (RedisActive()) return Result(info, RedisAppend(KeyString(key), val.p, val.n, static_cast<int>(flags)));
  return Result(info, kv::Append(key, val, static_cast<int>(flags)));
}

// kvIncrEx(key×3, delta, flags, outBuf, outOff) -> 0 | -1 | -2 | -4 | -6.
Napi::Value KvIncrEx(const Napi::CallbackInfo& info) {
  kv::Slice key;
  int64_t delta, flags, next = 0;
  uint8_t* out;
  if (!KvArgs(info).Key(&key).I64(&delta).Int(&flags).Fixed(8, &out)) return info.Env().Undefined();
  int64_t rc = RedisActive() ? RedisIncr(KeyString(key), delta, static_cast<int>(flags), &next) : kv::Incr(key, delta, static_cast<int>(flags), &next);
  if (rc == 0) std::memcpy(out, &next, 8);
  return Result(info, rc);
}

// kvIncrAt(key×3, offset, delta, flags, outBuf, outOff) -> 0 (the new value, u64 LE at out) | -1 | -2 | -4 | -6.
Napi::Value KvIncrAt(const Napi::CallbackInfo& info) {
  kv::Slice key;
  int64_t offset, delta, flags;
  uint64_t next = 0;
  uint8_t* out;
  if (!KvArgs(info).Key(&key).I64(&offset).I64(&delta).Int(&flags).Fixed(8, &out)) return info.Env().Undefined();
  const uint64_t d = static_cast<uint64_t>(delta);
  int64_t rc = RedisActive() ? RedisIncrAt(KeyString(key), offset, d, static_cast<int>(flags), &next)
                             : kv::IncrAt(key, offset, d, static_cast<int>(flags), &next);
  if (rc == 0) std::memcpy(out, &next, 8);
  return Result(info, rc);
}

// kvScan(prefix×3, cursor, count, out×3, nextBuf, nextOff) -> keys written | -4 | -7.
Napi::Value KvScan(const Napi::CallbackInfo& info) {
  kv::Slice prefix;
  int64_t cursor, count, next = 0;
  uint8_t *out, *next_out;
  size_t cap;
  if (!KvArgs(info).Key(&prefix).I64(&cursor).Int(&count).Region(&out, &cap).Fixed(8, &next_out)) return info.Env().Undefined();
  if (count > INT32_MAX) count = INT32_MAX;
  int64_t rc = RedisActive() ? RedisScan(KeyString(prefix), cursor, static_cast<int32_t>(count), out, cap, &next)
                             : kv::Scan(prefix, cursor, static_cast<int32_t>(count), out, cap, &next);
  if (rc >= 0) std::memcpy(next_out, &next, 8);
  return Result(info, rc);
}

// kvDelPrefix(prefix×3) -> keys deleted.
Napi::Value KvDelPrefix(const Napi::CallbackInfo& info) {
  kv::Slice prefix;
  if (!KvArgs(info).Key(&prefix)) return info.Env().Undefined();
  if (RedisActive()) return Result(info, RedisDelPrefix(KeyString(prefix)));
  return Result(info, kv::DelPrefix(prefix));
}

// kvConfigure(maxBytes, policy?) -> previous maximum. policy: noeviction (default),
// allkeys-lru, volatile-lru, allkeys-lfu (host/options.ts checked it).
Napi::Value KvConfigure(const Napi::CallbackInfo& info) {
  int64_t max;
  if (!Args(info).Int(&max)) return info.Env().Undefined();
  kv::Policy p = kv::Policy::kNoEviction;
  if (info.Length() > 1 && info[1].IsString()) {
    std::string name = info[1].As<Napi::String>();
    if (name == "allkeys-lru") p = kv::Policy::kAllKeysLru;
    else if (name == "volatile-lru") p = kv::Policy::kVolatileLru;
    else if (name == "allkeys-lfu") p = kv::Policy::kAllKeysLfu;
    else if (name != "noeviction") {
      Napi::RangeError::New(info.Env(), "unknown eviction policy " + name).ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
  }
  return Result(info, kv::Configure(max, p));
}

// kvStats() -> { keys, bytes, maxBytes, expired, evicted, withTtl }
Napi::Value KvStats(const Napi::CallbackInfo& info) {
  kv::Stats st = kv::GetStats();
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("keys", static_cast<double>(st.keys));
  out.Set("bytes", static_cast<double>(st.bytes));
  out.Set("maxBytes", static_cast<double>(st.max_bytes));
  out.Set("expired", static_cast<double>(st.expired));
  out.Set("evicted", static_cast<double>(st.evicted));
  out.Set("withTtl", static_cast<double>(st.with_ttl));
  return out;
}

// kvClock(ms): test hook; ms >= 0 fixes the store's clock, -1 goes back to the real one.
Napi::Value KvClock(const Napi::CallbackInfo& info) {
  int64_t ms;
  if (!Args(info).Int(&ms)) return info.Env().Undefined();
  kv::SetClock(ms);
  return info.Env().Undefined();
}

// The v1 store calls (kv_get, kv_set, kv_del, kv_incr) with the module's memory bound once per thread instead of
// passed as two ArrayBuffer arguments per call (issue 25 item 4: those were
// ~55 of the ~130 ns a kv_get took from WebAssembly, bench/kv-call.mjs).
// kvBindMemory(buffer, 0, byteLength) remembers the memory's base and size for
// the calling thread; the caller (host/module/instance.ts) binds again whenever
// the memory it calls with is not the one bound (another instance, or a grow,
// which makes memory.buffer a new object). The bound calls check every region
// against the bound size: -EFAULT (never expected: the caller checked) outside.
thread_local uint8_t* bound_base = nullptr;
thread_local size_t bound_size = 0;

Napi::Value KvBindMemory(const Napi::CallbackInfo& info) {
  uint8_t* p;
  size_t len;
  if (!Args(info).Region(&p, &len)) return info.Env().Undefined();
  bound_base = p;
  bound_size = len;
  return info.Env().Undefined();
}

bool BoundSlice(uint32_t at, uint32_t len, uint8_t** p) {
  if (bound_base == nullptr || static_cast<uint64_t>(at) + len > bound_size) return false;
  *p = bound_base + at;
  return true;
}

// Four numbers at info[0..3] as u32s (what wasm i32 addresses and lengths are).
// One N-API call each: napi_get_value_uint32 refuses a non-number itself (a napi_typeof first cost ~40 a number).
void ArgsU32(const Napi::CallbackInfo& info, uint32_t (&a)[4], size_t n) {
  for (size_t i = 0; i < n; i++)
    if (napi_get_value_uint32(info.Env(), info[i], &a[i]) != napi_ok) a[i] = UINT32_MAX;
}

// kvGetBound(key, keyLen, out, cap) -> as kvGet | -EFAULT.
Napi::Value KvGetBound(const Napi::CallbackInfo& info) {
  uint32_t a[4];
  ArgsU32(info, a, 4);
  uint8_t *key, *out;
  if (!BoundSlice(a[0], a[1], &key) || !BoundSlice(a[2], a[3], &out)) return Num(info, -EFAULT);
  if (RedisActive()) return Result(info, RedisGet(KeyString({key, a[1]}), out, a[3]));
  return Result(info, kv::Get({key, a[1]}, out, a[3], nullptr));
}

// kvSetBound(key, keyLen, val, valLen) -> as kvSet | -EFAULT.
Napi::Value KvSetBound(const Napi::CallbackInfo& info) {
  uint32_t a[4];
  ArgsU32(info, a, 4);
  uint8_t *key, *val;
  if (!BoundSlice(a[0], a[1], &key) || !BoundSlice(a[2], a[3], &val)) return Num(info, -EFAULT);
  if (RedisActive()) return Result(info, RedisSet(KeyString({key, a[1]}), val, a[3], 0, 0));
  return Result(info, kv::Set({key, a[1]}, {val, a[3]}, 0, 0));
}

// kvDelBound(key, keyLen) -> as kvDel | -EFAULT.
Napi::Value KvDelBound(const Napi::CallbackInfo& info) {
  uint32_t a[4];
  ArgsU32(info, a, 2);
  uint8_t* key;
  if (!BoundSlice(a[0], a[1], &key)) return Num(info, -EFAULT);
  if (RedisActive()) return Result(info, RedisDel(KeyString({key, a[1]})));
  return Result(info, kv::Del({key, a[1]}));
}

// kvIncrBound(key, keyLen, delta: bigint, out) -> as kvIncr | -EFAULT.
Napi::Value KvIncrBound(const Napi::CallbackInfo& info) {
  uint32_t a[4];
  ArgsU32(info, a, 2);
  const uint32_t out_at = info[3].IsNumber() ? info[3].As<Napi::Number>().Uint32Value() : UINT32_MAX;
  int64_t delta, next = 0;
  if (!ArgI64(info, 2, &delta)) return info.Env().Undefined();
  uint8_t *key, *out;
  if (!BoundSlice(a[0], a[1], &key) || !BoundSlice(out_at, 8, &out)) return Num(info, -EFAULT);
  const kv::Slice k{key, a[1]};
  int64_t rc = RedisActive() ? RedisIncr(KeyString(k), delta, 0, &next) : kv::Incr(k, delta, 0, &next);
  if (rc == 0) std::memcpy(out, &next, 8);  // little-endian, as in KvIncr
  return Result(info, rc == kv::kNotInteger ? kv::kMissing : rc);
}

}  // namespace

void InitKvStore(Napi::Env env, Napi::Object exports) {
  struct {
    const char* name;
    Napi::Value (*fn)(const Napi::CallbackInfo&);
  } const fns[] = {
      // kvClear() -> keys deleted; kvExpireCycle(budgetUs) -> keys deleted (the background cycle runs every 100 ms anyway).
      {"kvGet", KvGet},         {"kvSet", KvSet},           {"kvDel", KvDel},       {"kvIncr", KvIncr},
      {"kvGetVer", KvGetVer},   {"kvGetRange", KvGetRange}, {"kvSendStored", KvSendStored}, {"kvGetDel", KvGetDel},     {"kvSetEx", KvSetEx},   {"kvCas", KvCas},
      {"kvExpire", KvExpire}, {"kvExpireIf", KvExpireIf},   {"kvPersist", KvPersist},   {"kvTtl", KvTtl},       {"kvAppend", KvAppend},
      {"kvIncrEx", KvIncrEx},   {"kvIncrAt", KvIncrAt},   {"kvScan", KvScan},         {"kvDelPrefix", KvDelPrefix},
      {"kvConfigure", KvConfigure}, {"kvClear", Ints<kv::Clear>},   {"kvStats", KvStats},
      {"kvExpireCycle", Ints<kv::ActiveExpireCycle>}, {"kvClock", KvClock},
      {"kvBindMemory", KvBindMemory}, {"kvGetBound", KvGetBound}, {"kvSetBound", KvSetBound},
      {"kvDelBound", KvDelBound},     {"kvIncrBound", KvIncrBound},
  };
  for (const auto& f : fns) exports.Set(f.name, Napi::Function::New(env, f.fn, f.name));
}

}  // namespace tcpmod
