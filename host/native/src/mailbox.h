// A connection's mailbox: messages published to its subscriptions, waiting
// for its next tcpmod_on_message call (docs/abi.md §15). Bounded in bytes: a
// push past the bound is refused and the caller closes the subscriber (reason
// 3, as Redis closes a pub/sub client past its output buffer limit), so a slow
// subscriber never grows memory without bound nor slows the publisher.
// Plain C++, no lock of its own: used under the connection table's lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tcpmod {

struct Message {
  std::string topic;
  std::string pattern;  // the pattern subscription that matched (empty: an exact one)
  std::string body;
  // A direct subscription's pre-formatted frame (docs/abi.md §19) instead of a message: one copy
  // per publish, shared by every subscriber's mailbox; appended to the output as it is, in mailbox
  // order, by a flush (direct.h) or by the owner, calling no module. A frame keeps no copy of its
  // topic (nothing reads it): only its length, which it counts toward the bound as a message would.
  bool frame = false;
  std::shared_ptr<const std::string> shared;
  size_t topic_len = 0;  // a frame's topic length (a message's topic is `topic`)
  // The bytes a delivery writes: the frame's, or the message's.
  const std::string& bytes() const { return frame ? *shared : body; }
  // What the message counts toward the mailbox bound: its bytes and a fixed overhead.
  size_t cost() const { return topic.size() + topic_len + pattern.size() + bytes().size() + kOverhead; }
  static constexpr size_t kOverhead = 64;
};

class Mailbox {
 public:
  // Appends m when the mailbox stays within `limit` bytes; false (and nothing
  // kept) otherwise. An empty mailbox takes one message of any size up to the limit.
  bool Push(Message&& m, size_t limit);
  // Push of a frame (shares `frame`, counts topic_len as its topic), built in place: the publish
  // path's, per direct subscriber.
  bool PushFrame(const std::shared_ptr<const std::string>& frame, size_t topic_len, size_t limit);
  // Takes the oldest entry when it is a frame: its bytes, and its topic's length for a put-back.
  bool PopFrame(std::shared_ptr<const std::string>* frame, size_t* topic_len);
  // Puts back, as the oldest, a message taken from it (its bound is not checked: it was within it).
  void PushFront(Message&& m);
  // Takes the oldest message; false when empty.
  bool Pop(Message* out);
  // Whether the oldest entry is a frame (false when empty).
  bool FrontIsFrame() const { return !empty() && q_[head_].frame != nullptr; }
  void Clear();
  bool empty() const { return head_ == q_.size(); }
  size_t size() const { return q_.size() - head_; }
  size_t bytes() const { return bytes_; }

 private:
  // An entry: a frame (shared bytes and its topic's length), or a message kept whole on the heap.
  // 32 bytes rather than a Message's 128: a fan-out to 1,000 subscribers writes one entry into each
  // of 1,000 mailboxes per publish, and those writes' cache misses were its largest cost.
  struct Entry {
    std::shared_ptr<const std::string> frame;
    std::unique_ptr<Message> msg;
    size_t topic_len = 0;
    size_t cost() const { return frame ? topic_len + frame->size() + Message::kOverhead : msg->cost(); }
  };
  // A queue in a vector: q_[head_..] waits, the slots before head_ were taken (moved out, holding
  // nothing). Pushing and taking a frame allocate nothing once the vector has grown to the
  // mailbox's usual depth (the deque it replaces allocated a block every few messages and a fresh
  // one each time it emptied: a third of a fan-out's CPU went to malloc). The taken slots are
  // reclaimed when the queue empties, or moved out once they are half of it, so it never grows past
  // twice what waits.
  void Taken();  // after q_[head_] was taken: advances, reclaims the taken slots
  void PutFront(Entry&& e);
  std::vector<Entry> q_;
  size_t head_ = 0;
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
