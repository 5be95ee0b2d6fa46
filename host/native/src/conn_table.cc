// The connection table: per socket, the state the ABI says the host owns
// (input the module has not consumed yet, and the opaque state slot), kept in
// native memory so that whichever worker takes a connection's next event finds
// it. The listening socket has an entry too, so that it is handed over the same way.
//
// Ownership (why entries need no per-entry lock, and are never freed under
// another thread):
// - Every entry has a `holder`: 0 while it waits in epoll, else the worker
//   (slot + 1) that has it, or, for the instant its holder's re-arm syscall is
//   in flight outside the lock, kRearming / kRearmingMissed (see RearmHeld:
//   nobody claims it then; connHeld and ReturnLoans never meet these values,
//   since a native call always finishes before its thread can exit). ClaimEvent sets it (compare-and-swap from 0) when
//   epoll_wait hands the item over; connRearm clears it in the same native call
//   that re-arms, so no JavaScript runs between the two and a worker killed at
//   any instant leaves an exact record of what it held (connHeld).
// - Only the holder reads or writes an entry's contents, re-arms it or closes
//   (frees) it. When a holder is gone (its thread exited), the main thread
//   becomes the holder of what it held.
// - Other threads only look an entry up under the table lock (connShutdown,
//   connList, connShutdownGroup) and never keep a pointer past it.
// - Every call names the connection by (fd, id): an fd number is reused as soon
//   as it is closed, an id never is, so a stale (fd, id) finds nothing (-EBADF).
#include "conn_table.h"

#include <algorithm>
#include <cassert>
#include <atomic>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <mutex>
#include <pthread.h>
#include <sys/epoll.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <unordered_map>
#include <unordered_set>
#include <vector>
#include <deque>
#include <functional>
#include <sys/eventfd.h>

#include "args.h"
#include "close_phase.h"
#include "input_buffer.h"
#include "mailbox.h"
#include "pubsub.h"
#include "output_queue.h"
#include "proxy_protocol.h"
#include "sender.h"
#include "sockets.h"
#include "tcpmod_limits.h"
#include "timers.h"
#include "tls.h"
#include "upstream.h"

namespace tcpmod {
namespace {

constexpr int kMaxState = limits::kStateMax;
constexpr int kLoadEof = 1 << 30;  // connLoad's EOF bit; lengths stay below 4 MiB
// Ids a module sees are i32: the id modulo 2^31 (see NextId).
constexpr uint64_t kModuleIdSpace = limits::kModuleIdSpace;

struct Conn {
  uint64_t id;
  int group;  // the owning server's key (its epoll fd)
  int kind;
  std::atomic<int> holder{0};
  int state_size;
  // TLS terminated here (nullptr: plain TCP); the module sees plaintext only,
  // and is first called once the handshake has completed.
  TlsSession* tls = nullptr;
  bool handshaken = false;
  InputBuffer pending;
  uint8_t state[kMaxState];
  // Time (CLOCK_MONOTONIC ms; under table_mu): the last input, since when the
  // carry-over has been non-empty (0: empty), the module's timer (0: none), and
  // the entry's single item in its server's timer heap (timers.h).
  // Written by the holder without the table lock (atomics), read by the timer
  // event under it.
  std::atomic<int64_t> last_input{0};
  std::atomic<int64_t> frame_since{0};
  // What this connection's buffers hold toward the server's memory bounds
  // (allocated bytes), kept beside the buffers (which only the holder may
  // touch) for the scan that sheds; and the bytes in use (for the gauges). See AccountBuffers.
  std::atomic<int64_t> in_held{0}, out_held{0};
  int64_t in_used = 0, out_used = 0;
  int64_t timer_at = 0;
  TimerSlot wake;
  int fd = -1;  // the socket, fixed at connOpen (the timer heap hands back slots, not fds)
  uint32_t due = 0;  // kDue* bits, handed to the next claimer
  // Queued output (send mode "queued"): bytes the socket has not taken yet, in
  // order; send_since is the last progress while non-empty.
  OutputQueue out;
  int64_t send_since = 0;
  // tcpmod.want: do not call the module before this many bytes are pending (0: any).
  uint32_t want = 0;
  // Backpressure: set when queued output passed the high-water mark, cleared
  // when it drains to the low-water mark (half of it); no input is read meanwhile.
  bool paused = false;
  // The module closed (on_close ran, the close was counted) with output still
  // queued: the socket stays until the queue drains or the send timeout passes.
  bool closing = false;
  ClosePhase phase;  // after the queue drained: lingering (close_phase.h)
  // The module has been told of this connection (on_open started). A worker
  // that dies holding connections it accepted but had not opened yet leaves
  // them to be opened by another worker instead of closed.
  bool opened = false;
  // --proxy-protocol: the header has not been read yet (the module, and a TLS
  // handshake, wait for it), and the client it named (family 0: none, the
  // socket's own peer stands).
  bool proxy_wait = false;
  ProxyHeader proxied;
  struct Group* grp = nullptr;
  // The module generation whose instance handles this connection (live reload).
  // Set at connOpen; changed only by the holder (connMigrate); read by listings
  // under table_mu, hence atomic.
  std::atomic<int> generation{0};
  // Pub/sub (pubsub.cc): mailbox and subscriptions' server, created at the first subscribe.
  ConnTopics* topics = nullptr;
};

// Per server (group): its timer heap and timerfd (timers.h), and the
// timeouts that apply to every connection. Under table_mu.
// An event lent to a worker's next epollWait calls (LendBatch), and since when.
struct Loan {
  Lent event;
  int64_t at;
};
struct Group {
  ServerTimers heap;  // one item per connection with a deadline; its timerfd is in the epoll set
  int64_t read_timeout = 0, frame_timeout = 0;
  int64_t drain_start = 0, drain_grace = 0;
  int timers = 0;  // connections with a module timer armed
  unsigned proxy_versions = 0;  // PROXY protocol versions every connection must start with (0: off)
  // Output and input memory (queued mode): per-connection and server-wide bounds, totals:
  // bytes in use (the gauges) and bytes allocated (what the server-wide bounds count).
  bool queued = false;
  int64_t send_timeout = 0;
  LingerConfig linger;  // lingerConfigure
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
  int epfd = -1;
  // Batches (batchConfigure): per holder, the events claimed and not yet handed
  // to its JavaScript, oldest first. The timer hands back those left longer
  // than batch_budget (steal_at: when the oldest loan passes it; 0: no loans
  // pending), re-armed with conn_events or listen_events.
  std::vector<std::deque<Loan>> loans;
  int64_t steal_at = 0;
  int64_t batch_budget = 0;
  uint32_t conn_events = 0, listen_events = 0;
};
std::unordered_map<int, Group> groups;

Group* GroupOf(int group) {
  auto it = groups.find(group);
  return it == groups.end() ? nullptr : &it->second;
}


// The table lock: held for short bookkeeping (the re-arm's epoll_ctl runs outside
// it, RearmHeld); an adaptive mutex spins a little before it sleeps, which on a
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
TableMutex table_mu;
std::vector<Conn*> by_fd;                       // indexed by fd
std::unordered_map<int, int> group_conns;       // open connections per group
std::unordered_set<uint32_t> module_ids;        // module-visible ids of open connections
uint64_t next_id = 1;                           // under table_mu

// Host ids are 64-bit and never repeat. A module sees id mod 2^31, which is
// never 0 and never equal to that of another open connection: ids whose
// projection is 0 or taken are skipped. Caller holds table_mu.
uint64_t NextId(bool conn) {
  for (;;) {
    uint64_t id = next_id++;
    uint32_t m = static_cast<uint32_t>(id % kModuleIdSpace);
    if (m == 0) continue;
    if (!conn) return id;
    if (module_ids.insert(m).second) return id;
  }
}

Conn* FindLocked(int fd, uint64_t id) {
  if (fd < 0 || static_cast<size_t>(fd) >= by_fd.size()) return nullptr;
  Conn* c = by_fd[fd];
  return c != nullptr && c->id == id ? c : nullptr;
}

Conn* Find(int64_t fd, int64_t id) {
  std::lock_guard<TableMutex> lock(table_mu);
  return FindLocked(static_cast<int>(fd), static_cast<uint64_t>(id));
}

// Removes the entry (fd, id) from the table; returns it, or nullptr when it is not there.
Conn* Unlink(int fd, uint64_t id) {
  std::lock_guard<TableMutex> lock(table_mu);
  Conn* c = FindLocked(fd, id);
  if (c == nullptr) return nullptr;
  by_fd[fd] = nullptr;
  if (c->kind == kKindConn) {
    if (c->grp) {
      c->grp->in_bytes -= c->in_used;
      c->grp->out_bytes -= c->out_used;
      c->grp->in_alloc -= c->in_held.load();
      c->grp->out_alloc -= c->out_held.load();
    }
    if (Group* g = GroupOf(c->group)) {
      if (c->timer_at) g->timers--;
      g->heap.Remove(&c->wake);  // a closed connection leaves nothing in the heap
    }
    module_ids.erase(static_cast<uint32_t>(c->id % kModuleIdSpace));
    if (c->topics) TopicsForgetLocked(fd, c->id, c->topics);  // subscriptions end, the mailbox is freed
    c->topics = nullptr;
    UpstreamsDrop(c->id);  // an upstream belongs to its client: it goes with it
    if (--group_conns[c->group] == 0) group_conns.erase(c->group);
  }
  return c;
}

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// When this connection next needs attention: its module timer, its read timeout
// (nothing received), its frame timeout (carry-over left unconsumed), or, while
// the server drains, its idle grace. Caller holds table_mu.
int64_t NextWake(const Conn* c, const Group& g) {
  if (c->kind != kKindConn) return kNever;
  // Closed by the module: no read, frame, drain-idle or timer deadline, only its send or linger deadline.
  if (c->closing) return ClosingDeadline(c->phase, g.linger, c->send_since, g.send_timeout, c->last_input);
  int64_t w = kNever;
  if (c->timer_at) w = std::min(w, c->timer_at);
  if (g.read_timeout) w = std::min(w, c->last_input + g.read_timeout);
  if (g.frame_timeout && c->frame_since) w = std::min(w, c->frame_since + g.frame_timeout);
  if (g.send_timeout && c->send_since) w = std::min(w, c->send_since + g.send_timeout);
  if (g.drain_start && c->frame_since == 0)
    w = std::min(w, std::max(c->last_input.load(), g.drain_start) + g.drain_grace);
  return w;
}

// What is due now (kDue* bits); a due module timer is consumed. Caller holds table_mu.
uint32_t DueNow(Conn* c, const Group& g, int64_t now) {
  uint32_t due = 0;
  if (c->closing) {  // as NextWake
    if (g.send_timeout && c->send_since && c->send_since + g.send_timeout <= now) due |= kDueSendTimeout;
    if (LingerExpired(c->phase, g.linger, c->last_input, now)) due |= kDueLinger;
    return due;
  }
  if (c->timer_at && c->timer_at <= now) {
    due |= kDueTimer;
    c->timer_at = 0;
  }
  if (g.read_timeout && c->last_input + g.read_timeout <= now) due |= kDueTimeout;
  if (g.frame_timeout && c->frame_since && c->frame_since + g.frame_timeout <= now) due |= kDueTimeout;
  if (g.send_timeout && c->send_since && c->send_since + g.send_timeout <= now) due |= kDueSendTimeout;
  if (g.drain_start && c->frame_since == 0 &&
      std::max(c->last_input.load(), g.drain_start) + g.drain_grace <= now)
    due |= kDueDrainIdle;
  return due;
}

// Sets the timerfd to the earliest of the heap, the memory scan's pause and the oldest loan's budget.
void ArmTimerfd(Group& g) {
  int64_t also = g.trim_at;
  if (g.steal_at && (also == 0 || g.steal_at < also)) also = g.steal_at;
  g.heap.Arm(also);
}

// Moves c's single heap item to its next wake time (none: out of the heap).
// Caller holds table_mu.
void Schedule(Conn* c, Group& g) {
  if (g.heap.Schedule(&c->wake, NextWake(c, g))) ArmTimerfd(g);
}

uint64_t EpollData(const Conn* c, int fd) {
  return EpollPack(c->kind, fd, c->id);
}

// Wakes one waiter for the due list.
void PokeDue(Group& g) {
  if (g.duefd < 0) return;
  uint64_t one = 1;
  ssize_t n;
  do n = write(g.duefd, &one, sizeof(one)); while (n < 0 && errno == EINTR);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLONESHOT;
  ev.data.u64 = EpollPack(kKindDue, g.duefd, 0);
  epoll_ctl(g.epfd, EPOLL_CTL_MOD, g.duefd, &ev);
}

// Marks c due and queues it for the next waiter (TakeDue). Caller holds table_mu.
void MarkDue(Group& g, Conn* c, int fd, uint32_t bits) {
  c->due |= bits;
  g.due_list.push_back({fd, c->id});
  if (g.due_count++ == 0) PokeDue(g);
}

// Where the connection is in its life, for its next claimer (kDue* bits that
// are not due times). A PROXY header comes first on the wire, before any TLS
// handshake, so while it is awaited nothing else applies.
uint32_t PhaseBits(const Conn* c) {
  if (c->proxy_wait) return kDueProxy;
  bool shaking = c->tls != nullptr && !c->handshaken;
  return (shaking ? static_cast<uint32_t>(kDueHandshake) : 0u) | (c->closing ? static_cast<uint32_t>(kDueClosing) : 0u) |
         (c->kind == kKindConn && !c->opened && !shaking ? static_cast<uint32_t>(kDueOpen) : 0u);
}

// Marks the largest holders of input (or queued output) of g, armed or not,
// for closing (kDueOverflow) until the total would be back under `max`: the
// server sheds the connections that cost most, never itself. At most one scan
// per 50 ms. Caller holds table_mu.
void Trim(Group& g, int group, bool input, int64_t max) {
  int64_t now = NowMs();
  if (now - g.last_trim < 50) {
    // Scanned moments ago: look again when the pause is over, whatever arrives meanwhile.
    if (g.trim_at == 0) {
      g.trim_at = g.last_trim + 50;
      ArmTimerfd(g);
    }
    return;
  }
  g.last_trim = now;
  std::vector<std::pair<int64_t, int>> sizes;
  int64_t total = 0;
  for (size_t fd = 0; fd < by_fd.size(); fd++) {
    Conn* c = by_fd[fd];
    if (c == nullptr || c->group != group || c->kind != kKindConn) continue;
    if (c->due & kDueOverflow) continue;  // already on its way out
    int64_t n = input ? c->in_held.load() : c->out_held.load();
    total += n;
    if (n > 0) sizes.push_back({n, static_cast<int>(fd)});
  }
  std::sort(sizes.begin(), sizes.end(), std::greater<std::pair<int64_t, int>>());
  for (auto& [n, fd] : sizes) {
    if (total <= max) break;
    MarkDue(g, by_fd[fd], fd, kDueOverflow);
    total -= n;
  }
}

// Brings c's part of the server's memory totals up to date with its buffers,
// after any change to them: bytes in use (the gauges) and bytes allocated
// (what --max-input-memory and --max-output-memory bound, since that is what
// the process holds); past a bound, sheds. Caller is the holder, without table_mu.
void AccountBuffers(Conn* c) {
  Group* g = c->grp;
  if (g == nullptr) return;
  const int64_t in_alloc = static_cast<int64_t>(c->pending.allocated());
  const int64_t out_alloc = static_cast<int64_t>(c->out.allocated());
  const int64_t d_in = in_alloc - c->in_held.exchange(in_alloc);
  const int64_t d_out = out_alloc - c->out_held.exchange(out_alloc);
  g->in_bytes += static_cast<int64_t>(c->pending.size()) - c->in_used;
  g->out_bytes += static_cast<int64_t>(c->out.size()) - c->out_used;
  c->in_used = static_cast<int64_t>(c->pending.size());
  c->out_used = static_cast<int64_t>(c->out.size());
  const int64_t in_total = (g->in_alloc += d_in);
  const int64_t out_total = (g->out_alloc += d_out);
  assert(in_total >= 0 && out_total >= 0);
  const bool over_in = d_in > 0 && g->in_total_max && in_total > g->in_total_max;
  const bool over_out = d_out > 0 && g->out_total_max && out_total > g->out_total_max;
  if (!over_in && !over_out) return;
  std::lock_guard<TableMutex> lock(table_mu);
  if (over_in) Trim(*g, c->group, true, g->in_total_max);
  if (over_out) Trim(*g, c->group, false, g->out_total_max);
}

// Where c's bytes go (sender.h).
Sink SinkOf(const Conn* c, int fd) { return Sink{fd, c->tls}; }

// Sends queued output until the socket is full: the bytes left, or -errno.
int64_t Flush(Conn* c, int fd) {
  const size_t before = c->out.size();
  const int64_t left = Drain(SinkOf(c, fd), c->out);
  AccountBuffers(c);
  if (left < 0) return left;
  if (static_cast<size_t>(left) != before || left == 0) {
    std::lock_guard<TableMutex> lock(table_mu);
    c->send_since = left ? NowMs() : 0;  // the send timeout counts from the last progress
  }
  return left;
}

bool StateFits(const Napi::CallbackInfo& info, int64_t ptr, int size, size_t mem_size) {
  if (ptr >= 0 && static_cast<uint64_t>(ptr) + size <= mem_size) return true;
  Napi::RangeError::New(info.Env(), "state region outside memory").ThrowAsJavaScriptException();
  return false;
}


// connOpen(fd, group, stateSize, holder, kind = 0, tlsCtx = 0, generation = 0) -> id | -EEXIST | -EBADF | -EINVAL.
// Registers a socket held by `holder` (the worker that accepted it, or the main
// thread's 0 for the listener before any worker runs). With tlsCtx (a context of
// tlsContextCreate) the connection speaks TLS: -EINVAL when the context is unknown.
// `generation` is the module generation it starts on (connMigrate moves it).
Napi::Value ConnOpen(const Napi::CallbackInfo& info) {
  int64_t fd, group, state_size, holder, kind = kKindConn, tls_ctx = 0, generation = 0;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &group) || !ArgInt(info, 2, &state_size) ||
      !ArgInt(info, 3, &holder) || (info.Length() > 4 && !ArgInt(info, 4, &kind)) ||
      (info.Length() > 5 && !ArgInt(info, 5, &tls_ctx)) || (info.Length() > 6 && !ArgInt(info, 6, &generation)))
    return info.Env().Undefined();
  if (state_size < 0 || state_size > kMaxState || (kind != kKindConn && kind != kKindListen)) {
    Napi::RangeError::New(info.Env(), "stateSize must be 0.." + std::to_string(kMaxState) + " and kind 0 or 1").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  if (fd < 0 || fd > (1 << 30)) return Num(info, -EBADF);
  Conn* c = new Conn();
  c->group = static_cast<int>(group);
  c->kind = static_cast<int>(kind);
  c->holder.store(static_cast<int>(holder));
  c->state_size = static_cast<int>(state_size);
  c->generation.store(static_cast<int>(generation));
  std::memset(c->state, 0, sizeof(c->state));
  if (tls_ctx > 0 && (c->tls = TlsSessionNew(static_cast<int>(tls_ctx), static_cast<int>(fd))) == nullptr) {
    delete c;
    return Num(info, -EINVAL);
  }
  {
    std::lock_guard<TableMutex> lock(table_mu);
    if (static_cast<size_t>(fd) >= by_fd.size()) by_fd.resize(static_cast<size_t>(fd) + 1024, nullptr);
    if (by_fd[fd] != nullptr) {
      TlsSessionFree(c->tls);
      delete c;
      return Num(info, -EEXIST);
    }
    c->id = NextId(kind == kKindConn);
    c->fd = static_cast<int>(fd);
    c->wake.owner = c;
    by_fd[fd] = c;
    if (kind == kKindConn) {
      group_conns[c->group]++;
      c->grp = GroupOf(c->group);
      c->last_input = NowMs();
      if (c->tls != nullptr) c->frame_since = c->last_input.load();  // a handshake is a frame in progress
      if (c->grp && c->grp->proxy_versions) {
        c->proxy_wait = true;
        c->frame_since = c->last_input.load();  // and so is a PROXY header
      }
      if (Group* g = GroupOf(c->group)) Schedule(c, *g);
    }
  }
  return Num(info, static_cast<double>(c->id));
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
    if (c->paused && c->grp && left > c->grp->out_high / 2) return -EAGAIN;
    c->paused = false;
  }
  bool want_eof = false;
  size_t appended = 0;  // received by the want path, before the usual one
  if (c->want && !no_recv && c->tls == nullptr) {
    // tcpmod.want: append arriving bytes to the carry-over, without calling the
    // module, until `want` bytes (or in_cap) are pending: a trickle costs what it sends.
    size_t target = std::min<size_t>(c->want, cap);
    size_t start = c->pending.size();
    // Received through a small buffer and appended: growing the vector to the
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
      if (n == 0) want_eof = true;
      if (n < 0 && errno != EAGAIN) return -errno;
      break;
    }
    size_t got = c->pending.size() - start;
    appended = got;
    AccountBuffers(c);
    if (got || want_eof) {
      c->last_input = NowMs();
      if (c->frame_since == 0 && !c->pending.empty()) c->frame_since = c->last_input.load();
    }
    if (c->pending.size() < target && !want_eof) {
      *received = static_cast<int64_t>(got);
      return -EAGAIN;
    }
    c->want = 0;
  }
  size_t have = c->pending.size();
  if (no_recv || want_eof) cap = have;  // the carry-over alone (a timer call, or EOF already seen)
  const size_t before = have;

  if (have > cap) return -EOVERFLOW;
  if (have) std::memcpy(in, c->pending.data(), have);
  int eof = want_eof ? kLoadEof : 0;
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
  if (have > before || eof) c->last_input = NowMs();
  *received = static_cast<int64_t>(have - before + appended);
  return static_cast<int64_t>(have | eof);
}

// connLoad(fd, id, mem, inPtr, inCap, statePtr, received, noRecv = 0) -> inLen [| EOF bit] | -errno.
// Writes the carried-over input at inPtr, then receives straight into memory
// after it (one recv, up to inCap; for TLS, decrypted records until the socket
// is drained or the region is full), and copies the state slot to statePtr.
// -EPROTO: a TLS record failed; -EAGAIN: queued output is still above its mark,
// or tcpmod.want's frame is still incomplete (what arrived is kept).
// received[0] is set to the number of newly received bytes.
Napi::Value ConnLoad(const Napi::CallbackInfo& info) {
  int64_t fd, id, state_ptr;
  uint8_t *in, *base;
  size_t cap, mem_size;
  int64_t no_recv = 0;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id) || !ArgRegion(info, 2, &in, &cap, &base, &mem_size) ||
      !ArgInt(info, 5, &state_ptr) || (info.Length() > 7 && !ArgInt(info, 7, &no_recv)))
    return info.Env().Undefined();
  Conn* c = Find(fd, id);
  if (c == nullptr) return Num(info, -EBADF);
  if (c->state_size > 0 && !StateFits(info, state_ptr, c->state_size, mem_size)) return info.Env().Undefined();
  int64_t received = 0;
  int64_t rc = LoadHeld(c, static_cast<int>(fd), in, cap, base + state_ptr, no_recv != 0, &received);
  SetOutInt(info, 6, received);
  return Num(info, static_cast<double>(rc));
}

int RearmLocked(Conn* c, int fd, int epfd, uint32_t events);
int RearmHeld(Conn* c, int fd, int epfd, uint32_t events);

}  // namespace

// Pub/sub's access to the table (conn_table.h).
void WithTableLock(const std::function<void()>& fn) {
  std::lock_guard<TableMutex> lock(table_mu);
  fn();
}

ConnTopics* ConnTopicsLocked(int fd, uint64_t id, bool create) {
  Conn* c = FindLocked(fd, id);
  if (c == nullptr || c->kind != kKindConn) return nullptr;
  if (!create) return c->closing ? nullptr : c->topics;
  if (c->topics == nullptr) {
    c->topics = new ConnTopics();
    c->topics->group = c->group;
  }
  return c->topics;
}

void MarkConnDueLocked(int fd, uint64_t id, uint32_t bits) {
  Conn* c = FindLocked(fd, id);
  if (c == nullptr || c->grp == nullptr || (c->due & bits) == bits) return;  // marked already: queued, or its holder's re-arm queues it
  if (bits == kDueMessage && c->paused) return;  // its output drains first: the re-arm after that marks it
  MarkDue(*c->grp, c, fd, bits);
}

namespace {

// connSave(fd, id, mem, restPtr, restLen, statePtr, epfd?, events?, outPtr?, outLen?) -> left | -errno.
// Keeps [restPtr, restPtr+restLen) as the connection's unconsumed input and
// saves the state slot from statePtr. With epfd and events it then re-arms
// the entry as connRearm does, in the same call (the end of every kept event):
// -errno when that fails, and the caller stays holder.
// With an out region [outPtr, outPtr+outLen) of the same memory, the event's
// last output is sent first, without waiting (plain or TLS, nothing queued before
// it): the result is the number of its bytes the socket did not take. 0: all
// sent, then saved and re-armed; > 0: the last `left` bytes are unsent and
// nothing was saved — the caller sends them its own way (blocking or queued)
// and saves again without an out region. -errno: the send failed.
Napi::Value ConnSave(const Napi::CallbackInfo& info) {
  int64_t fd, id, state_ptr, epfd = -1, events = 0, out_ptr = 0, out_len = 0;
  uint8_t *rest, *base;
  size_t len, mem_size;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id) || !ArgRegion(info, 2, &rest, &len, &base, &mem_size) ||
      !ArgInt(info, 5, &state_ptr) || (info.Length() > 7 && (!ArgInt(info, 6, &epfd) || !ArgInt(info, 7, &events))) ||
      (info.Length() > 9 && (!ArgInt(info, 8, &out_ptr) || !ArgInt(info, 9, &out_len))))
    return info.Env().Undefined();
  if (out_len > 0 && (out_ptr < 0 || static_cast<uint64_t>(out_ptr) + static_cast<uint64_t>(out_len) > mem_size)) {
    Napi::RangeError::New(info.Env(), "out region outside memory").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Conn* c = Find(fd, id);
  if (c == nullptr) return Num(info, -EBADF);
  if (c->state_size > 0 && !StateFits(info, state_ptr, c->state_size, mem_size)) return info.Env().Undefined();
  if (out_len > 0) {
    // Output queued before this must stay ahead of it: the caller's way.
    if (!c->out.empty()) return Num(info, static_cast<double>(out_len));
    int64_t n = WriteSome(SinkOf(c, static_cast<int>(fd)), base + out_ptr, static_cast<size_t>(out_len));
    if (n < 0) return Num(info, static_cast<double>(n));
    if (n < out_len) return Num(info, static_cast<double>(out_len - n));
  }
  const bool kept = c->pending.Assign(rest, len);
  AccountBuffers(c);
  if (!kept) return Num(info, -ENOMEM);
  // The frame timeout runs from the moment the carry-over became non-empty.
  if (len == 0) c->frame_since = 0;
  else if (c->frame_since == 0) c->frame_since = NowMs();
  if (c->state_size > 0) std::memcpy(c->state, base + state_ptr, c->state_size);
  if (epfd < 0) return Num(info, 0);
  return Num(info, RearmHeld(c, static_cast<int>(fd), static_cast<int>(epfd), static_cast<uint32_t>(events)));
}

// connAdd(epfd, fd, id, events) -> 0 | -errno. Puts a new entry into the epoll
// set; the caller stays its holder until connRearm.
Napi::Value ConnAdd(const Napi::CallbackInfo& info) {
  int64_t epfd, fd, id, events;
  if (!ArgInt(info, 0, &epfd) || !ArgInt(info, 1, &fd) || !ArgInt(info, 2, &id) || !ArgInt(info, 3, &events))
    return info.Env().Undefined();
  Conn* c = Find(fd, id);
  if (c == nullptr) return Num(info, -EBADF);
  epoll_event ev{};
  ev.events = static_cast<uint32_t>(events);
  ev.data.u64 = EpollData(c, static_cast<int>(fd));
  return Num(info, epoll_ctl(static_cast<int>(epfd), EPOLL_CTL_ADD, static_cast<int>(fd), &ev) < 0 ? -errno : 0);
}

// Holder values while a re-arm is in flight without the table lock (RearmHeld):
// nobody may claim the entry then; a claim that comes (an event the re-arm
// made epoll report at once, a due mark taken) turns kRearming into
// kRearmingMissed and is dropped, and the re-arming thread does it over.
constexpr int kRearming = -1;
constexpr int kRearmingMissed = -2;
// How many re-arms were done over because a claim was turned away, and how many
// claims took an entry whose re-arm finished while they looked (rearmStats(), for tests).
std::atomic<uint64_t> rearm_retries{0}, claim_rescues{0};

// The epoll event an entry is re-armed with: `events` and what its state adds.
// Schedules its next wake and queues a due mark that came while it was held.
// Caller holds table_mu.
// Backpressure toward upstreams: the client's queued output is above its high-water mark (or not yet
// drained to half of it since it was): its upstreams are not read, their wake marks wait (upstream.cc).
bool ConnOutputOver(const Conn* c) {
  return c->paused || (c->grp && static_cast<int64_t>(c->out.size()) > c->grp->out_high);
}

epoll_event RearmEvent(Conn* c, int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  // Input OpenSSL holds already is invisible to epoll; asking for writability
  // as well makes a (writable) socket report at once, so it is not stranded.
  if (c->tls != nullptr && (events & EPOLLIN) && TlsHasPending(c->tls)) ev.events |= EPOLLOUT;
  ev.data.u64 = EpollData(c, fd);
  if (c->kind == kKindConn) {
    if (Group* g = GroupOf(c->group)) Schedule(c, *g);
    // An upstream event that came while it was held, or one its holder left unreported (upstream.h).
    if (!c->closing && !ConnOutputOver(c) && UpstreamsPending(c->id)) c->due |= kDueUpstream;
    if (c->due && c->grp) MarkDue(*c->grp, c, fd, 0);  // a time came while it was held: the next waiter takes it
    size_t queued = c->out.size();
    if (queued) {
      ev.events |= EPOLLOUT;  // report when the socket takes more
      // Backpressure: above the high-water mark, read nothing until it drains.
      if (c->grp && static_cast<int64_t>(queued) > c->grp->out_high) c->paused = true;
      if (c->paused || c->closing) ev.events &= ~static_cast<uint32_t>(EPOLLIN);
    }
    // Messages left after an event (it delivers a bounded number) are due next, unless the client is not reading its
    // output (backpressure): then they wait in the mailbox, whose bound closes a subscriber that never catches up.
    // A connection in its close phase takes no messages (the module closed it): its mailbox is dropped.
    if (c->topics && c->closing) c->topics->mail.Clear();
    if (c->topics && !c->topics->mail.empty() && !c->paused && !(c->due & kDueMessage)) MarkConnDueLocked(fd, c->id, kDueMessage);
  }
  return ev;
}

// Gives the entry back to epoll (EPOLL_CTL_MOD) with `events` and what its
// state adds: clears the holder first, since another worker may take the event
// the moment the item is re-armed. On failure the holder stays: -errno.
// Caller holds table_mu, so that the timer event sees either this holder or a
// re-armed item.
int RearmLocked(Conn* c, int fd, int epfd, uint32_t events) {
  epoll_event ev = RearmEvent(c, fd, events);
  int prev = c->holder.exchange(0);
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0) {
    int err = errno;
    c->holder.store(prev);
    return -err;
  }
  return 0;
}

// RearmLocked for the holder, with the epoll_ctl outside the table lock: the
// end of nearly every event, and a syscall that wakes a waiter is too long to
// hold the one lock every worker needs (measured: futex wake/wait were a fifth
// of the server's CPU). While the call is in flight the holder is kRearming, so
// no one claims the entry (and nothing frees it); a claim turned away meanwhile
// makes the thread re-arm again the locked way, so no event is lost. An entry
// with a due mark to queue takes the locked way at once. Caller is the holder
// and does not hold table_mu.
int RearmHeld(Conn* c, int fd, int epfd, uint32_t events) {
  epoll_event ev;
  int prev;
  {
    std::lock_guard<TableMutex> lock(table_mu);
    if (c->due || (c->topics && !c->topics->mail.empty())) return RearmLocked(c, fd, epfd, events);
    ev = RearmEvent(c, fd, events);
    prev = c->holder.exchange(kRearming);
  }
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0) {
    int err = errno;
    c->holder.store(prev);
    return -err;
  }
  int expect = kRearming;
  if (c->holder.compare_exchange_strong(expect, 0)) return 0;
  c->holder.store(prev);
  rearm_retries++;
  std::lock_guard<TableMutex> lock(table_mu);
  return RearmLocked(c, fd, epfd, events);
}

// Test hook (testClaimPause): µs a claim waits between seeing kRearming and
// marking it, so that the re-arming thread's swap to 0 lands in between.
std::atomic<int> claim_pause_us{0};

// testClaimPause(us) -> 0: test hook, see claim_pause_us (0 turns it off).
Napi::Value TestClaimPause(const Napi::CallbackInfo& info) {
  int64_t us;
  if (!ArgInt(info, 0, &us)) return info.Env().Undefined();
  claim_pause_us = static_cast<int>(std::clamp<int64_t>(us, 0, 100000));
  return Num(info, 0);
}

// rearmStats() -> [re-arms done over, claims that took an entry whose re-arm finished as they looked],
// since the process started.
Napi::Value RearmStats(const Napi::CallbackInfo& info) {
  Napi::Array out = Napi::Array::New(info.Env(), 2);
  out.Set(0u, Napi::Number::New(info.Env(), static_cast<double>(rearm_retries.load())));
  out.Set(1u, Napi::Number::New(info.Env(), static_cast<double>(claim_rescues.load())));
  return out;
}

// Takes the entry for `holder` if no one holds it. An entry whose re-arm is in
// flight without the lock (kRearming) is not taken: the claim marks it
// kRearmingMissed, so the re-arming thread does it again (RearmHeld) and the
// event comes back. The mark and the re-arming thread's own swap to 0 race: if
// that swap wins, the entry is free and the claim takes it -- a claim is never
// lost in between.
bool Claim(Conn* c, int holder) {
  for (;;) {
    int v = 0;
    if (c->holder.compare_exchange_strong(v, holder)) return true;
    if (v != kRearming) return false;  // held, or already marked
    if (int us = claim_pause_us.load(std::memory_order_relaxed)) usleep(static_cast<useconds_t>(us));
    if (c->holder.compare_exchange_strong(v, kRearmingMissed)) return false;
    // v changed meanwhile: freed (claim again), or marked by another claimer (nothing to do).
    if (v == 0) claim_rescues++;
  }
}

// connRearm(epfd, fd, id, events) -> 0 | -errno. Gives the entry back to epoll
// (RearmHeld). On failure the caller stays holder.
Napi::Value ConnRearm(const Napi::CallbackInfo& info) {
  int64_t epfd, fd, id, events;
  if (!ArgInt(info, 0, &epfd) || !ArgInt(info, 1, &fd) || !ArgInt(info, 2, &id) || !ArgInt(info, 3, &events))
    return info.Env().Undefined();
  Conn* c = Find(fd, id);
  if (c == nullptr) return Num(info, -EBADF);
  return Num(info, RearmHeld(c, static_cast<int>(fd), static_cast<int>(epfd), static_cast<uint32_t>(events)));
}

// The due bits that are times (kept in the entry until a claim takes them), as
// opposed to those a claim works out from the entry's state.
constexpr uint32_t kDueTimes = kDueTimer | kDueTimeout | kDueDrainIdle | kDueSendTimeout | kDueOverflow | kDueLinger | kDueMessage;

// Hands back (re-arms) the loans of `holder` (0: of every holder) made at or
// before `before`: a ready socket re-armed reports again at once, and the due
// bits the claim took go back to the entry, so whoever takes it next sees the
// same event. Returns how many. Caller holds table_mu.
int ReturnLoans(Group& g, int holder, int64_t before) {
  int n = 0;
  for (size_t h = holder ? holder : 1; h < g.loans.size() && (holder == 0 || h == static_cast<size_t>(holder)); h++) {
    std::deque<Loan>& q = g.loans[h];
    std::vector<Loan> failed;
    while (!q.empty() && q.front().at <= before) {
      Lent e = q.front().event;
      q.pop_front();
      if (e.kind == kKindWake) continue;  // level-triggered: the next wait reports it again
      Conn* c = FindLocked(e.fd, static_cast<uint64_t>(e.id));
      // Gone, or no longer this worker's (the main thread finished what a dead worker held): not ours to re-arm.
      if (c == nullptr || c->holder.load() != static_cast<int>(h)) continue;
      c->due |= e.due & kDueTimes;
      // A connection the module has not met may have nothing to report: writability makes it.
      uint32_t events = e.kind == kKindListen ? g.listen_events : g.conn_events | (c->opened ? 0u : static_cast<uint32_t>(EPOLLOUT));
      if (RearmLocked(c, e.fd, g.epfd, events) < 0) {
        // Stays with its holder (the set is being torn down), tried again a budget from now: a
        // loan dated in the past would make the timer fire again at once, round and round.
        failed.push_back({e, NowMs()});
        continue;
      }
      n++;
    }
    for (auto it = failed.rbegin(); it != failed.rend(); ++it) q.push_front(*it);
  }
  return n;
}

// When the oldest loan left passes the budget (0: none left). Caller holds table_mu.
int64_t NextSteal(const Group& g) {
  int64_t at = 0;
  for (const std::deque<Loan>& q : g.loans)
    if (!q.empty() && (at == 0 || q.front().at + g.batch_budget < at)) at = q.front().at + g.batch_budget;
  return at;
}

// batchConfigure(group, connEvents, listenEvents, budgetMs) -> 0 | -EBADF. Call
// after timersConfigure: what a loan handed back is re-armed with, and how long
// a loan may wait untouched.
Napi::Value BatchConfigure(const Napi::CallbackInfo& info) {
  int64_t group, conn_events, listen_events, budget;
  if (!ArgInt(info, 0, &group) || !ArgInt(info, 1, &conn_events) || !ArgInt(info, 2, &listen_events) ||
      !ArgInt(info, 3, &budget))
    return info.Env().Undefined();
  std::lock_guard<TableMutex> lock(table_mu);
  Group* g = GroupOf(static_cast<int>(group));
  if (g == nullptr) return Num(info, -EBADF);
  g->conn_events = static_cast<uint32_t>(conn_events);
  g->listen_events = static_cast<uint32_t>(listen_events);
  g->batch_budget = std::max<int64_t>(0, budget);
  return Num(info, 0);
}

// batchRelease(group, holder) -> entries handed back: every loan of `holder`,
// whatever its age (a worker that exited or was stopped never took them).
Napi::Value BatchRelease(const Napi::CallbackInfo& info) {
  int64_t group, holder;
  if (!ArgInt(info, 0, &group) || !ArgInt(info, 1, &holder)) return info.Env().Undefined();
  if (holder <= 0) return Num(info, 0);
  std::lock_guard<TableMutex> lock(table_mu);
  Group* g = GroupOf(static_cast<int>(group));
  if (g == nullptr) return Num(info, -EBADF);
  return Num(info, ReturnLoans(*g, static_cast<int>(holder), INT64_MAX));
}

// connClose(fd, id, drainBytes = 0) -> 0 | -EBADF (no such entry: closed already).
// Forgets the entry, then closes the socket; with drainBytes, it first shuts
// down writing and discards up to that much already-received input.
Napi::Value ConnClose(const Napi::CallbackInfo& info) {
  int64_t fd, id, drain = 0;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id) || (info.Length() > 2 && !ArgInt(info, 2, &drain)))
    return info.Env().Undefined();
  Conn* c = Unlink(static_cast<int>(fd), static_cast<uint64_t>(id));
  if (c == nullptr) return Num(info, -EBADF);
  const bool counted = c->closing;
  // A close phase that lingered has shut down writing and read what came already (close_phase.h).
  if (c->phase.lingering) drain = 0;
  if (c->tls != nullptr) {
    TlsCloseNotify(c->tls);  // only after a completed handshake, and never blocking
    TlsSessionFree(c->tls);
  }
  delete c;
  if (drain > 0) {
    // Closing with unread input makes the kernel answer with a reset, which can
    // destroy a reply the peer has not read yet (a 413 to a client still
    // uploading). So: FIN after the reply, then discard what has arrived.
    shutdown(static_cast<int>(fd), SHUT_WR);
    uint8_t sink[16384];
    for (int64_t left = drain; left > 0;) {
      ssize_t n = recv(static_cast<int>(fd), sink, sizeof(sink), MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      left -= n;
    }
  }
  // The fd is ours alone until this close: after it the number may be reused.
  close(static_cast<int>(fd));
  return Num(info, counted ? 1 : 0);
}

// connHandshake(fd, id, timeoutMs) -> 2 nothing to do (plain TCP, or done before) |
// 1 the TLS handshake completed in this call | 0 it needs more input (re-arm) | -errno,
// -EPROTO or -ETIMEDOUT: it failed (close). Writes wait up to timeoutMs.
Napi::Value ConnHandshake(const Napi::CallbackInfo& info) {
  int64_t fd, id, timeout;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id) || !ArgInt(info, 2, &timeout)) return info.Env().Undefined();
  Conn* c = Find(fd, id);
  if (c == nullptr) return Num(info, -EBADF);
  if (c->tls == nullptr || c->handshaken) return Num(info, 2);
  int rc = TlsHandshake(c->tls, static_cast<int>(timeout));
  std::lock_guard<TableMutex> lock(table_mu);
  c->last_input = NowMs();
  if (rc == 1) {
    c->handshaken = true;
    c->frame_since = 0;
  }
  return Num(info, rc);
}

// connSend(fd, id, mem, ptr, len, timeoutMs, waited?) -> len | -ETIMEDOUT | -errno | -EPROTO.
// Sends in full like send(), through TLS when the connection has it.
Napi::Value ConnSend(const Napi::CallbackInfo& info) {
  int64_t fd, id, timeout;
  uint8_t* p;
  size_t len;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id) || !ArgRegion(info, 2, &p, &len) || !ArgInt(info, 5, &timeout))
    return info.Env().Undefined();
  Conn* c = Find(fd, id);
  if (c == nullptr) return Num(info, -EBADF);
  int64_t waited = 0;
  int64_t rc = SendAll(SinkOf(c, static_cast<int>(fd)), p, len, static_cast<int>(timeout), &waited);
  SetOutInt(info, 6, waited);
  return Num(info, static_cast<double>(rc));
}

// connTlsInfo(fd, id) -> { tls, alpn, peerCert, failure, detail, micros } | -EBADF.
Napi::Value ConnTlsInfo(const Napi::CallbackInfo& info) {
  int64_t fd, id;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id)) return info.Env().Undefined();
  Conn* c = Find(fd, id);
  if (c == nullptr) return Num(info, -EBADF);
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("tls", c->tls != nullptr);
  out.Set("handshaken", c->handshaken);
  out.Set("alpn", c->tls && c->handshaken ? TlsAlpn(c->tls) : std::string());
  out.Set("peerCert", c->tls != nullptr && c->handshaken && TlsPeerCertPresented(c->tls));
  out.Set("failure", c->tls ? TlsFailure(c->tls) : "");
  out.Set("detail", c->tls ? TlsFailureDetail(c->tls) : std::string());
  out.Set("micros", c->tls ? TlsHandshakeMicros(c->tls) : 0.0);
  return out;
}

// connPeer(fd, id) -> "IP:PORT" | "[IPv6]:PORT" | -errno: the client's address: the one a PROXY
// header named (--proxy-protocol), else the socket's peer (getpeername).
Napi::Value ConnPeer(const Napi::CallbackInfo& info) {
  int64_t fd, id;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id)) return info.Env().Undefined();
  Conn* c = Find(fd, id);
  if (c == nullptr) return Num(info, -EBADF);
  // Behind a balancer speaking the PROXY protocol, the client is the one its header named.
  const ProxyHeader& h = c->proxied;
  if (h.family) return Napi::String::New(info.Env(), FormatAddress(h.family, h.src, h.src_port));
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&ss), &len) < 0) return Num(info, -errno);
  std::string out;
  if (ss.ss_family == AF_INET6) {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    out = FormatAddress(AF_INET6, v6->sin6_addr.s6_addr, ntohs(v6->sin6_port));
  } else {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    out = FormatAddress(AF_INET, reinterpret_cast<const uint8_t*>(&v4->sin_addr), ntohs(v4->sin_port));
  }
  return Napi::String::New(info.Env(), out);
}

// connProxy(fd, id) -> 2 nothing to do (no header expected, or read before) |
// 1 the PROXY header was read in this call | 0 it is not complete (re-arm) |
// -EPROTO not a valid header (or cut short by the peer's close) | -ENOTCONN the
// peer closed before sending a byte | -errno. Never waits.
//
// Never reads past the header: what follows belongs to the module, or to the
// TLS handshake, which reads the socket itself. So the socket is peeked, and
// only the header's bytes are taken: all of what was peeked while the header
// is incomplete (a valid prefix is all header; taking it keeps the socket from
// reporting the same bytes again), exactly its end once complete. The bytes
// taken so far wait in the carry-over, which is empty until the module runs.
Napi::Value ConnProxy(const Napi::CallbackInfo& info) {
  int64_t fd, id;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id)) return info.Env().Undefined();
  Conn* c = Find(fd, id);
  if (c == nullptr || c->grp == nullptr) return Num(info, -EBADF);
  if (!c->proxy_wait) return Num(info, 2);
  uint8_t buf[kProxyMax];
  // What was kept is an incomplete header's prefix, shorter than the longest header (a longer one
  // parses as bad): checked all the same, since it is copied onto the stack.
  const size_t have = c->pending.size();
  if (have >= sizeof(buf)) return Num(info, -EPROTO);
  if (have) std::memcpy(buf, c->pending.data(), have);
  ssize_t n;
  do n = recv(static_cast<int>(fd), buf + have, sizeof(buf) - have, MSG_PEEK); while (n < 0 && errno == EINTR);
  if (n < 0) return Num(info, errno == EAGAIN ? 0 : -errno);
  if (n == 0) return Num(info, have ? -EPROTO : -ENOTCONN);
  c->last_input = NowMs();
  ProxyHeader h;
  int rc = ProxyParse(buf, have + static_cast<size_t>(n), c->grp->proxy_versions, &h);
  if (rc == kProxyBad) return Num(info, -EPROTO);
  // Takes the header's bytes just peeked off the socket: all of them while it is incomplete, up to its end once complete.
  size_t take = rc == kProxyMore ? static_cast<size_t>(n) : static_cast<size_t>(rc) - have;
  ssize_t got;
  do got = recv(static_cast<int>(fd), buf + have, take, 0); while (got < 0 && errno == EINTR);
  if (got != static_cast<ssize_t>(take)) return Num(info, got < 0 ? -errno : -EPROTO);
  if (rc == kProxyMore) {
    bool kept = c->pending.Append(buf + have, take);
    AccountBuffers(c);
    return Num(info, kept ? 0 : -ENOMEM);
  }
  c->pending.Clear();
  AccountBuffers(c);
  std::lock_guard<TableMutex> lock(table_mu);
  c->proxied = h;
  c->proxy_wait = false;
  if (c->tls == nullptr) c->frame_since = 0;  // with TLS, the handshake's frame goes on
  return Num(info, 1);
}

// proxyConfigure(group, versions) -> 0 | -EBADF: connections accepted from now
// on must start with a PROXY header of one of `versions` (1 v1, 2 v2, 3 either; 0 none).
Napi::Value ProxyConfigure(const Napi::CallbackInfo& info) {
  int64_t group, versions;
  if (!ArgInt(info, 0, &group) || !ArgInt(info, 1, &versions)) return info.Env().Undefined();
  std::lock_guard<TableMutex> lock(table_mu);
  Group* g = GroupOf(static_cast<int>(group));
  if (g == nullptr) return Num(info, -EBADF);
  g->proxy_versions = static_cast<unsigned>(versions) & kProxyAny;
  return Num(info, 0);
}

// proxyParse(bytes, versions = 3) -> { status: 'done' | 'more' | 'bad', consumed, version, src, dst }:
// the parser alone, for tests. src and dst are "IP:PORT" text, '' when the header names no client.
Napi::Value ProxyParseExport(const Napi::CallbackInfo& info) {
  uint8_t* p;
  size_t len;
  int64_t versions = kProxyAny;
  if (info.Length() < 1 || !info[0].IsTypedArray()) {
    Napi::TypeError::New(info.Env(), "bytes must be a Uint8Array").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  auto bytes = info[0].As<Napi::Uint8Array>();
  p = bytes.Data();
  len = bytes.ByteLength();
  if (info.Length() > 1 && !info[1].IsUndefined() && !ArgInt(info, 1, &versions)) return info.Env().Undefined();
  ProxyHeader h;
  int rc = ProxyParse(p, len, static_cast<unsigned>(versions), &h);
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("status", rc > 0 ? "done" : rc == kProxyMore ? "more" : "bad");
  out.Set("consumed", static_cast<double>(rc > 0 ? rc : 0));
  out.Set("version", static_cast<double>(rc > 0 ? h.version : 0));
  out.Set("src", rc > 0 && h.family ? FormatAddress(h.family, h.src, h.src_port) : std::string());
  out.Set("dst", rc > 0 && h.family ? FormatAddress(h.family, h.dst, h.dst_port) : std::string());
  return out;
}

// connShutdown(fd, id, how) -> 0 | -EBADF | -errno. Safe from any thread: the
// lookup and the shutdown happen under the table lock, and the holder closes
// an fd only after unlinking it, so the fd cannot be another connection's.
Napi::Value ConnShutdown(const Napi::CallbackInfo& info) {
  int64_t fd, id, how;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id) || !ArgInt(info, 2, &how)) return info.Env().Undefined();
  std::lock_guard<TableMutex> lock(table_mu);
  if (FindLocked(static_cast<int>(fd), static_cast<uint64_t>(id)) == nullptr) return Num(info, -EBADF);
  return Num(info, shutdown(static_cast<int>(fd), static_cast<int>(how)) < 0 ? -errno : 0);
}

// connShutdownGroup(group, how) -> number of connections shut down. The fds
// stay open (their holders close them), so this is safe while workers run: a
// shut down socket reports EOF or an error to whoever holds or next takes it.
Napi::Value ConnShutdownGroup(const Napi::CallbackInfo& info) {
  int64_t group, how;
  if (!ArgInt(info, 0, &group) || !ArgInt(info, 1, &how)) return info.Env().Undefined();
  int count = 0;
  std::lock_guard<TableMutex> lock(table_mu);
  for (size_t fd = 0; fd < by_fd.size(); fd++) {
    Conn* c = by_fd[fd];
    if (c && c->group == group && c->kind == kKindConn && shutdown(static_cast<int>(fd), static_cast<int>(how)) == 0)
      count++;
  }
  return Num(info, count);
}

// Flat [fd, id, kind, ...] of the group's entries that match `pick`.
template <typename Pick>
Napi::Value Listing(const Napi::CallbackInfo& info, int64_t group, Pick pick) {
  std::vector<double> flat;
  {
    std::lock_guard<TableMutex> lock(table_mu);
    for (size_t fd = 0; fd < by_fd.size(); fd++) {
      Conn* c = by_fd[fd];
      if (c == nullptr || c->group != group || !pick(c)) continue;
      flat.push_back(static_cast<double>(fd));
      flat.push_back(static_cast<double>(c->id));
      flat.push_back(c->kind == kKindConn && !c->opened ? kKindUnopened : c->kind);
    }
  }
  Napi::Array out = Napi::Array::New(info.Env(), flat.size());
  for (size_t i = 0; i < flat.size(); i++) out.Set(i, Napi::Number::New(info.Env(), flat[i]));
  return out;
}

// connList(group) -> [fd, id, kind, ...] of the group's open connections (not the listener).
Napi::Value ConnList(const Napi::CallbackInfo& info) {
  int64_t group;
  if (!ArgInt(info, 0, &group)) return info.Env().Undefined();
  return Listing(info, group, [](const Conn* c) { return c->kind == kKindConn; });
}

// connHeld(group, holder) -> [fd, id, kind, ...] of every entry `holder` holds:
// what a worker that has exited leaves for the main thread to finish.
Napi::Value ConnHeld(const Napi::CallbackInfo& info) {
  int64_t group, holder;
  if (!ArgInt(info, 0, &group) || !ArgInt(info, 1, &holder)) return info.Env().Undefined();
  return Listing(info, group, [holder](const Conn* c) { return c->holder.load() == holder; });
}

// connCount(group) -> the group's open connections: the connection gauge.
Napi::Value ConnCount(const Napi::CallbackInfo& info) {
  int64_t group;
  if (!ArgInt(info, 0, &group)) return info.Env().Undefined();
  std::lock_guard<TableMutex> lock(table_mu);
  auto it = group_conns.find(static_cast<int>(group));
  return Num(info, it == group_conns.end() ? 0 : it->second);
}

// connSetNextId(id): where host ids continue from (tests start near the 2^31 wrap).
Napi::Value ConnSetNextId(const Napi::CallbackInfo& info) {
  int64_t id;
  if (!ArgInt(info, 0, &id)) return info.Env().Undefined();
  std::lock_guard<TableMutex> lock(table_mu);
  if (id > 0 && static_cast<uint64_t>(id) > next_id) next_id = static_cast<uint64_t>(id);
  return Num(info, static_cast<double>(next_id));
}

// timersConfigure(group, readTimeoutMs, frameTimeoutMs) -> timerfd | -errno.
// Creates the server's timerfd (the caller adds it to the epoll set with
// KIND_TIMER, EPOLLIN | EPOLLONESHOT) and sets the timeouts (0: off).
Napi::Value TimersConfigure(const Napi::CallbackInfo& info) {
  int64_t group, read_ms, frame_ms;
  if (!ArgInt(info, 0, &group) || !ArgInt(info, 1, &read_ms) || !ArgInt(info, 2, &frame_ms)) return info.Env().Undefined();
  std::lock_guard<TableMutex> lock(table_mu);
  Group& g = groups[static_cast<int>(group)];
  if (g.heap.fd() < 0) {
    g.epfd = static_cast<int>(group);
    int err = g.heap.Open();
    g.duefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.u64 = EpollPack(kKindDue, g.duefd, 0);
    if (err < 0 || g.duefd < 0 || epoll_ctl(g.epfd, EPOLL_CTL_ADD, g.duefd, &ev) < 0) {
      if (err >= 0) err = -errno;
      g.heap.Close();
      if (g.duefd >= 0) close(g.duefd);
      groups.erase(static_cast<int>(group));
      return Num(info, err);
    }
  }
  g.read_timeout = read_ms;
  g.frame_timeout = frame_ms;
  return Num(info, g.heap.fd());
}

// timersForget(group): closes the server's timerfd and drops its heap (at release).
Napi::Value TimersForget(const Napi::CallbackInfo& info) {
  int64_t group;
  if (!ArgInt(info, 0, &group)) return info.Env().Undefined();
  std::lock_guard<TableMutex> lock(table_mu);
  auto it = groups.find(static_cast<int>(group));
  if (it == groups.end()) return Num(info, -EBADF);
  it->second.heap.Close();  // its connections' slots are unqueued: they may outlive it
  close(it->second.duefd);
  groups.erase(it);
  return Num(info, 0);
}

// timerSet(fd, id, ms) -> 0 | -EINVAL (ms outside 0..limits::kTimerMaxMs) | -EBADF. The
// module's single timer: ms from now, replacing any; 0 cancels (and a firing
// not yet delivered).
Napi::Value TimerSet(const Napi::CallbackInfo& info) {
  int64_t fd, id, ms;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id) || !ArgInt(info, 2, &ms)) return info.Env().Undefined();
  if (ms < 0 || ms > limits::kTimerMaxMs) return Num(info, -EINVAL);
  std::lock_guard<TableMutex> lock(table_mu);
  Conn* c = FindLocked(static_cast<int>(fd), static_cast<uint64_t>(id));
  Group* g = c ? GroupOf(c->group) : nullptr;
  if (c == nullptr || g == nullptr || c->kind != kKindConn) return Num(info, -EBADF);
  if (c->timer_at) g->timers--;
  c->due &= ~kDueTimer;
  c->timer_at = ms ? NowMs() + ms : 0;
  if (c->timer_at) g->timers++;
  Schedule(c, *g);
  return Num(info, 0);
}

// timersDrain(group, graceMs) -> connections looked at. The server is stopping:
// a connection with no unconsumed input that receives nothing for graceMs from
// now (or from its last input) is marked kDueDrainIdle.
Napi::Value TimersDrain(const Napi::CallbackInfo& info) {
  int64_t group, grace;
  if (!ArgInt(info, 0, &group) || !ArgInt(info, 1, &grace)) return info.Env().Undefined();
  std::lock_guard<TableMutex> lock(table_mu);
  Group* g = GroupOf(static_cast<int>(group));
  if (g == nullptr) return Num(info, -EBADF);
  g->drain_start = NowMs();
  g->drain_grace = grace;
  int n = 0;
  for (size_t fd = 0; fd < by_fd.size(); fd++) {
    Conn* c = by_fd[fd];
    if (c == nullptr || c->group != group || c->kind != kKindConn) continue;
    Schedule(c, *g);
    n++;
  }
  return Num(info, n);
}

// connWrite(fd, id, mem, ptr, len) -> bytes queued after it (>= 0) | -ENOBUFS | -errno.
// Queued send mode, plain or TLS alike: sends what the socket takes now and
// queues the rest, in order behind anything queued before; never waits.
// -ENOBUFS when the rest would pass the per-connection bound (nothing of it is
// queued), -ENOMEM when memory for it cannot be had.
Napi::Value ConnWrite(const Napi::CallbackInfo& info) {
  int64_t fd, id;
  uint8_t* p;
  size_t len;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id) || !ArgRegion(info, 2, &p, &len)) return info.Env().Undefined();
  Conn* c = Find(fd, id);
  if (c == nullptr || c->grp == nullptr) return Num(info, -EBADF);
  Group& g = *c->grp;
  size_t sent = 0;
  if (c->out.empty()) {
    int64_t n = WriteSome(SinkOf(c, static_cast<int>(fd)), p, len);
    if (n < 0) return Num(info, static_cast<double>(n));
    sent = static_cast<size_t>(n);
  }
  size_t rest = len - sent;
  size_t queued = c->out.size();
  if (rest == 0) return Num(info, static_cast<double>(queued));
  if (g.out_max && static_cast<int64_t>(queued + rest) > g.out_max) return Num(info, -ENOBUFS);
  if (!c->out.Append(p + sent, rest)) return Num(info, -ENOMEM);
  AccountBuffers(c);
  {
    std::lock_guard<TableMutex> lock(table_mu);
    if (c->send_since == 0) {
      c->send_since = NowMs();
      Schedule(c, g);
    }
  }
  return Num(info, static_cast<double>(queued + rest));
}

// The close phase's next step for its holder (close_phase.h): sends what is
// queued; once all of it is out, begins lingering, then discards what arrives.
// 1 the entry stays (re-arm), 0 close now. Caller does not hold table_mu.
int64_t CloseStep(Conn* c, int fd) {
  if (!c->out.empty()) {
    int64_t left = Flush(c, fd);
    if (left != 0) return left < 0 ? left : 1;
  }
  if (!c->phase.lingering) {
    if (c->grp == nullptr || c->grp->linger.time <= 0) return 0;
    if (c->tls != nullptr) TlsCloseNotify(c->tls);  // the alert goes before the FIN (once only; connClose skips it then)
    if (!LingerBegin(c->grp->linger, fd)) return 0;
    std::lock_guard<TableMutex> lock(table_mu);  // NextWake reads the phase under it
    c->phase.lingering = true;
    c->phase.since = NowMs();
  }
  int64_t got = 0;
  int rc = LingerDiscard(fd, &got);
  if (got > 0) c->last_input = NowMs();
  return rc > 0 ? 1 : rc;
}

// connLinger(fd, id) -> 1 the entry stays | 0 close now | -EBADF. The module
// closed the connection after its reply (its close is counted by the caller):
// the entry enters its close phase -- no deadline but its send and linger
// deadlines, no module timer -- and stays while its queued output goes out and
// then while it lingers (CloseStep). 0: nothing keeps it (lingering is off, or
// the client has closed already).
Napi::Value ConnLinger(const Napi::CallbackInfo& info) {
  int64_t fd, id;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id)) return info.Env().Undefined();
  Conn* c = Find(fd, id);
  if (c == nullptr) return Num(info, -EBADF);
  {
    std::lock_guard<TableMutex> lock(table_mu);  // connDrainGeneration and the timer event read these under it
    c->closing = true;
    if (c->timer_at && c->grp) c->grp->timers--;
    c->timer_at = 0;
    c->due &= ~static_cast<uint32_t>(kDueTimer | kDueTimeout | kDueDrainIdle);
  }
  if (CloseStep(c, static_cast<int>(fd)) > 0) return Num(info, 1);
  // Closes now, the caller's way: its close is not counted yet (connClose tells by `closing`).
  std::lock_guard<TableMutex> lock(table_mu);
  c->closing = false;
  return Num(info, 0);
}

// connCloseStep(fd, id, due) -> 1 the entry stays (re-arm) | 0 close now (all
// sent, and the client closed or the linger time passed) | -ETIMEDOUT the send
// timeout passed with output queued | -ENOBUFS a memory bound chose it |
// -errno. An event of a connection in its close phase (kDueClosing), with the
// due bits it came with.
Napi::Value ConnCloseStep(const Napi::CallbackInfo& info) {
  int64_t fd, id, due;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id) || !ArgInt(info, 2, &due)) return info.Env().Undefined();
  Conn* c = Find(fd, id);
  if (c == nullptr) return Num(info, -EBADF);
  if (due & kDueSendTimeout) return Num(info, -ETIMEDOUT);
  if (due & kDueOverflow) return Num(info, -ENOBUFS);
  if (due & kDueLinger) return Num(info, 0);
  return Num(info, static_cast<double>(CloseStep(c, static_cast<int>(fd))));
}

// lingerConfigure(group, timeMs, timeoutMs) -> 0 | -EBADF: the linger bounds
// (close_phase.h; timeMs 0: no lingering). Call after timersConfigure.
Napi::Value LingerConfigure(const Napi::CallbackInfo& info) {
  int64_t group, time_ms, timeout_ms;
  if (!ArgInt(info, 0, &group) || !ArgInt(info, 1, &time_ms) || !ArgInt(info, 2, &timeout_ms))
    return info.Env().Undefined();
  std::lock_guard<TableMutex> lock(table_mu);
  Group* g = GroupOf(static_cast<int>(group));
  if (g == nullptr) return Num(info, -EBADF);
  g->linger.time = std::max<int64_t>(0, time_ms);
  g->linger.timeout = std::max<int64_t>(0, timeout_ms);
  return Num(info, 0);
}

// connFlush(fd, id) -> bytes still queued | -errno: sends queued output now.
Napi::Value ConnFlush(const Napi::CallbackInfo& info) {
  int64_t fd, id;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id)) return info.Env().Undefined();
  Conn* c = Find(fd, id);
  if (c == nullptr) return Num(info, -EBADF);
  return Num(info, static_cast<double>(Flush(c, static_cast<int>(fd))));
}

// connOpened(fd, id) -> 0 | -EBADF: the module is being told of the connection (on_open).
Napi::Value ConnOpened(const Napi::CallbackInfo& info) {
  int64_t fd, id;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id)) return info.Env().Undefined();
  // Under the lock: listings and connDrainGeneration read it there.
  std::lock_guard<TableMutex> lock(table_mu);
  Conn* c = FindLocked(static_cast<int>(fd), static_cast<uint64_t>(id));
  if (c == nullptr) return Num(info, -EBADF);
  c->opened = true;
  return Num(info, 0);
}

// connWant(fd, id, n) -> 0 | -EBADF: do not call the module again before n bytes
// are pending (or in_cap, or EOF); 0 clears it (tcpmod.want).
Napi::Value ConnWant(const Napi::CallbackInfo& info) {
  int64_t fd, id, n;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id) || !ArgInt(info, 2, &n)) return info.Env().Undefined();
  Conn* c = Find(fd, id);
  if (c == nullptr) return Num(info, -EBADF);
  c->want = n > 0 ? static_cast<uint32_t>(std::min<int64_t>(n, UINT32_MAX)) : 0;
  return Num(info, 0);
}

// queueConfigure(group, queued, sendTimeoutMs, highWater, maxPerConn, maxOutputTotal, maxInputTotal) -> 0 | -EBADF.
// Bounds are bytes, 0 for none. Call after timersConfigure.
Napi::Value QueueConfigure(const Napi::CallbackInfo& info) {
  int64_t group, queued, send_timeout, high, per_conn, out_total, in_total;
  if (!ArgInt(info, 0, &group) || !ArgInt(info, 1, &queued) || !ArgInt(info, 2, &send_timeout) || !ArgInt(info, 3, &high) ||
      !ArgInt(info, 4, &per_conn) || !ArgInt(info, 5, &out_total) || !ArgInt(info, 6, &in_total))
    return info.Env().Undefined();
  std::lock_guard<TableMutex> lock(table_mu);
  Group* g = GroupOf(static_cast<int>(group));
  if (g == nullptr) return Num(info, -EBADF);
  g->queued = queued != 0;
  g->send_timeout = queued ? send_timeout : 0;  // blocking mode times sends itself
  g->out_high = high;
  g->out_max = per_conn;
  g->out_total_max = out_total;
  g->in_total_max = in_total;
  return Num(info, 0);
}

// groupMemory(group) -> { output, input, outputAllocated, inputAllocated }: bytes queued for
// sending and held as unconsumed input; and the memory their buffers hold (what the bounds count).
Napi::Value GroupMemory(const Napi::CallbackInfo& info) {
  int64_t group;
  if (!ArgInt(info, 0, &group)) return info.Env().Undefined();
  std::lock_guard<TableMutex> lock(table_mu);
  Group* g = GroupOf(static_cast<int>(group));
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("output", static_cast<double>(g ? g->out_bytes.load() : 0));
  out.Set("input", static_cast<double>(g ? g->in_bytes.load() : 0));
  out.Set("outputAllocated", static_cast<double>(g ? g->out_alloc.load() : 0));
  out.Set("inputAllocated", static_cast<double>(g ? g->in_alloc.load() : 0));
  return out;
}

// timerHeapSize(group) -> items in the group's timer heap: at most one per open
// connection with a deadline, whatever its module does with set_timer.
Napi::Value TimerHeapSize(const Napi::CallbackInfo& info) {
  int64_t group;
  if (!ArgInt(info, 0, &group)) return info.Env().Undefined();
  std::lock_guard<TableMutex> lock(table_mu);
  Group* g = GroupOf(static_cast<int>(group));
  return Num(info, g ? static_cast<double>(g->heap.size()) : 0);
}

// timersArmed(group) -> connections with a module timer armed.
Napi::Value TimersArmed(const Napi::CallbackInfo& info) {
  int64_t group;
  if (!ArgInt(info, 0, &group)) return info.Env().Undefined();
  std::lock_guard<TableMutex> lock(table_mu);
  Group* g = GroupOf(static_cast<int>(group));
  return Num(info, g ? g->timers : 0);
}

}  // namespace

void MarkConnDue(int fd, uint64_t id, uint32_t bits) {
  std::lock_guard<TableMutex> lock(table_mu);
  Conn* c = FindLocked(fd, id);
  if (c == nullptr || c->kind != kKindConn || c->closing || c->grp == nullptr || (c->due & bits) == bits) return;
  MarkDue(*c->grp, c, fd, bits);
}

bool ConnOutputOver(int fd, uint64_t id) {
  const Conn* c = Find(fd, static_cast<int64_t>(id));
  return c != nullptr && ConnOutputOver(c);
}

bool ConnStateCopy(int fd, uint64_t id, uint8_t* slot, size_t room, bool save) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr || static_cast<size_t>(c->state_size) > room) return false;
  if (save) std::memcpy(c->state, slot, c->state_size);
  else std::memcpy(slot, c->state, c->state_size);
  return true;
}

bool ClaimEvent(int fd, uint64_t tag, int group, int holder, double* id, uint32_t* due) {
  std::lock_guard<TableMutex> lock(table_mu);
  if (fd < 0 || static_cast<size_t>(fd) >= by_fd.size()) return false;
  Conn* c = by_fd[fd];
  if (c == nullptr || c->group != group) return false;
  // Reported for an earlier connection on this fd number, closed since: not this one's event.
  if ((c->id & kEpollTagMask) != tag) return false;
  if (!Claim(c, holder)) return false;
  *id = static_cast<double>(c->id);
  *due = c->due | PhaseBits(c);
  c->due = 0;
  return true;
}

bool LoadClaimed(int fd, double id, int generation, uint8_t* in, size_t cap, uint8_t* base, size_t mem_size,
                 int64_t state_ptr, int64_t* result, int64_t* received) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr || c->kind != kKindConn || c->generation.load() != generation) return false;
  if (c->state_size > 0 && (state_ptr < 0 || static_cast<uint64_t>(state_ptr) + c->state_size > mem_size)) return false;
  *result = LoadHeld(c, fd, in, cap, base + state_ptr, false, received);
  return true;
}

void LendBatch(int group, int holder, const Lent* events, int n) {
  std::lock_guard<TableMutex> lock(table_mu);
  // epollWait lends only to a worker (holder > 0) of a group configured for
  // batches (BatchConfigured), so the group is there, unless the server has just
  // forgotten it (timersForget, at release: every connection is being closed).
  Group* g = GroupOf(group);
  if (g == nullptr || holder <= 0) return;
  if (g->loans.size() <= static_cast<size_t>(holder)) g->loans.resize(static_cast<size_t>(holder) + 1);
  int64_t now = NowMs();
  for (int i = 0; i < n; i++) g->loans[holder].push_back({events[i], now});
  if (g->steal_at == 0) {
    g->steal_at = now + g->batch_budget;
    ArmTimerfd(*g);
  }
}

bool BatchConfigured(int group) {
  std::lock_guard<TableMutex> lock(table_mu);
  Group* g = GroupOf(group);
  return g != nullptr && g->heap.fd() >= 0 && g->conn_events != 0;
}

bool PopLent(int group, int holder, Lent* out) {
  std::lock_guard<TableMutex> lock(table_mu);
  Group* g = GroupOf(group);
  if (g == nullptr || holder <= 0 || static_cast<size_t>(holder) >= g->loans.size()) return false;
  std::deque<Loan>& q = g->loans[holder];
  while (!q.empty()) {
    *out = q.front().event;
    q.pop_front();
    if (out->kind == kKindWake) return true;
    Conn* c = FindLocked(out->fd, static_cast<uint64_t>(out->id));
    if (c == nullptr) continue;  // not possible while held; never hand out a stale entry
    // Times marked while it waited here: the claim is now.
    out->due |= c->due;
    c->due = 0;
    return true;
  }
  return false;
}

bool TakeDue(int group, int holder, int* fd, double* id, uint32_t* due) {
  Group* g = nullptr;
  {
    std::lock_guard<TableMutex> lock(table_mu);
    g = GroupOf(group);
    if (g == nullptr || g->due_count.load() == 0) return false;
    while (!g->due_list.empty()) {
      auto [f, i] = g->due_list.front();
      g->due_list.pop_front();
      g->due_count--;
      Conn* c = FindLocked(f, i);
      if (c == nullptr || c->due == 0) continue;  // closed, or its mark was taken with an event
      // Held: its holder's re-arm queues it again (a re-arm in flight is done again, and queues it then).
      if (!Claim(c, holder)) continue;
      *due = c->due | PhaseBits(c);
      c->due = 0;
      *fd = f;
      *id = static_cast<double>(c->id);
      if (g->due_count.load() > 0) PokeDue(*g);  // more waiting: wake another worker to share them
      return true;
    }
  }
  return false;
}

int RunTimers(int group) {
  std::lock_guard<TableMutex> lock(table_mu);
  Group* g = GroupOf(group);
  if (g == nullptr) return 0;
  g->heap.BeginWake();
  int64_t now = NowMs();
  int marked = 0;
  // At most ServerTimers::kMaxPerWake items: the rest are left for the next
  // wake, which the timerfd (set to their past deadline below) brings at once,
  // to whichever worker waits next, so other workers get the lock in between.
  while (TimerSlot* s = g->heap.PopDue(now)) {
    Conn* c = static_cast<Conn*>(s->owner);
    assert(c->fd >= 0 && static_cast<size_t>(c->fd) < by_fd.size() && by_fd[c->fd] == c);
    uint32_t due = DueNow(c, *g, now);
    if (due & kDueTimer) g->timers--;
    if (due == 0) {
      Schedule(c, *g);  // came early (a deadline moved later): back in at its real time
      continue;
    }
    // Taken by the next waiter (TakeDue), or by its holder's re-arm if one
    // holds it now; the claim decides ownership either way. Out of the heap
    // until then: the re-arm after its event schedules it again.
    MarkDue(*g, c, c->fd, due);
    marked++;
  }
  if (g->trim_at && g->trim_at <= now) {
    g->trim_at = 0;
    g->last_trim = 0;
    if (g->in_total_max && g->in_alloc > g->in_total_max) Trim(*g, group, true, g->in_total_max);
    if (g->out_total_max && g->out_alloc > g->out_total_max) Trim(*g, group, false, g->out_total_max);
  }
  if (g->steal_at && g->steal_at <= now) {
    // Loans left untouched past the budget (their worker is in a slow callback) go back to epoll.
    ReturnLoans(*g, 0, now - g->batch_budget);
    g->steal_at = NextSteal(*g);
  }
  ArmTimerfd(*g);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLONESHOT;
  ev.data.u64 = EpollPack(kKindTimer, g->heap.fd(), 0);
  epoll_ctl(group, EPOLL_CTL_MOD, g->heap.fd(), &ev);
  return marked;
}

// connGeneration(fd, id) -> the module generation of the connection | -EBADF. Holder only.
Napi::Value ConnGeneration(const Napi::CallbackInfo& info) {
  int64_t fd, id;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id)) return info.Env().Undefined();
  Conn* c = Find(fd, id);
  if (c == nullptr) return Num(info, -EBADF);
  return Num(info, c->generation.load());
}

// connMigrate(fd, id, generation, stateSize, inCap) -> 0 | -EBADF | -EOVERFLOW | -EINVAL.
// Holder only: moves the connection to another module generation. Its
// carry-over and state slot stay as they are (the caller has checked that both
// generations agree on what the slot means), so -EOVERFLOW when the carry-over
// would not fit the new in_cap, and -EINVAL when the module has met the
// connection and the state size differs. A connection on_open has not run for
// has no state yet: it takes the new size (zeroed).
Napi::Value ConnMigrate(const Napi::CallbackInfo& info) {
  int64_t fd, id, generation, state_size, in_cap;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id) || !ArgInt(info, 2, &generation) ||
      !ArgInt(info, 3, &state_size) || !ArgInt(info, 4, &in_cap))
    return info.Env().Undefined();
  if (state_size < 0 || state_size > kMaxState) {
    Napi::RangeError::New(info.Env(), "stateSize must be 0.." + std::to_string(kMaxState)).ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Conn* c = Find(fd, id);
  if (c == nullptr) return Num(info, -EBADF);
  if (c->pending.size() > static_cast<uint64_t>(std::max<int64_t>(in_cap, 0))) return Num(info, -EOVERFLOW);
  if (c->opened && c->state_size != state_size) return Num(info, -EINVAL);
  if (!c->opened) {
    c->state_size = static_cast<int>(state_size);
    std::memset(c->state, 0, sizeof(c->state));
  }
  c->generation.store(static_cast<int>(generation));
  return Num(info, 0);
}

// generationCounts(group) -> flat [generation, connections, ...]: how many of
// the group's connections each generation has now (generations with none are absent).
Napi::Value GenerationCounts(const Napi::CallbackInfo& info) {
  int64_t group;
  if (!ArgInt(info, 0, &group)) return info.Env().Undefined();
  std::unordered_map<int, int> counts;
  {
    std::lock_guard<TableMutex> lock(table_mu);
    for (Conn* c : by_fd)
      if (c != nullptr && c->group == group && c->kind == kKindConn) counts[c->generation.load()]++;
  }
  Napi::Array out = Napi::Array::New(info.Env(), counts.size() * 2);
  uint32_t i = 0;
  for (const auto& [gen, n] : counts) {
    out.Set(i++, Napi::Number::New(info.Env(), gen));
    out.Set(i++, Napi::Number::New(info.Env(), n));
  }
  return out;
}

// connDrainGeneration(group, generation) -> connections marked. Every
// connection of that generation the module has met is marked due as idle
// through a drain (its next claimer closes it with reason 5, on_close first),
// whether or not it is held now: --reload-drain.
Napi::Value ConnDrainGeneration(const Napi::CallbackInfo& info) {
  int64_t group, generation;
  if (!ArgInt(info, 0, &group) || !ArgInt(info, 1, &generation)) return info.Env().Undefined();
  std::lock_guard<TableMutex> lock(table_mu);
  Group* g = GroupOf(static_cast<int>(group));
  if (g == nullptr) return Num(info, -EBADF);
  int n = 0;
  for (size_t fd = 0; fd < by_fd.size(); fd++) {
    Conn* c = by_fd[fd];
    if (c == nullptr || c->group != group || c->kind != kKindConn || !c->opened || c->closing) continue;
    if (c->generation.load() != generation) continue;
    MarkDue(*g, c, static_cast<int>(fd), kDueDrainIdle);
    n++;
  }
  return Num(info, n);
}

void InitConnTable(Napi::Env env, Napi::Object exports) {
  exports.Set("connGeneration", Napi::Function::New(env, ConnGeneration, "connGeneration"));
  exports.Set("connMigrate", Napi::Function::New(env, ConnMigrate, "connMigrate"));
  exports.Set("generationCounts", Napi::Function::New(env, GenerationCounts, "generationCounts"));
  exports.Set("connDrainGeneration", Napi::Function::New(env, ConnDrainGeneration, "connDrainGeneration"));
  exports.Set("connOpen", Napi::Function::New(env, ConnOpen, "connOpen"));
  exports.Set("connLoad", Napi::Function::New(env, ConnLoad, "connLoad"));
  exports.Set("connSave", Napi::Function::New(env, ConnSave, "connSave"));
  exports.Set("connAdd", Napi::Function::New(env, ConnAdd, "connAdd"));
  exports.Set("connRearm", Napi::Function::New(env, ConnRearm, "connRearm"));
  exports.Set("rearmStats", Napi::Function::New(env, RearmStats, "rearmStats"));
  exports.Set("testClaimPause", Napi::Function::New(env, TestClaimPause, "testClaimPause"));
  exports.Set("batchConfigure", Napi::Function::New(env, BatchConfigure, "batchConfigure"));
  exports.Set("batchRelease", Napi::Function::New(env, BatchRelease, "batchRelease"));
  exports.Set("connClose", Napi::Function::New(env, ConnClose, "connClose"));
  exports.Set("connShutdown", Napi::Function::New(env, ConnShutdown, "connShutdown"));
  exports.Set("connPeer", Napi::Function::New(env, ConnPeer, "connPeer"));
  exports.Set("connHandshake", Napi::Function::New(env, ConnHandshake, "connHandshake"));
  exports.Set("connProxy", Napi::Function::New(env, ConnProxy, "connProxy"));
  exports.Set("proxyConfigure", Napi::Function::New(env, ProxyConfigure, "proxyConfigure"));
  exports.Set("proxyParse", Napi::Function::New(env, ProxyParseExport, "proxyParse"));
  exports.Set("DUE_PROXY", Napi::Number::New(env, kDueProxy));
  exports.Set("connSend", Napi::Function::New(env, ConnSend, "connSend"));
  exports.Set("connTlsInfo", Napi::Function::New(env, ConnTlsInfo, "connTlsInfo"));
  exports.Set("connShutdownGroup", Napi::Function::New(env, ConnShutdownGroup, "connShutdownGroup"));
  exports.Set("connList", Napi::Function::New(env, ConnList, "connList"));
  exports.Set("connHeld", Napi::Function::New(env, ConnHeld, "connHeld"));
  exports.Set("connCount", Napi::Function::New(env, ConnCount, "connCount"));
  exports.Set("connSetNextId", Napi::Function::New(env, ConnSetNextId, "connSetNextId"));
  exports.Set("timersConfigure", Napi::Function::New(env, TimersConfigure, "timersConfigure"));
  exports.Set("timersForget", Napi::Function::New(env, TimersForget, "timersForget"));
  exports.Set("timerSet", Napi::Function::New(env, TimerSet, "timerSet"));
  exports.Set("timersDrain", Napi::Function::New(env, TimersDrain, "timersDrain"));
  exports.Set("timersArmed", Napi::Function::New(env, TimersArmed, "timersArmed"));
  exports.Set("timerHeapSize", Napi::Function::New(env, TimerHeapSize, "timerHeapSize"));
  exports.Set("connWrite", Napi::Function::New(env, ConnWrite, "connWrite"));
  exports.Set("connWant", Napi::Function::New(env, ConnWant, "connWant"));
  exports.Set("connLinger", Napi::Function::New(env, ConnLinger, "connLinger"));
  exports.Set("connCloseStep", Napi::Function::New(env, ConnCloseStep, "connCloseStep"));
  exports.Set("lingerConfigure", Napi::Function::New(env, LingerConfigure, "lingerConfigure"));
  exports.Set("connFlush", Napi::Function::New(env, ConnFlush, "connFlush"));
  exports.Set("connOpened", Napi::Function::New(env, ConnOpened, "connOpened"));
  exports.Set("DUE_OPEN", Napi::Number::New(env, kDueOpen));
  exports.Set("DUE_CLOSING", Napi::Number::New(env, kDueClosing));
  exports.Set("queueConfigure", Napi::Function::New(env, QueueConfigure, "queueConfigure"));
  exports.Set("groupMemory", Napi::Function::New(env, GroupMemory, "groupMemory"));
  exports.Set("DUE_SEND_TIMEOUT", Napi::Number::New(env, kDueSendTimeout));
  exports.Set("DUE_OVERFLOW", Napi::Number::New(env, kDueOverflow));
  exports.Set("DUE_TIMER", Napi::Number::New(env, kDueTimer));
  exports.Set("DUE_MESSAGE", Napi::Number::New(env, kDueMessage));
  exports.Set("DUE_TIMEOUT", Napi::Number::New(env, kDueTimeout));
  exports.Set("DUE_DRAIN_IDLE", Napi::Number::New(env, kDueDrainIdle));
  exports.Set("DUE_HANDSHAKE", Napi::Number::New(env, kDueHandshake));
  exports.Set("LOAD_EOF", Napi::Number::New(env, kLoadEof));
}

}  // namespace tcpmod
