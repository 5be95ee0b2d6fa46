#include "pubsub.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "bus.h"
#include "conn_table.h"
#include "direct.h"
#include "mailbox.h"
#include "tls_client.h"
#include "topics.h"

namespace tcpmod {
namespace {

// Per server (keyed by its epoll fd, as the connection table's groups are). Under the table lock.
struct GroupTopics {
  TopicTable table;
  size_t max_mailbox = 1 << 20;
  double published = 0, delivered = 0, overflows = 0, too_big = 0;
  std::unique_ptr<Bus> bus;  // --bus: publishes also go through Redis (bus.h)
};
// Never destroyed: a bus thread may still deliver while the process exits.
std::map<int, GroupTopics>& groups = *new std::map<int, GroupTopics>();

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
  if (!Args(info).Int(&fd, &id, &a->kind).Region(&p, &n)) return false;
  a->fd = static_cast<int>(fd);
  a->id = static_cast<uint64_t>(id);
  a->text = Text(p, n);
  return true;
}

// topicsConfigure(group, maxMailbox) -> 0. The mailbox bound, bytes (a message costs its bytes + 64).
Napi::Value TopicsConfigure(const Napi::CallbackInfo& info) {
  int64_t group, max;
  if (!Args(info).Int(&group, &max)) return info.Env().Undefined();
  WithTableLock([&] {
    GroupTopics& g = GroupAt(static_cast<int>(group));
    // A server starting on an epoll fd number an earlier one had starts its counters afresh.
    if (g.table.empty()) {
      g = GroupTopics();
      DirectResetLocked(static_cast<int>(group));
    }
    g.max_mailbox = static_cast<size_t>(max);
  });
  return Num(info, 0);
}

// topicSubscribe(fd, id, kind, mem, ptr, len) -> 1 | 0 already | -2 too many | -3 invalid | -EBADF.
// kind | kTopicDirect: the subscription takes publishes' frames (docs/abi.md, Direct delivery).
// Holder only (the connection being handled).
Napi::Value TopicSubscribe(const Napi::CallbackInfo& info) {
  TopicArgs a;
  if (!ReadTopicArgs(info, &a)) return info.Env().Undefined();
  int rc = -EBADF;
  WithTableLock([&] {
    ConnTopics* t = ConnTopicsLocked(a.fd, a.id, true);
    if (t == nullptr) return;
    const bool direct = (a.kind & kTopicDirect) != 0;
    rc = GroupAt(t->group).table.Subscribe({a.fd, a.id}, static_cast<int>(a.kind & ~kTopicDirect), a.text, direct);
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

// A publish's pre-formatted frame for direct subscriptions (none: every subscription takes the message).
struct Frame {
  const uint8_t* p = nullptr;
  size_t n = 0;
  std::shared_ptr<const std::string> shared;  // made at the first direct subscription it reaches
};

// Puts the message in the mailbox of every subscription matching `topic` (that `only` accepts,
// when given), marking each subscriber due; how many it reached. With a frame, a direct
// subscription takes the frame instead, and its subscriber is listed for the flush at the end of
// the publishing event (direct.h) rather than marked due, when a flush can write to it. Under the
// table lock, once for the whole fan-out; per delivery it allocates nothing (the frame is one
// shared copy, a mailbox slot is reused) and calls through no std::function.
int DeliverLocked(GroupTopics& g, const std::string& topic, const uint8_t* mp, size_t mn, const TopicTable::Filter* only,
                  Frame* frame = nullptr) {
  int reached = 0;
  g.table.ForEachMatch(topic, [&](SubKey k, const std::string& pattern, bool direct) {
    ConnTopics* t = ConnTopicsLocked(k.fd, k.id, false);
    if (t == nullptr || t->overflowed) return;  // closing: it takes no more
    const bool as_frame = direct && frame != nullptr;
    bool was_empty = t->mail.empty();
    bool kept;
    if (as_frame) {
      if (!frame->shared) frame->shared = std::make_shared<const std::string>(Text(const_cast<uint8_t*>(frame->p), frame->n));
      kept = t->mail.PushFrame(frame->shared, topic.size(), g.max_mailbox);
    } else {
      Message m;
      m.topic = topic;
      m.pattern = pattern;
      m.body.assign(reinterpret_cast<const char*>(mp), mn);
      kept = t->mail.Push(std::move(m), g.max_mailbox);
    }
    if (!kept) {
      // A subscriber that does not keep up is closed (reason 3), not waited for.
      t->overflowed = true;
      t->mail.Clear();
      g.overflows++;
      MarkConnDueLocked(k.fd, k.id, kDueOverflow);
      return;
    }
    reached++;
    g.delivered++;
    if (as_frame && DirectListLocked(k.fd, k.id, t)) return;  // the flush writes it, or marks it due
    if (was_empty) MarkConnDueLocked(k.fd, k.id, kDueMessage);
  }, only);
  return reached;
}

// Whether a message of mn bytes to a topic of tn bytes can fit any mailbox of g.
bool FitsMailbox(const GroupTopics& g, size_t tn, size_t mn) { return mn + tn + kMaxTopic + Message::kOverhead <= g.max_mailbox; }

// topicPublish(group, mem, topicPtr, topicLen, mem, msgPtr, msgLen[, mem, framePtr, frameLen]) ->
// subscriptions reached | -3 invalid topic | -4 message (or frame) larger than the mailbox bound
// (no subscriber could take it). With a frame (publish_frame), direct subscriptions take the frame
// (DeliverLocked), written at the end of the publishing event (direct.h).
// With a bus the message also goes to Redis; the result stays this server's count.
Napi::Value TopicPublish(const Napi::CallbackInfo& info) {
  int64_t group;
  uint8_t *tp, *mp;
  size_t tn, mn;
  Frame frame;
  const bool framed = info.Length() > 7;
  Args a(info);
  if (!a.Int(&group).Region(&tp, &tn).Region(&mp, &mn)) return info.Env().Undefined();
  if (framed && !a.Region(const_cast<uint8_t**>(&frame.p), &frame.n)) return info.Env().Undefined();
  if (tn == 0 || tn > kMaxTopic) return Num(info, kTopicInvalid);
  std::string topic = Text(tp, tn);
  int reached = 0;
  bool too_big = false;
  WithTableLock([&] {
    GroupTopics& g = GroupAt(static_cast<int>(group));
    if (!FitsMailbox(g, tn, mn) || (framed && !FitsMailbox(g, tn, frame.n))) {
      too_big = true;
      return;
    }
    g.published++;
    reached = DeliverLocked(g, topic, mp, mn, nullptr, framed ? &frame : nullptr);
    // Under the table lock, so the bus sends publishes in the order they were made here.
    if (g.bus) g.bus->Publish(topic, mp, mn);
  });
  return Num(info, too_big ? -4 : reached);
}

// topicCount(group, kind, mem, ptr, len) -> subscriptions of (kind, text), or with len 0 the
// distinct texts of that kind that have one (PUBSUB NUMSUB / NUMPAT) | -3 unknown kind or too long.
Napi::Value TopicCount(const Napi::CallbackInfo& info) {
  int64_t group, kind;
  uint8_t* p;
  size_t n;
  if (!Args(info).Int(&group, &kind).Region(&p, &n)) return info.Env().Undefined();
  if (kind < kTopicExact || kind > kTopicMqtt || n > kMaxTopic) return Num(info, kTopicInvalid);
  size_t count = 0;
  WithTableLock([&] { count = GroupAt(static_cast<int>(group)).table.Count(static_cast<int>(kind), Text(p, n)); });
  return Num(info, static_cast<double>(count));
}

// topicsList(group, mem, globPtr, globLen, skip, mem, outPtr, outCap) -> how many topics were written
// at out (each a 4-byte little-endian length, then its bytes), from the `skip`-th on in byte order,
// as many as fit (PUBSUB CHANNELS) | -2 not even the next one fits | -3 the glob is too long.
Napi::Value TopicsList(const Napi::CallbackInfo& info) {
  int64_t group, skip;
  uint8_t *gp, *out;
  size_t gn, cap;
  if (!Args(info).Int(&group).Region(&gp, &gn).Int(&skip).Region(&out, &cap)) return info.Env().Undefined();
  if (gn > kMaxTopic || skip < 0) return Num(info, kTopicInvalid);
  std::vector<std::string> topics;
  WithTableLock([&] { topics = GroupAt(static_cast<int>(group)).table.Topics(Text(gp, gn)); });
  size_t used = 0;
  int written = 0;
  for (size_t i = static_cast<size_t>(skip); i < topics.size(); i++) {
    const std::string& t = topics[i];
    if (used + 4 + t.size() > cap) break;
    uint32_t len = static_cast<uint32_t>(t.size());
    for (int b = 0; b < 4; b++) out[used + b] = static_cast<uint8_t>(len >> (8 * b));
    std::memcpy(out + used + 4, t.data(), t.size());
    used += 4 + t.size();
    written++;
  }
  if (written == 0 && static_cast<size_t>(skip) < topics.size()) return Num(info, -2);
  return Num(info, written);
}

// busStart(group, { host (numeric), port, username, password, connectTimeoutMs, tls?: { ca, servername } }) -> 0. Starts the
// server's bus thread; its Redis subscriptions follow the topic table from now on.
Napi::Value BusStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t group;
  if (!Args(info).Int(&group)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsObject()) {
    Napi::TypeError::New(env, "busStart(group, target)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[1].As<Napi::Object>();
  auto str = [&](const char* k) { Napi::Value v = o.Get(k); return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string(); };
  auto num = [&](const char* k) { Napi::Value v = o.Get(k); return v.IsNumber() ? v.As<Napi::Number>().Int64Value() : 0; };
  BusTarget t;
  std::string host = str("host");
  int64_t port = num("port");
  auto* v4 = reinterpret_cast<sockaddr_in*>(&t.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&t.addr);
  if (port >= 1 && port <= 65535 && inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    t.addr_len = sizeof(sockaddr_in);
  } else if (port >= 1 && port <= 65535 && inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    t.addr_len = sizeof(sockaddr_in6);
  } else {
    Napi::TypeError::New(env, "busStart: host must be a numeric address and port 1-65535").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  t.where = host + ":" + std::to_string(port);
  t.username = str("username");
  t.password = str("password");
  if (num("connectTimeoutMs") > 0) t.connect_timeout_ms = num("connectTimeoutMs");
  // rediss:// (tls: { ca, servername }): one client context for both connections (tls_client.h).
  if (o.Get("tls").IsObject()) {
    Napi::Object tls = o.Get("tls").As<Napi::Object>();
    std::string err;
    SSL_CTX* ctx = TlsClientContext(tls.Get("ca").IsString() ? tls.Get("ca").As<Napi::String>().Utf8Value() : std::string(), &err);
    if (!ctx) {
      Napi::Error::New(env, "busStart: " + err + " for rediss://").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    t.tls.reset(ctx, SSL_CTX_free);
    t.servername = tls.Get("servername").IsString() ? tls.Get("servername").As<Napi::String>().Utf8Value() : host;
  }
  int g_id = static_cast<int>(group);
  // A message from Redis reaches the local subscriptions of the channel or pattern it came
  // through only: each gets it once, however many of its Redis subscriptions matched.
  auto deliver = [g_id](const std::string& topic, const std::string* pattern, const std::string& body) {
    TopicTable::Filter only = [pattern](int kind, const std::string& text) {
      bool is_pattern;
      std::string name = BusRedisName(kind, text, &is_pattern);
      return pattern ? is_pattern && name == *pattern : !is_pattern;
    };
    WithTableLock([&] {
      auto it = groups.find(g_id);
      if (it == groups.end() || !it->second.bus) return;  // stopping
      if (topic.empty() || topic.size() > kMaxTopic || !FitsMailbox(it->second, topic.size(), body.size())) {
        it->second.too_big++;
        return;
      }
      DeliverLocked(it->second, topic, reinterpret_cast<const uint8_t*>(body.data()), body.size(), &only);
    });
  };
  auto bus = std::make_unique<Bus>(std::move(t), deliver);
  Bus* b = bus.get();
  WithTableLock([&] {
    GroupTopics& g = GroupAt(g_id);
    g.bus = std::move(bus);
    g.table.Observe([b](int kind, const std::string& text, int delta) {
      bool is_pattern;
      std::string name = BusRedisName(kind, text, &is_pattern);
      b->Want(is_pattern, name, delta);
    });
  });
  return Num(info, 0);
}

// busStop(group) -> 0. Stops the bus thread (waits for it) and closes its connections.
Napi::Value BusStop(const Napi::CallbackInfo& info) {
  int64_t group;
  if (!Args(info).Int(&group)) return info.Env().Undefined();
  std::unique_ptr<Bus> bus;
  WithTableLock([&] {
    auto it = groups.find(static_cast<int>(group));
    if (it == groups.end()) return;
    it->second.table.Observe(nullptr);
    bus = std::move(it->second.bus);
  });
  bus.reset();  // outside the lock: the thread may be waiting for it to deliver
  return Num(info, 0);
}

// busStats(group) -> null without a bus | { connected, published, received, echoes, dropped,
// unconfirmed, failures, channels, patterns, lastError }.
Napi::Value BusStatsOf(const Napi::CallbackInfo& info) {
  int64_t group;
  if (!Args(info).Int(&group)) return info.Env().Undefined();
  BusStats s;
  bool any = false;
  WithTableLock([&] {
    auto it = groups.find(static_cast<int>(group));
    if (it == groups.end() || !it->second.bus) return;
    any = true;
    s = it->second.bus->Stats();
  });
  if (!any) return info.Env().Null();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("connected", s.connected);
  o.Set("published", s.published);
  o.Set("received", s.received);
  o.Set("echoes", s.echoes);
  o.Set("dropped", s.dropped);
  o.Set("unconfirmed", s.unconfirmed);
  o.Set("failures", s.failures);
  o.Set("channels", static_cast<double>(s.channels));
  o.Set("patterns", static_cast<double>(s.patterns));
  o.Set("lastError", s.last_error);
  return o;
}

// connMessage(fd, id, mem, ptr, cap, lens) -> 1 a message was taken: topic, pattern and
// body written at ptr, their lengths in lens[0..2] | 2 a direct subscription's frame was taken:
// written at ptr, its length in lens[2] (lens[0], lens[1] 0), for the caller to append to the
// output without calling the module | 0 the mailbox is empty | -EMSGSIZE
// the oldest did not fit `cap` bytes and was dropped (counted) | -EBADF. Holder only.
Napi::Value ConnMessage(const Napi::CallbackInfo& info) {
  int64_t fd, id;
  uint8_t* p;
  size_t cap;
  if (!Args(info).Int(&fd, &id).Region(&p, &cap)) return info.Env().Undefined();
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
    // A frame is its own bytes only (topic and pattern empty), handed over as the body.
    if (m.topic.size() + m.pattern.size() + m.bytes().size() > cap) {
      GroupAt(t->group).too_big++;
      rc = -EMSGSIZE;
      return;
    }
    rc = m.frame ? 2 : 1;
  });
  if (rc < 1) return Num(info, rc);
  const std::string& body = m.bytes();
  std::memcpy(p, m.topic.data(), m.topic.size());
  std::memcpy(p + m.topic.size(), m.pattern.data(), m.pattern.size());
  std::memcpy(p + m.topic.size() + m.pattern.size(), body.data(), body.size());
  lens[0] = static_cast<int32_t>(m.topic.size());
  lens[1] = static_cast<int32_t>(m.pattern.size());
  lens[2] = static_cast<int32_t>(body.size());
  return Num(info, rc);
}

// topicsStats(group) -> { topics, patterns, subscriptions, published, delivered, overflows, tooBig, direct }.
Napi::Value TopicsStats(const Napi::CallbackInfo& info) {
  int64_t group;
  if (!Args(info).Int(&group)) return info.Env().Undefined();
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
    o.Set("direct", DirectFramesLocked(static_cast<int>(group)));
  });
  return o;
}

// topicCheck(kind, text: Uint8Array, topic?: Uint8Array) -> -3 the subscription is invalid |
// 1 it matches the topic (or, without one, is valid) | 0 it does not. For the test harness
// (tcpmod/testing), which keeps its own table but must match as a server does.
Napi::Value TopicCheck(const Napi::CallbackInfo& info) {
  int64_t kind;
  if (!Args(info).Int(&kind)) return info.Env().Undefined();
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
  exports.Set("topicCount", Napi::Function::New(env, TopicCount, "topicCount"));
  exports.Set("topicsList", Napi::Function::New(env, TopicsList, "topicsList"));
  exports.Set("busStart", Napi::Function::New(env, BusStart, "busStart"));
  exports.Set("busStop", Napi::Function::New(env, BusStop, "busStop"));
  exports.Set("busStats", Napi::Function::New(env, BusStatsOf, "busStats"));
}

}  // namespace tcpmod
