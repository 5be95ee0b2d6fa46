#include "topics.h"

#include <algorithm>
#include <cassert>

namespace tcpmod {

bool GlobMatch(const char* p, size_t pn, const char* s, size_t sn) {
  // Iterative with one backtrack point for the last '*' (linear in practice,
  // never exponential): a pattern of many stars cannot stall a publish.
  size_t pi = 0, si = 0, star = SIZE_MAX, mark = 0;
  while (si < sn) {
    if (pi < pn) {
      char c = p[pi];
      if (c == '*') {
        star = pi++;
        mark = si;
        continue;
      }
      if (c == '?') {
        pi++;
        si++;
        continue;
      }
      if (c == '[') {
        size_t j = pi + 1;
        bool negate = j < pn && p[j] == '^';
        if (negate) j++;
        bool hit = false;
        unsigned char ch = static_cast<unsigned char>(s[si]);
        while (j < pn && p[j] != ']') {
          if (p[j] == '\\' && j + 1 < pn) {
            j++;
            if (static_cast<unsigned char>(p[j]) == ch) hit = true;
            j++;
          } else if (j + 2 < pn && p[j + 1] == '-' && p[j + 2] != ']') {
            unsigned char lo = static_cast<unsigned char>(p[j]), hi = static_cast<unsigned char>(p[j + 2]);
            if (lo > hi) std::swap(lo, hi);
            if (ch >= lo && ch <= hi) hit = true;
            j += 3;
          } else {
            if (static_cast<unsigned char>(p[j]) == ch) hit = true;
            j++;
          }
        }
        // An unclosed '[' runs to the end of the pattern, as Redis's stringmatchlen treats it.
        if (negate) hit = !hit;
        if (hit) {
          pi = j < pn ? j + 1 : j;
          si++;
          continue;
        }
      } else if (c == '\\' && pi + 1 < pn) {
        if (p[pi + 1] == s[si]) {
          pi += 2;
          si++;
          continue;
        }
      } else if (c == s[si]) {
        pi++;
        si++;
        continue;
      }
    }
    if (star == SIZE_MAX) return false;
    pi = star + 1;
    si = ++mark;
  }
  while (pi < pn && p[pi] == '*') pi++;
  return pi == pn;
}

bool MqttFilterValid(const std::string& f) {
  if (f.empty()) return false;
  for (size_t i = 0; i < f.size(); i++) {
    if (f[i] != '+' && f[i] != '#') continue;
    bool starts = i == 0 || f[i - 1] == '/';
    bool ends = i + 1 == f.size() || f[i + 1] == '/';
    if (!starts || !ends) return false;
    if (f[i] == '#' && i + 1 != f.size()) return false;
  }
  return true;
}

bool MqttMatch(const std::string& f, const char* s, size_t sn) {
  if (sn > 0 && s[0] == '$' && !f.empty() && (f[0] == '+' || f[0] == '#')) return false;
  size_t fi = 0, si = 0;
  const size_t fn = f.size();
  for (;;) {
    if (fi < fn && f[fi] == '#') return true;  // the rest, including the parent level ("a/#" matches "a")
    size_t fe = f.find('/', fi);
    if (fe == std::string::npos) fe = fn;
    size_t se = si;
    while (se < sn && s[se] != '/') se++;
    bool plus = fe - fi == 1 && f[fi] == '+';
    if (!plus && (fe - fi != se - si || f.compare(fi, fe - fi, s + si, se - si) != 0)) return false;
    bool f_end = fe == fn, s_end = se == sn;
    if (f_end && s_end) return true;
    if (s_end) return f.compare(fe, std::string::npos, "/#") == 0;
    if (f_end) return false;
    fi = fe + 1;
    si = se + 1;
  }
}

bool TopicValid(int kind, const std::string& t) {
  if (t.empty() || t.size() > kMaxTopic) return false;
  if (kind == kTopicExact || kind == kTopicGlob) return true;
  if (kind == kTopicMqtt) return MqttFilterValid(t);
  return false;
}

bool TopicMatches(int kind, const std::string& text, const std::string& topic) {
  if (kind == kTopicExact) return text == topic;
  if (kind == kTopicGlob) return GlobMatch(text.data(), text.size(), topic.data(), topic.size());
  return MqttMatch(text, topic.data(), topic.size());
}

int TopicTable::Subscribe(SubKey k, int kind, const std::string& text, bool direct) {
  if (!TopicValid(kind, text)) return kTopicInvalid;
  auto& mine = by_conn_[k];
  for (auto& s : mine) {
    if (s.first != kind || s.second != text) continue;
    // The same subscription again: it now takes frames, or no longer does, as the last call said.
    if (kind == kTopicExact) {
      for (ExactSub& e : exact_[text])
        if (e.who == k) e.direct = direct;
    } else {
      for (Pattern& p : patterns_)
        if (p.who == k && p.kind == kind && p.text == text) p.direct = direct;
    }
    return 0;
  }
  if (mine.size() >= kMaxSubscriptions) {
    if (mine.empty()) by_conn_.erase(k);
    return kTopicTooMany;
  }
  mine.emplace_back(kind, text);
  if (kind == kTopicExact) exact_[text].push_back({k, direct});
  else patterns_.push_back({kind, text, k, direct});
  total_++;
  if (observer_) observer_(kind, text, 1);
  return 1;
}

int TopicTable::Unsubscribe(SubKey k, int kind, const std::string& text) {
  if (kind != kTopicExact && kind != kTopicGlob && kind != kTopicMqtt) return kTopicInvalid;
  auto it = by_conn_.find(k);
  if (it == by_conn_.end()) return 0;
  auto& mine = it->second;
  auto s = std::find(mine.begin(), mine.end(), std::make_pair(kind, text));
  if (s == mine.end()) return 0;
  mine.erase(s);
  if (mine.empty()) by_conn_.erase(it);
  if (kind == kTopicExact) {
    auto e = exact_.find(text);
    assert(e != exact_.end());
    auto& v = e->second;
    v.erase(std::find(v.begin(), v.end(), k));
    if (v.empty()) exact_.erase(e);  // the table shrinks with its topics
  } else {
    auto p = std::find_if(patterns_.begin(), patterns_.end(),
                          [&](const Pattern& q) { return q.who == k && q.kind == kind && q.text == text; });
    assert(p != patterns_.end());
    patterns_.erase(p);
  }
  total_--;
  if (observer_) observer_(kind, text, -1);
  return 1;
}

int TopicTable::UnsubscribeAll(SubKey k) {
  auto it = by_conn_.find(k);
  if (it == by_conn_.end()) return 0;
  const std::vector<std::pair<int, std::string>> mine = it->second;  // Unsubscribe edits the original
  int n = 0;
  for (const auto& s : mine) n += Unsubscribe(k, s.first, s.second);
  assert(by_conn_.find(k) == by_conn_.end());
  if (patterns_.empty() && patterns_.capacity() > 64) patterns_.shrink_to_fit();
  return n;
}

int TopicTable::UnsubscribeKind(SubKey k, int kind) {
  auto it = by_conn_.find(k);
  if (it == by_conn_.end()) return 0;
  const std::vector<std::pair<int, std::string>> mine = it->second;
  int n = 0;
  for (const auto& s : mine)
    if (s.first == kind) n += Unsubscribe(k, s.first, s.second);
  return n;
}

int TopicTable::Match(const std::string& topic, const MatchFn& fn) const {
  return Match(topic, fn, nullptr);
}

int TopicTable::Match(const std::string& topic, const MatchFn& fn, const Filter& only) const {
  return ForEachMatch(topic, fn, &only);
}

size_t TopicTable::Count(int kind, const std::string& text) const {
  if (kind == kTopicExact) {
    if (text.empty()) return exact_.size();
    auto e = exact_.find(text);
    return e == exact_.end() ? 0 : e->second.size();
  }
  size_t n = 0;
  std::set<std::string> distinct;
  for (const Pattern& p : patterns_) {
    if (p.kind != kind) continue;
    if (text.empty()) distinct.insert(p.text);
    else n += p.text == text;
  }
  return text.empty() ? distinct.size() : n;
}

std::vector<std::string> TopicTable::Topics(const std::string& glob) const {
  std::vector<std::string> out;
  for (const auto& e : exact_)
    if (glob.empty() || GlobMatch(glob.data(), glob.size(), e.first.data(), e.first.size())) out.push_back(e.first);
  std::sort(out.begin(), out.end());
  return out;
}

size_t TopicTable::Of(SubKey k) const {
  auto it = by_conn_.find(k);
  return it == by_conn_.end() ? 0 : it->second.size();
}

}  // namespace tcpmod
