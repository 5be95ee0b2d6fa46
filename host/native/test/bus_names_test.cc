// sources: bus_names.cc topics.cc
// The bus's Redis names for local subscriptions (bus.h): an exact topic is its
// channel, a Redis glob its pattern, and an MQTT filter a glob that accepts at
// least every topic the filter does (the exact match is made locally), with the
// glob's special bytes escaped; and the 12-byte tag round trip.
#include <cstdio>
#include <string>
#include <vector>

#include "bus.h"
#include "check.h"
#include "topics.h"

using namespace tcpmod;
using namespace tcpmod_test;

static std::string Name(int kind, const std::string& text, bool* pattern) { return BusRedisName(kind, text, pattern); }

int main() {
  bool pattern = true;
  CHECK(Name(kTopicExact, "news", &pattern) == "news" && !pattern);
  CHECK(Name(kTopicGlob, "n*", &pattern) == "n*" && pattern);
  CHECK(Name(kTopicMqtt, "a/+/c", &pattern) == "a/*/c" && pattern);
  CHECK(Name(kTopicMqtt, "a/#", &pattern) == "a*");
  CHECK(Name(kTopicMqtt, "#", &pattern) == "*");
  CHECK(Name(kTopicMqtt, "+", &pattern) == "*");
  CHECK(Name(kTopicMqtt, "s*n/[x]?", &pattern) == "s\\*n/\\[x\\]\\?");

  // Every topic an MQTT filter matches, its glob matches too (a superset, never fewer).
  const std::vector<std::string> filters = {"a/+/c", "a/#", "#", "+", "+/b", "a/+", "s*n/[x]?", "a/b", "+/+/#", "$SYS/#", "x\\y/+"};
  const std::vector<std::string> topics = {"a", "a/b", "a/b/c", "a/x/c", "a/bb/c", "aa/bb", "long/level/name/here", "a/b/c/d", "b", "x/b", "s*n/[x]?", "$SYS/load", "a/", "/b", "", "x\\y/z", "a//c"};
  for (const auto& f : filters) {
    std::string g = Name(kTopicMqtt, f, &pattern);
    for (const auto& t : topics) {
      if (MqttMatch(f, t.data(), t.size())) {
        bool ok = GlobMatch(g.data(), g.size(), t.data(), t.size());
        if (!ok) std::printf("filter %s (glob %s) matches %s but the glob does not\n", f.c_str(), g.c_str(), t.c_str());
        CHECK(ok);
      }
    }
  }

  std::string frame;
  BusTag(0x0123456789abcdefULL, &frame);
  CHECK(frame.size() == kBusTagSize);
  uint64_t origin = 0;
  CHECK(BusUntag(frame + "payload", &origin) && origin == 0x0123456789abcdefULL);
  CHECK(!BusUntag("plain message", &origin));
  CHECK(!BusUntag(frame.substr(0, 11), &origin));
  return Summary();
}
