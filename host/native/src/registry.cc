// The registry: the table's fd index and id space, opening an entry, looking
// one up, unlinking it, listings, and shutting sockets down from any thread.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>

#include <cassert>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "conn.h"
#include "mailbox.h"
#include "tls.h"

namespace tcpmod {

Table the_table;

namespace {

// Ids a module sees are i32: the id modulo 2^31 (see NextId).
constexpr uint64_t kModuleIdSpace = limits::kModuleIdSpace;

// Host ids are 64-bit and never repeat. A module sees id mod 2^31, which is
// never 0 and never equal to that of another open connection: ids whose
// projection is 0 or taken are skipped. Caller holds the lock.
uint64_t NextId(Table& t, bool conn) {
  for (;;) {
    uint64_t id = t.next_id++;
    uint32_t m = static_cast<uint32_t>(id % kModuleIdSpace);
    if (m == 0) continue;
    if (!conn) return id;
    if (t.module_ids.insert(m).second) return id;
  }
}

}  // namespace

Server* ServerOf(int group) {
  auto& servers = table().servers;
  auto it = servers.find(group);
  return it == servers.end() ? nullptr : &it->second;
}

Conn* FindLocked(int fd, uint64_t id) {
  const auto& by_fd = table().by_fd;
  if (fd < 0 || static_cast<size_t>(fd) >= by_fd.size()) return nullptr;
  Conn* c = by_fd[fd];
  return c != nullptr && c->id == id ? c : nullptr;
}

Conn* Find(int64_t fd, int64_t id) {
  TableLock lock(table().mu);
  return FindLocked(static_cast<int>(fd), static_cast<uint64_t>(id));
}

Conn* Unlink(int fd, uint64_t id) {
  Table& t = table();
  TableLock lock(t.mu);
  Conn* c = FindLocked(fd, id);
  if (c == nullptr) return nullptr;
  t.by_fd[fd] = nullptr;
  if (c->kind == kKindConn) {
    if (c->srv) {
      c->srv->in_bytes -= c->in_used;
      c->srv->out_bytes -= c->out_used;
      c->srv->in_alloc -= c->in_held.load();
      c->srv->out_alloc -= c->out_held.load();
    }
    if (Server* s = ServerOf(c->group)) {
      if (c->timer_at) s->timers--;
      s->heap.Remove(&c->wake);  // a closed connection leaves nothing in the heap
    }
    t.module_ids.erase(static_cast<uint32_t>(c->id % kModuleIdSpace));
    if (c->topics) TopicsForgetLocked(fd, c->id, c->topics);  // subscriptions end, the mailbox is freed
    c->topics = nullptr;
    UpstreamsDrop(c->id);  // an upstream belongs to its client: it goes with it
    if (--t.group_conns[c->group] == 0) t.group_conns.erase(c->group);
  }
  assert(!c->wake.queued());
  return c;
}

// connOpen: registers a socket held by `holder` (the worker that accepted it,
// or the main thread's 0 for the listener before any worker runs). With
// tls_ctx (a context of tlsContextCreate) the connection speaks TLS: -EINVAL
// when the context is unknown. `generation` is the module generation it starts
// on. The caller has checked state_size and kind.
int64_t ConnOpen(int fd, int group, int state_size, int holder, int kind, int tls_ctx, int generation) {
  assert(state_size >= 0 && state_size <= limits::kStateMax && (kind == kKindConn || kind == kKindListen));
  if (fd < 0 || fd > (1 << 30)) return -EBADF;
  Conn* c = new Conn();
  c->group = group;
  c->kind = kind;
  c->holder.store(holder);
  c->state_size = state_size;
  c->generation.store(generation);
  std::memset(c->state, 0, sizeof(c->state));
  if (tls_ctx > 0 && (c->tls = TlsSessionNew(tls_ctx, fd)) == nullptr) {
    delete c;
    return -EINVAL;
  }
  Table& t = table();
  TableLock lock(t.mu);
  if (static_cast<size_t>(fd) >= t.by_fd.size()) t.by_fd.resize(static_cast<size_t>(fd) + 1024, nullptr);
  if (t.by_fd[fd] != nullptr) {
    TlsSessionFree(c->tls);
    delete c;
    return -EEXIST;
  }
  c->id = NextId(t, kind == kKindConn);
  c->fd = fd;
  c->wake.owner = c;
  t.by_fd[fd] = c;
  if (kind != kKindConn) {
    c->life = ConnState::kOpen;  // a listener has no phases: its events are accepts
    return static_cast<int64_t>(c->id);
  }
  t.group_conns[group]++;
  c->srv = ServerOf(group);
  c->last_input = MonoMs();
  const bool proxy = c->srv && c->srv->proxy_versions;
  c->life = InitialState(proxy, c->tls != nullptr);
  // A PROXY header, and a handshake, are frames in progress: the frame timeout bounds them.
  if (proxy || c->tls != nullptr) c->frame_since = c->last_input.load();
  if (c->srv) Schedule(c, *c->srv);
  return static_cast<int64_t>(c->id);
}

// connOpened: the module is being told of the connection (on_open). Under the
// lock: listings and a drain read the state there. Once only: a second call
// (on_open run again) changes nothing.
int ConnOpened(int fd, uint64_t id) {
  TableLock lock(table().mu);
  Conn* c = FindLocked(fd, id);
  if (c == nullptr) return -EBADF;
  if (!MetModule(c->life)) c->life = Opened(c->life);
  return 0;
}

std::vector<EntryRef> ConnListing(int group, bool only_held, int holder) {
  std::vector<EntryRef> out;
  Table& t = table();
  TableLock lock(t.mu);
  for (size_t fd = 0; fd < t.by_fd.size(); fd++) {
    const Conn* c = t.by_fd[fd];
    if (c == nullptr || c->group != group) continue;
    if (only_held ? c->holder.load() != holder : c->kind != kKindConn) continue;
    out.push_back({static_cast<int>(fd), c->id, c->kind == kKindConn && !MetModule(c->life) ? kKindUnopened : c->kind});
  }
  return out;
}

int ConnCount(int group) {
  Table& t = table();
  TableLock lock(t.mu);
  auto it = t.group_conns.find(group);
  return it == t.group_conns.end() ? 0 : it->second;
}

uint64_t ConnSetNextId(int64_t id) {
  Table& t = table();
  TableLock lock(t.mu);
  if (id > 0 && static_cast<uint64_t>(id) > t.next_id) t.next_id = static_cast<uint64_t>(id);
  return t.next_id;
}

void Pin(Conn* c) { c->pins++; }

bool Unpin(Conn* c) {
  assert(c->pins > 0);
  return --c->pins == 0 && c->close_deferred;
}

void FinishClose(Conn* c) {
  const int fd = c->fd;
  delete c;
  // The fd is ours alone until this close: after it the number may be reused.
  close(fd);
}

namespace {
// Test hook (SetShutdownPause): µs connShutdown waits between pinning an entry
// and its syscall, so that a test can close the entry and open others meanwhile.
std::atomic<int> shutdown_pause_us{0};
}  // namespace

int SetShutdownPause(int64_t us) {
  shutdown_pause_us = static_cast<int>(std::clamp<int64_t>(us, 0, 100000));
  return 0;
}

// connShutdown: safe from any thread, the syscall outside the table lock. The
// entry is looked up and pinned under the lock; a close by its holder in
// between unlinks it but leaves the fd open until the unpin (Conn::pins), so
// the fd cannot be another connection's when shutdown() runs.
int ConnShutdown(int fd, uint64_t id, int how) {
  Conn* c;
  {
    TableLock lock(table().mu);
    if ((c = FindLocked(fd, id)) == nullptr) return -EBADF;
    Pin(c);
  }
  if (int us = shutdown_pause_us.load(std::memory_order_relaxed)) usleep(static_cast<useconds_t>(us));
  const int rc = shutdown(fd, how) < 0 ? -errno : 0;
  bool finish;
  {
    TableLock lock(table().mu);
    finish = Unpin(c);
  }
  if (finish) FinishClose(c);
  return rc;
}

// connShutdownGroup: the fds stay open (their holders close them), so this is
// safe while workers run: a shut down socket reports EOF or an error to
// whoever holds or next takes it. Pinned as connShutdown's are, and shut down
// outside the lock; it runs once per server stop, not per event.
int ConnShutdownGroup(int group, int how) {
  Table& t = table();
  std::vector<Conn*> pinned;
  {
    TableLock lock(t.mu);
    for (Conn* c : t.by_fd)
      if (c && c->group == group && c->kind == kKindConn) {
        Pin(c);
        pinned.push_back(c);
      }
  }
  int count = 0;
  for (Conn* c : pinned)
    if (shutdown(c->fd, how) == 0) count++;
  std::vector<Conn*> finish;
  {
    TableLock lock(t.mu);
    for (Conn* c : pinned)
      if (Unpin(c)) finish.push_back(c);
  }
  for (Conn* c : finish) FinishClose(c);
  return count;
}

// Pub/sub's access to the table (conn_table.h).
void WithTableLock(const std::function<void()>& fn) {
  TableLock lock(table().mu);
  fn();
}

ConnTopics* ConnTopicsLocked(int fd, uint64_t id, bool create) {
  Conn* c = FindLocked(fd, id);
  if (c == nullptr || c->kind != kKindConn) return nullptr;
  if (!create) return InClosePhase(c->life) ? nullptr : c->topics;
  if (c->topics == nullptr) {
    c->topics = new ConnTopics();
    c->topics->group = c->group;
  }
  return c->topics;
}

// Upstreams' access to the state slot (upstream.h). Holder only.
bool ConnStateCopy(int fd, uint64_t id, uint8_t* slot, size_t room, bool save) {
  Conn* c = Find(fd, static_cast<int64_t>(id));
  if (c == nullptr || static_cast<size_t>(c->state_size) > room) return false;
  if (save) std::memcpy(c->state, slot, c->state_size);
  else std::memcpy(slot, c->state, c->state_size);
  return true;
}

}  // namespace tcpmod
