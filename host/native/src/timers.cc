// The timer heap and a server's timerfd (timers.h).
#include "timers.h"

#include <cassert>
#include <cerrno>
#include <sys/timerfd.h>
#include <unistd.h>

namespace tcpmod {

// Whole-heap check after every change: O(n), so only in test builds and
// only while the heap is small (larger ones are checked by the tests' own
// Valid() calls); the O(1) back-pointer asserts stay in every build.
#ifdef TCPMOD_TEST
#define TIMERS_CHECK() (items_.size() <= 1024 ? Check() : (void)0)
#else
#define TIMERS_CHECK() ((void)0)
#endif

void TimerHeap::SiftUp(uint32_t i) {
  TimerSlot* s = items_[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (!(s->at < items_[parent]->at)) break;
    Place(items_[parent], i);
    i = parent;
  }
  Place(s, i);
}

void TimerHeap::SiftDown(uint32_t i) {
  const uint32_t n = static_cast<uint32_t>(items_.size());
  TimerSlot* s = items_[i];
  for (;;) {
    uint32_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && items_[child + 1]->at < items_[child]->at) child++;
    if (!(items_[child]->at < s->at)) break;
    Place(items_[child], i);
    i = child;
  }
  Place(s, i);
}

// Restores the order around index i after its deadline changed either way.
void TimerHeap::Fix(uint32_t i) {
  if (i > 0 && Less(i, (i - 1) / 2)) SiftUp(i);
  else SiftDown(i);
}

void TimerHeap::Insert(TimerSlot* s, int64_t at) {
  assert(!s->queued());
  s->at = at;
  items_.push_back(s);
  SiftUp(static_cast<uint32_t>(items_.size() - 1));
  TIMERS_CHECK();
}

void TimerHeap::Update(TimerSlot* s, int64_t at) {
  assert(s->queued() && s->index < items_.size() && items_[s->index] == s);
  s->at = at;
  Fix(s->index);
  TIMERS_CHECK();
}

void TimerHeap::Remove(TimerSlot* s) {
  if (!s->queued()) return;
  const uint32_t i = s->index;
  assert(i < items_.size() && items_[i] == s);
  TimerSlot* last = items_.back();
  items_.pop_back();
  s->index = TimerSlot::kUnqueued;
  if (last != s) {
    // The last item fills the hole and moves up or down from there.
    Place(last, i);
    Fix(i);
  }
  MaybeShrink();
  TIMERS_CHECK();
}

TimerSlot* TimerHeap::Pop() {
  TimerSlot* s = top();
  if (s != nullptr) Remove(s);
  return s;
}

void TimerHeap::Clear() {
  for (TimerSlot* s : items_) s->index = TimerSlot::kUnqueued;
  std::vector<TimerSlot*>().swap(items_);
}

// After a burst (a churn of connections, each with a read deadline) the heap
// is mostly empty again: its array is given back once it is three quarters
// unused, halved, so that memory follows the number of connections without
// reallocating on every small swing.
void TimerHeap::MaybeShrink() {
  const size_t cap = items_.capacity();
  if (cap <= 1024 || items_.size() * 4 > cap) return;
  std::vector<TimerSlot*> smaller;
  smaller.reserve(cap / 2);
  smaller.assign(items_.begin(), items_.end());
  items_.swap(smaller);
}

bool TimerHeap::Valid() const {
  for (size_t i = 0; i < items_.size(); i++) {
    if (items_[i] == nullptr || items_[i]->index != i) return false;
    if (i > 0 && items_[i]->at < items_[(i - 1) / 2]->at) return false;
  }
  return true;
}

void TimerHeap::Check() const { assert(Valid()); }

int ServerTimers::Open() {
  if (fd_ >= 0) return fd_;
  fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  return fd_ < 0 ? -errno : fd_;
}

void ServerTimers::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  armed_at_ = 0;
  heap_.Clear();
}

bool ServerTimers::Schedule(TimerSlot* s, int64_t w) {
  if (w == kNever) {
    heap_.Remove(s);
    return false;
  }
  if (!s->queued()) heap_.Insert(s, w);
  else if (w < s->at || w > s->at + kLazyMs) heap_.Update(s, w);
  else return false;  // later by less than the lazy margin: it fires early and is looked at then
  // Within a wake the caller arms once at its end (Arm).
  return !waking_ && (armed_at_ == 0 || heap_.top()->at < armed_at_);
}

void ServerTimers::BeginWake() {
  uint64_t expirations;
  while (fd_ >= 0 && read(fd_, &expirations, sizeof(expirations)) < 0 && errno == EINTR) {
  }
  BeginWakeRead();
}

void ServerTimers::BeginWakeRead() {
  armed_at_ = 0;  // a fired timerfd is disarmed
  budget_ = kMaxPerWake;
  waking_ = true;
}

bool ServerTimers::Decide(int64_t also) {
  waking_ = false;
  int64_t at = heap_.empty() ? 0 : heap_.top()->at;
  if (also && (at == 0 || also < at)) at = also;
  if (at == armed_at_ || fd_ < 0) return false;
  armed_at_ = at;
  return true;
}

void ServerTimers::Set(int fd, int64_t at) {
  itimerspec its{};
  if (at) {
    // A deadline already past (items left over by a spent budget) fires at once.
    its.it_value.tv_sec = at / 1000;
    its.it_value.tv_nsec = (at % 1000) * 1000000;
  }
  timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, nullptr);
}

TimerSlot* ServerTimers::PopDue(int64_t now) {
  TimerSlot* s = heap_.top();
  if (s == nullptr || s->at > now || budget_ <= 0) return nullptr;
  budget_--;
  heap_.Remove(s);
  return s;
}

void ServerTimers::Arm(int64_t also) {
  if (Decide(also)) Set(fd_, armed_at_);
}

}  // namespace tcpmod
