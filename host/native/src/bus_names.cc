// The names the bus gives local subscriptions in Redis, and its message tag
// (bus.h). Apart from bus.cc so the C++ unit tests can link them without Node.
#include <cstdint>
#include <cstring>
#include <string>

#include "bus.h"

namespace tcpmod {
namespace {

// The first four bytes of a tagged frame; then the origin, 8 bytes little-endian.
constexpr char kTag[4] = {'\xfe', 'T', 'M', 'B'};

// The glob characters Redis gives a meaning to, escaped.
std::string GlobLiteral(const std::string& s) {
  std::string g;
  for (char ch : s) {
    if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\') g += '\\';
    g += ch;
  }
  return g;
}

}  // namespace

std::string BusRedisName(int kind, const std::string& text, bool* pattern) {
  *pattern = kind != 0;
  if (kind != 2) return text;  // exact: the channel; Redis glob: the pattern as it is
  // An MQTT filter: '+' and a last '#' level become '*', which matches at least what they
  // do ("a/#" also matches "a": "a*"); the exact MQTT match is made locally.
  std::string g;
  size_t start = 0;
  for (;;) {
    size_t end = text.find('/', start);
    std::string level = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (level == "#") {
      if (!g.empty()) g.pop_back();  // the '/' before it
      return g + "*";
    }
    g += level == "+" ? "*" : GlobLiteral(level);
    if (end == std::string::npos) return g;
    g += '/';
    start = end + 1;
  }
}

bool BusUntag(const std::string& frame, uint64_t* origin) {
  if (frame.size() < kBusTagSize || std::memcmp(frame.data(), kTag, sizeof(kTag)) != 0) return false;
  uint64_t o = 0;
  for (int i = 7; i >= 0; i--) o = o << 8 | static_cast<uint8_t>(frame[4 + i]);
  *origin = o;
  return true;
}

void BusTag(uint64_t origin, std::string* out) {
  out->append(kTag, sizeof(kTag));
  for (int i = 0; i < 8; i++) *out += static_cast<char>(origin >> (8 * i));
}

}  // namespace tcpmod
