// Input loading glue: the carry-over (input_buffer.h) and one receive into
// module memory, the state slot copied out and back, tcpmod.want's gathering,
// and the save that ends an event (with its re-arm in the same call).
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "conn.h"
#include "tls.h"

namespace tcpmod {

namespace {

bool StateFits(int64_t ptr, int size, size_t mem_size) {
  return ptr >= 0 && static_cast<uint64_t>(ptr) + size <= mem_size;
}

// tcpmod.want: appends arriving bytes to the carry-over, without calling the
// module, until `target` bytes are pending: a trickle costs what it sends.
// 1 the frame is complete (or EOF came: *eof), 0 not yet, -errno.
int64_t GatherWant(Conn* c, int fd, size_t target, bool* eof, size_t* got) {
  const size_t start = c->pending.size();
  // Received through a small buffer and appended: growing the buffer to the
  // target first would zero the whole gap on every read (O(frame) per byte).
  uint8_t chunk[16384];
  while (c->pending.size() < target) {
    size_t room = std::min(sizeof(chunk), target - c->pending.size());
    ssize_t n;
    do n = recv(fd, chunk, room, 0); while (n < 0 && errno == EINTR);
    if (n > 0) {
      if (!c->pending.Append(chunk, static_cast<size_t>(n), target)) return -ENOMEM;
      continue;
    }
    if (n == 0) *eof = true;
    if (n < 0 && errno != EAGAIN) return -errno;
    break;
  }
  *got = c->pending.size() - start;
  AccountBuffers(c);
  if (*got || *eof) {
    c->last_input = MonoMs();
    if (c->frame_since == 0 && !c->pending.empty()) c->frame_since = c->last_input.load();
  }
  return c->pending.size() >= target || *eof ? 1 : 0;
}

// The body of connLoad for an entry the caller holds: carry-over at `in`, then
// one recv after it (cap bytes in all), the state slot copied to `state`
// (state_size bytes, checked by the caller). *received: the new bytes.
int64_t LoadHeld(Conn* c, int fd, uint8_t* in, size_t cap, uint8_t* state, bool no_recv, int64_t* received) {
  *received = 0;
  if (c->state_size > 0) std::memcpy(state, c->state, c->state_size);
  if (!no_recv && !c->out.empty()) {
    // Queued output first; while it stays above the low-water mark after
    // passing the high-water mark, no input is read and the module is not
    // called (the client is not reading).
    int64_t left = Flush(c, fd);
    if (left < 0) return left;
    if (c->paused && c->srv && left > c->srv->out_high / 2) return -EAGAIN;
    c->paused = false;
  }
  if (!no_recv && c->half.input_ended) {
    // Its EOF was the module's already (half-close, conn_state.h): nothing is read any more; this
    // wake was for queued output (flushed above) or an error (a reset), which ends it.
    int err = 0;
    socklen_t elen = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err != 0) return -err;
    return -EAGAIN;
  }
  bool want_eof = false;
  size_t appended = 0;  // received by the want path, before the usual one
  if (c->want && !no_recv && c->tls == nullptr) {
    const size_t target = std::min<size_t>(c->want, cap);
    int64_t rc = GatherWant(c, fd, target, &want_eof, &appended);
    if (rc < 0) return rc;
    if (rc == 0) {
      *received = static_cast<int64_t>(appended);
      return -EAGAIN;
    }
    c->want = 0;
  }
  size_t have = c->pending.size();
  if (no_recv || want_eof) cap = have;  // the carry-over alone (a timer call, or EOF already seen)
  const size_t before = have;

  if (have > cap) return -EOVERFLOW;
  if (have) std::memcpy(in, c->pending.data(), have);
  int64_t eof = want_eof ? kLoadEof : 0;
  if (have < cap && c->tls != nullptr) {
    bool peer_done = false;
    int64_t n = TlsRead(c->tls, in + have, cap - have, &peer_done);
    if (n < 0) return n;
    have += static_cast<size_t>(n);
    if (peer_done) eof = kLoadEof;
  } else if (have < cap) {
    ssize_t n;
    do n = recv(fd, in + have, cap - have, 0); while (n < 0 && errno == EINTR);
    if (n > 0) have += static_cast<size_t>(n);
    else if (n == 0) eof = kLoadEof;
    else if (errno != EAGAIN) return -errno;
  }
  if (have > before || eof) c->last_input = MonoMs();
  if (eof) c->half.eof_loaded = true;  // kept by the module, it ends the input at this event's re-arm
  *received = static_cast<int64_t>(have - before + appended);
  return static_cast<int64_t>(have) | eof;
}

}  // namespace

// connLoad: writes the carried-over input at `in`, then receives straight into
// memory after it (one recv, up to cap; for TLS, decrypted records until the
// socket is drained or the region is full), and copies the state slot to
// base + state_ptr. The input length [| kLoadEof] | -EPROTO (a TLS record
// failed) | -EAGAIN (queued output still above its mark, or tcpmod.want's
// frame still incomplete: what arrived is kept) | -errno | kStateOutside.
int64_t ConnLoad(int fd, uint64_t id, uint8_t* in, size_t cap, uint8_t* base, size_t mem_size, int64_t state_ptr,
                 bool no_recv, int64_t* received) {
  *received = 0;
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  if (c->state_size > 0 && !StateFits(state_ptr, c->state_size, mem_size)) return kStateOutside;
  return LoadHeld(c, fd, in, cap, base + state_ptr, no_recv, received);
}

bool LoadClaimed(int fd, double id, int generation, uint8_t* in, size_t cap, uint8_t* base, size_t mem_size,
                 int64_t state_ptr, int64_t* result, int64_t* received) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr || c->kind != kKindConn || c->generation.load() != generation) return false;
  if (c->state_size > 0 && !StateFits(state_ptr, c->state_size, mem_size)) return false;
  *result = LoadHeld(c, fd, in, cap, base + state_ptr, false, received);
  return true;
}

// connSave: keeps [rest, rest+len) as the connection's unconsumed input and
// saves the state slot from base + state_ptr. With epfd >= 0 it then re-arms
// the entry as connRearm does, in the same call (the end of every kept event):
// -errno when that fails, and the caller stays holder.
// With an out region [out_ptr, out_ptr+out_len) of the same memory (checked by
// the caller), the event's last output is sent first, without waiting (plain
// or TLS, nothing queued before it): the result is the number of its bytes the
// socket did not take. 0: all sent, then saved and re-armed; > 0: the last
// `left` bytes are unsent and nothing was saved -- the caller sends them its
// own way (blocking or queued) and saves again without an out region. -errno:
// the send failed.
int64_t ConnSave(int fd, uint64_t id, const uint8_t* rest, size_t len, uint8_t* base, size_t mem_size,
                 int64_t state_ptr, int epfd, uint32_t events, int64_t out_ptr, int64_t out_len) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  if (c->state_size > 0 && !StateFits(state_ptr, c->state_size, mem_size)) return kStateOutside;
  if (out_len > 0 && !OutputDiscards(c->half)) {
    // Output queued before this must stay ahead of it: the caller's way.
    if (!c->out.empty()) return out_len;
    int64_t n = WriteNow(c, fd, base + out_ptr, static_cast<size_t>(out_len));
    if (n < 0) return n;
    if (n < out_len) return out_len - n;
  } else if (!c->held.empty()) {
    int64_t rc = Flush(c, fd);  // kv_send's held run: the event ends here
    if (rc < 0) return rc;
  }
  const bool kept = c->pending.Assign(rest, len);
  AccountBuffers(c);
  if (!kept) return -ENOMEM;
  // The frame timeout runs from the moment the carry-over became non-empty.
  if (len == 0) c->frame_since = 0;
  else if (c->frame_since == 0) c->frame_since = MonoMs();
  if (c->state_size > 0) std::memcpy(c->state, base + state_ptr, c->state_size);
  if (epfd < 0) return 0;
  return RearmHeld(c, fd, epfd, events);
}

// connWant: do not call the module again before n bytes are pending (or
// in_cap, or EOF); 0 clears it (tcpmod.want).
int ConnWant(int fd, uint64_t id, int64_t n) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  c->want = n > 0 ? static_cast<uint32_t>(std::min<int64_t>(n, UINT32_MAX)) : 0;
  return 0;
}

}  // namespace tcpmod
