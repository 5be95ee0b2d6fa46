// The connection table's shared parts, for the files that make it up (not for
// the rest of the addon, which uses conn_table.h): a connection entry (Conn),
// a server's state (Server), and the table itself (Table: the lock, the fd
// index, the id space, the servers).
//
// Ownership (why entries need no per-entry lock, and are never freed under
// another thread):
// - Every entry has a `holder`: 0 while it waits in epoll, else the worker
//   (slot + 1) that has it, or, for the instant its holder's re-arm syscall is
//   in flight outside the lock, kRearming / kRearmingMissed (ownership.cc:
//   nobody claims it then; connHeld and ReturnLoans never meet these values,
//   since a native call always finishes before its thread can exit). A claim
//   sets it (compare-and-swap from 0) when epoll_wait hands the item over; the
//   re-arm clears it in the same native call, so no JavaScript runs between
//   the two and a worker killed at any instant leaves an exact record of what
//   it held (connHeld).
// - Only the holder reads or writes an entry's contents, re-arms it or closes
//   (frees) it. When a holder is gone (its thread exited), the main thread
//   becomes the holder of what it held.
// - Other threads only look an entry up under the table lock (connShutdown,
//   connList, connShutdownGroup, the timer event, a publish) and never keep a
//   pointer past it.
// - Every call names the connection by (fd, id): an fd number is reused as soon
//   as it is closed, an id never is, so a stale (fd, id) finds nothing (-EBADF).
//
// Plain C++: no N-API here or in the files that include this.
#pragma once
#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <ctime>
#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "mono_clock.h"
#include <vector>

#include "conn_state.h"
#include "conn_table.h"
#include "input_buffer.h"
#include "output_queue.h"
#include "proxy_protocol.h"
#include "sender.h"
#include "tcpmod_limits.h"
#include "timers.h"

namespace tcpmod {

struct TlsSession;
struct Server;

// A connection (or the listener's) entry.
struct Conn {
  uint64_t id = 0;
  int group = 0;  // the owning server's key (its epoll fd)
  int kind = kKindConn;
  int fd = -1;  // the socket, fixed at open (the timer heap hands back slots, not fds)
  std::atomic<int> holder{0};
  // The events its one-shot item is armed with in epoll (0: not armed, or not known to be). Set by
  // the re-arm, cleared by every claim of an epoll event for it (ClaimEvent, which is how a fired
  // one-shot item is always met), so an entry taken from the due list while still armed is given
  // back without an epoll_ctl when the events are the same (ownership.cc RearmHeld).
  std::atomic<uint32_t> armed{0};
  // Where it is in its life (conn_state.h). Changed by the holder under the
  // table lock; read by listings, the timer event and a drain under it.
  ConnState life = ConnState::kAccepted;
  // The close phase was entered and kept the entry: its close has been counted
  // (connClose reports it, so the caller does not count it again).
  bool close_counted = false;
  // Threads naming its fd in a syscall outside the table lock without holding
  // it (connShutdown: registry.cc's Pin); under the lock. A close meanwhile
  // unlinks the entry but leaves the fd open and the entry allocated
  // (close_deferred) until the last of them unpins and finishes it, so the fd
  // number cannot be reused mid-call.
  int pins = 0;
  bool close_deferred = false;
  int state_size = 0;
  // TLS terminated here (nullptr: plain TCP); the module sees plaintext only,
  // and is first called once the handshake has completed.
  TlsSession* tls = nullptr;
  InputBuffer pending;
  uint8_t state[limits::kStateMax];
  // Time (CLOCK_MONOTONIC ms): the last input, since when a frame has been
  // incomplete (0: none), the module's timer (0: none; under the lock), and the
  // entry's single item in its server's timer heap (timers.h). last_input and
  // frame_since are written by the holder without the table lock (atomics)
  // and read by the timer event under it.
  std::atomic<int64_t> last_input{0};
  std::atomic<int64_t> frame_since{0};
  int64_t timer_at = 0;
  TimerSlot wake;
  // What this connection's buffers hold toward the server's memory bounds
  // (allocated bytes), kept beside the buffers (which only the holder may
  // touch) for the scan that sheds; and the bytes in use (for the gauges). See AccountBuffers.
  std::atomic<int64_t> in_held{0}, out_held{0};
  int64_t in_used = 0, out_used = 0;
  uint32_t due = 0;  // kDue* bits, handed to the next claimer (under the lock)
  // Queued output (send mode "queued"): bytes the socket has not taken yet, in
  // order; send_since is the last progress while non-empty (under the lock).
  OutputQueue out;
  int64_t send_since = 0;
  // kv_send's head and pinned value, held back to go with the event's next write (sender.h); the
  // holder's. Never beside queued output: held only when `out` is empty, sent before anything is queued.
  HeldRun held;
  // tcpmod.want: do not call the module before this many bytes are pending (0: any).
  uint32_t want = 0;
  // Backpressure: set when queued output passed the high-water mark, cleared
  // when it drains to the low-water mark (half of it); no input is read meanwhile.
  bool paused = false;
  ClosePhase phase;  // kLingering: since when
  HalfClose half;    // its input and output ended apart (conn_state.h); the holder's
  // The client a PROXY header named (family 0: none; the socket's own peer stands).
  ProxyHeader proxied;
  Server* srv = nullptr;  // its server's state (nullptr: none configured when it opened)
  // The module generation whose instance handles this connection (live reload).
  // Set at open; changed only by the holder (generations.cc); read by listings
  // under the lock, hence atomic.
  std::atomic<int> generation{0};
  // Pub/sub (pubsub.cc): mailbox and subscriptions' server, created at the first subscribe.
  ConnTopics* topics = nullptr;

  // A snapshot of its times for the deadline rules (conn_state.h). Under the lock.
  ConnTimes Times() const { return {last_input.load(), frame_since.load(), send_since, timer_at}; }
};

// An event lent to a worker's next epollWait calls (LendBatch), and since when.
struct Loan {
  Lent event;
  int64_t at;
};

// The syscalls on a server's own descriptors -- setting its timerfd, re-arming
// the timer item, waking a waiter through the due eventfd -- are decided under
// the table lock but made after it is released (TableLock's destructor), under
// this small lock of their own, which also guards closing the descriptors
// (TimersForget): never on a closed, or reused, descriptor. Shared, so that a
// call deferred by one thread outlives the server being forgotten by another.
struct ServerIo {
  std::mutex mu;
  int epfd = -1, timerfd = -1, duefd = -1;
  bool closed = false;                // under mu
  std::atomic<int64_t> want_at{0};    // what the timerfd must be set to (decided under the table lock)
  int64_t set_at = 0;                 // what it was last set to (under mu)
};
// What a thread has deferred while it held the table lock (bits).
enum DeferredIo : uint8_t { kIoArm = 1, kIoPoke = 2, kIoTimerItem = 4 };

// One server's state (keyed by its epoll fd, `group`): its timer heap and
// timerfd, the due list, the timeouts and bounds that apply to every one of
// its connections, its memory totals and its batch loans. Under the table lock
// unless marked atomic.
struct Server {
  int epfd = -1;
  std::shared_ptr<ServerIo> io;  // its descriptors' syscalls, made outside the table lock
  ServerTimers heap;  // one item per connection with a deadline; its timerfd is in the epoll set
  ServerDeadlines deadlines;
  int timers = 0;               // connections with a module timer armed
  unsigned proxy_versions = 0;  // PROXY protocol versions every connection must start with (0: off)
  // Output and input memory (queued mode): per-connection and server-wide bounds, totals:
  // bytes in use (the gauges) and bytes allocated (what the server-wide bounds count).
  bool queued = false;
  int64_t out_high = 0, out_max = 0, out_total_max = 0, in_total_max = 0;
  std::atomic<int64_t> out_bytes{0}, in_bytes{0};
  std::atomic<int64_t> out_alloc{0}, in_alloc{0};
  int64_t last_trim = 0;  // when the bounds last closed connections (at most one scan per 50 ms)
  int64_t trim_at = 0;    // a bound passed during the pause: scan again then (the timerfd wakes for it)
  // Connections marked due, for the next waiter to take directly: a due mark
  // cannot rely on epoll, since a client that neither reads nor sends makes
  // its socket report nothing.
  std::deque<std::pair<int, uint64_t>> due_list;
  std::atomic<int> due_count{0};
  // An eventfd in the epoll set (KIND_DUE, one-shot) that wakes one waiter
  // while the list is not empty; each taker wakes the next, so they share it.
  int duefd = -1;
  // Batches (batchConfigure): per holder, the events claimed and not yet handed
  // to its JavaScript, oldest first. The timer hands back those left longer
  // than batch_budget (steal_at: when the oldest loan passes it; 0: no loans
  // pending), re-armed with conn_events or listen_events.
  std::vector<std::deque<Loan>> loans;
  int64_t steal_at = 0;
  int64_t batch_budget = 0;
  uint32_t conn_events = 0, listen_events = 0;
  // Generations (generations.cc): the pairs (from << 32 | to) whose
  // compatibility verdict lets a connection of `from` continue on `to`, with
  // what `to` needs of it (state size, in_cap). A pair absent pins.
  struct Move {
    int state_size;
    int64_t in_cap;
  };
  std::unordered_map<uint64_t, Move> moves;
};

// The table lock: held for short bookkeeping (the re-arm's epoll_ctl runs outside
// it, ownership.cc); an adaptive mutex spins a little before it sleeps, which on a
// busy server saves futex wait/wake pairs (bench/results/echo-profile.md).
class TableMutex {
 public:
  TableMutex() {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&m_, &a);
    pthread_mutexattr_destroy(&a);
  }
  void lock() { pthread_mutex_lock(&m_); }
  void unlock() { pthread_mutex_unlock(&m_); }

 private:
  pthread_mutex_t m_;
};

// The table: one per process, since fd numbers are the process's. Everything
// in it is under `mu`.
struct Table {
  TableMutex mu;
  std::vector<Conn*> by_fd;                   // indexed by fd
  std::unordered_map<int, Server> servers;    // by group (epoll fd); node-based: a Server never moves
  std::unordered_map<int, int> group_conns;   // open connections per group
  std::unordered_set<uint32_t> module_ids;    // module-visible ids of open connections
  uint64_t next_id = 1;
};
// The one table, an object at namespace scope (constructed when the addon loads, before any call
// into it): table() runs ~11 times per request, and a function-local static cost a call and a
// guard check each (bench/results/ceiling-profile.md). Hidden: a direct address, not a GOT load.
__attribute__((visibility("hidden"))) extern Table the_table;
inline Table& table() { return the_table; }

// Queues a syscall on s's descriptors for when this thread releases the table
// lock. Caller holds the lock.
void DeferIo(Server& s, uint8_t what);
// Makes the syscalls this thread deferred (DeferIo). Caller does not hold the lock.
void RunDeferredIo();
// Whether the lock's holder deferred any (set by DeferIo, cleared at release): under the table lock, so
// the release of a scope that deferred nothing -- nearly every one -- costs no call and no thread_local lookup.
extern bool io_deferred;

// The table lock, held for a scope; on release it makes the syscalls deferred
// under it (DeferIo), so that none of them runs under the lock.
class TableLock {
 public:
  explicit TableLock(TableMutex& m) : m_(m) { m_.lock(); }
  ~TableLock() {
    const bool io = io_deferred;
    io_deferred = false;
    m_.unlock();
    if (io) RunDeferredIo();
  }
  TableLock(const TableLock&) = delete;
  TableLock& operator=(const TableLock&) = delete;

 private:
  TableMutex& m_;
};


// --- What the table calls in other concerns (pubsub.cc, upstream.cc; declared
// here since their headers carry N-API): a closing connection's subscriptions
// and mailbox end (under the lock), its upstreams close with it, and an
// upstream event left unreported marks it due at its re-arm.
void TopicsForgetLocked(int fd, uint64_t id, ConnTopics* t);
void UpstreamsDrop(uint64_t conn_id);
bool UpstreamsPending(uint64_t conn_id);
bool UpstreamsAny(uint64_t conn_id);  // it has an upstream open (half-close waits for them to end)
// Backpressure toward upstreams: the client's queued output is above its high-water mark (or not yet
// drained to half of it since it was): its upstreams are not read, their wake marks wait (upstream.cc).
// Caller holds the lock (or is the holder).
bool ConnOutputOver(const Conn* c);
bool ConnOutputOver(int fd, uint64_t id);  // the same, looked up (takes the lock for the lookup)

// --- registry.cc: ids, the fd index, open and close
Server* ServerOf(int group);  // caller holds the lock
Conn* FindLocked(int fd, uint64_t id);
Conn* Find(int64_t fd, int64_t id);  // takes the lock for the lookup only
// Removes the entry (fd, id) from the table and from its server's heap, totals
// and id space; returns it (for its holder to free), or nullptr.
Conn* Unlink(int fd, uint64_t id);

// --- due.cc: deadlines, the due list, the timer event
// Moves c's single heap item to its next wake time. Caller holds the lock.
void Schedule(Conn* c, Server& s);
// Sets the timerfd to the earliest of the heap, the memory scan's pause and the oldest loan's budget.
void ArmTimerfd(Server& s);
// Marks c due and queues it for the next waiter (TakeDue). Caller holds the lock.
void MarkDue(Server& s, Conn* c, int fd, uint32_t bits);

// --- loans.cc: batches
// Hands back (re-arms) the loans of `holder` (0: of every holder) made at or
// before `before`: a ready socket re-armed reports again at once, and the due
// bits the claim took go back to the entry, so whoever takes it next sees the
// same event. Returns how many. Caller holds the lock.
int ReturnLoans(Server& s, int holder, int64_t before);
// When the oldest loan left passes the budget (0: none left). Caller holds the lock.
int64_t NextSteal(const Server& s);

// --- ownership.cc: claim and re-arm
// Takes the entry for `holder` if no one holds it (see ownership.cc).
bool Claim(Conn* c, int holder);
// Gives the entry back to epoll; caller holds the lock.
int RearmLocked(Conn* c, int fd, int epfd, uint32_t events);

// Lends an entry nobody holds for one write by another thread, and gives it back (direct.cc).
bool LendForWrite(Conn* c);                // caller holds the lock
void ReturnLentLocked(Conn* c, int fd);    // caller holds the lock

// --- conn_output.cc: buffers and the memory bounds
// Brings c's part of its server's memory totals up to date with its buffers;
// past a bound, sheds. Caller is the holder, without the lock.
void AccountBuffers(Conn* c);
// Marks the largest holders of input (or queued output) of the server for
// closing (kDueOverflow) until its total would be back under `max`. Caller holds the lock.
void Trim(Server& s, int group, bool input, int64_t max);
// Sends queued output until the socket is full: the bytes left, or -errno. Holder, without the lock.
int64_t Flush(Conn* c, int fd);
// Half-close at the end of the holder's event (conn_state.h HalfClose): the
// FIN once the output is ending and drained. Holder, without the lock.
void HalfCloseStep(Conn* c, int fd);
// Sends what the socket takes now, nothing queued: bytes taken, or -errno. Holder.
int64_t WriteNow(Conn* c, int fd, const uint8_t* p, size_t len);
// Sends c's held run (Conn::held, not empty; nothing queued) with a then b
// behind it, in one sendmsg, and gives the run back: the bytes of a and b
// taken, or -errno (-ENOBUFS: its rest would pass --max-output-buffer). What
// the socket does not take of the held run is queued (copied); of a and b, it
// is the caller's to queue or send. Holder, without the lock.
int64_t SendHeld(Conn* c, int fd, const uint8_t* a, size_t alen, const uint8_t* b, size_t blen);
// The longest head a held run copies (kv_send's heads are a protocol header; a longer one is written at once).
constexpr size_t kHeldHeadMax = 4096;
// --- ownership.cc
// Gives the entry back to epoll, the epoll_ctl outside the lock (see there). Holder, without the lock.
int RearmHeld(Conn* c, int fd, int epfd, uint32_t events);
// registry.cc: pins (Conn::pins). Unpin returns true when the caller must
// finish a close deferred meanwhile (FinishClose, after releasing the lock).
void Pin(Conn* c);    // caller holds the lock
bool Unpin(Conn* c);  // caller holds the lock
void FinishClose(Conn* c);
// conn_close.cc's close of an unlinked entry: its fd closed and the entry
// freed now, or, while it is pinned, by the last Unpin's caller. Caller does
// not hold the lock.
void CloseUnlinked(Conn* c);

}  // namespace tcpmod
