// epoll and eventfd. An epoll item's 64-bit data carries its fd, kind and the
// tag of its table entry (EpollPack, conn_table.h); the waiter claims
// connections in the table before returning.
#include "poller.h"

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

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// epollCreate() -> fd | -errno
Napi::Value EpollCreate(const Napi::CallbackInfo& info) {
  int fd = epoll_create1(EPOLL_CLOEXEC);
  return Num(info, fd < 0 ? -errno : fd);
}

// epollCtl(epfd, op, fd, events, kind) -> 0 | -errno; for items outside the table (the wake eventfd)
Napi::Value EpollCtl(const Napi::CallbackInfo& info) {
  int64_t epfd, op, fd, events, tag;
  if (!ArgInt(info, 0, &epfd) || !ArgInt(info, 1, &op) || !ArgInt(info, 2, &fd) || !ArgInt(info, 3, &events) ||
      !ArgInt(info, 4, &tag))
    return info.Env().Undefined();
  epoll_event ev{};
  ev.events = static_cast<uint32_t>(events);
  ev.data.u64 = EpollPack(static_cast<int>(tag), static_cast<int>(fd), 0);
  int rc = epoll_ctl(static_cast<int>(epfd), static_cast<int>(op), static_cast<int>(fd), &ev);
  return Num(info, rc < 0 ? -errno : 0);
}

// Test hook (testWaitPause): µs epollWait sleeps between epoll_wait's return
// and its claims, so that a test can close the connection an event was for and
// reuse its fd number in between; and how many such pauses have begun.
std::atomic<int> wait_pause_us{0};
std::atomic<int> wait_pauses{0};

// testWaitPause(us) -> pauses begun so far. us >= 0 sets the pause (0: off); < 0 only reads.
Napi::Value TestWaitPause(const Napi::CallbackInfo& info) {
  int64_t us;
  if (!ArgInt(info, 0, &us)) return info.Env().Undefined();
  if (us >= 0) wait_pause_us = static_cast<int>(std::min<int64_t>(us, 5000000));
  return Num(info, wait_pauses.load());
}

// The most events one epoll_wait takes (--batch is checked against it in options.ts).
constexpr int64_t kMaxBatch = limits::kBatchMax;

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
Napi::Value EpollWait(const Napi::CallbackInfo& info) {
  int64_t epfd, timeout, holder, busy_global, busy_slot, max_events = 1;
  int64_t state_ptr = 0, generation = 0;
  uint8_t *in = nullptr, *base = nullptr;
  size_t cap = 0, mem_size = 0;
  if (!ArgInt(info, 0, &epfd) || !ArgInt(info, 1, &timeout) || !ArgInt(info, 3, &holder) ||
      !ArgInt(info, 5, &busy_global) || !ArgInt(info, 6, &busy_slot) ||
      (info.Length() > 7 && !ArgInt(info, 7, &max_events)))
    return info.Env().Undefined();
  const bool load = info.Length() > 8 && !info[8].IsUndefined();
  if (load && (!ArgRegion(info, 8, &in, &cap, &base, &mem_size) || !ArgInt(info, 11, &state_ptr) ||
               !ArgInt(info, 12, &generation)))
    return info.Env().Undefined();
  if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[2].As<Napi::TypedArray>().ElementLength() < (load ? 8u : 5u) || !info[4].IsTypedArray() ||
      info[4].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      busy_global < 0 || busy_slot < 0 ||
      static_cast<size_t>(std::max(busy_global, busy_slot)) >= info[4].As<Napi::TypedArray>().ElementLength()) {
    Napi::TypeError::New(info.Env(), "out must be a Float64Array(5), or (8) with a load target, and cells an Int32Array holding both busy cells")
        .ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  if (max_events < 1 || max_events > kMaxBatch) {
    Napi::RangeError::New(info.Env(), "maxEvents must be 1.." + std::to_string(kMaxBatch)).ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Napi::Float64Array out = info[2].As<Napi::Float64Array>();
  int32_t* cells = info[4].As<Napi::Int32Array>().Data();
  int32_t* mine = cells + busy_slot;
  auto give = [&](const Lent& e) {
    // Busy from the event returned on; the wake alone (last of a batch) holds nothing.
    if (e.kind != kKindWake && __atomic_exchange_n(mine, 1, __ATOMIC_SEQ_CST) == 0)
      __atomic_fetch_add(cells + busy_global, 1, __ATOMIC_SEQ_CST);
    out[0] = e.fd;
    out[1] = e.kind;
    out[2] = e.events;
    out[3] = e.id;
    out[4] = e.due;
    if (load) {
      int64_t result = 0, received = 0;
      bool loaded = e.kind == kKindConn && e.due == 0 &&
                    LoadClaimed(e.fd, e.id, static_cast<int>(generation), in, cap, base, mem_size, state_ptr, &result, &received);
      out[5] = loaded ? 1 : 0;
      out[6] = static_cast<double>(result);
      out[7] = static_cast<double>(received);
    }
    return Num(info, 1);
  };
  Lent e;
  // The rest of this worker's last batch first: it holds those already.
  if (PopLent(static_cast<int>(epfd), static_cast<int>(holder), &e)) {
    if (e.kind == kKindWake && __atomic_exchange_n(mine, 0, __ATOMIC_SEQ_CST) == 1)
      __atomic_fetch_sub(cells + busy_global, 1, __ATOMIC_SEQ_CST);
    return give(e);
  }
  if (__atomic_exchange_n(mine, 0, __ATOMIC_SEQ_CST) == 1) __atomic_fetch_sub(cells + busy_global, 1, __ATOMIC_SEQ_CST);
  int64_t deadline = timeout >= 0 ? NowMs() + timeout : -1;
  epoll_event evs[kMaxBatch];
  Lent got[kMaxBatch];
  for (;;) {
    if (TakeDue(static_cast<int>(epfd), static_cast<int>(holder), &e.fd, &e.id, &e.due)) {
      e.kind = kKindConn;
      e.events = 0;
      return give(e);
    }
    int wait_ms = deadline < 0 ? -1 : static_cast<int>(std::max<int64_t>(0, deadline - NowMs()));
    // Loans are kept per worker (holder > 0) of a group configured for them; any other caller takes one event at a time.
    if (max_events > 1 && (holder <= 0 || !BatchConfigured(static_cast<int>(epfd)))) max_events = 1;
    int n = epoll_wait(static_cast<int>(epfd), evs, static_cast<int>(max_events), wait_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Num(info, -errno);
    if (n == 0) return Num(info, 0);
    if (int us = wait_pause_us.load(std::memory_order_relaxed)) {
      wait_pauses++;
      usleep(static_cast<useconds_t>(us));
    }
    int m = 0;
    int wake_fd = -1;
    bool due_woken = false;
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
        RunTimers(static_cast<int>(epfd));
        continue;
      }
      if (kind == kKindUpstream) {
        // Bookkeeping only: the work is the client's holder's (upstream.h).
        UpstreamWake(static_cast<int>(epfd), fd, EpollTag(evs[i].data.u64));
        continue;
      }
      if (kind == kKindWake) {
        wake_fd = fd;  // handed out last, after everything this batch claims
        continue;
      }
      Lent& g = got[m];
      if (!ClaimEvent(fd, EpollTag(evs[i].data.u64), static_cast<int>(epfd), static_cast<int>(holder), &g.id, &g.due)) continue;
      g.fd = fd;
      g.kind = kind;
      g.events = evs[i].events;
      m++;
    }
    // The due eventfd and the wake each took a slot, so both fit. Taken even when nothing else was:
    // the eventfd was read, and the next poke comes only when the list is found empty.
    if (due_woken && TakeDue(static_cast<int>(epfd), static_cast<int>(holder), &got[m].fd, &got[m].id, &got[m].due)) {
      got[m].kind = kKindConn;
      got[m].events = 0;
      m++;
    }
    if (wake_fd >= 0) got[m++] = Lent{wake_fd, kKindWake, EPOLLIN, 0, 0};
    if (m == 0) continue;
    if (m > 1) LendBatch(static_cast<int>(epfd), static_cast<int>(holder), got + 1, m - 1);
    return give(got[0]);
  }
}

// eventfdCreate() -> fd | -errno (non-blocking, close-on-exec)
Napi::Value EventfdCreate(const Napi::CallbackInfo& info) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  return Num(info, fd < 0 ? -errno : fd);
}

// eventfdWrite(fd) -> 0 | -errno. Makes the eventfd readable; registered
// level-triggered, it then wakes every waiter of the epoll set in turn.
Napi::Value EventfdWrite(const Napi::CallbackInfo& info) {
  int64_t fd;
  if (!ArgInt(info, 0, &fd)) return info.Env().Undefined();
  uint64_t one = 1;
  ssize_t n;
  do n = write(static_cast<int>(fd), &one, sizeof(one)); while (n < 0 && errno == EINTR);
  return Num(info, n < 0 ? -errno : 0);
}

}  // namespace

void InitPoller(Napi::Env env, Napi::Object exports) {
  exports.Set("epollCreate", Napi::Function::New(env, EpollCreate, "epollCreate"));
  exports.Set("epollCtl", Napi::Function::New(env, EpollCtl, "epollCtl"));
  exports.Set("epollWait", Napi::Function::New(env, EpollWait, "epollWait"));
  exports.Set("eventfdCreate", Napi::Function::New(env, EventfdCreate, "eventfdCreate"));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventfdWrite, "eventfdWrite"));
  exports.Set("testWaitPause", Napi::Function::New(env, TestWaitPause, "testWaitPause"));
}

}  // namespace tcpmod
