// Module generations (live reload): which generation's instance handles a
// connection, moving it to another, and draining one.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "conn.h"

namespace tcpmod {

// connGeneration: the connection's module generation. Holder only.
int ConnGeneration(int fd, uint64_t id) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  return c->generation.load();
}

// connMigrate: holder only: moves the connection to another module generation.
// Its carry-over and state slot stay as they are (the caller has checked that
// both generations agree on what the slot means), so -EOVERFLOW when the
// carry-over would not fit the new in_cap, and -EINVAL when the module has met
// the connection and the state size differs. A connection on_open has not run
// for has no state yet: it takes the new size (zeroed). The caller has checked
// state_size.
int ConnMigrate(int fd, uint64_t id, int generation, int state_size, int64_t in_cap) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  if (c->pending.size() > static_cast<uint64_t>(std::max<int64_t>(in_cap, 0))) return -EOVERFLOW;
  const bool met = MetModule(c->life);
  if (met && c->state_size != state_size) return -EINVAL;
  if (!met) {
    c->state_size = state_size;
    std::memset(c->state, 0, sizeof(c->state));
  }
  c->generation.store(generation);
  return 0;
}

namespace {
uint64_t PairKey(int from, int to) { return static_cast<uint64_t>(static_cast<uint32_t>(from)) << 32 | static_cast<uint32_t>(to); }
}  // namespace

// generationVerdict: the compatibility verdict for connections of `from`
// continuing on `to` (host/worker/generations.ts compatibility(), decided once
// per pair when a generation is installed), and what `to` needs of a
// connection that moves (its state size and in_cap). Idempotent: every worker
// that knows both tells the same. 0 | -EBADF (no such server).
int GenerationVerdict(int group, int from, int to, bool moves, int to_state_size, int64_t to_in_cap) {
  TableLock lock(table().mu);
  Server* s = ServerOf(group);
  if (s == nullptr) return -EBADF;
  if (moves && from != to) s->moves[PairKey(from, to)] = {to_state_size, to_in_cap};
  else s->moves.erase(PairKey(from, to));
  return 0;
}

// generationForget: the generation is gone (no connection left anywhere):
// every verdict naming it goes. Returns how many.
int GenerationForget(int group, int generation) {
  TableLock lock(table().mu);
  Server* s = ServerOf(group);
  if (s == nullptr) return -EBADF;
  int n = 0;
  for (auto it = s->moves.begin(); it != s->moves.end();) {
    const int from = static_cast<int>(it->first >> 32), to = static_cast<int>(it->first & 0xffffffffu);
    if (from == generation || to == generation) {
      it = s->moves.erase(it);
      n++;
    } else {
      ++it;
    }
  }
  return n;
}

// connMoveTo: holder only, at an event: the generation whose instance handles
// the connection now. It moves to `to` when it is not there yet and the
// verdict for its pair lets it (generationVerdict) and its carry-over fits
// `to`'s in_cap (ConnMigrate's rules); otherwise it stays where it is (pinned).
// One native call per event decides it: the generation it is on after | -EBADF.
int ConnMoveTo(int fd, uint64_t id, int to) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr) return -EBADF;
  const int from = c->generation.load();
  if (from == to) return from;
  Server::Move m;
  {
    TableLock lock(table().mu);
    Server* s = c->srv;
    if (s == nullptr) return from;
    auto it = s->moves.find(PairKey(from, to));
    if (it == s->moves.end()) return from;
    m = it->second;
  }
  return ConnMigrate(fd, id, to, m.state_size, m.in_cap) == 0 ? to : from;
}

// generationCounts: how many of the group's connections each generation has
// now (generations with none are absent).
std::vector<std::pair<int, int>> GenerationCounts(int group) {
  std::unordered_map<int, int> counts;
  {
    Table& t = table();
    TableLock lock(t.mu);
    for (Conn* c : t.by_fd)
      if (c != nullptr && c->group == group && c->kind == kKindConn) counts[c->generation.load()]++;
  }
  return {counts.begin(), counts.end()};
}

// connDrainGeneration: every connection of that generation the module has met
// is marked due as idle through a drain (its next claimer closes it with
// reason 5, on_close first), whether or not it is held now: --reload-drain.
// Returns how many.
int ConnDrainGeneration(int group, int generation) {
  Table& t = table();
  TableLock lock(t.mu);
  Server* s = ServerOf(group);
  if (s == nullptr) return -EBADF;
  int n = 0;
  for (size_t fd = 0; fd < t.by_fd.size(); fd++) {
    Conn* c = t.by_fd[fd];
    if (c == nullptr || c->group != group || c->kind != kKindConn || c->life != ConnState::kOpen) continue;
    if (c->generation.load() != generation) continue;
    MarkDue(*s, c, static_cast<int>(fd), kDueDrainIdle);
    n++;
  }
  return n;
}

}  // namespace tcpmod
