#include "mailbox.h"

#include <utility>

namespace tcpmod {

namespace {
// Slots an empty mailbox keeps for the next burst (a pipelined publisher's frames per event):
// beyond that, the memory of a burst to a slow reader is given back once it is read.
constexpr size_t kKeepSlots = 64;
// Taken slots moved out of the front at once, at least (amortized: never per pop).
constexpr size_t kCompactAt = 64;
}  // namespace

bool Mailbox::Push(Message&& m, size_t limit) {
  size_t c = m.cost();
  if (bytes_ + c > limit) return false;
  bytes_ += c;
  q_.push_back(std::move(m));
  return true;
}

bool Mailbox::PushFrame(const std::shared_ptr<const std::string>& frame, size_t topic_len, size_t limit) {
  const size_t c = topic_len + frame->size() + Message::kOverhead;
  if (bytes_ + c > limit) return false;
  bytes_ += c;
  Message& m = q_.emplace_back();
  m.frame = true;
  m.shared = frame;
  m.topic_len = topic_len;
  return true;
}

bool Mailbox::PopFrame(std::shared_ptr<const std::string>* frame, size_t* topic_len) {
  if (empty() || !q_[head_].frame) return false;
  Message& m = q_[head_];
  bytes_ -= m.cost();
  *topic_len = m.topic_len;
  *frame = std::move(m.shared);
  Taken();
  return true;
}

void Mailbox::PushFront(Message&& m) {
  bytes_ += m.cost();
  if (head_ > 0) q_[--head_] = std::move(m);
  else q_.insert(q_.begin(), std::move(m));
}

bool Mailbox::Pop(Message* out) {
  if (empty()) return false;
  *out = std::move(q_[head_]);
  bytes_ -= out->cost();
  Taken();
  return true;
}

void Mailbox::Taken() {
  head_++;
  if (head_ == q_.size()) {
    if (q_.capacity() > kKeepSlots) std::vector<Message>().swap(q_);
    else q_.clear();
    head_ = 0;
  } else if (head_ >= kCompactAt && head_ * 2 >= q_.size()) {
    q_.erase(q_.begin(), q_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
}

void Mailbox::Clear() {
  std::vector<Message>().swap(q_);
  head_ = 0;
  bytes_ = 0;
}

}  // namespace tcpmod
