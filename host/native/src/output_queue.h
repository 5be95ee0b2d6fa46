// A connection's queued output (send mode "queued"): the bytes the socket has
// not taken yet, in order, held in chunks that go back as soon as they are
// sent. A drained queue holds no memory, so what a burst queued is given back
// when the burst is read, not when the connection closes.
//
// Chunks are mapped pages (mmap), so that a released chunk is returned to the
// kernel at once (malloc's heap would keep it, and the RSS with it). A queue's
// chunks grow with it, from kChunkSize to kChunkMax: a small queue costs
// 64 KiB, a 12 MiB burst about sixteen mappings rather than two hundred (each
// unmapping costs the other cores a TLB flush, dear on a virtual machine).
// Released chunks of every size go to a process-wide pool that keeps at most
// kChunkPoolMaxBytes of them for reuse (and less when --max-output-memory
// leaves less: free chunks count toward it, ChunkPoolBound), and gives back (unmaps) any that stay
// unused for kChunkIdleMs, as Redis shrinks an idle client's output buffer: a
// connection that answers a large reply again and again (a multi-get of 1 MiB
// items) reuses pages already faulted in instead of mapping, faulting and
// unmapping 256 pages per MiB each time, and a server gone quiet holds no more
// than its queues. Fresh chunks are mapped with MAP_POPULATE (one syscall
// faults every page in, rather than one trap per page).
#pragma once
#include <cstddef>
#include <cstdint>

namespace tcpmod {

// The smallest chunk, header included; its data holds more than a TLS
// record's plaintext (16 KiB), so a record the sender began from a caller's
// region can always be retried from a fresh chunk (see Front).
constexpr size_t kChunkSize = 64 * 1024;
// The largest chunk: what one unsent byte at most keeps allocated beside it.
constexpr size_t kChunkMax = 1024 * 1024;
// Bytes of free chunks the pool keeps: past it, released chunks are unmapped.
constexpr size_t kChunkPoolMaxBytes = 32 * 1024 * 1024;
// A free chunk unused for this long is unmapped (checked every kChunkIdleMs / 2).
constexpr int64_t kChunkIdleMs = 1000;

struct Chunk;

// Chunks, process-wide and thread-safe: one of `size` bytes (a power of two
// from kChunkSize to kChunkMax), nullptr when mapping fails; and its release,
// to the pool or the kernel.
Chunk* ChunkGet(size_t size);
void ChunkPut(Chunk* c);
size_t ChunkPoolFree();      // bytes of free chunks the pool keeps now
// Unmaps the free chunks unused for at least idle_ms (0: all); the bytes unmapped.
// A background thread calls it with kChunkIdleMs; tests call it directly.
size_t ChunkPoolTrim(int64_t idle_ms);
size_t ChunkMappedBytes();   // bytes mapped as chunks now, in queues or in the pool (tests)
// The pool's free chunks count toward --max-output-memory: a released chunk is
// kept only while every chunk mapped (in queues and free) stays within `bytes`,
// so free bytes never take the process past the bound the queues are held to.
// Process-wide, so the smallest bound given holds (each server's
// queueConfigure gives its own); 0 leaves it as it is.
void ChunkPoolBound(size_t bytes);

// Owned by one holder at a time (the connection's), so not locked.
class OutputQueue {
 public:
  OutputQueue() = default;
  OutputQueue(const OutputQueue&) = delete;
  OutputQueue& operator=(const OutputQueue&) = delete;
  ~OutputQueue() { Clear(); }

  bool empty() const { return size_ == 0; }
  // Bytes queued.
  size_t size() const { return size_; }
  // Bytes this queue holds in chunks (what the memory bounds count).
  size_t allocated() const { return allocated_; }

  // Appends [p, p+len) behind what is queued; false (nothing appended) when a
  // chunk cannot be mapped.
  bool Append(const uint8_t* p, size_t len) { return Append(p, len, nullptr, 0); }
  // Appends a then b (one write's two runs), as Append of their concatenation.
  bool Append(const uint8_t* a, size_t alen, const uint8_t* b, size_t blen);
  // The first contiguous run of queued bytes ({nullptr, 0} when empty). It
  // starts where the previous Front did until Consume moves it, and is never
  // shorter than before (appends only lengthen the last chunk): what a TLS
  // write that must be retried with the same bytes needs.
  const uint8_t* Front(size_t* len) const;
  // Drops the first n queued bytes (n <= the Front run's length); a chunk
  // emptied by it goes back to the pool at once.
  void Consume(size_t n);
  // Drops everything and gives every chunk back.
  void Clear();

 private:
  Chunk* head_ = nullptr;
  Chunk* tail_ = nullptr;
  size_t size_ = 0;
  size_t allocated_ = 0;
};

}  // namespace tcpmod
