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
