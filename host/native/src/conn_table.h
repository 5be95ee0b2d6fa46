// The connection table, plain C++ (no N-API; napi_conn.cc is its JavaScript
// face): per socket, the state the ABI says the host owns (input the module
// has not consumed yet, and the opaque state slot), kept in native memory so
// that whichever worker takes a connection's next event finds it. The
// listening socket has an entry too, so that it is handed over the same way.
// Its files, one concern each (conn.h lists what they share):
//   registry.cc     ids, the fd index, open, listings, shutdown
//   conn_state.cc   the connection state machine and each state's deadlines
//   ownership.cc    claim and re-arm (who holds an entry)
//   loans.cc        batches: events claimed and lent to a worker's next calls
//   due.cc          the timer heap glue, the due list, the timer event
//   conn_input.cc   loading input and the state slot, saving them (connLoad/connSave)
//   conn_output.cc  the output queue, the memory bounds and shedding
//   conn_close.cc   the close phase (close_phase.h) and closing the socket
//   conn_tls.cc     TLS glue (tls.h does the TLS)
//   conn_proxy.cc   the PROXY protocol phase and the peer's address
//   generations.cc  module generations: migration and drain
// Every function taking (fd, id) returns -EBADF when that entry is not open.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

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
  kDuePeerDone = 2048,   // half-closed both ways (conn_state.h HalfClose), no upstream left: close with reason 0
  kDueUpstreamEvent = 1u << 20,  // upstream.h's kDueUpstream (napi_conn.cc asserts they agree)
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

// Ownership rule of the table (see conn.h): an entry is handed from epoll
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
// The pool's busy-worker and worker-count cells for this thread's due-list pokes until the next call
// (nullptr, nullptr: none, every poke wakes a waiter): while every other worker is busy, a mark made
// by this thread's wait wakes no one, as each checks the list before it sleeps (due.cc OthersIdle).
void DueShareCells(const int32_t* busy, const int32_t* workers);

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
// first. A worker about to wait takes over what another has lent and not
// started on (StealLent); the group's timer hands back (re-arms) any left
// untouched past the batch budget, so a slow callback never holds them up
// longer than that. With busy/workers (the pool's counts of busy workers and
// of workers, the lender not busy), the timer is armed only when another
// worker is not busy (it may be asleep in its wait): when all are, the next of
// them to wait takes what is still lent. The last loan taken disarms it.
void LendBatch(int group, int holder, const Lent* events, int n, const int32_t* busy = nullptr,
               const int32_t* workers = nullptr);

// Before `holder` blocks in epoll_wait: the oldest event another worker was
// lent and has not started on, now held by `holder` (its due bits updated), or
// false when there is none. No syscall.
bool StealLent(int group, int holder, Lent* out);

// Timer events handled by this process so far (empty 0), or those of them that
// found nothing to do (empty 1): no item due, no scan, no loan past its budget.
int64_t TimerWakes(int64_t empty);

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

// ---- The core's calls, one per export of napi_conn.cc (the export's
// contract is documented in native.d.ts and at each definition).

// connLoad/connSave's result when the state slot lies outside the memory given:
// a programming error of the caller (the N-API layer throws a RangeError).
constexpr int64_t kStateOutside = -(1ll << 40);
// connLoad's EOF bit; lengths stay below 4 MiB.
constexpr int64_t kLoadEof = 1 << 30;

// registry.cc
int64_t ConnOpen(int fd, int group, int state_size, int holder, int kind, int tls_ctx, int generation);
int ConnOpened(int fd, uint64_t id);
struct EntryRef {
  int fd;
  uint64_t id;
  int kind;  // kKindUnopened for a connection the module has not met
};
// The group's connections (not the listener); with only_held, every entry `holder` holds.
std::vector<EntryRef> ConnListing(int group, bool only_held, int holder);
int ConnCount(int group);
uint64_t ConnSetNextId(int64_t id);
int ConnShutdown(int fd, uint64_t id, int how);
int ConnShutdownGroup(int group, int how);
// Test hook: connShutdown waits `us` µs between pinning the entry and its shutdown().
int SetShutdownPause(int64_t us);

// ownership.cc
int ConnAdd(int epfd, int fd, uint64_t id, uint32_t events);
int ConnRearm(int epfd, int fd, uint64_t id, uint32_t events);
std::pair<uint64_t, uint64_t> RearmStats();
// Re-arms that needed no epoll_ctl: the entry was still armed with the same events (tests, profiles).
uint64_t RearmSkips();
int SetClaimPause(int64_t us);

// loans.cc
int BatchConfigure(int group, uint32_t conn_events, uint32_t listen_events, int64_t budget_ms);
int BatchRelease(int group, int holder);

// due.cc
int TimersConfigure(int group, int64_t read_ms, int64_t frame_ms);
int TimersForget(int group);
int TimerSet(int fd, uint64_t id, int64_t ms);
int TimersDrain(int group, int64_t grace_ms);
int64_t TimerHeapSize(int group);
int TimersArmed(int group);

// conn_input.cc
int64_t ConnLoad(int fd, uint64_t id, uint8_t* in, size_t cap, uint8_t* base, size_t mem_size, int64_t state_ptr,
                 bool no_recv, int64_t* received);
int64_t ConnSave(int fd, uint64_t id, const uint8_t* rest, size_t len, uint8_t* base, size_t mem_size,
                 int64_t state_ptr, int epfd, uint32_t events, int64_t out_ptr, int64_t out_len);
int ConnWant(int fd, uint64_t id, int64_t n);
// connEndOutput: tcpmod.shutdown_output (docs/abi.md §20) for the connection the caller holds. 0 | -EBADF.
int ConnEndOutput(int fd, uint64_t id);

// conn_output.cc
int64_t ConnWrite(int fd, uint64_t id, const uint8_t* p, size_t len);
int64_t ConnWrite2(int fd, uint64_t id, const uint8_t* a, size_t alen, const uint8_t* b, size_t blen);
// kv_send's write of a head and a borrowed run (a pinned store entry) that release(ra, rb) gives back:
// as ConnWrite2, but possibly held to go with the event's next write (conn_output.cc).
int64_t ConnWriteStored(int fd, uint64_t id, const uint8_t* head, size_t hlen, const uint8_t* p, size_t n,
                        void (*release)(void*, uint64_t), void* ra, uint64_t rb);
int64_t ConnSend(int fd, uint64_t id, const uint8_t* p, size_t len, int64_t timeout_ms, int64_t* waited);
int64_t ConnFlush(int fd, uint64_t id);
int QueueConfigure(int group, bool queued, int64_t send_timeout, int64_t high, int64_t per_conn, int64_t out_total,
                   int64_t in_total);
struct MemoryTotals {
  int64_t output = 0, input = 0, output_allocated = 0, input_allocated = 0;
};
MemoryTotals GroupMemory(int group);

// conn_close.cc
int ConnClose(int fd, uint64_t id, int64_t drain_bytes);
int ConnLinger(int fd, uint64_t id);
int64_t ConnCloseStep(int fd, uint64_t id, uint32_t due);
int LingerConfigure(int group, int64_t time_ms, int64_t timeout_ms);
// connEnd/connClosing's result when the entry stays in its close phase (re-armed).
constexpr int kCloseKept = 2;
int ConnEnd(int fd, uint64_t id, int epfd, uint32_t events, int64_t drain_bytes);
int ConnClosing(int fd, uint64_t id, uint32_t due, int epfd, uint32_t events, int64_t drain_bytes, int64_t* step);

// conn_tls.cc
struct ConnTlsFacts {
  bool tls = false, handshaken = false, peer_cert = false;
  std::string alpn, failure, detail;
  double micros = 0;
};
int ConnTlsInfo(int fd, uint64_t id, ConnTlsFacts* out);
// The TLS failure labels, in the metrics' order; TlsFailureIndex maps a
// session's label to its index ('' and unknown ones: the last, "other").
constexpr int kTlsFailureCount = 7;
extern const char* const kTlsFailureLabels[kTlsFailureCount];
int TlsFailureIndex(const char* label);
// What connPhase tells besides its result.
struct PhaseResult {
  double micros = -1;    // the handshake's time when it completed in this call, else -1
  int tls_failure = -1;  // a failed handshake's label index (kTlsFailureLabels), else -1
};
int ConnPhase(int fd, uint64_t id, int epfd, uint32_t events, int64_t timeout_ms, bool open, PhaseResult* r);

// conn_proxy.cc
int ConnProxy(int fd, uint64_t id);
int ProxyConfigure(int group, int64_t versions);
// The client's address as text; -errno (or -EBADF) when there is none.
int ConnPeer(int fd, uint64_t id, std::string* out);

// generations.cc
int ConnGeneration(int fd, uint64_t id);
int ConnMigrate(int fd, uint64_t id, int generation, int state_size, int64_t in_cap);
std::vector<std::pair<int, int>> GenerationCounts(int group);
int ConnDrainGeneration(int group, int generation);
int GenerationVerdict(int group, int from, int to, bool moves, int to_state_size, int64_t to_in_cap);
int GenerationForget(int group, int generation);
int ConnMoveTo(int fd, uint64_t id, int to);

}  // namespace tcpmod
