#include "output_queue.h"
#include "mono_clock.h"

#include <sys/mman.h>
#include <time.h>

#include <atomic>
#include <cassert>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

namespace tcpmod {

struct Chunk {
  Chunk* next;
  uint32_t size;   // the mapping's size, header included
  uint32_t begin;  // first queued byte in data
  uint32_t end;    // one past the last
  int64_t freed_ms;  // in the pool: when it was put there
  uint8_t data[1];
};

namespace {

constexpr size_t kHeader = offsetof(Chunk, data);
static_assert(kChunkSize - kHeader >= 16 * 1024 + 64, "a chunk must hold a whole TLS record's plaintext");
static_assert(kChunkMax < (1ull << 32), "chunk offsets are 32-bit");
// One free list per power-of-two size from kChunkSize to kChunkMax.
constexpr int kClasses = 5;
static_assert((kChunkSize << (kClasses - 1)) == kChunkMax, "one class per chunk size");

size_t Capacity(const Chunk* c) { return c->size - kHeader; }

int ClassOf(size_t size) {
  int i = 0;
  while ((kChunkSize << i) < size) i++;
  return i;
}


std::mutex pool_mu;
Chunk* pool_head[kClasses] = {};  // under pool_mu; most recently freed first
size_t pool_bytes = 0;             // under pool_mu
std::atomic<size_t> mapped_bytes{0};
std::atomic<size_t> pool_bound{SIZE_MAX};  // ChunkPoolBound
std::once_flag trimmer_once;

void Unmap(Chunk* c) {
  size_t size = c->size;
  munmap(c, size);
  mapped_bytes -= size;
}

// The size of the chunk to add to a queue holding `queued` bytes: about as
// much again (a power of two), within [kChunkSize, kChunkMax].
size_t NextChunkSize(size_t queued) {
  size_t size = kChunkSize;
  while (size < kChunkMax && size < queued) size *= 2;
  return size;
}

}  // namespace

Chunk* ChunkGet(size_t size) {
  assert(size >= kChunkSize && size <= kChunkMax && (size & (size - 1)) == 0);
  {
    std::lock_guard<std::mutex> lock(pool_mu);
    Chunk*& head = pool_head[ClassOf(size)];
    if (head != nullptr) {
      Chunk* c = head;
      head = c->next;
      pool_bytes -= size;
      c->next = nullptr;
      c->begin = c->end = 0;
      return c;
    }
  }
  // MAP_POPULATE: the pages are faulted in here, in one call, instead of by one trap each as they are written.
  void* m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  mapped_bytes += size;
  Chunk* c = static_cast<Chunk*>(m);
  c->next = nullptr;
  c->size = static_cast<uint32_t>(size);
  c->begin = c->end = 0;
  return c;
}

void ChunkPut(Chunk* c) {
  if (c == nullptr) return;
  bool kept = false;
  {
    std::lock_guard<std::mutex> lock(pool_mu);
    // mapped_bytes counts c already: kept, it stays mapped; the queues' chunks and the free ones fit the bound.
    if (pool_bytes + c->size <= kChunkPoolMaxBytes && mapped_bytes.load() <= pool_bound.load()) {
      kept = true;
      Chunk*& head = pool_head[ClassOf(c->size)];
      c->freed_ms = MonoMs();
      c->next = head;
      head = c;
      pool_bytes += c->size;
    }
  }
  if (!kept) {
    Unmap(c);
    return;
  }
  // The idle release runs on a thread of its own, so that a server gone quiet gives the pool back too.
  std::call_once(trimmer_once, [] {
    std::thread([] {
      for (;;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(kChunkIdleMs / 2));
        ChunkPoolTrim(kChunkIdleMs);
      }
    }).detach();
  });
}

size_t ChunkPoolTrim(int64_t idle_ms) {
  Chunk* gone = nullptr;
  size_t bytes = 0;
  {
    const int64_t before = MonoMs() - idle_ms;
    std::lock_guard<std::mutex> lock(pool_mu);
    for (Chunk*& head : pool_head) {
      // Most recently freed first: everything past the first chunk old enough is older still.
      Chunk** at = &head;
      while (*at != nullptr && (*at)->freed_ms > before) at = &(*at)->next;
      for (Chunk* c = *at; c != nullptr;) {
        Chunk* next = c->next;
        bytes += c->size;
        c->next = gone;
        gone = c;
        c = next;
      }
      *at = nullptr;
    }
    pool_bytes -= bytes;
  }
  while (gone != nullptr) {
    Chunk* next = gone->next;
    Unmap(gone);
    gone = next;
  }
  return bytes;
}

void ChunkPoolBound(size_t bytes) {
  if (bytes == 0) return;
  size_t cur = pool_bound.load();
  while (bytes < cur && !pool_bound.compare_exchange_weak(cur, bytes)) {
  }
  // What the pool keeps beyond the new bound goes now, not at the next release.
  Chunk* gone = nullptr;
  {
    std::lock_guard<std::mutex> lock(pool_mu);
    size_t going = 0;
    for (Chunk*& head : pool_head) {
      while (head != nullptr && mapped_bytes.load() - going > pool_bound.load()) {
        Chunk* c = head;
        head = c->next;
        pool_bytes -= c->size;
        going += c->size;
        c->next = gone;
        gone = c;
      }
    }
  }
  while (gone != nullptr) {
    Chunk* next = gone->next;
    Unmap(gone);
    gone = next;
  }
}

size_t ChunkPoolFree() {
  std::lock_guard<std::mutex> lock(pool_mu);
  return pool_bytes;
}

size_t ChunkMappedBytes() { return mapped_bytes.load(); }

namespace {

// Copies n bytes from offset `at` of the concatenation a (alen bytes) ++ b to dst.
void CopyJoined(uint8_t* dst, const uint8_t* a, size_t alen, const uint8_t* b, size_t at, size_t n) {
  if (at < alen) {
    size_t k = n < alen - at ? n : alen - at;
    std::memcpy(dst, a + at, k);
    dst += k;
    n -= k;
    at = alen;
  }
  if (n > 0) std::memcpy(dst, b + (at - alen), n);
}

}  // namespace

bool OutputQueue::Append(const uint8_t* a, size_t alen, const uint8_t* b, size_t blen) {
  const size_t len = alen + blen;
  // Chunks first, bytes second: a failed mapping leaves the queue as it was.
  const size_t room = tail_ != nullptr ? Capacity(tail_) - tail_->end : 0;
  Chunk* fresh = nullptr;
  Chunk* fresh_tail = nullptr;
  size_t added = 0;
  for (size_t need = len > room ? len - room : 0, planned = size_ + room; need > 0;) {
    Chunk* c = ChunkGet(NextChunkSize(planned));
    if (c == nullptr) {
      while (fresh != nullptr) {
        Chunk* next = fresh->next;
        ChunkPut(fresh);
        fresh = next;
      }
      return false;
    }
    if (fresh_tail != nullptr) fresh_tail->next = c;
    else fresh = c;
    fresh_tail = c;
    added += c->size;
    size_t cap = Capacity(c);
    planned += cap;
    need -= need < cap ? need : cap;
  }
  size_t n = len < room ? len : room;
  if (n > 0) {
    CopyJoined(tail_->data + tail_->end, a, alen, b, 0, n);
    tail_->end += static_cast<uint32_t>(n);
  }
  for (Chunk* c = fresh; c != nullptr; c = c->next) {
    size_t take = len - n < Capacity(c) ? len - n : Capacity(c);
    CopyJoined(c->data, a, alen, b, n, take);
    c->end = static_cast<uint32_t>(take);
    n += take;
  }
  assert(n == len);
  if (fresh != nullptr) {
    if (tail_ != nullptr) tail_->next = fresh;
    else head_ = fresh;
    tail_ = fresh_tail;
  }
  allocated_ += added;
  size_ += len;
  return true;
}

const uint8_t* OutputQueue::Front(size_t* len) const {
  if (head_ == nullptr) {
    *len = 0;
    return nullptr;
  }
  assert(head_->end > head_->begin);  // an emptied chunk never stays at the front
  *len = head_->end - head_->begin;
  return head_->data + head_->begin;
}

void OutputQueue::Consume(size_t n) {
  assert(head_ != nullptr || n == 0);
  if (n == 0) return;
  assert(n <= static_cast<size_t>(head_->end - head_->begin));
  head_->begin += static_cast<uint32_t>(n);
  size_ -= n;
  if (head_->begin == head_->end) {
    Chunk* done = head_;
    head_ = done->next;
    if (head_ == nullptr) tail_ = nullptr;
    allocated_ -= done->size;
    ChunkPut(done);
  }
  assert((head_ == nullptr) == (size_ == 0) && (allocated_ == 0) == (head_ == nullptr));
}

void OutputQueue::Clear() {
  while (head_ != nullptr) {
    Chunk* next = head_->next;
    ChunkPut(head_);
    head_ = next;
  }
  tail_ = nullptr;
  size_ = 0;
  allocated_ = 0;
}

}  // namespace tcpmod
