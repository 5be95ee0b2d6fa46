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
  if (m.frame) return PushFrame(m.shared, m.topic_len, limit);
  size_t c = m.cost();
  if (bytes_ + c > limit) return false;
  bytes_ += c;
  q_.emplace_back().msg = std::make_unique<Message>(std::move(m));
  return true;
}

bool Mailbox::PushFrame(const std::shared_ptr<const std::string>& frame, size_t topic_len, size_t limit) {
  const size_t c = topic_len + frame->size() + Message::kOverhead;
  if (bytes_ + c > limit) return false;
  bytes_ += c;
  Entry& e = q_.emplace_back();
  e.frame = frame;
  e.topic_len = topic_len;
  return true;
}

bool Mailbox::PopFrame(std::shared_ptr<const std::string>* frame, size_t* topic_len) {
  if (!FrontIsFrame()) return false;
  Entry& e = q_[head_];
  bytes_ -= e.cost();
  *topic_len = e.topic_len;
  *frame = std::move(e.frame);
  Taken();
  return true;
}

void Mailbox::PutFront(Entry&& e) {
  bytes_ += e.cost();
  if (head_ > 0) q_[--head_] = std::move(e);
  else q_.insert(q_.begin(), std::move(e));
}

void Mailbox::PushFront(Message&& m) {
  Entry e;
  if (m.frame) {
    e.frame = std::move(m.shared);
    e.topic_len = m.topic_len;
  } else {
    e.msg = std::make_unique<Message>(std::move(m));
  }
  PutFront(std::move(e));
}

bool Mailbox::Pop(Message* out) {
  if (empty()) return false;
  Entry& e = q_[head_];
  bytes_ -= e.cost();
  if (e.frame) {
    *out = Message();
    out->frame = true;
    out->shared = std::move(e.frame);
    out->topic_len = e.topic_len;
  } else {
    *out = std::move(*e.msg);
    e.msg.reset();
  }
  Taken();
  return true;
}

void Mailbox::Taken() {
  head_++;
  if (head_ == q_.size()) {
    if (q_.capacity() > kKeepSlots) std::vector<Entry>().swap(q_);
    else q_.clear();
    head_ = 0;
  } else if (head_ >= kCompactAt && head_ * 2 >= q_.size()) {
    q_.erase(q_.begin(), q_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
}

void Mailbox::Clear() {
  std::vector<Entry>().swap(q_);
  head_ = 0;
  bytes_ = 0;
}

}  // namespace tcpmod
