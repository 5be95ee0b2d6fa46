#include "mailbox.h"

#include <utility>

namespace tcpmod {

bool Mailbox::Push(Message&& m, size_t limit) {
  size_t c = m.cost();
  if (bytes_ + c > limit) return false;
  bytes_ += c;
  q_.push_back(std::move(m));
  return true;
}

void Mailbox::PushFront(Message&& m) {
  bytes_ += m.cost();
  q_.push_front(std::move(m));
}

bool Mailbox::Pop(Message* out) {
  if (q_.empty()) return false;
  *out = std::move(q_.front());
  q_.pop_front();
  bytes_ -= out->cost();
  // A deque keeps a block after draining; a burst to a slow reader gives it back once read.
  if (q_.empty()) std::deque<Message>().swap(q_);
  return true;
}

void Mailbox::Clear() {
  std::deque<Message>().swap(q_);
  bytes_ = 0;
}

}  // namespace tcpmod
