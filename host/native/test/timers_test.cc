// sources: timers.cc
// The timer heap (timers.h) without Node: random insert/update/remove/pop
// against a reference model with the invariants checked after every step, the
// lazy re-schedule rule, one item per slot whatever is scheduled, the budget
// of one wake, memory given back, and threads scheduling, removing and popping
// under one lock as the connection table does (for ThreadSanitizer).
#include "timers.h"

#include "check.h"

#include <poll.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

using tcpmod::kNever;
using tcpmod::ServerTimers;
using tcpmod::TimerHeap;
using tcpmod::TimerSlot;

namespace {

// Checks done thousands of times count once, so the totals stay readable.
#define EXPECT_ALL(cond, what)                                                            \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, what, #cond);          \
      return false;                                                                       \
    }                                                                                     \
  } while (0)

int64_t MonoMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// The heap agrees with the model (slot index -> deadline): same members, same
// deadlines, the earliest on top, and its own invariants hold.
bool Agrees(const TimerHeap& h, const std::vector<TimerSlot>& slots, const std::map<size_t, int64_t>& model) {
  EXPECT_ALL(h.Valid(), "heap order or back-pointers broken");
  EXPECT_ALL(h.size() == model.size(), "size differs from the model");
  int64_t min = kNever;
  for (size_t i = 0; i < slots.size(); i++) {
    auto it = model.find(i);
    EXPECT_ALL(slots[i].queued() == (it != model.end()), "queued() differs from the model");
    if (it != model.end()) {
      EXPECT_ALL(slots[i].at == it->second, "deadline differs from the model");
      min = std::min(min, it->second);
    }
  }
  EXPECT_ALL(model.empty() ? h.top() == nullptr : h.top()->at == min, "top is not the earliest");
  return true;
}

void TestRandomAgainstModel() {
  std::mt19937_64 rng(20);
  std::vector<TimerSlot> slots(300);
  std::map<size_t, int64_t> model;
  TimerHeap h;
  bool ok = true;
  for (int step = 0; step < 60000 && ok; step++) {
    size_t i = rng() % slots.size();
    // Few distinct deadlines, so that ties are common.
    int64_t at = 1 + static_cast<int64_t>(rng() % 500);
    switch (rng() % 4) {
      case 0:  // insert (or update, when it is in already: the one-item rule)
      case 1:
        if (slots[i].queued()) h.Update(&slots[i], at);
        else h.Insert(&slots[i], at);
        model[i] = at;
        break;
      case 2:  // remove, queued or not
        h.Remove(&slots[i]);
        model.erase(i);
        break;
      case 3: {  // pop the earliest
        TimerSlot* s = h.Pop();
        if (model.empty()) {
          ok = s == nullptr;
          break;
        }
        size_t idx = static_cast<size_t>(s - slots.data());
        ok = !s->queued() && model.count(idx) == 1 && model[idx] == s->at;
        for (auto& [k, v] : model) ok = ok && v >= s->at;
        model.erase(idx);
        break;
      }
    }
    ok = ok && Agrees(h, slots, model);
  }
  CHECK(ok);
  // Popping the rest gives them in order.
  int64_t last = 0;
  bool ordered = true;
  while (TimerSlot* s = h.Pop()) {
    ordered = ordered && s->at >= last;
    last = s->at;
  }
  CHECK(ordered);
  CHECK(h.empty());
}

void TestScheduleRules() {
  ServerTimers t;
  std::vector<TimerSlot> slots(10);
  // Many schedules with falling deadlines (a module re-arming earlier and earlier): one item.
  for (int64_t w = 1000000; w > 1000; w -= 7) t.Schedule(&slots[0], w);
  CHECK(t.size() == 1);
  CHECK(slots[0].at <= 1007);
  // Rising deadlines: still one item; moved only once past the lazy margin.
  int64_t base = slots[0].at;
  t.Schedule(&slots[0], base + ServerTimers::kLazyMs);
  CHECK(slots[0].at == base);  // within the margin: left early
  t.Schedule(&slots[0], base + ServerTimers::kLazyMs + 1);
  CHECK(slots[0].at == base + ServerTimers::kLazyMs + 1);
  CHECK(t.size() == 1);
  // Earlier always moves it.
  t.Schedule(&slots[0], base - 1);
  CHECK(slots[0].at == base - 1);
  // kNever takes it out; again is harmless.
  t.Schedule(&slots[0], kNever);
  CHECK(!slots[0].queued());
  CHECK(t.size() == 0);
  t.Schedule(&slots[0], kNever);
  CHECK(t.size() == 0);
  // Many slots, many schedules each: never more items than slots.
  std::mt19937_64 rng(26);
  for (int i = 0; i < 100000; i++) t.Schedule(&slots[rng() % slots.size()], 1 + static_cast<int64_t>(rng() % 100000));
  CHECK(t.size() <= slots.size());
  CHECK(t.heap().Valid());
  for (TimerSlot& s : slots) t.Remove(&s);
  CHECK(t.size() == 0);
}

void TestBoundedWake() {
  ServerTimers t;
  CHECK(t.Open() >= 0);
  const int64_t now = MonoMs();
  const int n = ServerTimers::kMaxPerWake * 3 + 5;
  std::vector<TimerSlot> slots(static_cast<size_t>(n));
  for (int i = 0; i < n; i++) t.Schedule(&slots[static_cast<size_t>(i)], now - 1000 + i % 7);  // all past
  t.Arm(0);
  // Each wake takes at most kMaxPerWake; the timerfd is set to fire at once for the rest.
  int wakes = 0, taken = 0;
  while (t.size() > 0 && wakes < 100) {
    pollfd p{t.fd(), POLLIN, 0};
    CHECK(poll(&p, 1, 1000) == 1);  // fires without waiting: the rest are past due
    t.BeginWake();
    int this_wake = 0;
    while (t.PopDue(now)) this_wake++;
    CHECK(this_wake <= ServerTimers::kMaxPerWake);
    taken += this_wake;
    wakes++;
    t.Arm(0);
  }
  CHECK(taken == n);
  CHECK(wakes == (n + ServerTimers::kMaxPerWake - 1) / ServerTimers::kMaxPerWake);
  // Nothing left: disarmed.
  CHECK(t.armed_at() == 0);
  // An item not due yet is not taken, and sets the timerfd to its deadline.
  TimerSlot later;
  t.Schedule(&later, now + 60000);
  t.Arm(0);
  CHECK(t.armed_at() == now + 60000);
  t.BeginWake();
  CHECK(t.PopDue(now) == nullptr);
  t.Arm(0);
  CHECK(t.armed_at() == now + 60000);
  // `also` wins when earlier.
  t.Arm(now + 10);
  CHECK(t.armed_at() == now + 10);
  // Close unqueues what is left: the slot outlives the heap.
  t.Close();
  CHECK(!later.queued());
  CHECK(t.fd() < 0);
}

void TestMemoryGivenBack() {
  TimerHeap h;
  std::vector<TimerSlot> slots(200000);
  for (size_t i = 0; i < slots.size(); i++) h.Insert(&slots[i], static_cast<int64_t>(i % 977));
  const size_t peak = h.capacity();
  for (size_t i = 0; i < slots.size() - 100; i++) h.Remove(&slots[i]);
  CHECK(h.size() == 100);
  CHECK(h.Valid());
  CHECK(h.capacity() < peak / 64);
}

// Threads as the connection table runs them: "holders" schedule and remove
// their own connections' slots, a timer thread waits on the timerfd and pops
// what is due (at most a budget per wake), marking the owners due; a holder
// that finds its slot due takes the mark and schedules again. Every step is
// under one lock (the table lock).
struct Owner {
  TimerSlot slot;
  bool due = false;   // under mu
  int holder = 0;
};

void TestThreads() {
  std::mutex mu;
  ServerTimers t;
  CHECK(t.Open() >= 0);
  constexpr int kHolders = 4, kPerHolder = 64;
  std::vector<Owner> owners(kHolders * kPerHolder);
  for (size_t i = 0; i < owners.size(); i++) {
    owners[i].slot.owner = &owners[i];
    owners[i].holder = static_cast<int>(i / kPerHolder);
  }
  std::atomic<bool> stop{false};
  std::atomic<int> pops{0}, over_budget{0}, marks_taken{0};
  std::thread timer([&] {
    while (!stop.load()) {
      pollfd p{t.fd(), POLLIN, 0};
      if (poll(&p, 1, 5) <= 0) continue;
      std::lock_guard<std::mutex> lock(mu);
      t.BeginWake();
      int n = 0;
      int64_t now = MonoMs();
      while (TimerSlot* s = t.PopDue(now)) {
        static_cast<Owner*>(s->owner)->due = true;
        n++;
      }
      if (n > ServerTimers::kMaxPerWake) over_budget++;
      pops += n;
      t.Arm(0);
    }
  });
  std::vector<std::thread> holders;
  for (int h = 0; h < kHolders; h++) {
    holders.emplace_back([&, h] {
      std::mt19937_64 rng(static_cast<uint64_t>(h) + 1);
      const int64_t end = MonoMs() + 600;
      while (MonoMs() < end) {
        Owner& o = owners[static_cast<size_t>(h * kPerHolder) + rng() % kPerHolder];
        std::lock_guard<std::mutex> lock(mu);
        if (o.due) {
          o.due = false;
          marks_taken++;
        }
        int64_t now = MonoMs();
        bool arm = false;
        switch (rng() % 3) {
          case 0: arm = t.Schedule(&o.slot, now + static_cast<int64_t>(rng() % 20)); break;   // soon: the timer thread pops
          case 1: arm = t.Schedule(&o.slot, now + 1000 + static_cast<int64_t>(rng() % 1000)); break;
          case 2: t.Remove(&o.slot); break;  // the connection closed
        }
        if (arm) t.Arm(0);
      }
    });
  }
  for (std::thread& th : holders) th.join();
  stop = true;
  timer.join();
  CHECK(pops.load() > 0);
  CHECK(marks_taken.load() > 0);
  CHECK(over_budget.load() == 0);
  std::lock_guard<std::mutex> lock(mu);
  CHECK(t.heap().Valid());
  CHECK(t.size() <= owners.size());
  size_t queued = 0;
  for (Owner& o : owners) queued += o.slot.queued() ? 1 : 0;
  CHECK(queued == t.size());
  t.Close();
}

}  // namespace

int main() {
  TestRandomAgainstModel();
  TestScheduleRules();
  TestBoundedWake();
  TestMemoryGivenBack();
  TestThreads();
  return tcpmod_test::Summary();
}
