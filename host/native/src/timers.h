// Timers of one server: a binary min-heap of wake times with at most one item
// per connection, and the server's timerfd set to the earliest of them.
//
// The heap is intrusive: each connection entry embeds a TimerSlot that holds
// its deadline and its position in the heap, so a re-schedule moves the item
// in place and a close removes it, both O(log n), and the heap never holds
// more items than there are connections with a deadline (a module re-arming
// its timer a million times, or a churn of short connections, cannot grow it).
//
// Plain C++ with no locking of its own: every call is made under the lock that
// guards the slots' owners (the connection table's lock). Invariants (heap
// order, each item's index back-pointer) are asserted; a build with
// TCPMOD_TEST checks the whole heap after every change.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tcpmod_limits.h"

namespace tcpmod {

// "No deadline": a wake time that never comes.
constexpr int64_t kNever = INT64_MAX;

// A connection's place in its server's timer heap. `owner` is what the slot
// belongs to (the caller's entry); the heap never looks at it.
struct TimerSlot {
  static constexpr uint32_t kUnqueued = UINT32_MAX;
  int64_t at = 0;                // the item's deadline (meaningful while queued)
  uint32_t index = kUnqueued;    // its position in the heap, kUnqueued when not in it
  void* owner = nullptr;
  bool queued() const { return index != kUnqueued; }
};

// A binary min-heap of slots by deadline, each slot knowing its index.
class TimerHeap {
 public:
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  // The slot with the earliest deadline (nullptr when empty).
  TimerSlot* top() const { return items_.empty() ? nullptr : items_[0]; }
  // Puts an unqueued slot in with deadline `at`.
  void Insert(TimerSlot* s, int64_t at);
  // Moves a queued slot to deadline `at`, in place.
  void Update(TimerSlot* s, int64_t at);
  // Takes a slot out; nothing when it is not queued.
  void Remove(TimerSlot* s);
  // Takes the top out and returns it (nullptr when empty).
  TimerSlot* Pop();
  // Unqueues every slot (their owners may outlive the heap).
  void Clear();
  // The heap order holds and every item's index points back at it.
  bool Valid() const;
  // Capacity kept, for tests: the heap gives memory back as it shrinks.
  size_t capacity() const { return items_.capacity(); }

 private:
  bool Less(uint32_t a, uint32_t b) const { return items_[a]->at < items_[b]->at; }
  void Place(TimerSlot* s, uint32_t i) {
    items_[i] = s;
    s->index = i;
  }
  void SiftUp(uint32_t i);
  void SiftDown(uint32_t i);
  void Fix(uint32_t i);
  void Check() const;
  void MaybeShrink();
  std::vector<TimerSlot*> items_;
};

// One server's timers: the heap, its timerfd, and the budget of one wake.
class ServerTimers {
 public:
  // Timer items taken per timerfd wake, at most: the rest wait for the next
  // wake, which comes at once (the timerfd is set to their past deadline), so
  // a burst of due items is handled in slices and never holds the table lock
  // for all of them in one go.
  static constexpr int kMaxPerWake = limits::kTimerPopsPerWake;
  // A deadline that moves later by less than this is left where it is (the
  // item fires a little early; its owner looks, finds nothing due, and
  // schedules again): a connection whose read deadline moves with every event
  // costs no heap work on most of them.
  static constexpr int64_t kLazyMs = 250;

  // Creates the timerfd (CLOCK_MONOTONIC, non-blocking): its fd, or -errno.
  int Open();
  // Closes the timerfd and empties the heap (its slots are unqueued).
  void Close();
  int fd() const { return fd_; }

  // The slot's single item is due by `w` (kNever: no item). Earlier moves it
  // at once; later only past kLazyMs. Returns true when the earliest deadline
  // is now before what the timerfd is set to: the caller re-arms it (Arm).
  bool Schedule(TimerSlot* s, int64_t w);
  // Takes the slot's item out (a closing connection); nothing when it has none.
  void Remove(TimerSlot* s) { heap_.Remove(s); }

  // The timerfd fired: reads its count and starts a wake's budget.
  void BeginWake();
  // The next item due at `now` within this wake's budget, taken out of the
  // heap (the caller schedules it again if it still has a deadline), or nullptr.
  TimerSlot* PopDue(int64_t now);
  // Sets the timerfd to the earliest of the heap's top and `also` (0: none),
  // or disarms it; no syscall when that is what it is set to already. Ends a
  // wake (BeginWake): the caller calls it once it has taken what it will.
  void Arm(int64_t also);
  // What the timerfd is set to (0: disarmed).
  int64_t armed_at() const { return armed_at_; }

  // Arm and BeginWake in two halves, for a caller that makes the syscalls
  // outside its lock (due.cc): Decide is Arm's bookkeeping (true when the
  // timerfd must be set to armed_at()), Set the timerfd_settime; BeginWakeRead
  // is BeginWake once the caller has read the timerfd itself.
  bool Decide(int64_t also);
  static void Set(int fd, int64_t at);
  void BeginWakeRead();

  size_t size() const { return heap_.size(); }
  const TimerHeap& heap() const { return heap_; }

 private:
  TimerHeap heap_;
  int fd_ = -1;
  int64_t armed_at_ = 0;
  int budget_ = kMaxPerWake;
  bool waking_ = false;  // between BeginWake and Arm
};

}  // namespace tcpmod
