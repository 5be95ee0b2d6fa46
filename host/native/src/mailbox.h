// A connection's mailbox: messages published to its subscriptions, waiting
// for its next tcpmod_on_message call (docs/abi.md §15). Bounded in bytes: a
// push past the bound is refused and the caller closes the subscriber (reason
// 3, as Redis closes a pub/sub client past its output buffer limit), so a slow
// subscriber never grows memory without bound nor slows the publisher.
// Plain C++, no lock of its own: used under the connection table's lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

namespace tcpmod {

struct Message {
  std::string topic;
  std::string pattern;  // the pattern subscription that matched (empty: an exact one)
  std::string body;
  // A direct subscription's pre-formatted frame (docs/abi.md §19) instead of a message: one copy
  // per publish, shared by every subscriber's mailbox; appended to the output as it is, in mailbox
  // order, by a flush (direct.h) or by the owner, calling no module. Its topic is the publish's.
  bool frame = false;
  std::shared_ptr<const std::string> shared;
  // The bytes a delivery writes: the frame's, or the message's.
  const std::string& bytes() const { return frame ? *shared : body; }
  // What the message counts toward the mailbox bound: its bytes and a fixed overhead.
  size_t cost() const { return topic.size() + pattern.size() + bytes().size() + kOverhead; }
  static constexpr size_t kOverhead = 64;
};

class Mailbox {
 public:
  // Appends m when the mailbox stays within `limit` bytes; false (and nothing
  // kept) otherwise. An empty mailbox takes one message of any size up to the limit.
  bool Push(Message&& m, size_t limit);
  // Puts back, as the oldest, a message taken from it (its bound is not checked: it was within it).
  void PushFront(Message&& m);
  // Takes the oldest message; false when empty.
  bool Pop(Message* out);
  // The oldest message's sizes, without taking it; false when empty.
  const Message* Front() const { return q_.empty() ? nullptr : &q_.front(); }
  void Clear();
  bool empty() const { return q_.empty(); }
  size_t size() const { return q_.size(); }
  size_t bytes() const { return bytes_; }

 private:
  std::deque<Message> q_;
  size_t bytes_ = 0;
};

// What a connection has of pub/sub: its mailbox, and whether it is closing for
// an overflow (then it takes no more messages). Owned by the connection entry.
struct ConnTopics {
  Mailbox mail;
  bool overflowed = false;
  int group = -1;  // the server whose topic table holds its subscriptions
  bool direct_listed = false;  // listed for the next flush of direct frames (direct.h)
};

}  // namespace tcpmod
