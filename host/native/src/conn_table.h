#pragma once
#include <napi.h>

#include <cstdint>
#include <functional>

#include "tcpmod_limits.h"

namespace tcpmod {

// What an epoll item is.
enum Kind : int { kKindConn = 0, kKindListen = 1, kKindWake = 2, kKindTimer = 3,
                  kKindUnopened = 4 /* in listings only: a connection on_open has not started for */,
                  kKindDue = 5 /* the due list's eventfd */ };

// An epoll item's 64-bit data: (tag << kEpollTagShift) | (kind << 32) | fd. The tag is the
// low limits::kEpollTagBits bits of the table entry's id (0 for items outside
// the table): an event epoll reported for a connection that has since closed, its
// fd number reused by a new one, carries the old tag, and ClaimEvent does not take
// it for the new connection (ids never repeat; tags only after 2^kEpollTagBits connections).
// tcpmod_limits.h asserts that tag, kind and fd fill the 64 bits.
constexpr int kEpollTagShift = 64 - limits::kEpollTagBits;
constexpr uint64_t kEpollTagMask = (1ull << limits::kEpollTagBits) - 1;
inline uint64_t EpollPack(int kind, int fd, uint64_t id) {
  return ((id & kEpollTagMask) << kEpollTagShift) | (static_cast<uint64_t>(kind & 0xf) << 32) | static_cast<uint32_t>(fd);
}
inline int EpollFd(uint64_t data) { return static_cast<int>(data & 0xffffffffu); }
inline int EpollKind(uint64_t data) { return static_cast<int>((data >> 32) & 0xf); }
inline uint64_t EpollTag(uint64_t data) { return data >> kEpollTagShift; }

// What a claimed connection event carries besides input (epollWait's out[4]).
enum Due : uint32_t {
  kDueTimer = 1,       // the module's timer fired: call tcpmod_on_timer
  kDueTimeout = 2,     // the read or frame timeout expired: close with reason 7
  kDueDrainIdle = 4,   // idle through the drain grace: close with reason 5
  kDueHandshake = 8,   // not a due time: the TLS handshake has not completed yet
  kDueSendTimeout = 16,  // queued output made no progress for the send timeout: reason 4
  kDueOverflow = 32,     // among the largest holders when a memory bound was passed: reason 3
  kDueClosing = 64,      // not a due time: closed by the module, finishing its queued output
  kDueOpen = 128,        // not a due time: accepted, but on_open has not run (its acceptor died)
  kDueProxy = 256,       // not a due time: the PROXY protocol header has not been read yet
  kDueLinger = 512,      // a closed connection has lingered its time (close_phase.h): close the socket
  kDueMessage = 1024,    // its mailbox holds a message: call tcpmod_on_message (pubsub.h)
};

// Pub/sub (pubsub.cc) reaches connections only through these.
struct ConnTopics;
// Runs fn holding the table lock.
void WithTableLock(const std::function<void()>& fn);
// Caller holds the table lock: the connection's pub/sub record, created when
// `create`; nullptr when there is no such connection (or, without `create`,
// it has none or is closing).
ConnTopics* ConnTopicsLocked(int fd, uint64_t id, bool create);
// Caller holds the table lock: marks the connection due (kDue* bits) for the next waiter.
void MarkConnDueLocked(int fd, uint64_t id, uint32_t bits);

// Ownership rule of the table (see conn_table.cc): an entry is handed from epoll
// to exactly one worker by ClaimEvent, and only its holder loads, saves, re-arms
// or closes it. Returns false when the event must be dropped: no entry for fd in
// this group, or the entry is already held (an ERR/HUP reported for a connection
// whose opener has not re-armed it yet; the opener's re-arm reports it again),
// or it is not the entry the event was for (`tag`, EpollTag: a stale event).
bool ClaimEvent(int fd, uint64_t tag, int group, int holder, double* id, uint32_t* due);

// A connection marked due (a timeout, a module timer, a memory bound) that no
// one holds, claimed for `holder`: epollWait hands these out before waiting,
// since such a socket may report nothing to epoll.
bool TakeDue(int group, int holder, int* fd, double* id, uint32_t* due);

// An event a worker has claimed (by ClaimEvent or TakeDue) and not yet handed
// to its JavaScript: the rest of a batch (epollWait with maxevents > 1).
struct Lent {
  int fd;
  int kind;
  uint32_t events;
  double id;
  uint32_t due;
};

// Keeps events[0..n) claimed by `holder` for its next epollWait calls, oldest
// first; the group's timer hands back (re-arms) any left untouched past the
// batch budget, so a slow callback never holds them up longer than that.
void LendBatch(int group, int holder, const Lent* events, int n);

// Whether the group can lend (LendBatch): its timer exists and batchConfigure
// told it what to re-arm a loan with. epollWait takes one event at a time otherwise.
bool BatchConfigured(int group);

// The next event `holder` was lent (its due bits updated with any marked
// since the claim), or false when there is none.
bool PopLent(int group, int holder, Lent* out);

// The input of a connection event `holder` has just claimed (no due bits), as
// connLoad gives it: carry-over and one recv at `in` (cap bytes in all), the
// state slot at base + state_ptr. Only for an entry on module generation
// `generation` whose state slot fits the memory (base, mem_size): false when it
// is not, and nothing was done (the caller's JavaScript loads it the long way).
// *result is connLoad's result, *received the newly received bytes.
bool LoadClaimed(int fd, double id, int generation, uint8_t* in, size_t cap, uint8_t* base, size_t mem_size,
                 int64_t state_ptr, int64_t* result, int64_t* received);

// The timer event of `group` (its timerfd): marks every connection whose time
// has come and makes its epoll item report at once; re-arms the timerfd.
int RunTimers(int group);

void InitConnTable(Napi::Env env, Napi::Object exports);

}  // namespace tcpmod
