#include "input_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cassert>
#include <cstdlib>
#include <cstring>

namespace tcpmod {

namespace {

constexpr size_t kMinCap = 256;

// The storage size for `need` bytes: a power of two from kMinCap, or `upto`
// when that is smaller and still holds them (rounded up to whole pages once mapped).
size_t CapFor(size_t need, size_t upto = 0) {
  size_t cap = kMinCap;
  while (cap < need) cap *= 2;
  if (upto >= need && upto < cap) {
    cap = upto;
    if (cap >= kInputMapMin) cap = (cap + 4095) & ~static_cast<size_t>(4095);
  }
  return cap;
}

// Mapped storage given back is kept for the next carry-over of the same size, a few blocks per
// thread: a large request the network splits (a 100 KiB memcached set arriving as 64 KiB + the
// rest) would otherwise map fresh pages, fault each one in, and unmap them (a TLB shootdown) at
// every split. Bounded (kSpareBlocks of at most kSpareMax each, per worker thread), released when
// the thread ends; what a thread keeps is not connection memory, so --max-input-memory does not count it.
constexpr size_t kSpareBlocks = 2;
constexpr size_t kSpareMax = 1 << 20;

struct Spares {
  uint8_t* p[kSpareBlocks] = {};
  size_t cap[kSpareBlocks] = {};
  ~Spares() {
    for (size_t i = 0; i < kSpareBlocks; i++)
      if (p[i] != nullptr) munmap(p[i], cap[i]);
  }
};
thread_local Spares spares;

// A kept block of at least `*cap` bytes and at most twice that, taken (*cap becomes its size), or
// null. A growing carry-over asks 64 KiB, then more: one block of the size a like request reached
// last time serves it whole, with its pages already in.
uint8_t* TakeSpare(size_t* cap) {
  if (*cap < kInputMapMin) return nullptr;
  for (size_t i = 0; i < kSpareBlocks; i++)
    if (spares.p[i] != nullptr && spares.cap[i] >= *cap && spares.cap[i] <= 2 * *cap) {
      uint8_t* m = spares.p[i];
      spares.p[i] = nullptr;
      *cap = spares.cap[i];
      return m;
    }
  return nullptr;
}

uint8_t* Alloc(size_t cap) {
  if (cap < kInputMapMin) return static_cast<uint8_t*>(std::malloc(cap));
  void* m = mmap(nullptr, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return m == MAP_FAILED ? nullptr : static_cast<uint8_t*>(m);
}

void Free(uint8_t* p, size_t cap) {
  if (p == nullptr) return;
  if (cap < kInputMapMin) return std::free(p);
  if (cap <= kSpareMax)
    for (size_t i = 0; i < kSpareBlocks; i++)
      if (spares.p[i] == nullptr) {
        spares.p[i] = p;
        spares.cap[i] = cap;
        return;
      }
  munmap(p, cap);
}

}  // namespace

// Moves to storage of `cap` bytes (or a kept block of up to twice that), keeping the content when
// `keep`. Mapped storage with no kept block to move to is resized in place or moved by the kernel
// (mremap): no copy, and one call instead of a map, a copy and an unmap.
bool InputBuffer::Reserve(size_t cap, bool keep) {
  assert(!keep || cap >= size_);
  uint8_t* p = TakeSpare(&cap);
  if (p == nullptr && cap_ >= kInputMapMin && cap >= kInputMapMin) {
    void* m = mremap(data_, cap_, cap, MREMAP_MAYMOVE);
    if (m == MAP_FAILED) return false;
    data_ = static_cast<uint8_t*>(m);
    cap_ = cap;
    if (!keep) size_ = 0;
    return true;
  }
  if (p == nullptr) p = Alloc(cap);
  if (p == nullptr) return false;
  if (keep && size_ > 0) std::memcpy(p, data_, size_);
  Free(data_, cap_);
  data_ = p;
  cap_ = cap;
  if (!keep) size_ = 0;
  return true;
}

bool InputBuffer::Assign(const uint8_t* p, size_t len) {
  assert(len == 0 || p + len <= data_ || p >= data_ + cap_);
  if (len == 0) {
    Clear();
    return true;
  }
  size_t fit = CapFor(len);
  if (cap_ < len || cap_ > 2 * fit) {
    if (!Reserve(fit, false)) {
      Clear();
      return false;
    }
  }
  std::memcpy(data_, p, len);
  size_ = len;
  assert(size_ <= cap_);
  return true;
}

bool InputBuffer::Append(const uint8_t* p, size_t len, size_t upto) {
  if (len == 0) return true;
  if (size_ + len > cap_ && !Reserve(CapFor(size_ + len, upto), true)) return false;
  std::memcpy(data_ + size_, p, len);
  size_ += len;
  assert(size_ <= cap_);
  return true;
}

void InputBuffer::Clear() {
  Free(data_, cap_);
  data_ = nullptr;
  size_ = 0;
  cap_ = 0;
}

size_t InputSpareBytes() {
  size_t n = 0;
  for (size_t i = 0; i < kSpareBlocks; i++)
    if (spares.p[i] != nullptr) n += spares.cap[i];
  return n;
}

}  // namespace tcpmod
