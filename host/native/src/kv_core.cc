// The in-process store's core (kv_core.h): hash tables, expiry, eviction.
#include "kv_core.h"

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace tcpmod {
namespace kv {
namespace {

constexpr size_t kShardBits = 6;
constexpr size_t kShards = size_t{1} << kShardBits;
constexpr uint32_t kNoTtl = UINT32_MAX;
constexpr int64_t kNeedSpace = -100;  // internal: the budget is short by g_need bytes
constexpr int kSamples = 5;           // keys sampled per eviction, as Redis' maxmemory-samples
constexpr int kExpireSamples = 20;    // keys with a TTL sampled per round of the active cycle
constexpr int64_t kCycleEveryMs = 100;
constexpr int64_t kCycleBudgetUs = 2500;
constexpr uint8_t kLfuInit = 5;

// One entry, in one malloc'd block: this header, then the key, then the value.
struct Node {
  Node* next;
  uint64_t hash;
  uint64_t version;
  int64_t expire_at;  // store clock ms; 0 = none
  uint32_t ttl_idx;   // index in Shard::ttl, kNoTtl when expire_at is 0
  uint32_t klen;
  uint32_t vlen;
  uint32_t lru;  // LRU: clock ms (wrapping); LFU: minutes << 8 | log counter
  // Senders reading the value outside the shard lock (Pin); under the lock. A
  // node unlinked or replaced while pinned is `doomed`: the last Unpin frees it.
  uint32_t pins;
  uint32_t doomed;
  uint8_t* key() { return reinterpret_cast<uint8_t*>(this + 1); }
  uint8_t* val() { return key() + klen; }
};

struct Shard {
  std::mutex mu;
  Node** buckets = nullptr;
  size_t nb = 0;  // 0 or a power of two
  std::atomic<size_t> size{0};
  std::vector<Node*> ttl;  // every node with an expiry, for sampling
  std::atomic<size_t> ttl_size{0};
};

// Never freed: the active expiry thread may run until the process is gone.
Shard* const shards = new Shard[kShards];
std::atomic<int64_t> used_bytes{0};
std::atomic<int64_t> max_bytes{64ll << 20};
std::atomic<Policy> policy{Policy::kNoEviction};
std::atomic<uint64_t> last_version{0};
std::atomic<int64_t> expired_total{0};
std::atomic<int64_t> evicted_total{0};
std::atomic<int64_t> fake_now{-1};
std::atomic<size_t> cycle_shard{0};
thread_local int64_t g_need = 0;

int64_t Now() {
  int64_t f = fake_now.load(std::memory_order_relaxed);
  if (f >= 0) return f;
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

uint64_t Rand() {
  thread_local uint64_t x = 0x9e3779b97f4a7c15ull ^ std::hash<std::thread::id>{}(std::this_thread::get_id());
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

uint64_t Hash(Slice k) { return std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(k.p), k.n)); }
Shard& ShardOf(uint64_t h) { return shards[h >> (64 - kShardBits)]; }

bool Reserve(int64_t delta) {
  int64_t cur = used_bytes.load();
  for (;;) {
    if (delta > 0 && cur + delta > max_bytes.load()) return false;
    if (used_bytes.compare_exchange_weak(cur, cur + delta)) return true;
  }
}
void Account(int64_t delta) { used_bytes.fetch_add(delta); }
int64_t NodeCost(Node* n) { return static_cast<int64_t>(malloc_usable_size(n)); }

// Frees a node taken out of its table (under its shard's lock), or leaves it to
// the last Unpin when a sender still reads it; the budget no longer counts it either way.
void Drop(Node* n) {
  if (n->pins == 0) {
    free(n);
    return;
  }
  n->doomed = 1;
  n->next = nullptr;
}

uint32_t LfuTouch(uint32_t lru, bool decay_only) {
  uint32_t minutes = static_cast<uint32_t>(Now() / 60000) & 0xffff;
  uint32_t counter = lru & 0xff;
  uint32_t elapsed = (minutes - (lru >> 8)) & 0xffff;
  counter = elapsed >= counter ? 0 : counter - elapsed;
  if (!decay_only && counter < 255) {
    double base = counter > kLfuInit ? counter - kLfuInit : 0;
    double r = static_cast<double>(Rand() >> 11) / static_cast<double>(uint64_t{1} << 53);
    if (r < 1.0 / (base * 10 + 1)) counter++;
  }
  return minutes << 8 | counter;
}

uint32_t FreshLru() {
  if (policy.load(std::memory_order_relaxed) == Policy::kAllKeysLfu) return LfuTouch(kLfuInit, true) | kLfuInit;
  return static_cast<uint32_t>(Now());
}

void Touch(Node* n) {
  if (policy.load(std::memory_order_relaxed) == Policy::kAllKeysLfu) n->lru = LfuTouch(n->lru, false);
  else n->lru = static_cast<uint32_t>(Now());
}

// How good an eviction candidate is: higher goes first.
uint64_t EvictScore(Node* n) {
  if (policy.load(std::memory_order_relaxed) == Policy::kAllKeysLfu) return 255 - (LfuTouch(n->lru, true) & 0xff);
  return static_cast<uint32_t>(static_cast<uint32_t>(Now()) - n->lru);
}

// As Redis: a key is gone once the clock is past its expiry time (at it, PTTL is 0).
bool Expired(Node* n) { return n->expire_at != 0 && Now() > n->expire_at; }

// TTL index bookkeeping; the vector's capacity counts against the budget.
// What Install already reserved for the TTL index's growth (TtlAdd then accounts only the rest),
// so a write with a TTL never takes the store past --kv-max-bytes by the index's doubling.
thread_local int64_t g_ttl_reserved = 0;
// Bytes the TTL index grows by when one more key gets a TTL (std::vector doubles when full).
int64_t TtlGrowth(const Shard& s) {
  size_t cap = s.ttl.capacity();
  return s.ttl.size() < cap ? 0 : static_cast<int64_t>((cap == 0 ? 1 : cap) * sizeof(Node*));
}
void TtlAdd(Shard& s, Node* n) {
  size_t cap = s.ttl.capacity();
  n->ttl_idx = static_cast<uint32_t>(s.ttl.size());
  s.ttl.push_back(n);
  s.ttl_size.store(s.ttl.size(), std::memory_order_relaxed);
  Account(static_cast<int64_t>((s.ttl.capacity() - cap) * sizeof(Node*)) - g_ttl_reserved);
  g_ttl_reserved = 0;
}
void TtlRemove(Shard& s, Node* n) {
  Node* last = s.ttl.back();
  s.ttl[n->ttl_idx] = last;
  last->ttl_idx = n->ttl_idx;
  s.ttl.pop_back();
  s.ttl_size.store(s.ttl.size(), std::memory_order_relaxed);
  n->ttl_idx = kNoTtl;
  if (s.ttl.empty()) {  // give the index back: an empty store holds nothing against the budget
    Account(-static_cast<int64_t>(s.ttl.capacity() * sizeof(Node*)));
    std::vector<Node*>().swap(s.ttl);
  }
}
void SetExpiry(Shard& s, Node* n, int64_t at) {
  if (at != 0 && n->ttl_idx == kNoTtl) TtlAdd(s, n);
  if (at == 0 && n->ttl_idx != kNoTtl) TtlRemove(s, n);
  n->expire_at = at;
}

void Resize(Shard& s, size_t nb) {
  int64_t delta = static_cast<int64_t>((nb - s.nb) * sizeof(Node*));
  // Growing the table past the budget is skipped (chains get longer); shrinking always works.
  if (!Reserve(delta)) return;
  Node** b = static_cast<Node**>(calloc(nb, sizeof(Node*)));
  if (b == nullptr) {
    Account(-delta);
    return;
  }
  for (size_t i = 0; i < s.nb; i++) {
    for (Node* n = s.buckets[i]; n != nullptr;) {
      Node* next = n->next;
      Node** slot = &b[n->hash & (nb - 1)];
      n->next = *slot;
      *slot = n;
      n = next;
    }
  }
  free(s.buckets);
  s.buckets = b;
  s.nb = nb;
}

// The link that points at key's node, or at the end of its chain (never null
// once the shard has buckets). Expired nodes are found too; callers decide.
Node** Slot(Shard& s, uint64_t h, Slice key) {
  if (s.nb == 0) Resize(s, 8);
  if (s.nb == 0) {  // no table, and the budget cannot take one: a write needs that much room
    g_need = 8 * sizeof(Node*);
    return nullptr;
  }
  Node** slot = &s.buckets[h & (s.nb - 1)];
  while (*slot != nullptr) {
    Node* n = *slot;
    if (n->hash == h && n->klen == key.n && std::memcmp(n->key(), key.p, key.n) == 0) return slot;
    slot = &n->next;
  }
  return slot;
}

void Unlink(Shard& s, Node** slot) {
  Node* n = *slot;
  *slot = n->next;
  if (n->ttl_idx != kNoTtl) TtlRemove(s, n);
  Account(-NodeCost(n));
  Drop(n);
  size_t size = s.size.fetch_sub(1, std::memory_order_relaxed) - 1;
  if (size == 0) {  // an empty shard gives its table back (Slot makes a new one when needed)
    Account(-static_cast<int64_t>(s.nb * sizeof(Node*)));
    free(s.buckets);
    s.buckets = nullptr;
    s.nb = 0;
  } else if (s.nb > 8 && size < s.nb / 8) {
    Resize(s, s.nb / 2);
  }
}

// The link to key's node (or to the end of its chain) and, in *live, that node
// unless it is missing or has expired (then it is deleted first: lazy expiry).
// Null (and *live null) when the shard has no table and could not get one.
Node** Lookup(Shard& s, uint64_t h, Slice key, Node** live) {
  Node** slot = Slot(s, h, key);
  *live = nullptr;
  if (slot == nullptr || *slot == nullptr) return slot;
  if (!Expired(*slot)) {
    *live = *slot;
    return slot;
  }
  Unlink(s, slot);
  expired_total.fetch_add(1, std::memory_order_relaxed);
  return Slot(s, h, key);  // the unlink may have resized the table
}

// The live node of key for a read: no table is made for a lookup.
Node* Find(Shard& s, uint64_t h, Slice key) {
  if (s.nb == 0) return nullptr;
  Node* n;
  Lookup(s, h, key, &n);
  return n;
}

// Puts key = a + b at *slot, replacing old (null: a new key); expire_at as given.
// kNeedSpace when the budget is short (nothing changed), kFull when malloc fails.
int64_t Install(Shard& s, Node** slot, uint64_t h, Slice key, Slice a, Slice b, int64_t expire_at) {
  Node* old = *slot;
  size_t vlen = a.n + b.n;
  if (vlen > UINT32_MAX || key.n > UINT32_MAX) return kInvalid;
  Node* n = static_cast<Node*>(malloc(sizeof(Node) + key.n + vlen));
  if (n == nullptr) return kFull;
  const int64_t ttl_growth = expire_at != 0 && (old == nullptr || old->ttl_idx == kNoTtl) ? TtlGrowth(s) : 0;
  int64_t delta = NodeCost(n) - (old ? NodeCost(old) : 0) + ttl_growth;
  if (!Reserve(delta)) {
    g_need = delta;
    free(n);
    return kNeedSpace;
  }
  g_ttl_reserved = ttl_growth;
  n->hash = h;
  n->version = ++last_version;
  n->expire_at = 0;
  n->ttl_idx = kNoTtl;
  n->pins = n->doomed = 0;
  n->klen = static_cast<uint32_t>(key.n);
  n->vlen = static_cast<uint32_t>(vlen);
  if (key.n) std::memcpy(n->key(), key.p, key.n);
  if (a.n) std::memcpy(n->val(), a.p, a.n);
  if (b.n) std::memcpy(n->val() + a.n, b.p, b.n);
  if (old) {
    n->next = old->next;
    n->lru = old->lru;
    Touch(n);
    if (old->ttl_idx != kNoTtl) {
      n->ttl_idx = old->ttl_idx;
      n->expire_at = old->expire_at;
      s.ttl[n->ttl_idx] = n;
    }
    *slot = n;
    Drop(old);
  } else {
    n->next = nullptr;
    n->lru = FreshLru();
    *slot = n;
    size_t size = s.size.fetch_add(1, std::memory_order_relaxed) + 1;
    if (size > s.nb) Resize(s, s.nb * 2);
  }
  SetExpiry(s, n, expire_at);
  return 0;
}

// Eviction candidates kept between evictions, best last, as Redis' eviction
// pool: each eviction samples kSamples keys into it and takes its best, so the
// choice is the best of many samples, not of one handful.
struct Candidate {
  uint64_t score;
  uint64_t hash;
  std::string key;
};
constexpr size_t kPoolSize = 16;
std::mutex pool_mu;
std::vector<Candidate>* const pool = new std::vector<Candidate>();

// Deletes one key chosen as the policy says; false when nothing can be evicted.
bool EvictOne() {
  Policy p = policy.load();
  bool volatile_only = p == Policy::kVolatileLru;
  std::lock_guard<std::mutex> pool_lock(pool_mu);
  bool sampled = false;
  for (int i = 0; i < kSamples; i++) {
    size_t start = Rand() % kShards;
    for (size_t j = 0; j < kShards; j++) {
      Shard& s = shards[(start + j) % kShards];
      if ((volatile_only ? s.ttl_size : s.size).load(std::memory_order_relaxed) == 0) continue;
      std::lock_guard<std::mutex> lock(s.mu);
      Node* n = nullptr;
      if (volatile_only) {
        if (!s.ttl.empty()) n = s.ttl[Rand() % s.ttl.size()];
      } else if (s.nb != 0) {
        size_t b = Rand() & (s.nb - 1);
        for (size_t k = 0; k < s.nb && n == nullptr; k++) n = s.buckets[(b + k) & (s.nb - 1)];
        size_t len = 0;
        for (Node* c = n; c; c = c->next) len++;
        for (size_t k = len ? Rand() % len : 0; k > 0; k--) n = n->next;
      }
      if (n == nullptr) continue;
      sampled = true;
      Candidate c{Expired(n) ? UINT64_MAX : EvictScore(n), n->hash, std::string(reinterpret_cast<char*>(n->key()), n->klen)};
      bool dup = false;
      for (auto& e : *pool) {
        if (e.hash == c.hash && e.key == c.key) {
          e.score = c.score;  // seen again: its score now
          dup = true;
        }
      }
      if (!dup) pool->push_back(std::move(c));
      break;
    }
    if (!sampled) break;  // a whole walk found nothing to evict
  }
  std::sort(pool->begin(), pool->end(), [](const Candidate& a, const Candidate& b) { return a.score < b.score; });
  if (pool->size() > kPoolSize) pool->erase(pool->begin(), pool->end() - kPoolSize);
  while (!pool->empty()) {
    Candidate best = std::move(pool->back());
    pool->pop_back();
    Shard& s = ShardOf(best.hash);
    std::lock_guard<std::mutex> lock(s.mu);
    Node** slot = s.nb ? Slot(s, best.hash, {reinterpret_cast<const uint8_t*>(best.key.data()), best.key.size()}) : nullptr;
    if (slot == nullptr || *slot == nullptr) continue;  // gone meanwhile: the next candidate
    if (volatile_only && (*slot)->ttl_idx == kNoTtl) continue;
    (Expired(*slot) ? expired_total : evicted_total).fetch_add(1, std::memory_order_relaxed);
    Unlink(s, slot);
    return true;
  }
  return sampled;  // nothing deleted but keys exist: the caller samples again
}

// Runs a write op; when it is short of budget, evicts (as the policy allows) and retries.
template <typename Op>
int64_t Write(Op op) {
  for (int round = 0;; round++) {
    int64_t rc = op();
    if (rc != kNeedSpace) return rc;
    if (policy.load() == Policy::kNoEviction || g_need > max_bytes.load() || round > 1000000) return kFull;
    int64_t need = g_need;
    for (int tries = 0; used_bytes.load() + need > max_bytes.load(); tries++) {
      if (tries > 1000000 || !EvictOne()) return kFull;
    }
  }
}

// Write for one key: op(s, h, slot, n) runs under the key's shard lock with the
// key's slot looked up (slot null: no room for a new key; n null: no such key).
template <typename Op>
int64_t WriteKey(Slice key, Op op) {
  uint64_t h = Hash(key);
  Shard& s = ShardOf(h);
  return Write([&]() -> int64_t {
    std::lock_guard<std::mutex> lock(s.mu);
    Node* n;
    Node** slot = Lookup(s, h, key, &n);
    return op(s, h, slot, n);
  });
}

// op(s, slot, n) under the key's shard lock when the key exists, else `missing`
// (a shard without a table is not looked into: Lookup would allocate one).
template <typename Op>
int64_t WithKey(Slice key, int64_t missing, Op op) {
  uint64_t h = Hash(key);
  Shard& s = ShardOf(h);
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.nb == 0) return missing;
  Node* n;
  Node** slot = Lookup(s, h, key, &n);
  if (n == nullptr) return missing;
  return op(s, slot, n);
}

// Persist and Ttl: kMissing when the key does not exist, 0 when it has no TTL,
// else op(s, n) under the key's shard lock and 1.
template <typename Op>
int64_t WithTtl(Slice key, Op op) {
  uint64_t h = Hash(key);
  Shard& s = ShardOf(h);
  std::lock_guard<std::mutex> lock(s.mu);
  Node* n = Find(s, h, key);
  if (!n) return kMissing;
  if (n->expire_at == 0) return 0;
  op(s, n);
  return 1;
}

void EnsureCycleThread() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::thread([] {
      for (;;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(kCycleEveryMs));
        ActiveExpireCycle(kCycleBudgetUs);
      }
    }).detach();
  });
}

// The expiry a set-like call asks for: 0 none, -1 keep, else the absolute time; kInvalid as a flag.
bool ExpiryFor(int flags, int64_t ttl_ms, int64_t* at) {
  if (ttl_ms < 0 || ttl_ms > kTtlMax) return false;
  if (flags & kKeepTtl) {
    if (ttl_ms != 0) return false;
    *at = -1;
    return true;
  }
  *at = ttl_ms == 0 ? 0 : Now() + ttl_ms;
  if (*at != 0) EnsureCycleThread();
  return true;
}

// Canonical i64 decimal, as Redis' INCR accepts it: a decimal without a
// leading zero and not "-0".
bool ParseI64(const uint8_t* p, size_t n, int64_t* out) {
  size_t i = n > 0 && p[0] == '-' ? 1 : 0;
  if (i < n && p[i] == '0' && (n > i + 1 || i == 1)) return false;
  return ParseDecimal(p, n, out);
}

uint64_t Reverse(uint64_t v) {
  v = ((v >> 1) & 0x5555555555555555ull) | ((v & 0x5555555555555555ull) << 1);
  v = ((v >> 2) & 0x3333333333333333ull) | ((v & 0x3333333333333333ull) << 2);
  v = ((v >> 4) & 0x0f0f0f0f0f0f0f0full) | ((v & 0x0f0f0f0f0f0f0f0full) << 4);
  return __builtin_bswap64(v);
}

bool HasPrefix(Node* n, Slice prefix) { return n->klen >= prefix.n && std::memcmp(n->key(), prefix.p, prefix.n) == 0; }

constexpr Slice kEmpty{nullptr, 0};

}  // namespace

int64_t Get(Slice key, uint8_t* out, size_t cap, uint64_t* version) {
  uint64_t h = Hash(key);
  Shard& s = ShardOf(h);
  std::lock_guard<std::mutex> lock(s.mu);
  Node* n = Find(s, h, key);
  if (n == nullptr) return kMissing;
  Touch(n);
  if (n->vlen <= cap && n->vlen) std::memcpy(out, n->val(), n->vlen);
  if (version) *version = n->version;
  return n->vlen;
}

int64_t GetRange(Slice key, int64_t offset, uint8_t* out, size_t cap, uint64_t* version) {
  if (offset < 0) return kInvalid;
  uint64_t h = Hash(key);
  Shard& s = ShardOf(h);
  std::lock_guard<std::mutex> lock(s.mu);
  Node* n = Find(s, h, key);
  if (n == nullptr) return kMissing;
  Touch(n);
  if (static_cast<uint64_t>(offset) < n->vlen) {
    size_t take = std::min<size_t>(cap, n->vlen - static_cast<size_t>(offset));
    if (take) std::memcpy(out, n->val() + offset, take);
  }
  if (version) *version = n->version;
  return n->vlen;
}

int64_t Pin(Slice key, uint64_t version, Pinned* out) {
  uint64_t h = Hash(key);
  Shard& s = ShardOf(h);
  std::lock_guard<std::mutex> lock(s.mu);
  Node* n = Find(s, h, key);
  if (n == nullptr) return kMissing;
  if (version != 0 && n->version != version) return kExists;
  Touch(n);
  n->pins++;
  *out = Pinned{n->val(), n->vlen, n->version, n, h};
  return n->vlen;
}

void Unpin(const Pinned& p) {
  Node* n = static_cast<Node*>(p.node);
  Shard& s = ShardOf(p.hash);
  std::lock_guard<std::mutex> lock(s.mu);
  assert(n->pins > 0);
  if (--n->pins == 0 && n->doomed) free(n);
}

int64_t GetDel(Slice key, uint8_t* out, size_t cap) {
  return WithKey(key, kMissing, [&](Shard& s, Node** slot, Node* n) -> int64_t {
    int64_t len = n->vlen;
    if (n->vlen > cap) return len;
    if (n->vlen) std::memcpy(out, n->val(), n->vlen);
    Unlink(s, slot);
    return len;
  });
}

bool ParseDecimal(const uint8_t* p, size_t n, int64_t* out) {
  size_t i = 0;
  bool neg = n > 0 && p[0] == '-';
  if (neg) i = 1;
  if (i == n || n > 20) return false;
  int64_t v = 0;
  for (; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return false;
    int d = p[i] - '0';
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, neg ? -d : d, &v)) return false;
  }
  *out = v;
  return true;
}

bool ValidTtl(int flags, int64_t ttl_ms) { return ttl_ms >= 0 && ttl_ms <= kTtlMax && !(flags & kKeepTtl && ttl_ms != 0); }

bool ValidSetArgs(int flags, int64_t ttl_ms) {
  return !(flags & ~(kNX | kXX | kKeepTtl)) && !(flags & kNX && flags & kXX) && ValidTtl(flags, ttl_ms);
}

bool ValidCasArgs(int flags, int64_t ttl_ms) { return !(flags & ~kKeepTtl) && ValidTtl(flags, ttl_ms); }

int64_t Set(Slice key, Slice val, int flags, int64_t ttl_ms) {
  int64_t at;
  if (!ValidSetArgs(flags, ttl_ms) || !ExpiryFor(flags, ttl_ms, &at)) return kInvalid;
  return WriteKey(key, [&](Shard& s, uint64_t h, Node** slot, Node* n) -> int64_t {
    if (slot == nullptr) return kNeedSpace;
    if (flags & kNX && n) return kExists;
    if (flags & kXX && !n) return kMissing;
    return Install(s, slot, h, key, val, kEmpty, at == -1 ? (n ? n->expire_at : 0) : at);
  });
}

int64_t Cas(Slice key, Slice val, int flags, int64_t ttl_ms, uint64_t version) {
  int64_t at;
  if (!ValidCasArgs(flags, ttl_ms) || !ExpiryFor(flags, ttl_ms, &at)) return kInvalid;
  return WriteKey(key, [&](Shard& s, uint64_t h, Node** slot, Node* n) -> int64_t {
    if (!n) return kMissing;
    if (n->version != version) return kExists;
    return Install(s, slot, h, key, val, kEmpty, at == -1 ? n->expire_at : at);
  });
}

int64_t Del(Slice key) {
  return WithKey(key, 0, [](Shard& s, Node** slot, Node*) -> int64_t {
    Unlink(s, slot);
    return 1;
  });
}

int64_t Incr(Slice key, int64_t delta, int flags, int64_t* out) {
  if (flags & ~kXX) return kInvalid;
  return WriteKey(key, [&](Shard& s, uint64_t h, Node** slot, Node* n) -> int64_t {
    if (slot == nullptr) return kNeedSpace;
    if (!n && flags & kXX) return kMissing;
    int64_t cur = 0, next;
    if (n && !ParseI64(n->val(), n->vlen, &cur)) return kNotInteger;
    if (__builtin_add_overflow(cur, delta, &next)) return kNotInteger;
    std::string text = std::to_string(next);
    int64_t rc = Install(s, slot, h, key, {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, kEmpty, n ? n->expire_at : 0);
    if (rc == 0) *out = next;
    return rc;
  });
}

bool ParseCounter(const uint8_t* p, size_t n, uint64_t* out) {
  while (n > 0 && p[n - 1] == ' ') n--;
  if (n == 0 || n > 20) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return false;
    if (__builtin_mul_overflow(v, 10u, &v) || __builtin_add_overflow(v, static_cast<uint64_t>(p[i] - '0'), &v)) return false;
  }
  *out = v;
  return true;
}

static uint64_t CounterStep(uint64_t cur, uint64_t delta, int flags) {
  if (flags & kDecr) return cur < delta ? 0 : cur - delta;
  return cur + delta;  // wraps modulo 2^64, as memcached's incr
}

int64_t IncrAt(Slice key, int64_t offset, uint64_t delta, int flags, uint64_t* out) {
  if (offset < 0 || (flags & ~kDecr)) return kInvalid;
  return WriteKey(key, [&](Shard& s, uint64_t h, Node** slot, Node* n) -> int64_t {
    if (slot == nullptr || n == nullptr) return kMissing;
    uint64_t cur;
    if (static_cast<uint64_t>(offset) > n->vlen || !ParseCounter(n->val() + offset, n->vlen - offset, &cur)) return kNotInteger;
    const uint64_t next = CounterStep(cur, delta, flags);
    std::string text = std::to_string(next);
    int64_t rc = Install(s, slot, h, key, {n->val(), static_cast<size_t>(offset)},
                         {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, n->expire_at);
    if (rc == 0) *out = next;
    return rc;
  });
}

int64_t Append(Slice key, Slice val, int flags) {
  if (flags & ~(kPrepend | kXX)) return kInvalid;
  return WriteKey(key, [&](Shard& s, uint64_t h, Node** slot, Node* n) -> int64_t {
    if (slot == nullptr) return kNeedSpace;
    if (!n && flags & kXX) return kMissing;
    Slice cur = n ? Slice{n->val(), n->vlen} : kEmpty;
    if (cur.n + val.n > INT32_MAX) return kFull;
    int64_t rc = flags & kPrepend ? Install(s, slot, h, key, val, cur, n ? n->expire_at : 0)
                                  : Install(s, slot, h, key, cur, val, n ? n->expire_at : 0);
    return rc == 0 ? static_cast<int64_t>(cur.n + val.n) : rc;
  });
}

int64_t Expire(Slice key, int64_t ttl_ms) {
  if (ttl_ms < 0 || ttl_ms > kTtlMax) return kInvalid;
  return WithKey(key, kMissing, [&](Shard& s, Node** slot, Node* n) -> int64_t {
    if (ttl_ms == 0) {
      Unlink(s, slot);
      return 0;
    }
    EnsureCycleThread();
    SetExpiry(s, n, Now() + ttl_ms);
    return 0;
  });
}

bool ValidExpireArgs(int flags, int64_t ttl_ms) {
  if (ttl_ms < 0 || ttl_ms > kTtlMax || (flags & ~(kNX | kXX | kGT | kLT)) != 0) return false;
  if ((flags & kNX) && (flags & (kXX | kGT | kLT))) return false;
  return !((flags & kGT) && (flags & kLT));
}

int64_t ExpireIf(Slice key, int64_t ttl_ms, int flags) {
  if (!ValidExpireArgs(flags, ttl_ms)) return kInvalid;
  return WithKey(key, kMissing, [&](Shard& s, Node** slot, Node* n) -> int64_t {
    int64_t at = Now() + ttl_ms;
    int64_t cur = n->expire_at;  // 0: none, an infinite TTL to GT and LT
    if ((flags & kNX) && cur != 0) return 0;
    if ((flags & kXX) && cur == 0) return 0;
    if ((flags & kGT) && (cur == 0 || at <= cur)) return 0;
    if ((flags & kLT) && cur != 0 && at >= cur) return 0;
    if (ttl_ms == 0) {
      Unlink(s, slot);
      return 1;
    }
    EnsureCycleThread();
    SetExpiry(s, n, at);
    return 1;
  });
}

int64_t Persist(Slice key) {
  return WithTtl(key, [](Shard& s, Node* n) { SetExpiry(s, n, 0); });
}

int64_t Ttl(Slice key, int64_t* ms) {
  return WithTtl(key, [&](Shard&, Node* n) { *ms = n->expire_at - Now(); });
}

int64_t Scan(Slice prefix, int64_t cursor, int32_t count, uint8_t* out, size_t cap, int64_t* next) {
  if (cursor < 0 || count < 1) return kInvalid;
  size_t shard = static_cast<uint64_t>(cursor) & (kShards - 1);
  uint64_t v = static_cast<uint64_t>(cursor) >> kShardBits;
  int64_t keys = 0;
  size_t used = 0;
  int64_t visits = 0, max_visits = int64_t{count} * 10;
  while (shard < kShards && keys < count && visits < max_visits) {
    Shard& s = shards[shard];
    std::lock_guard<std::mutex> lock(s.mu);
    bool done = s.nb == 0;
    while (!done && keys < count && visits < max_visits) {
      uint64_t mask = s.nb - 1;
      size_t need = 0;
      int64_t now = Now();
      for (Node* n = s.buckets[v & mask]; n; n = n->next)
        if (HasPrefix(n, prefix) && !(n->expire_at && now > n->expire_at)) need += 4 + n->klen;
      if (used + need > cap) {
        if (keys == 0) return kTooSmall;
        *next = static_cast<int64_t>(v << kShardBits | shard);
        return keys;
      }
      for (Node* n = s.buckets[v & mask]; n; n = n->next) {
        if (!HasPrefix(n, prefix) || (n->expire_at && now > n->expire_at)) continue;
        uint32_t len = n->klen;
        std::memcpy(out + used, &len, 4);
        std::memcpy(out + used + 4, n->key(), len);
        used += 4 + len;
        keys++;
      }
      visits++;
      // Redis' reverse-binary increment: every bucket present for the whole
      // scan is visited even when the table doubles or halves in between.
      v |= ~mask;
      v = Reverse(Reverse(v) + 1);
      done = v == 0;
    }
    if (done) {
      shard++;
      v = 0;
      visits++;
    }
  }
  *next = shard >= kShards ? 0 : static_cast<int64_t>(v << kShardBits | shard);
  return keys;
}

int64_t DelPrefix(Slice prefix) {
  int64_t deleted = 0;
  for (size_t i = 0; i < kShards; i++) {
    Shard& s = shards[i];
    std::lock_guard<std::mutex> lock(s.mu);
    for (size_t b = 0; b < s.nb; b++) {
      Node** slot = &s.buckets[b];
      while (*slot) {
        if (!HasPrefix(*slot, prefix)) {
          slot = &(*slot)->next;
          continue;
        }
        size_t nb = s.nb;
        Unlink(s, slot);
        deleted++;
        if (s.nb != nb) {  // the table shrank: start this shard again
          b = SIZE_MAX;
          break;
        }
      }
    }
  }
  return deleted;
}

int64_t Configure(int64_t max, Policy p) {
  policy.store(p);
  return max_bytes.exchange(max);
}

int64_t Clear() {
  int64_t n = 0;
  for (size_t i = 0; i < kShards; i++) {
    Shard& s = shards[i];
    std::lock_guard<std::mutex> lock(s.mu);
    for (size_t b = 0; b < s.nb; b++) {
      for (Node* node = s.buckets[b]; node;) {
        Node* next = node->next;
        Account(-NodeCost(node));
        Drop(node);
        node = next;
        n++;
      }
    }
    Account(-static_cast<int64_t>(s.nb * sizeof(Node*) + s.ttl.capacity() * sizeof(Node*)));
    free(s.buckets);
    s.buckets = nullptr;
    s.nb = 0;
    s.size.store(0);
    std::vector<Node*>().swap(s.ttl);
    s.ttl_size.store(0);
  }
  return n;
}

Stats GetStats() {
  Stats st{0, used_bytes.load(), max_bytes.load(), expired_total.load(), evicted_total.load(), 0};
  for (size_t i = 0; i < kShards; i++) {
    st.keys += static_cast<int64_t>(shards[i].size.load());
    st.with_ttl += static_cast<int64_t>(shards[i].ttl_size.load());
  }
  return st;
}

int64_t ActiveExpireCycle(int64_t budget_us) {
  auto start = std::chrono::steady_clock::now();
  auto over = [&] { return std::chrono::steady_clock::now() - start > std::chrono::microseconds(budget_us); };
  int64_t deleted = 0;
  for (size_t i = 0; i < kShards && !over(); i++) {
    Shard& s = shards[cycle_shard.fetch_add(1) % kShards];
    if (s.ttl_size.load(std::memory_order_relaxed) == 0) continue;
    std::lock_guard<std::mutex> lock(s.mu);
    // As Redis: sample; go on with this shard while over a quarter of a sample had expired.
    for (;;) {
      int found = 0, sampled = 0;
      int64_t now = Now();
      for (; sampled < kExpireSamples && !s.ttl.empty(); sampled++) {
        Node* n = s.ttl[Rand() % s.ttl.size()];
        if (n->expire_at >= now) continue;
        Unlink(s, Slot(s, n->hash, {n->key(), n->klen}));
        found++;
      }
      deleted += found;
      expired_total.fetch_add(found, std::memory_order_relaxed);
      if (found * 4 <= sampled || s.ttl.empty() || over()) break;
    }
  }
  return deleted;
}

void SetClock(int64_t ms) { fake_now.store(ms); }

}  // namespace kv
}  // namespace tcpmod
