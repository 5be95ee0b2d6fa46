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

uint8_t* Alloc(size_t cap) {
  if (cap < kInputMapMin) return static_cast<uint8_t*>(std::malloc(cap));
  void* m = mmap(nullptr, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return m == MAP_FAILED ? nullptr : static_cast<uint8_t*>(m);
}

void Free(uint8_t* p, size_t cap) {
  if (p == nullptr) return;
  if (cap < kInputMapMin) std::free(p);
  else munmap(p, cap);
}

}  // namespace

// Moves to storage of exactly `cap` bytes, keeping the content when `keep`.
// Mapped storage is resized in place or moved by the kernel (mremap): no copy,
// and one call instead of a map, a copy and an unmap.
bool InputBuffer::Reserve(size_t cap, bool keep) {
  assert(!keep || cap >= size_);
  if (cap_ >= kInputMapMin && cap >= kInputMapMin) {
    void* m = mremap(data_, cap_, cap, MREMAP_MAYMOVE);
    if (m == MAP_FAILED) return false;
    data_ = static_cast<uint8_t*>(m);
    cap_ = cap;
    if (!keep) size_ = 0;
    return true;
  }
  uint8_t* p = Alloc(cap);
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

}  // namespace tcpmod
