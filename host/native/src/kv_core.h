// The in-process key-value store (docs/abi.md §10, §14): plain C++, no N-API.
// One store per process, 64 shards, each a chained hash table of its own
// (power-of-two buckets, so a reverse-binary cursor walks it stably across
// resizes, as Redis' SCAN does) behind its own mutex. Every function is atomic
// on its key. Memory accounting counts what is allocated: each entry's
// malloc'd block (header + key + value, as malloc_usable_size reports it),
// the bucket arrays and the TTL index.
#pragma once
#include <cstddef>
#include <cstdint>

#include "tcpmod_limits.h"

namespace tcpmod {
namespace kv {

// Result codes (docs/abi.md §14). Non-negative results are per function.
constexpr int64_t kMissing = limits::kKvMissing;
constexpr int64_t kFull = limits::kKvFull;
constexpr int64_t kUnavailable = limits::kKvUnavailable;
constexpr int64_t kInvalid = limits::kKvInvalid;
constexpr int64_t kExists = limits::kKvExists;  // NX found the key; compare-and-set found another version
constexpr int64_t kNotInteger = limits::kKvNotInteger;  // incr on a value that is not a canonical i64, or overflow
constexpr int64_t kTooSmall = limits::kKvTooSmall;
constexpr int64_t kNotSent = limits::kKvNotSent;  // kv_send: the write failed  // scan: out cannot hold the next bucket's keys

// kv_set_ex / kv_cas flags.
constexpr int kNX = limits::kKvNx, kXX = limits::kKvXx, kKeepTtl = limits::kKvKeepTtl;
// kv_append flags (kXX as above: only when present).
constexpr int kPrepend = limits::kKvPrepend;
// kv_expire_ex flags beside kNX (no TTL yet) and kXX (a TTL already): only a later / an earlier expiry.
constexpr int kGT = limits::kKvGt, kLT = limits::kKvLt;
// kv_incr_ex flags (kXX: a missing key is -1, nothing is created).
// kv_incr_at flag: subtract, stopping at 0 (else add, wrapping modulo 2^64).
constexpr int kDecr = limits::kKvDecr;

// The longest TTL accepted, in ms (about 2,200 years).
constexpr int64_t kTtlMax = limits::kKvTtlMax;

// The argument checks of Set and Cas (flags and TTL), for a backend other than
// this store (kv_redis.cc) to refuse exactly what this store refuses.
bool ValidSetArgs(int flags, int64_t ttl_ms);
bool ValidCasArgs(int flags, int64_t ttl_ms);
// kv_expire_ex's arguments: a TTL in range and NX, XX, GT, LT combined as Redis 7's EXPIRE allows.
bool ValidExpireArgs(int flags, int64_t ttl_ms);

// A signed decimal as Redis writes it (optional '-', digits only, fits in i64;
// leading zeros allowed). Shared with kv_redis.cc's reply parser.
bool ParseDecimal(const uint8_t* p, size_t n, int64_t* out);

enum class Policy { kNoEviction, kAllKeysLru, kVolatileLru, kAllKeysLfu };

struct Slice {
  const uint8_t* p;
  size_t n;
};

struct Stats {
  int64_t keys, bytes, max_bytes, expired, evicted, with_ttl;
};

// Value length (copied to out only when it fits cap); kMissing. *version (when
// not null) gets the value's version whenever the key is found.
int64_t Get(Slice key, uint8_t* out, size_t cap, uint64_t* version);
// The value's length; copies bytes [offset, offset + cap) of it (as many as
// there are past offset: none when offset >= length) to out, and its version
// to *version (when not null). kMissing; kInvalid (offset < 0).
int64_t GetRange(Slice key, int64_t offset, uint8_t* out, size_t cap, uint64_t* version);
// A value read in place, outside the store's lock (kv_send, docs/abi.md §17.1):
// stored values are never changed in place (a write installs a new entry), so
// the bytes a pin holds are the version's until Unpin, even when the key is
// overwritten or deleted meanwhile (the entry is freed by the last Unpin; the
// budget stops counting it when it leaves the table). Pin for as short as a
// send: a pinned entry outlives its key.
struct Pinned {
  const uint8_t* p;
  size_t len;
  uint64_t version;
  void* node;
  uint64_t hash;
};
// The value's length (p, len and version in *out, pinned); kMissing; kExists
// (version is not 0 and the value's is another: nothing pinned).
int64_t Pin(Slice key, uint64_t version, Pinned* out);
void Unpin(const Pinned& p);
// As Get, and deletes the key, but only when the value fitted (else nothing changes).
int64_t GetDel(Slice key, uint8_t* out, size_t cap);
// 0 stored; kMissing (XX, no key); kExists (NX, key present); kFull; kInvalid.
// ttl_ms 0: no expiry (or, with kKeepTtl, the key's current one).
int64_t Set(Slice key, Slice val, int flags, int64_t ttl_ms);
// 0 stored; kMissing; kExists (version differs); kFull; kInvalid. flags: only kKeepTtl.
int64_t Cas(Slice key, Slice val, int flags, int64_t ttl_ms, uint64_t version);
// 1 deleted; 0 missing.
int64_t Del(Slice key);
// 0 (*out = new value); kMissing (kXX and no key); kNotInteger; kFull; kInvalid. Keeps the TTL.
int64_t Incr(Slice key, int64_t delta, int flags, int64_t* out);
// memcached's incr/decr on the unsigned decimal at value[offset..] (docs/abi.md
// §18): digits (1 to 20, at most 2^64 - 1) then only spaces. Adds delta
// (wrapping modulo 2^64), or with kDecr subtracts it (stopping at 0); the bytes
// before offset are kept, the number is rewritten without padding, the TTL is
// kept. 0 (*out = the new value); kMissing; kNotInteger (no such number there,
// offset past the end included); kFull; kInvalid (offset < 0, unknown flag).
int64_t IncrAt(Slice key, int64_t offset, uint64_t delta, int flags, uint64_t* out);
// The counter kv_incr_at reads (digits, then only spaces), shared with kv_redis.cc's reply check.
bool ParseCounter(const uint8_t* p, size_t n, uint64_t* out);
// New value length; kMissing (kXX and no key); kFull; kInvalid. Keeps the TTL.
int64_t Append(Slice key, Slice val, int flags);
// 0; kMissing; kInvalid (ttl < 0 or > kTtlMax). ttl_ms 0 deletes the key at once.
int64_t Expire(Slice key, int64_t ttl_ms);
// Expire with Redis 7's conditions: kNX only when the key has no TTL, kXX only
// when it has one, kGT only when the new expiry is later, kLT only when it is
// earlier (no TTL counts as an infinite one). 1 set (ttl_ms 0: deleted); 0 the
// condition did not hold (nothing changed); kMissing; kInvalid.
int64_t ExpireIf(Slice key, int64_t ttl_ms, int flags);
// 1 removed a TTL; 0 there was none; kMissing.
int64_t Persist(Slice key);
// 1 (*ms = time left, >= 0); 0 no TTL; kMissing.
int64_t Ttl(Slice key, int64_t* ms);
// Keys starting with prefix, as [u32 LE length][bytes] records at out; returns
// how many; *next = the cursor to pass next (0: the scan is complete).
// kInvalid (cursor < 0, count < 1); kTooSmall (nothing written, cursor unchanged).
int64_t Scan(Slice prefix, int64_t cursor, int32_t count, uint8_t* out, size_t cap, int64_t* next);
// How many keys starting with prefix were deleted.
int64_t DelPrefix(Slice prefix);

// Budget and eviction policy; returns the previous budget.
int64_t Configure(int64_t max_bytes, Policy policy);
int64_t Clear();
Stats GetStats();
// One run of the active expiry: samples keys with a TTL shard by shard and
// deletes the expired ones, for at most budget_us; returns how many it deleted.
int64_t ActiveExpireCycle(int64_t budget_us);
// Test hook: ms >= 0 fixes the store's clock there; < 0 goes back to the real one.
void SetClock(int64_t ms);

}  // namespace kv
}  // namespace tcpmod
