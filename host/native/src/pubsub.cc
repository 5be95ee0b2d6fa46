#include "pubsub.h"

#include <cerrno>
#include <cstring>
#include <map>
#include <string>

#include "args.h"
#include "conn_table.h"
#include "mailbox.h"
#include "topics.h"

namespace tcpmod {
namespace {

// Per server (keyed by its epoll fd, as the connection table's groups are). Under the table lock.
struct GroupTopics {
  TopicTable table;
  size_t max_mailbox = 1 << 20;
  double published = 0, delivered = 0, overflows = 0, too_big = 0;
};
std::map<int, GroupTopics> groups;

GroupTopics& GroupAt(int group) { return groups[group]; }

std::string Text(uint8_t* p, size_t n) { return std::string(reinterpret_cast<const char*>(p), n); }

// The (fd, id, kind, mem, ptr, len) arguments of topicSubscribe and topicUnsubscribe.
struct TopicArgs {
  int fd;
  uint64_t id;
  int64_t kind;
  std::string text;
};

// False (a JS exception pending) when an argument is not what it must be.
bool ReadTopicArgs(const Napi::CallbackInfo& info, TopicArgs* a) {
  int64_t fd, id;
  uint8_t* p;
  size_t n;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id) || !ArgInt(info, 2, &a->kind) || !ArgRegion(info, 3, &p, &n))
    return false;
  a->fd = static_cast<int>(fd);
  a->id = static_cast<uint64_t>(id);
  a->text = Text(p, n);
  return true;
}

// topicsConfigure(group, maxMailbox) -> 0. The mailbox bound, bytes (a message costs its bytes + 64).
Napi::Value TopicsConfigure(const Napi::CallbackInfo& info) {
  int64_t group, max;
  if (!ArgInt(info, 0, &group) || !ArgInt(info, 1, &max)) return info.Env().Undefined();
  WithTableLock([&] {
    GroupTopics& g = GroupAt(static_cast<int>(group));
    // A server starting on an epoll fd number an earlier one had starts its counters afresh.
    if (g.table.empty()) g = GroupTopics();
    g.max_mailbox = static_cast<size_t>(max);
  });
  return Num(info, 0);
}

// topicSubscribe(fd, id, kind, mem, ptr, len) -> 1 | 0 already | -2 too many | -3 invalid | -EBADF.
// Holder only (the connection being handled).
Napi::Value TopicSubscribe(const Napi::CallbackInfo& info) {
  TopicArgs a;
  if (!ReadTopicArgs(info, &a)) return info.Env().Undefined();
  int rc = -EBADF;
  WithTableLock([&] {
    ConnTopics* t = ConnTopicsLocked(a.fd, a.id, true);
    if (t == nullptr) return;
    rc = GroupAt(t->group).table.Subscribe({a.fd, a.id}, static_cast<int>(a.kind), a.text);
  });
  return Num(info, rc);
}

// topicUnsubscribe(fd, id, kind, mem, ptr, len) -> 1 | 0 not subscribed | -3; kind -1: all of
// them, len 0: all of that kind, the result how many. Holder only.
Napi::Value TopicUnsubscribe(const Napi::CallbackInfo& info) {
  TopicArgs a;
  if (!ReadTopicArgs(info, &a)) return info.Env().Undefined();
  int rc = 0;
  WithTableLock([&] {
    ConnTopics* t = ConnTopicsLocked(a.fd, a.id, false);
    if (t == nullptr) return;
    SubKey k{a.fd, a.id};
    TopicTable& table = GroupAt(t->group).table;
    if (a.kind == -1) rc = table.UnsubscribeAll(k);
    else if (a.text.empty() && a.kind >= kTopicExact && a.kind <= kTopicMqtt) rc = table.UnsubscribeKind(k, static_cast<int>(a.kind));
    else rc = table.Unsubscribe(k, static_cast<int>(a.kind), a.text);
  });
  return Num(info, rc);
}

// topicPublish(group, mem, topicPtr, topicLen, mem, msgPtr, msgLen) -> subscriptions reached | -3
// invalid topic | -4 message larger than the mailbox bound (no subscriber could take it).
Napi::Value TopicPublish(const Napi::CallbackInfo& info) {
  int64_t group;
  uint8_t *tp, *mp;
  size_t tn, mn;
  if (!ArgInt(info, 0, &group) || !ArgRegion(info, 1, &tp, &tn) || !ArgRegion(info, 4, &mp, &mn))
    return info.Env().Undefined();
  if (tn == 0 || tn > kMaxTopic) return Num(info, kTopicInvalid);
  std::string topic = Text(tp, tn);
  int reached = 0;
  bool too_big = false;
  WithTableLock([&] {
    GroupTopics& g = GroupAt(static_cast<int>(group));
    if (mn + tn + kMaxTopic + Message::kOverhead > g.max_mailbox) {
      too_big = true;
      return;
    }
    g.published++;
    g.table.Match(topic, [&](SubKey k, const std::string& pattern) {
      ConnTopics* t = ConnTopicsLocked(k.fd, k.id, false);
      if (t == nullptr || t->overflowed) return;  // closing: it takes no more
      bool was_empty = t->mail.empty();
      if (!t->mail.Push(Message{topic, pattern, Text(mp, mn)}, g.max_mailbox)) {
        // A subscriber that does not keep up is closed (reason 3), not waited for.
        t->overflowed = true;
        t->mail.Clear();
        g.overflows++;
        MarkConnDueLocked(k.fd, k.id, kDueOverflow);
        return;
      }
      reached++;
      g.delivered++;
      if (was_empty) MarkConnDueLocked(k.fd, k.id, kDueMessage);
    });
  });
  return Num(info, too_big ? -4 : reached);
}

// connMessage(fd, id, mem, ptr, cap, lens) -> 1 a message was taken: topic, pattern and
// body written at ptr, their lengths in lens[0..2] | 0 the mailbox is empty | -EMSGSIZE
// the oldest did not fit `cap` bytes and was dropped (counted) | -EBADF. Holder only.
Napi::Value ConnMessage(const Napi::CallbackInfo& info) {
  int64_t fd, id;
  uint8_t* p;
  size_t cap;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &id) || !ArgRegion(info, 2, &p, &cap)) return info.Env().Undefined();
  if (info.Length() < 6 || !info[5].IsTypedArray()) {
    Napi::TypeError::New(info.Env(), "connMessage: lens must be an Int32Array").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Napi::Int32Array lens = info[5].As<Napi::Int32Array>();
  if (lens.ElementLength() < 3) {
    Napi::RangeError::New(info.Env(), "connMessage: lens needs 3 elements").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  int rc = 0;
  Message m;
  WithTableLock([&] {
    ConnTopics* t = ConnTopicsLocked(static_cast<int>(fd), static_cast<uint64_t>(id), false);
    if (t == nullptr || !t->mail.Pop(&m)) return;  // never subscribed, or closing: nothing to deliver
    if (m.topic.size() + m.pattern.size() + m.body.size() > cap) {
      GroupAt(t->group).too_big++;
      rc = -EMSGSIZE;
      return;
    }
    rc = 1;
  });
  if (rc != 1) return Num(info, rc);
  std::memcpy(p, m.topic.data(), m.topic.size());
  std::memcpy(p + m.topic.size(), m.pattern.data(), m.pattern.size());
  std::memcpy(p + m.topic.size() + m.pattern.size(), m.body.data(), m.body.size());
  lens[0] = static_cast<int32_t>(m.topic.size());
  lens[1] = static_cast<int32_t>(m.pattern.size());
  lens[2] = static_cast<int32_t>(m.body.size());
  return Num(info, 1);
}

// topicsStats(group) -> { topics, patterns, subscriptions, published, delivered, overflows, tooBig }.
Napi::Value TopicsStats(const Napi::CallbackInfo& info) {
  int64_t group;
  if (!ArgInt(info, 0, &group)) return info.Env().Undefined();
  Napi::Object o = Napi::Object::New(info.Env());
  WithTableLock([&] {
    auto it = groups.find(static_cast<int>(group));
    const GroupTopics empty;
    const GroupTopics& g = it == groups.end() ? empty : it->second;
    o.Set("topics", static_cast<double>(g.table.topics()));
    o.Set("patterns", static_cast<double>(g.table.patterns()));
    o.Set("subscriptions", static_cast<double>(g.table.subscriptions()));
    o.Set("published", g.published);
    o.Set("delivered", g.delivered);
    o.Set("overflows", g.overflows);
    o.Set("tooBig", g.too_big);
  });
  return o;
}

// topicCheck(kind, text: Uint8Array, topic?: Uint8Array) -> -3 the subscription is invalid |
// 1 it matches the topic (or, without one, is valid) | 0 it does not. For the test harness
// (tcpmod/testing), which keeps its own table but must match as a server does.
Napi::Value TopicCheck(const Napi::CallbackInfo& info) {
  int64_t kind;
  if (!ArgInt(info, 0, &kind)) return info.Env().Undefined();
  auto bytes = [&](size_t i) {
    Napi::Uint8Array a = info[i].As<Napi::Uint8Array>();
    return std::string(reinterpret_cast<const char*>(a.Data()), a.ByteLength());
  };
  if (info.Length() < 2 || !info[1].IsTypedArray() || (info.Length() > 2 && !info[2].IsTypedArray())) {
    Napi::TypeError::New(info.Env(), "topicCheck: text and topic must be Uint8Arrays").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  std::string text = bytes(1);
  if (!TopicValid(static_cast<int>(kind), text)) return Num(info, kTopicInvalid);
  if (info.Length() < 3) return Num(info, 1);
  return Num(info, TopicMatches(static_cast<int>(kind), text, bytes(2)) ? 1 : 0);
}

}  // namespace

void TopicsForgetLocked(int fd, uint64_t id, ConnTopics* t) {
  auto it = groups.find(t->group);
  if (it != groups.end()) it->second.table.UnsubscribeAll({fd, id});
  delete t;
}

void InitPubSub(Napi::Env env, Napi::Object exports) {
  exports.Set("topicsConfigure", Napi::Function::New(env, TopicsConfigure, "topicsConfigure"));
  exports.Set("topicSubscribe", Napi::Function::New(env, TopicSubscribe, "topicSubscribe"));
  exports.Set("topicUnsubscribe", Napi::Function::New(env, TopicUnsubscribe, "topicUnsubscribe"));
  exports.Set("topicPublish", Napi::Function::New(env, TopicPublish, "topicPublish"));
  exports.Set("connMessage", Napi::Function::New(env, ConnMessage, "connMessage"));
  exports.Set("topicCheck", Napi::Function::New(env, TopicCheck, "topicCheck"));
  exports.Set("topicsStats", Napi::Function::New(env, TopicsStats, "topicsStats"));
}

}  // namespace tcpmod
