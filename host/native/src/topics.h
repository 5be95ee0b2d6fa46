// Topics of one server: which connections subscribed to which exact topics and
// patterns (docs/abi.md §15). Plain C++ with no locking of its own: every call
// is made under the connection table's lock, which also guards the mailboxes
// the matches are delivered to (mailbox.h).
//
// A subscription is keyed by its connection (fd, id) and its (kind, text):
// subscribing twice to the same one is one subscription. Exact topics are found
// by a hash lookup; patterns are tried one by one on every publish (a server
// with many distinct patterns pays for each on every publish, as Redis does).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "tcpmod_limits.h"

namespace tcpmod {

// What a subscription's text means.
enum TopicKind : int {
  kTopicExact = 0,  // the topic itself, byte for byte
  kTopicGlob = 1,   // a Redis-style glob: * ? [abc] [^a-z] and \ escapes (PSUBSCRIBE)
  kTopicMqtt = 2,   // an MQTT topic filter: levels split by '/', + one level, # the rest (last level only)
};

// Result codes of the topic calls (also the ABI's, docs/abi.md §15).
constexpr int kTopicInvalid = -3;   // empty, longer than kMaxTopic, unknown kind, or a malformed MQTT filter
constexpr int kTopicTooMany = -2;   // the connection holds kMaxSubscriptions already
// Added to subscribe's kind: a direct subscription (docs/abi.md §19).
constexpr int kTopicDirect = limits::kTopicDirectFlag;

constexpr size_t kMaxTopic = limits::kTopicMax;                  // bytes of a topic or pattern
constexpr size_t kMaxSubscriptions = limits::kSubscriptionsMax;  // per connection

struct SubKey {
  int fd;
  uint64_t id;
  bool operator==(const SubKey& o) const { return fd == o.fd && id == o.id; }
};

// Redis glob match of `s` against `pat` (no case folding).
bool GlobMatch(const char* pat, size_t plen, const char* s, size_t slen);
// MQTT filter match (the filter is valid, MqttFilterValid); a topic starting
// with '$' is not matched by a filter starting with a wildcard (MQTT 3.1.1 §4.7.2).
bool MqttMatch(const std::string& filter, const char* s, size_t slen);
// '#' only as the whole last level, '+' only as a whole level.
bool MqttFilterValid(const std::string& filter);

// Whether `text` is a valid subscription of `kind` (what Subscribe checks).
bool TopicValid(int kind, const std::string& text);
// Whether a subscription of `kind` with `text` matches `topic` (what Match applies).
bool TopicMatches(int kind, const std::string& text, const std::string& topic);

class TopicTable {
 public:
  // 1 subscribed, 0 it was already (its `direct` is then set to this one's), kTopicInvalid,
  // kTopicTooMany. A direct subscription takes a publish's pre-formatted frame, when it carries
  // one, instead of the message (docs/abi.md, Direct delivery).
  int Subscribe(SubKey k, int kind, const std::string& text, bool direct = false);
  // 1 removed, 0 it was not subscribed, kTopicInvalid (unknown kind).
  int Unsubscribe(SubKey k, int kind, const std::string& text);
  // Every subscription of k (its connection closed, or unsubscribe-all): how many there were.
  int UnsubscribeAll(SubKey k);
  // Every subscription of k of one kind (Redis UNSUBSCRIBE / PUNSUBSCRIBE without arguments): how many.
  int UnsubscribeKind(SubKey k, int kind);
  // Calls fn(subscriber, pattern, direct) once per subscription that matches `topic`
  // (pattern empty for an exact one); returns how many. fn must not change the table.
  using MatchFn = std::function<void(SubKey, const std::string&, bool direct)>;
  int Match(const std::string& topic, const MatchFn& fn) const;
  // The same for the subscriptions `only(kind, text)` accepts (a message from the bus, which
  // reaches the subscriptions of one Redis channel or pattern: bus.h).
  using Filter = std::function<bool(int kind, const std::string& text)>;
  int Match(const std::string& topic, const MatchFn& fn, const Filter& only) const;
  // Match for the publish path: fn(subscriber, pattern, direct) is called directly, with no
  // std::function between (one indirect call per delivery otherwise); `only` may be null.
  template <class Fn>
  int ForEachMatch(const std::string& topic, Fn&& fn, const Filter* only) const;

  // Told of every subscription added (+1) or removed (-1), whichever call did it (the bus keeps
  // its Redis subscriptions to what the table holds). Called inside the table's calls.
  using Observer = std::function<void(int kind, const std::string& text, int delta)>;
  void Observe(Observer o) { observer_ = std::move(o); }

  // For listings and tests: distinct exact topics, pattern subscriptions, all subscriptions.
  size_t topics() const { return exact_.size(); }
  size_t patterns() const { return patterns_.size(); }
  size_t subscriptions() const { return total_; }
  // For PUBSUB NUMSUB / NUMPAT (the topic_count call): with `text`, the subscriptions of (kind, text);
  // with text empty, how many distinct texts of that kind have a subscription.
  size_t Count(int kind, const std::string& text) const;
  // For PUBSUB CHANNELS (topics_list): the exact topics with a subscriber whose name the Redis glob
  // accepts (an empty glob: all of them), in byte order.
  std::vector<std::string> Topics(const std::string& glob) const;
  // Subscriptions of one connection (0 when it has none).
  size_t Of(SubKey k) const;
  bool empty() const { return total_ == 0 && exact_.empty() && patterns_.empty() && by_conn_.empty(); }

 private:
  struct Pattern {
    int kind;
    std::string text;
    SubKey who;
    bool direct;
  };
  struct ExactSub {
    SubKey who;
    bool direct;
    bool operator==(const SubKey& k) const { return who == k; }
  };
  struct KeyHash {
    size_t operator()(const SubKey& k) const { return std::hash<uint64_t>()(k.id) ^ static_cast<size_t>(k.fd); }
  };
  // Exact topic -> its subscribers, in subscription order.
  std::unordered_map<std::string, std::vector<ExactSub>> exact_;
  std::vector<Pattern> patterns_;
  // Per connection: its (kind, text) subscriptions, to drop them all at close.
  std::unordered_map<SubKey, std::vector<std::pair<int, std::string>>, KeyHash> by_conn_;
  size_t total_ = 0;
  Observer observer_;
};

template <class Fn>
int TopicTable::ForEachMatch(const std::string& topic, Fn&& fn, const Filter* only) const {
  if (only != nullptr && !*only) only = nullptr;
  int n = 0;
  static const std::string kNone;
  auto e = exact_.find(topic);
  if (e != exact_.end() && (only == nullptr || (*only)(kTopicExact, topic))) {
    for (const ExactSub& s : e->second) fn(s.who, kNone, s.direct);
    n += static_cast<int>(e->second.size());
  }
  for (const Pattern& p : patterns_) {
    if (!TopicMatches(p.kind, p.text, topic) || (only != nullptr && !(*only)(p.kind, p.text))) continue;
    fn(p.who, p.text, p.direct);
    n++;
  }
  return n;
}

}  // namespace tcpmod
