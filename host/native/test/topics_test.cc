// sources: topics.cc mailbox.cc
// The topic table and mailbox core: matching (exact, Redis glob, MQTT filters),
// subscribe/unsubscribe bookkeeping, the table emptying as connections go, and
// the mailbox bound.
#include <cstdio>
#include <memory>
#include <string>

#include "mailbox.h"
#include "topics.h"
#include "check.h"

using namespace tcpmod;

static bool G(const std::string& p, const std::string& s) { return GlobMatch(p.data(), p.size(), s.data(), s.size()); }
static bool M(const std::string& f, const std::string& s) { return MqttMatch(f, s.data(), s.size()); }

int main() {
  // Redis glob.
  CHECK(G("news.*", "news.art"));
  CHECK(G("news.*", "news."));
  CHECK(!G("news.*", "new"));
  CHECK(G("h?llo", "hello"));
  CHECK(!G("h?llo", "hllo"));
  CHECK(G("h[ae]llo", "hallo"));
  CHECK(!G("h[ae]llo", "hillo"));
  CHECK(G("h[^e]llo", "hallo"));
  CHECK(!G("h[^e]llo", "hello"));
  CHECK(G("h[a-c]llo", "hbllo"));
  CHECK(G("a\\*b", "a*b"));
  CHECK(!G("a\\*b", "axb"));
  CHECK(G("*", ""));
  CHECK(G("*a*b*c*", "xxaxxbxxcxx"));
  CHECK(!G("*a*b*c*d", "xxaxxbxxcxx"));
  CHECK(G(std::string(40, '*') + "x", std::string(5000, 'a') + "x"));  // linear, not exponential

  // MQTT filters.
  CHECK(MqttFilterValid("a/+/c"));
  CHECK(MqttFilterValid("#"));
  CHECK(MqttFilterValid("a/#"));
  CHECK(MqttFilterValid("+"));
  CHECK(!MqttFilterValid("a/#/c"));
  CHECK(!MqttFilterValid("a#"));
  CHECK(!MqttFilterValid("a/b+"));
  CHECK(M("a/+/c", "a/b/c"));
  CHECK(!M("a/+/c", "a/b/d"));
  CHECK(!M("a/+/c", "a/b/x/c"));
  CHECK(M("a/#", "a"));
  CHECK(M("a/#", "a/b/c"));
  CHECK(M("#", "x/y"));
  CHECK(!M("#", "$SYS/x"));
  CHECK(!M("+/x", "$SYS/x"));
  CHECK(M("$SYS/#", "$SYS/x"));
  CHECK(M("+/+", "/x"));
  CHECK(M("a/b", "a/b"));
  CHECK(!M("a/b", "a/b/"));
  CHECK(M("a/+", "a/"));

  // The table.
  TopicTable t;
  SubKey a{5, 100}, b{6, 101};
  CHECK(t.Subscribe(a, kTopicExact, "chat") == 1);
  CHECK(t.Subscribe(a, kTopicExact, "chat") == 0);
  CHECK(t.Subscribe(b, kTopicExact, "chat") == 1);
  CHECK(t.Subscribe(b, kTopicGlob, "ch*") == 1);
  CHECK(t.Subscribe(a, kTopicMqtt, "a/#/b") == kTopicInvalid);
  CHECK(t.Subscribe(a, 7, "x") == kTopicInvalid);
  CHECK(t.Subscribe(a, kTopicExact, "") == kTopicInvalid);
  CHECK(t.Subscribe(a, kTopicExact, std::string(kMaxTopic + 1, 'x')) == kTopicInvalid);
  int hits = 0, patterned = 0;
  int n = t.Match("chat", [&](SubKey, const std::string& p, bool) {
    hits++;
    if (!p.empty()) patterned++;
  });
  CHECK(n == 3 && hits == 3 && patterned == 1);
  CHECK(t.Match("other", [](SubKey, const std::string&, bool) {}) == 0);
  CHECK(t.Unsubscribe(a, kTopicExact, "chat") == 1);
  CHECK(t.Unsubscribe(a, kTopicExact, "chat") == 0);
  CHECK(t.Match("chat", [](SubKey, const std::string&, bool) {}) == 2);
  CHECK(t.UnsubscribeAll(b) == 2);
  CHECK(t.empty());
  for (size_t i = 0; i < kMaxSubscriptions; i++) t.Subscribe(a, kTopicExact, "t" + std::to_string(i));
  CHECK(t.Subscribe(a, kTopicExact, "one-more") == kTopicTooMany);
  CHECK(t.UnsubscribeAll(a) == static_cast<int>(kMaxSubscriptions));
  CHECK(t.empty() && t.topics() == 0 && t.subscriptions() == 0);

  // Direct subscriptions (docs/abi.md, Direct delivery): Match says which; the same subscription
  // again sets the flag as the last call said, and stays one subscription.
  {
    CHECK(t.Subscribe(a, kTopicExact, "d", true) == 1 && t.Subscribe(b, kTopicExact, "d") == 1 && t.Subscribe(b, kTopicMqtt, "+", true) == 1);
    int direct = 0, all = 0;
    t.Match("d", [&](SubKey k, const std::string&, bool d) { all++; direct += d; if (d) CHECK(k == a || k == b); });
    CHECK(all == 3 && direct == 2);
    CHECK(t.Subscribe(a, kTopicExact, "d", false) == 0 && t.Subscribe(b, kTopicMqtt, "+", false) == 0);
    direct = 0;
    t.Match("d", [&](SubKey, const std::string&, bool d) { direct += d; });
    CHECK(direct == 0 && t.subscriptions() == 3);
    CHECK(t.UnsubscribeAll(a) == 1 && t.UnsubscribeAll(b) == 2 && t.empty());
  }

  // Per kind (UNSUBSCRIBE without arguments leaves the patterns).
  CHECK(t.Subscribe(a, kTopicExact, "x") == 1 && t.Subscribe(a, kTopicExact, "y") == 1 && t.Subscribe(a, kTopicGlob, "x*") == 1);
  CHECK(t.UnsubscribeKind(a, kTopicExact) == 2);
  CHECK(t.Of(a) == 1 && t.topics() == 0 && t.patterns() == 1);
  CHECK(t.UnsubscribeKind(a, kTopicGlob) == 1 && t.empty());

  // The mailbox bound.
  Mailbox box;
  Message m;
  m.topic = "t";
  m.body = std::string(100, 'x');
  size_t cost = m.cost();
  // A frame (docs/abi.md §19) counts its shared bytes; one put back heads the mailbox, counted again.
  {
    Mailbox fb;
    Message f;
    f.topic_len = 1;  // a frame keeps its topic's length only
    f.frame = true;
    f.shared = std::make_shared<const std::string>(100, 'x');
    CHECK(f.cost() == cost && f.bytes().size() == 100);
    CHECK(fb.Push(Message(f), cost * 2) && fb.Push(Message(m), cost * 2));
    Message got;
    CHECK(fb.Pop(&got) && got.frame && fb.bytes() == cost);
    fb.PushFront(std::move(got));
    CHECK(fb.size() == 2 && fb.bytes() == cost * 2 && fb.FrontIsFrame());
    // The publish path's in-place frame push counts as the same frame; PopFrame takes frames only.
    Mailbox pf;
    CHECK(pf.PushFrame(f.shared, 1, cost * 2) && pf.bytes() == cost && pf.FrontIsFrame());
    CHECK(pf.Push(Message(m), cost * 2) && !pf.PushFrame(f.shared, 1, cost * 2));
    std::shared_ptr<const std::string> bytes;
    size_t topic_len = 0;
    CHECK(pf.PopFrame(&bytes, &topic_len) && bytes == f.shared && topic_len == 1 && pf.bytes() == cost);
    CHECK(!pf.PopFrame(&bytes, &topic_len) && pf.size() == 1 && !pf.FrontIsFrame());
  }
  CHECK(box.Push(Message(m), cost * 2));
  CHECK(box.Push(Message(m), cost * 2));
  CHECK(!box.Push(Message(m), cost * 2));
  CHECK(box.size() == 2 && box.bytes() == cost * 2);
  Message out;
  CHECK(box.Pop(&out) && out.body.size() == 100);
  CHECK(box.Pop(&out) && box.empty() && box.bytes() == 0);
  CHECK(!box.Pop(&out));

  // The mailbox is a queue in a reused vector: FIFO order and the byte count hold across its
  // compaction (taken slots moved out once they are half of it), put-backs and emptying.
  {
    Mailbox q;
    auto msg = [](int i) {
      Message x;
      x.topic = "t";
      x.body = std::to_string(i);
      return x;
    };
    int next_in = 0, next_out = 0;
    bool order = true;
    size_t expect_bytes = 0;
    for (int round = 0; round < 50; round++) {
      for (int k = 0; k < 37; k++) {
        Message x = msg(next_in++);
        expect_bytes += x.cost();
        CHECK(q.Push(std::move(x), 1 << 30));
      }
      for (int k = 0; k < 30 + (round % 3) * 5 && !q.empty(); k++) {
        Message got;
        CHECK(q.Pop(&got));
        expect_bytes -= got.cost();
        if (round % 4 == 1 && k == 3) {  // taken and put back: still the oldest
          expect_bytes += got.cost();
          q.PushFront(std::move(got));
          CHECK(q.Pop(&got) && got.body == std::to_string(next_out));  // taken again, the oldest still
          q.PushFront(std::move(got));
          continue;
        }
        order = order && got.body == std::to_string(next_out++);
      }
    }
    CHECK(order && q.bytes() == expect_bytes && q.size() == static_cast<size_t>(next_in - next_out));
    Message got;
    while (q.Pop(&got)) order = order && got.body == std::to_string(next_out++);
    CHECK(order && next_out == next_in && q.empty() && q.bytes() == 0 && !q.FrontIsFrame());
    // A put-back into an emptied mailbox (no taken slot before it) heads it.
    CHECK(q.Push(msg(1), 1 << 30));
    q.PushFront(msg(0));
    CHECK(q.Pop(&got) && got.body == "0" && q.Pop(&got) && got.body == "1" && q.empty());
  }

  return tcpmod_test::Summary();
}
