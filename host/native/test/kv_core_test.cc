// sources: kv_core.cc
// The in-process store's core without Node: scan stability across resizes,
// expiry on a fixed clock, eviction within the budget, concurrent CAS.
#include "kv_core.h"

#include "check.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace tcpmod::kv;

static Slice S(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

// Every key of a scan, calling between(i) after each call.
template <typename F>
static std::multiset<std::string> ScanAll(const std::string& prefix, int count, F between) {
  std::multiset<std::string> seen;
  std::vector<uint8_t> out(1 << 16);
  int64_t cursor = 0;
  for (int call = 0; call < 1000000; call++) {
    int64_t next = -1;
    int64_t n = Scan(S(prefix), cursor, count, out.data(), out.size(), &next);
    if (n < 0) {
      std::printf("scan returned %lld\n", static_cast<long long>(n));
      break;
    }
    size_t at = 0;
    for (int64_t i = 0; i < n; i++) {
      uint32_t len;
      std::memcpy(&len, out.data() + at, 4);
      seen.insert(std::string(reinterpret_cast<char*>(out.data()) + at + 4, len));
      at += 4 + len;
    }
    between(call);
    if (next == 0) break;
    cursor = next;
  }
  return seen;
}

int main() {
  Configure(1ll << 30, Policy::kNoEviction);

  // Scan: every key present for the whole scan comes back, though the tables
  // double (inserts) and halve (deletes) between calls.
  Clear();
  for (int i = 0; i < 2000; i++) Set(S("k" + std::to_string(i)), S("v"), 0, 0);
  auto seen = ScanAll("k", 10, [](int call) {
    if (call == 5)
      for (int i = 0; i < 20000; i++) Set(S("g" + std::to_string(i)), S("v"), 0, 0);
    if (call == 40) DelPrefix(S("g"));
  });
  std::set<std::string> unique(seen.begin(), seen.end());
  CHECK(unique.size() == 2000);
  bool all = true;
  for (int i = 0; i < 2000; i++) all = all && unique.count("k" + std::to_string(i));
  CHECK(all);
  CHECK(GetStats().keys == 2000);

  // Expiry exact on a fixed clock: alive at its expiry time, gone 1 ms later.
  Clear();
  SetClock(1000000);
  CHECK(Set(S("t"), S("x"), 0, 500) == 0);
  int64_t ms = -1;
  CHECK(Ttl(S("t"), &ms) == 1 && ms == 500);
  SetClock(1000500);
  CHECK(Get(S("t"), nullptr, 0, nullptr) == 1);
  SetClock(1000501);
  int64_t expired_before = GetStats().expired;
  CHECK(Get(S("t"), nullptr, 0, nullptr) == kMissing);
  CHECK(GetStats().expired == expired_before + 1);
  // The active cycle removes keys nobody reads again.
  for (int i = 0; i < 1000; i++) Set(S("e" + std::to_string(i)), S("x"), 0, 10);
  SetClock(1000600);
  for (int i = 0; i < 100 && GetStats().keys > 0; i++) ActiveExpireCycle(100000);
  CHECK(GetStats().keys == 0);
  SetClock(-1);

  // Eviction: the budget holds and no write is refused that eviction can make room for.
  Clear();
  Configure(200000, Policy::kAllKeysLru);
  int refused = 0;
  for (int i = 0; i < 20000; i++)
    if (Set(S("lru" + std::to_string(i)), S(std::string(100, 'x')), 0, 0) != 0) refused++;
  CHECK(refused == 0);
  CHECK(GetStats().bytes <= 200000);
  CHECK(GetStats().evicted > 0);
  CHECK(Set(S("huge"), S(std::string(300000, 'x')), 0, 0) == kFull);
  // volatile-lru with no key that has a TTL: nothing to evict, so -2.
  Clear();
  Configure(20000, Policy::kVolatileLru);
  int64_t rc = 0;
  for (int i = 0; i < 1000 && rc == 0; i++) rc = Set(S("p" + std::to_string(i)), S(std::string(100, 'x')), 0, 0);
  CHECK(rc == kFull);
  Configure(1ll << 30, Policy::kNoEviction);

  // Compare-and-set from 4 threads x 2000 increments ends exact.
  Clear();
  Set(S("c"), S("0"), 0, 0);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; t++)
    ts.emplace_back([] {
      for (int i = 0; i < 2000; i++) {
        for (;;) {
          uint8_t buf[32];
          uint64_t ver;
          int64_t n = Get(S("c"), buf, sizeof buf, &ver);
          std::string next = std::to_string(std::stoll(std::string(reinterpret_cast<char*>(buf), n)) + 1);
          if (Cas(S("c"), S(next), 0, 0, ver) == 0) break;
        }
      }
    });
  for (auto& t : ts) t.join();
  uint8_t buf[32];
  int64_t n = Get(S("c"), buf, sizeof buf, nullptr);
  CHECK(std::string(reinterpret_cast<char*>(buf), n) == "8000");

  // IncrAt from 4 threads (3 adding 1 3000 times, 1 subtracting 1 1000 times from a start of 1000,
  // so never reaching 0), on the number after a 4-byte header: exact, the header kept; a decr past 0
  // stops there, an incr past 2^64 - 1 wraps.
  Clear();
  Set(S("m"), S("HEAD1000"), 0, 0);
  std::vector<std::thread> adders;
  for (int t = 0; t < 4; t++)
    adders.emplace_back([t] {
      uint64_t v;
      for (int i = 0; i < (t == 3 ? 1000 : 3000); i++) IncrAt(S("m"), 4, 1, t == 3 ? kDecr : 0, &v);
    });
  for (auto& t : adders) t.join();
  n = Get(S("m"), buf, sizeof buf, nullptr);
  CHECK(std::string(reinterpret_cast<char*>(buf), n) == "HEAD9000");
  uint64_t v = 7;
  CHECK(IncrAt(S("m"), 4, 1ull << 63, kDecr, &v) == 0 && v == 0);
  CHECK(IncrAt(S("m"), 4, ~0ull, 0, &v) == 0 && v == ~0ull);
  CHECK(IncrAt(S("m"), 4, 5, 0, &v) == 0 && v == 4);
  CHECK(IncrAt(S("m"), 0, 1, 0, &v) == kNotInteger);
  CHECK(IncrAt(S("nope"), 0, 1, 0, &v) == kMissing);
  CHECK(IncrAt(S("m"), -1, 1, 0, &v) == kInvalid && IncrAt(S("m"), 4, 1, kXX, &v) == kInvalid);

  // Pin (kv_send): the pinned bytes stay the pinned version's while the key is
  // overwritten, deleted and cleared; the budget stops counting the old entry at
  // once; a version mismatch pins nothing; the last Unpin frees it (ASan: no leak, no use after free).
  Clear();
  CHECK(Set(S("p"), S(std::string(100000, 'a')), 0, 0) == 0);
  uint64_t pv = 0;
  CHECK(Get(S("p"), nullptr, 0, &pv) == 100000);
  Pinned pin{}, pin2{};
  CHECK(Pin(S("p"), pv + 1, &pin) == kExists);
  CHECK(Pin(S("nope"), 0, &pin) == kMissing);
  CHECK(Pin(S("p"), pv, &pin) == 100000 && pin.len == 100000 && pin.version == pv);
  CHECK(Pin(S("p"), 0, &pin2) == 100000 && pin2.p == pin.p);
  const int64_t one = GetStats().bytes;
  CHECK(Set(S("p"), S(std::string(100000, 'b')), 0, 0) == 0);  // replaced while pinned
  CHECK(GetStats().bytes == one);  // the old entry left the budget, the new one came in
  CHECK(pin.p[0] == 'a' && pin.p[99999] == 'a');
  Unpin(pin2);
  CHECK(pin.p[0] == 'a' && pin.p[99999] == 'a');  // one pin left: still there
  Unpin(pin);
  CHECK(Pin(S("p"), 0, &pin) == 100000 && pin.p[0] == 'b');
  CHECK(Del(S("p")) == 1 && GetStats().bytes == 0);  // deleted while pinned
  CHECK(pin.p[50000] == 'b');
  Unpin(pin);
  CHECK(Set(S("q"), S("xyz"), 0, 0) == 0 && Pin(S("q"), 0, &pin) == 3);
  Clear();  // cleared while pinned
  CHECK(std::memcmp(pin.p, "xyz", 3) == 0);
  Unpin(pin);
  // Writers and pinned readers of one key from 4 threads: every pinned value is whole (one version's bytes).
  Set(S("r"), S(std::string(4096, 'A')), 0, 0);
  std::atomic<int> torn{0};
  std::vector<std::thread> rw;
  for (int t = 0; t < 4; t++)
    rw.emplace_back([t, &torn] {
      for (int i = 0; i < 3000; i++) {
        if (t < 2) {
          Set(S("r"), S(std::string(4096, static_cast<char>('A' + (i + t) % 26))), 0, 0);
          continue;
        }
        Pinned p{};
        if (Pin(S("r"), 0, &p) < 0) continue;
        for (size_t k = 1; k < p.len; k++)
          if (p.p[k] != p.p[0]) {
            torn++;
            break;
          }
        Unpin(p);
      }
    });
  for (auto& t : rw) t.join();
  CHECK(torn.load() == 0);

  // Deleting every key gives every table and TTL index back: nothing stays counted.
  Clear();
  for (int i = 0; i < 5000; i++) Set(S("z" + std::to_string(i)), S("v"), 0, i % 2 ? 100000 : 0);
  CHECK(GetStats().bytes > 5000 * 48);
  CHECK(DelPrefix(S("z")) == 5000);
  CHECK(GetStats().bytes == 0);
  return tcpmod_test::Summary();
}
