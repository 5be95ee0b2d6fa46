// epoll and eventfd. An epoll item's 64-bit data carries its fd, kind and the
// tag of its table entry (EpollPack, conn_table.h); the waiter claims
// connections in the table before returning.
#include "poller.h"
#include "mono_clock.h"

#include <cerrno>
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <ctime>
#include <string>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "args.h"
#include "conn_table.h"
#include "upstream.h"

namespace tcpmod {
namespace {


// epollCreate() -> fd | -errno
int EpollCreateCore() {
  int fd = epoll_create1(EPOLL_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

// epollCtl(epfd, op, fd, events, kind) -> 0 | -errno; for items outside the table (the wake eventfd)
int EpollCtlCore(int epfd, int op, int fd, uint32_t events, int kind) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = EpollPack(kind, fd, 0);
  return epoll_ctl(epfd, op, fd, &ev) < 0 ? -errno : 0;
}

// Test hook (testWaitPause): µs epollWait sleeps between epoll_wait's return
// and its claims, so that a test can close the connection an event was for and
// reuse its fd number in between; and how many such pauses have begun.
std::atomic<int> wait_pause_us{0};
std::atomic<int> wait_pauses{0};

// testWaitPause(us) -> pauses begun so far. us >= 0 sets the pause (0: off); < 0 only reads.
int TestWaitPauseCore(int64_t us) {
  if (us >= 0) wait_pause_us = static_cast<int>(std::min<int64_t>(us, 5000000));
  return wait_pauses.load();
}

// The most events one epoll_wait takes (--batch is checked against it in options.ts).
constexpr int64_t kMaxBatch = limits::kBatchMax;

// The kind of waitNext's event for a save that did not complete (never an epoll item's).
constexpr int kKindSave = 6;
static_assert(kKindSave > kKindDue, "KIND_SAVE is no epoll item's kind");

// What one wait works with: the worker's arguments (epollWait passes them per
// call, waitNext binds them once per thread) and the optional load target.
struct Waiter {
  int epfd = -1;
  int holder = 0;
  int32_t* cells = nullptr;  // cells[busy_slot]: this worker busy; cells[busy_global]: busy workers
  int busy_global = 0;
  int busy_slot = 0;
  int workers_cell = -1;  // cells[workers_cell]: the pool's workers (-1: unknown, a batch always arms its steal timer)
  int max_events = 1;
  double* out = nullptr;  // 5 elements, or 8 with a load target
  bool stamp = false;     // out has a 9th element: the wall-clock ms (Date.now's clock) when an event was loaded
  // The load target: module memory [base, base + mem_size), its in region and
  // state slot, and the generation whose instance that memory is (base null: none).
  uint8_t* base = nullptr;
  size_t mem_size = 0;
  uint8_t* in = nullptr;
  size_t cap = 0;
  int64_t state_ptr = 0;
  int generation = 0;
};

// One event for w.holder: 1 (w.out filled) | 0 on timeout | -errno. epollWait's body (below).
int Wait(Waiter& w, int64_t timeout) {
  const int epfd = w.epfd, holder = w.holder;
  int32_t* cells = w.cells;
  int32_t* mine = cells + w.busy_slot;
  double* out = w.out;
  auto give = [&](const Lent& e) {
    // Busy from the event returned on; the wake alone (last of a batch) holds nothing.
    if (e.kind != kKindWake && __atomic_exchange_n(mine, 1, __ATOMIC_SEQ_CST) == 0)
      __atomic_fetch_add(cells + w.busy_global, 1, __ATOMIC_SEQ_CST);
    out[0] = e.fd;
    out[1] = e.kind;
    out[2] = e.events;
    out[3] = e.id;
    out[4] = e.due;
    if (w.base != nullptr) {
      int64_t result = 0, received = 0;
      bool loaded = e.kind == kKindConn && e.due == 0 &&
                    LoadClaimed(e.fd, e.id, w.generation, w.in, w.cap, w.base, w.mem_size, w.state_ptr, &result, &received);
      out[5] = loaded ? 1 : 0;
      out[6] = static_cast<double>(result);
      out[7] = static_cast<double>(received);
      // The watchdog's start of the callback that follows at once (instances.ts), on the clock Date.now reads:
      // a vDSO clock_gettime here instead of a Date.now in JS (a call into V8's runtime, ~250 instructions).
      if (w.stamp && loaded) {
        timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        out[8] = static_cast<double>(static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000);
      }
    }
    return 1;
  };
  Lent e;
  // The rest of this worker's last batch first: it holds those already.
  if (PopLent(epfd, holder, &e)) {
    if (e.kind == kKindWake && __atomic_exchange_n(mine, 0, __ATOMIC_SEQ_CST) == 1)
      __atomic_fetch_sub(cells + w.busy_global, 1, __ATOMIC_SEQ_CST);
    return give(e);
  }
  if (__atomic_exchange_n(mine, 0, __ATOMIC_SEQ_CST) == 1) __atomic_fetch_sub(cells + w.busy_global, 1, __ATOMIC_SEQ_CST);
  int64_t deadline = timeout >= 0 ? MonoMs() + timeout : -1;
  epoll_event evs[kMaxBatch];
  Lent got[kMaxBatch];
  // Loans are kept per worker (holder > 0) of a group configured for them; any other caller takes one event at a time.
  int max_events = w.max_events;
  // The due list's pokes made in this wait skip a pool whose other workers are all busy (due.cc).
  struct Share {
    explicit Share(const Waiter& w) {
      if (w.workers_cell >= 0) DueShareCells(w.cells + w.busy_global, w.cells + w.workers_cell);
    }
    ~Share() { DueShareCells(nullptr, nullptr); }
  } share(w);
  if (max_events > 1 && (holder <= 0 || !BatchConfigured(epfd))) max_events = 1;
  for (;;) {
    if (TakeDue(epfd, holder, &e.fd, &e.id, &e.due)) {
      e.kind = kKindConn;
      e.events = 0;
      return give(e);
    }
    // Another worker's batch it has not started on is this one's before it sleeps: no timer needed.
    if (max_events > 1 && w.workers_cell >= 0 && StealLent(epfd, holder, &e)) return give(e);
    int wait_ms = deadline < 0 ? -1 : static_cast<int>(std::max<int64_t>(0, deadline - MonoMs()));
    int n = epoll_wait(epfd, evs, max_events, wait_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) return 0;
    if (int us = wait_pause_us.load(std::memory_order_relaxed)) {
      wait_pauses++;
      usleep(static_cast<useconds_t>(us));
    }
    int m = 0;
    int wake_fd = -1;
    bool due_woken = false;
    int ups[kMaxBatch];  // the batch's upstream events (indices into evs)
    int n_ups = 0;
    for (int i = 0; i < n; i++) {
      int fd = EpollFd(evs[i].data.u64);
      int kind = EpollKind(evs[i].data.u64);
      if (kind == kKindDue) {
        // Woken for the due list: reset the eventfd; one of the list is taken below.
        uint64_t v;
        while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR) {
        }
        due_woken = true;
        continue;
      }
      if (kind == kKindTimer) {
        // The timer event is bookkeeping, done here: mark what is due, re-arm.
        RunTimers(epfd);
        continue;
      }
      if (kind == kKindUpstream) {
        ups[n_ups++] = i;  // marked below, once this batch's claims are known
        continue;
      }
      if (kind == kKindWake) {
        wake_fd = fd;  // handed out last, after everything this batch claims
        continue;
      }
      Lent& g = got[m];
      if (!ClaimEvent(fd, EpollTag(evs[i].data.u64), epfd, holder, &g.id, &g.due)) continue;
      g.fd = fd;
      g.kind = kind;
      g.events = evs[i].events;
      m++;
    }
    // The due eventfd and the wake each took a slot, so both fit. Taken even when nothing else was:
    // the eventfd was read, and the next poke comes only when the list is found empty.
    if (due_woken && TakeDue(epfd, holder, &got[m].fd, &got[m].id, &got[m].due)) {
      got[m].kind = kKindConn;
      got[m].events = 0;
      m++;
    }
    // Upstream events are bookkeeping only: each marks its client due, and the work is done by
    // whoever claims the client (upstream.h). When this batch claimed nothing else, this worker
    // goes straight back to TakeDue and takes the client itself, so no other waiter is woken for
    // it (TakeDue pokes one for whatever it leaves in the list); otherwise one is, to share the work.
    const bool take_self = m == 0 && wake_fd < 0;
    for (int k = 0; k < n_ups; k++)
      UpstreamWake(epfd, EpollFd(evs[ups[k]].data.u64), EpollTag(evs[ups[k]].data.u64), evs[ups[k]].events, !take_self);
    if (wake_fd >= 0) got[m++] = Lent{wake_fd, kKindWake, EPOLLIN, 0, 0};
    if (m == 0) continue;
    if (m > 1)
      LendBatch(epfd, holder, got + 1, m - 1, w.workers_cell >= 0 ? cells + w.busy_global : nullptr,
                w.workers_cell >= 0 ? cells + w.workers_cell : nullptr);
    return give(got[0]);
  }
}

// A typed array argument of `type` with at least `need` elements: its data, or
// nullptr with a pending TypeError naming `what`.
void* TypedArg(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type type, size_t need, const char* what) {
  napi_typedarray_type t;
  size_t length;
  void* data;
  if (info[i].IsTypedArray() &&
      napi_get_typedarray_info(info.Env(), info[i], &t, &length, &data, nullptr, nullptr) == napi_ok && t == type &&
      length >= need)
    return data;
  Napi::TypeError::New(info.Env(), what).ThrowAsJavaScriptException();
  return nullptr;
}

// The worker's cells and busy indices, and maxEvents, checked (epollWait and waitBind): false with a pending exception.
bool CheckWorker(const Napi::CallbackInfo& info, size_t cells_arg, Waiter& w, int64_t busy_global, int64_t busy_slot,
                 int64_t max_events) {
  const size_t cells = info[cells_arg].IsTypedArray() ? info[cells_arg].As<Napi::TypedArray>().ElementLength() : 0;
  if (busy_global < 0 || busy_slot < 0 || static_cast<size_t>(std::max(busy_global, busy_slot)) >= cells) {
    Napi::TypeError::New(info.Env(), "cells must be an Int32Array holding both busy cells").ThrowAsJavaScriptException();
    return false;
  }
  w.cells = static_cast<int32_t*>(TypedArg(info, cells_arg, napi_int32_array, 0, "cells must be an Int32Array holding both busy cells"));
  if (w.cells == nullptr) return false;
  if (max_events < 1 || max_events > kMaxBatch) {
    Napi::RangeError::New(info.Env(), "maxEvents must be 1.." + std::to_string(kMaxBatch)).ThrowAsJavaScriptException();
    return false;
  }
  w.busy_global = static_cast<int>(busy_global);
  w.busy_slot = static_cast<int>(busy_slot);
  w.max_events = static_cast<int>(max_events);
  return true;
}

// epollWait(epfd, timeoutMs, out: Float64Array(5 or 8), holder, cells: Int32Array, busyGlobal, busySlot,
//           maxEvents = 1, mem?, inPtr?, inCap?, statePtr?, generation?)
//   -> 1 | 0 on timeout | -errno. out = [fd, kind, events, id, due, loaded, load result, received].
// With a load target (module memory, its in region, state slot, and the
// generation whose instance that memory is), a plain input event (a connection
// on that generation, no due bits) also has its input loaded as connLoad would
// do, in the same call: out[5] = 1, out[6] = connLoad's result, out[7] = the
// bytes received. Otherwise out[5] = 0 and the caller loads it (out must then
// have 8 elements).
// Returns one event at a time. With maxEvents 1 each waiter takes exactly one
// ready item; with more, one epoll_wait takes up to maxEvents, every
// connection or listener among them is claimed for `holder` at once (with
// EPOLLONESHOT, none of them is in another thread), the first is returned and
// the rest are lent (LendBatch): the next calls return them, in order, without
// a syscall. The group's timer hands back whatever stays lent past the budget.
// The timer item (KIND_TIMER) is handled inside: due connections are marked and
// made to report, and the wait goes on.
// An event that cannot be claimed (ClaimEvent) is dropped. The busy bookkeeping
// lives here too, so that no JavaScript runs between taking an event and
// recording it: cells[busySlot] is this worker's busy flag (1 while it holds
// anything: from the event it returns until a call that finds nothing lent) and
// cells[busyGlobal] the number of busy workers. EINTR resumes the wait with
// what is left of the timeout.
// The worker loop binds these arguments once instead (waitBind, waitNext).
Napi::Value EpollWait(const Napi::CallbackInfo& info) {
  Waiter w;
  int64_t epfd, timeout, holder, busy_global, busy_slot, max_events = 1, state_ptr = 0, generation = 0;
  const bool load = info.Length() > 8 && !info[8].IsUndefined();
  Args a(info);
  a.Int(&epfd, &timeout).Skip().Int(&holder).Skip().Int(&busy_global, &busy_slot).Opt(&max_events);
  if (load) a.Region(&w.in, &w.cap, &w.base, &w.mem_size).Int(&state_ptr, &generation);
  if (!a) return info.Env().Undefined();
  w.out = static_cast<double*>(TypedArg(info, 2, napi_float64_array, load ? 8 : 5,
                                        "out must be a Float64Array(5), or (8) with a load target"));
  if (w.out == nullptr || !CheckWorker(info, 4, w, busy_global, busy_slot, max_events)) return info.Env().Undefined();
  w.epfd = static_cast<int>(epfd);
  w.holder = static_cast<int>(holder);
  w.state_ptr = state_ptr;
  w.generation = static_cast<int>(generation);
  return Num(info, Wait(w, timeout));
}

// The worker loop's wait, bound once per thread (waitBind) with its load
// target bound again only when it changes (waitTarget): one native call per
// event in the steady state, as it also makes the save that ended the
// connection handled before (the pending save, recorded by the loop in `save`).
struct Bound {
  Waiter w;
  // The pending save: [fd, id, restPtr, restLen, statePtr, events, outPtr, outLen, pending] (offsets in the bound memory).
  double* save = nullptr;
  double* bytes_out = nullptr;  // the worker's output byte counter, for the bytes the pending save sends
};
constexpr size_t kSaveFields = 9;
// Reached through BoundHere() once per call: each access to a thread_local of
// a dlopen'ed addon is a call to __tls_get_addr.
thread_local Bound bound;
Bound& BoundHere() { return bound; }

bool Within(double ptr, double len, size_t size) {
  return ptr >= 0 && len >= 0 && ptr + len <= static_cast<double>(size);
}

// The pending save, if any, with the bound memory, as connSave(fd, id, mem,
// restPtr, restLen, statePtr, epfd, events, outPtr, outLen): 0 (done, or none
// pending) or connSave's result when it did not complete (bytes of the out
// region left unsent and nothing saved, -errno, or kStateOutside: the state
// slot or a region outside the bound memory). Either way it is no longer
// pending; on failure the connection is still this worker's.
int64_t RunPendingSave(Bound& b) {
  double* s = b.save;
  if (s[8] == 0) return 0;
  s[8] = 0;
  const Waiter& w = b.w;
  const int64_t rest_ptr = static_cast<int64_t>(s[2]), rest_len = static_cast<int64_t>(s[3]);
  const int64_t out_ptr = static_cast<int64_t>(s[6]), out_len = static_cast<int64_t>(s[7]);
  if (w.base == nullptr || !Within(s[2], s[3], w.mem_size) || (out_len > 0 && !Within(s[6], s[7], w.mem_size)))
    return kStateOutside;
  int64_t rc = ConnSave(static_cast<int>(s[0]), static_cast<uint64_t>(s[1]), w.base + rest_ptr, static_cast<size_t>(rest_len),
                        w.base, w.mem_size, static_cast<int64_t>(s[4]), w.epfd, static_cast<uint32_t>(s[5]), out_ptr, out_len);
  if (rc == 0) *b.bytes_out += static_cast<double>(std::max<int64_t>(out_len, 0));
  return rc;
}

// waitBind(epfd, holder, workersCell, busyGlobal, busySlot, maxEvents, bytesOutCell, out: Float64Array(8 or 9),
//          cells: Int32Array, save: Float64Array(9), totals: Float64Array) -> 0. The worker's arguments of
// every wait, for this thread (cells[workersCell]: the pool's workers, which tells a batch whether another
// worker waits); no load target and no save pending. The caller keeps the arrays (their memory must outlive
// the binding).
Napi::Value WaitBind(const Napi::CallbackInfo& info) {
  int64_t epfd, holder, workers, busy_global, busy_slot, max_events, bytes_out;
  if (!Args(info).Int(&epfd, &holder, &workers, &busy_global, &busy_slot, &max_events, &bytes_out))
    return info.Env().Undefined();
  Waiter w;
  w.out = static_cast<double*>(TypedArg(info, 7, napi_float64_array, 8, "out must be a Float64Array(8) or (9)"));
  if (w.out != nullptr) w.stamp = info[7].As<Napi::TypedArray>().ElementLength() >= 9;
  // The workers cell is checked as the busy ones are (an index into cells).
  if (w.out == nullptr || !CheckWorker(info, 8, w, workers, busy_slot, max_events) ||
      !CheckWorker(info, 8, w, busy_global, busy_slot, max_events))
    return info.Env().Undefined();
  w.workers_cell = static_cast<int>(workers);
  double* save = static_cast<double*>(TypedArg(info, 9, napi_float64_array, kSaveFields, "save must be a Float64Array(9)"));
  if (save == nullptr) return info.Env().Undefined();
  const size_t totals = info[10].IsTypedArray() ? info[10].As<Napi::TypedArray>().ElementLength() : 0;
  double* t = static_cast<double*>(TypedArg(info, 10, napi_float64_array, 0, "totals must be a Float64Array holding bytesOutCell"));
  if (t == nullptr) return info.Env().Undefined();
  if (bytes_out < 0 || static_cast<size_t>(bytes_out) >= totals) {
    Napi::RangeError::New(info.Env(), "bytesOutCell outside totals").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  w.epfd = static_cast<int>(epfd);
  w.holder = static_cast<int>(holder);
  save[8] = 0;
  BoundHere() = Bound{w, save, t + bytes_out};
  return Num(info, 0);
}

bool IsBound(const Napi::CallbackInfo& info, const Bound& b) {
  if (b.save != nullptr) return true;
  Napi::Error::New(info.Env(), "waitBind first").ThrowAsJavaScriptException();
  return false;
}

// waitTarget(mem?, inPtr?, inCap?, statePtr?, generation?) -> 0 | the pending save's failure (as waitNext's
// KIND_SAVE result). Makes a save still pending with the memory bound so far first, then binds the load
// target (mem undefined: none). The caller binds again whenever the instance or its memory.buffer changes.
Napi::Value WaitTarget(const Napi::CallbackInfo& info) {
  Bound& b = BoundHere();
  if (!IsBound(info, b)) return info.Env().Undefined();
  Waiter& w = b.w;
  Waiter t;
  int64_t state_ptr = 0, generation = 0;
  if (!info[0].IsUndefined() && !Args(info).Region(&t.in, &t.cap, &t.base, &t.mem_size).Int(&state_ptr, &generation))
    return info.Env().Undefined();
  const int64_t rc = RunPendingSave(b);
  w.base = t.base;
  w.mem_size = t.mem_size;
  w.in = t.in;
  w.cap = t.cap;
  w.state_ptr = state_ptr;
  w.generation = static_cast<int>(generation);
  return Num(info, static_cast<double>(rc));
}

// waitNext(timeoutMs) -> as epollWait with the bound arguments. First the
// pending save: when it does not complete, returns 1 at once with out = [fd,
// KIND_SAVE, 0, id, 0, 0, result, 0] (result as waitTarget's), the connection
// still held, nothing else done; otherwise it waits.
Napi::Value WaitNext(const Napi::CallbackInfo& info) {
  int64_t timeout;
  Bound& b = BoundHere();
  if (!IsBound(info, b) || !Args(info).Int(&timeout)) return info.Env().Undefined();
  if (const int64_t rc = RunPendingSave(b)) {
    double* out = b.w.out;
    out[0] = b.save[0];
    out[1] = kKindSave;
    out[2] = 0;
    out[3] = b.save[1];
    out[4] = 0;
    out[5] = 0;
    out[6] = static_cast<double>(rc);
    out[7] = 0;
    return Num(info, 1);
  }
  return Num(info, Wait(b.w, timeout));
}

// An export without arguments whose result is a number.
template <int (*Fn)()>
Napi::Value NoArgs(const Napi::CallbackInfo& info) {
  return Num(info, Fn());
}

// eventfdCreate() -> fd | -errno (non-blocking, close-on-exec)
int EventfdCreateCore() {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

// eventfdWrite(fd) -> 0 | -errno. Makes the eventfd readable; registered
// level-triggered, it then wakes every waiter of the epoll set in turn.
int EventfdWriteCore(int fd) {
  uint64_t one = 1;
  ssize_t n;
  do n = write(fd, &one, sizeof(one)); while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : 0;
}

}  // namespace

void InitPoller(Napi::Env env, Napi::Object exports) {
  exports.Set("epollCreate", Napi::Function::New(env, NoArgs<EpollCreateCore>, "epollCreate"));
  exports.Set("epollCtl", Napi::Function::New(env, Ints<EpollCtlCore>, "epollCtl"));
  exports.Set("epollWait", Napi::Function::New(env, EpollWait, "epollWait"));
  exports.Set("waitBind", Napi::Function::New(env, WaitBind, "waitBind"));
  exports.Set("waitTarget", Napi::Function::New(env, WaitTarget, "waitTarget"));
  exports.Set("waitNext", Napi::Function::New(env, WaitNext, "waitNext"));
  exports.Set("eventfdCreate", Napi::Function::New(env, NoArgs<EventfdCreateCore>, "eventfdCreate"));
  exports.Set("eventfdWrite", Napi::Function::New(env, Ints<EventfdWriteCore>, "eventfdWrite"));
  exports.Set("timerWakes", Napi::Function::New(env, Ints<TimerWakes>, "timerWakes"));
  exports.Set("testWaitPause", Napi::Function::New(env, Ints<TestWaitPauseCore>, "testWaitPause"));
  exports.Set("KIND_SAVE", Napi::Number::New(env, kKindSave));
  exports.Set("SAVE_OUTSIDE", Napi::Number::New(env, static_cast<double>(kStateOutside)));
}

}  // namespace tcpmod
