// A connection's carry-over: input the module has not consumed yet (and a
// PROXY header's prefix, or a tcpmod.want frame, while they arrive). One
// contiguous run, since it is copied in front of the next read into the
// module's input region.
//
// Its storage follows its content, as Redis trims an idle client's query
// buffer: emptied, it is released; replaced by much less than it holds, it is
// reallocated to fit. Large storage (kInputMapMin and up) is mapped pages, so
// that releasing it returns it to the kernel, not to malloc's heap -- except a
// few blocks each thread keeps for its next carry-over of the same size
// (InputSpareBytes; input_buffer.cc says why).
#pragma once
#include <cstddef>
#include <cstdint>

namespace tcpmod {

// Storage of at least this many bytes is mapped (mmap) rather than malloc'd.
constexpr size_t kInputMapMin = 64 * 1024;

// Bytes of mapped storage this thread keeps for reuse (at most 2 blocks of at most 1 MiB).
size_t InputSpareBytes();

// Owned by one holder at a time (the connection's), so not locked.
class InputBuffer {
 public:
  InputBuffer() = default;
  InputBuffer(const InputBuffer&) = delete;
  InputBuffer& operator=(const InputBuffer&) = delete;
  ~InputBuffer() { Clear(); }

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Bytes of storage held (what the memory bounds count).
  size_t allocated() const { return cap_; }

  // Replaces the content with [p, p+len) (p must not point into this buffer).
  // Storage larger than twice what len needs is given back first. False, and
  // the buffer emptied, when storage cannot be had.
  bool Assign(const uint8_t* p, size_t len);
  // Appends [p, p+len); the storage grows by doubling, but not past `upto`
  // when the content will not (the size of a frame being awaited: a 1 MiB
  // frame holds 1 MiB, not the 2 MiB doubling would reach). False (nothing
  // appended) when it cannot grow.
  bool Append(const uint8_t* p, size_t len, size_t upto = 0);
  // Empties the buffer and releases its storage.
  void Clear();

 private:
  bool Reserve(size_t cap, bool keep);
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t cap_ = 0;
};

}  // namespace tcpmod
