// sources: output_queue.cc input_buffer.cc
// Unit tests of the connection buffers (no Node): OutputQueue keeps bytes in
// order across chunks, its Front run never shrinks until consumed (what a TLS
// write retry needs), and a drained queue holds no chunk; the chunk pool keeps
// at most kChunkPoolMaxBytes of free chunks, unmaps the rest, reuses what it keeps
// (a second burst maps nothing) and unmaps what stays idle; InputBuffer's storage
// follows its content (released when emptied, shrunk when much larger, grown
// no further than a frame's size when told; a thread keeps two mapped blocks for reuse).
// Plus threads sharing the pool.
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "input_buffer.h"
#include "output_queue.h"
#include "check.h"

using namespace tcpmod;

// Byte i of a test stream: not periodic in any chunk size.
static uint8_t At(size_t i) { return static_cast<uint8_t>((i * 131 + i / 977) & 0xff); }

static std::vector<uint8_t> Stream(size_t from, size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; i++) v[i] = At(from + i);
  return v;
}

// Appends `total` bytes in pieces of `piece`, consumes them `take` at a time
// from the front, and checks every byte and the accounting on the way.
static void RoundTrip(size_t total, size_t piece, size_t take) {
  OutputQueue q;
  for (size_t off = 0; off < total; off += piece) {
    size_t n = total - off < piece ? total - off : piece;
    auto v = Stream(off, n);
    CHECK(q.Append(v.data(), n));
  }
  CHECK(q.size() == total);
  // Chunks grow with the queue: what is allocated beyond the bytes is at most the last chunk.
  CHECK(q.allocated() >= total && q.allocated() <= total + kChunkMax + kChunkSize);
  size_t pos = 0;
  bool ordered = true;
  while (!q.empty()) {
    size_t len;
    const uint8_t* p = q.Front(&len);
    CHECK(len > 0);
    size_t n = len < take ? len : take;
    for (size_t i = 0; i < n; i++) ordered = ordered && p[i] == At(pos + i);
    q.Consume(n);
    pos += n;
  }
  CHECK(ordered);
  CHECK(pos == total);
  CHECK(q.allocated() == 0);
}

static void TestOrder() {
  RoundTrip(1, 1, 1);
  RoundTrip(kChunkSize * 3 + 17, 4096, 1000);
  RoundTrip(kChunkSize * 5, kChunkSize * 2 + 3, 16384);  // pieces larger than a chunk
  RoundTrip(100000, 7, 100000);                          // many small pieces, large takes
  RoundTrip(12 << 20, 65536, 65536);                     // the e2e probe's burst
}

// Front starts where it did and is never shorter until Consume: appends only
// lengthen the last chunk, and a retry after a partial write sees the same bytes.
static void TestFrontStable() {
  OutputQueue q;
  auto a = Stream(0, 1000);
  CHECK(q.Append(a.data(), a.size()));
  size_t l1;
  const uint8_t* f1 = q.Front(&l1);
  CHECK(l1 == 1000);
  auto b = Stream(1000, 3 * kChunkSize);
  CHECK(q.Append(b.data(), b.size()));
  size_t l2;
  const uint8_t* f2 = q.Front(&l2);
  CHECK(f1 == f2 && l2 >= l1);
  CHECK(std::memcmp(f2, a.data(), l1) == 0);
  // A TLS record's plaintext (16 KiB) always fits in a fresh chunk's run.
  OutputQueue r;
  auto big = Stream(0, 100000);
  CHECK(r.Append(big.data(), big.size()));
  size_t lr;
  r.Front(&lr);
  CHECK(lr >= 16 * 1024);
  q.Clear();
  CHECK(q.empty() && q.allocated() == 0);
}

// A drained queue gives its chunks back at once; past the pool's bound they are unmapped.
static void TestRelease() {
  {
    OutputQueue q;
    auto v = Stream(0, 1 << 20);
    for (int i = 0; i < 32; i++) CHECK(q.Append(v.data(), v.size()));  // 32 MiB
    CHECK(q.allocated() >= (32u << 20) && q.allocated() <= (33u << 20) + kChunkSize);
    CHECK(ChunkMappedBytes() >= q.allocated());
    size_t len;
    while (!q.empty()) {
      q.Front(&len);
      q.Consume(len);
    }
    CHECK(q.allocated() == 0);
  }
  CHECK(ChunkPoolFree() <= kChunkPoolMaxBytes);
  CHECK(ChunkMappedBytes() <= kChunkPoolMaxBytes);
  // A partially consumed chunk stays; an emptied one goes; a destroyed queue gives back what it held.
  {
    OutputQueue q;
    auto v = Stream(0, 3 * kChunkSize);
    CHECK(q.Append(v.data(), v.size()));
    size_t before = q.allocated();
    size_t len;
    q.Front(&len);
    CHECK(len > 16 * 1024 && len < kChunkSize);  // the first chunk (the smallest) is its run
    q.Consume(len / 2);
    CHECK(q.allocated() == before);
    q.Consume(len - len / 2);
    CHECK(q.allocated() == before - kChunkSize);  // the first chunk is the smallest
  }
  CHECK(ChunkMappedBytes() <= kChunkPoolMaxBytes);
  // A small queue costs one small chunk, whatever the queues before it held.
  {
    OutputQueue q;
    auto v = Stream(0, 100);
    CHECK(q.Append(v.data(), v.size()));
    CHECK(q.allocated() == kChunkSize);
  }
}

// A burst's chunks of every size are kept for the next burst (which maps
// nothing new and so faults no page in), up to the pool's bound; a trim gives
// back what stayed unused.
static void TestReuse() {
  ChunkPoolTrim(0);
  CHECK(ChunkPoolFree() == 0);
  auto v = Stream(0, 1 << 20);
  auto burst = [&v] {
    OutputQueue q;
    for (int i = 0; i < 8; i++) CHECK(q.Append(v.data(), v.size()));  // 8 MiB: chunks of 64 KiB up to 1 MiB
    size_t len;
    while (!q.empty()) {
      q.Front(&len);
      q.Consume(len);
    }
  };
  burst();
  const size_t kept = ChunkPoolFree();
  CHECK(kept >= (8u << 20) && kept <= kChunkPoolMaxBytes);
  const size_t mapped = ChunkMappedBytes();
  burst();
  CHECK(ChunkMappedBytes() == mapped);  // the same chunks again
  CHECK(ChunkPoolFree() == kept);
  CHECK(ChunkPoolTrim(60 * 1000) == 0);  // none has been idle a minute
  CHECK(ChunkPoolTrim(0) == kept);
  CHECK(ChunkPoolFree() == 0 && ChunkMappedBytes() == mapped - kept);
}

// Many threads, each with its queues, sharing the pool: no byte is lost or
// mixed up, and the pool ends within its bound.
static void TestThreads() {
  std::vector<std::thread> ts;
  std::vector<int> ok(8, 0);
  for (int t = 0; t < 8; t++) {
    ts.emplace_back([t, &ok] {
      bool good = true;
      for (int round = 0; round < 40; round++) {
        OutputQueue q;
        size_t total = static_cast<size_t>((t + 1) * 37000 + round * 1111);
        auto v = Stream(static_cast<size_t>(t), total);
        for (size_t off = 0; off < total; off += 30000) {
          size_t n = total - off < 30000 ? total - off : 30000;
          good = good && q.Append(v.data() + off, n);
        }
        size_t pos = 0, len;
        while (!q.empty()) {
          const uint8_t* p = q.Front(&len);
          size_t n = len < 5000 ? len : 5000;
          good = good && std::memcmp(p, v.data() + pos, n) == 0;
          q.Consume(n);
          pos += n;
        }
        good = good && pos == total && q.allocated() == 0;
      }
      ok[t] = good ? 1 : 0;
    });
  }
  for (auto& th : ts) th.join();
  for (int t = 0; t < 8; t++) CHECK(ok[t] == 1);
  CHECK(ChunkPoolFree() <= kChunkPoolMaxBytes);
  CHECK(ChunkMappedBytes() <= kChunkPoolMaxBytes);
}

static void TestInput() {
  InputBuffer b;
  CHECK(b.empty() && b.allocated() == 0);
  auto v = Stream(0, 3 << 20);
  // Assign: exactly the content; emptied, the storage is released.
  CHECK(b.Assign(v.data(), 100));
  CHECK(b.size() == 100 && std::memcmp(b.data(), v.data(), 100) == 0);
  CHECK(b.allocated() >= 100 && b.allocated() <= 512);
  CHECK(b.Assign(v.data(), 0));
  CHECK(b.allocated() == 0 && b.data() == nullptr);
  // A large carry-over replaced by a small one shrinks to fit (Redis's query buffer trim).
  CHECK(b.Assign(v.data(), 2 << 20));
  CHECK(b.allocated() >= (2u << 20) && b.allocated() <= (4u << 20));
  CHECK(b.Assign(v.data() + 5, 1000));
  CHECK(b.size() == 1000 && std::memcmp(b.data(), v.data() + 5, 1000) == 0);
  CHECK(b.allocated() <= 2048);
  // A replacement within twice what it needs keeps the storage.
  CHECK(b.Assign(v.data(), 1500));
  size_t kept = b.allocated();
  CHECK(b.Assign(v.data(), 1200));
  CHECK(b.allocated() == kept);
  // Append keeps what was there, in order, and grows by doubling.
  b.Clear();
  size_t off = 0;
  bool ordered = true;
  while (off < (1u << 20)) {
    CHECK(b.Append(v.data() + off, 16384));
    off += 16384;
    ordered = ordered && std::memcmp(b.data(), v.data(), off) == 0;
  }
  CHECK(ordered);
  CHECK(b.allocated() >= off && b.allocated() <= 2 * off);
  // With `upto` (a frame being awaited) the storage stops at the frame's size (in whole pages).
  b.Clear();
  const size_t frame = (1u << 20) + 57;
  off = 0;
  while (off < frame) {
    size_t n = frame - off < 16384 ? frame - off : 16384;
    CHECK(b.Append(v.data() + off, n, frame));
    off += n;
  }
  CHECK(b.size() == frame && std::memcmp(b.data(), v.data(), frame) == 0);
  CHECK(b.allocated() >= frame && b.allocated() < frame + 4096);
  b.Clear();
  CHECK(b.allocated() == 0 && b.size() == 0);
}

// Append of two runs (kv_send's head and value) queues their concatenation, at
// every split of a stream across the two and whatever the queue held before.
static void TestAppendTwo() {
  const std::vector<uint8_t> all = Stream(0, 300000);
  bool ok = true;
  for (size_t before : {size_t{0}, size_t{100}, size_t{65000}}) {
    for (size_t split : {size_t{0}, size_t{1}, size_t{70}, size_t{65536}, size_t{299999}, size_t{300000}}) {
      OutputQueue q;
      std::vector<uint8_t> first(before, 7);
      if (before) q.Append(first.data(), before);
      const size_t total = all.size() - before;
      ok &= q.Append(all.data() + before, split > total ? total : split, all.data() + before + (split > total ? total : split),
                     split > total ? 0 : total - split);
      ok &= q.size() == all.size();
      size_t at = 0;
      while (!q.empty()) {
        size_t len;
        const uint8_t* p = q.Front(&len);
        for (size_t i = 0; i < len; i++) ok &= p[i] == (at + i < before ? 7 : all[at + i]);
        at += len;
        q.Consume(len);
      }
      ok &= at == all.size();
    }
  }
  CHECK(ok);
}

// Free pooled chunks count toward --max-output-memory (ChunkPoolBound): a bound
// given drops what the pool keeps past it at once, and a released chunk is kept
// only while every chunk mapped, queued or free, fits in it. Last: the bound is process-wide.
static void TestPoolBound() {
  const size_t bound = 4u << 20;
  ChunkPoolTrim(0);
  {
    OutputQueue a, b;
    const std::vector<uint8_t> big = Stream(0, 3u << 20);
    a.Append(big.data(), big.size());
    b.Append(big.data(), big.size());
  }  // released: 6 MiB and more of free chunks, within kChunkPoolMaxBytes
  CHECK(ChunkPoolFree() >= (6u << 20));
  ChunkPoolBound(bound);
  CHECK(ChunkMappedBytes() <= bound);
  ChunkPoolTrim(0);
  {
    OutputQueue a, b;
    const std::vector<uint8_t> big = Stream(0, 3u << 20);
    a.Append(big.data(), big.size());
    b.Append(big.data(), big.size());
    const size_t held_a = a.allocated();
    b.Clear();  // a still holds its 3 MiB: the pool keeps only what fits beside it
    CHECK(ChunkMappedBytes() <= (held_a > bound ? held_a : bound));
    CHECK(ChunkPoolFree() + held_a <= bound);
  }
  CHECK(ChunkMappedBytes() <= bound);
  ChunkPoolBound(0);  // 0 changes nothing
  ChunkPoolBound(64u << 20);  // a larger one neither: the smallest holds
  {
    OutputQueue a;
    const std::vector<uint8_t> big = Stream(0, 6u << 20);
    a.Append(big.data(), big.size());
  }
  CHECK(ChunkMappedBytes() <= bound);
}

// A mapped carry-over given back is kept for the next one of the same size (no fresh pages to
// fault in at every split request), at most two blocks of at most 1 MiB per thread; its content
// is always what was appended, never a former occupant's.
static void TestInputSpares() {
  const size_t base = InputSpareBytes();
  CHECK(base == 0);
  auto v = Stream(7, 3 << 20);
  InputBuffer a;
  CHECK(a.Append(v.data(), 100 * 1024));
  const uint8_t* first = a.data();
  const size_t cap = a.allocated();
  CHECK(cap >= kInputMapMin);
  a.Clear();
  CHECK(InputSpareBytes() == base + cap);
  InputBuffer b;
  CHECK(b.Append(v.data() + 1, 100 * 1024));
  CHECK(b.data() == first);  // the same block, reused
  CHECK(std::memcmp(b.data(), v.data() + 1, 100 * 1024) == 0);
  CHECK(InputSpareBytes() == base);
  // Bounded: three given back, two kept; larger than 1 MiB, never kept.
  InputBuffer c[3];
  for (auto& x : c) CHECK(x.Append(v.data(), 100 * 1024));
  for (auto& x : c) x.Clear();
  CHECK(InputSpareBytes() == 2 * cap);
  InputBuffer d;
  CHECK(d.Append(v.data(), 2u << 20));
  d.Clear();
  CHECK(InputSpareBytes() == 2 * cap);
  // Another thread keeps its own, and gives them back when it ends.
  size_t other = 1;
  std::thread([&] {
    InputBuffer e;
    e.Append(v.data(), 100 * 1024);
    e.Clear();
    other = InputSpareBytes();
  }).join();
  CHECK(other == cap);
  CHECK(InputSpareBytes() == 2 * cap);
  b.Clear();
}

int main() {
  TestAppendTwo();
  TestOrder();
  TestFrontStable();
  TestRelease();
  TestReuse();
  TestThreads();
  TestInputSpares();  // first: this thread keeps no block yet
  TestInput();
  TestPoolBound();
  return tcpmod_test::Summary();
}
