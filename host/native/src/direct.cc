#include "direct.h"

#include <algorithm>
#include <atomic>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "conn.h"
#include "mailbox.h"
#include "sender.h"

namespace tcpmod {

namespace {

// Listed subscribers of every server, oldest first (under the table lock), and how many (read
// without it, so that an event with nothing listed pays one load).
std::vector<std::pair<int, uint64_t>>& listed = *new std::vector<std::pair<int, uint64_t>>();
std::atomic<size_t> listed_count{0};
std::unordered_map<int, double>& frames_by_group = *new std::unordered_map<int, double>();

// One write's bytes at most per subscriber and flush: what is left waits for the next one (or its owner).
constexpr size_t kFlushBytes = 256 * 1024;

struct Job {
  Conn* c;
  int fd;
  std::string bytes;            // the frames, one after another
  std::vector<Message> frames;  // each, to put back what the socket did not take of them
};

}  // namespace

bool DirectListLocked(int fd, uint64_t id, ConnTopics* t) {
  Conn* c = FindLocked(fd, id);
  if (c == nullptr || c->srv == nullptr || !c->srv->queued || c->srv->conn_events == 0 || c->tls != nullptr ||
      c->life != ConnState::kOpen)
    return false;
  if (!t->direct_listed) {
    t->direct_listed = true;
    listed.push_back({fd, id});
    listed_count.store(listed.size(), std::memory_order_relaxed);
  }
  return true;
}

void DirectFlush() {
  if (listed_count.load(std::memory_order_relaxed) == 0) return;
  std::vector<Job> jobs;
  {
    TableLock lock(table().mu);
    std::vector<std::pair<int, uint64_t>> list;
    list.swap(listed);
    listed_count.store(0, std::memory_order_relaxed);
    for (auto [fd, id] : list) {
      Conn* c = FindLocked(fd, id);
      if (c == nullptr || c->topics == nullptr) continue;  // closed since
      ConnTopics* t = c->topics;
      t->direct_listed = false;
      const Message* f = t->mail.Front();
      if (f == nullptr || t->overflowed) continue;
      // Only a connection nothing of whose could come first: no output queued (its owner's own sends
      // ended whole or wait there), nothing due, not paused, and nobody holding it (LendForWrite).
      if (!f->frame || !c->out.empty() || c->due != 0 || c->paused || c->life != ConnState::kOpen || !LendForWrite(c)) {
        MarkConnDueLocked(fd, id, kDueMessage);  // its owner delivers them (a holder's re-arm queues the mark)
        continue;
      }
      Job j{c, fd, std::string(), {}};
      Message m;
      while (j.bytes.size() < kFlushBytes && (f = t->mail.Front()) != nullptr && f->frame) {
        t->mail.Pop(&m);
        j.bytes += *m.shared;
        j.frames.push_back(std::move(m));
      }
      jobs.push_back(std::move(j));
    }
  }
  if (jobs.empty()) return;
  // Per job, written without the lock (each is lent): how many frames left whole (`whole`), and
  // whether the first other one was begun (its rest then heads the output queue, sent by the owner
  // on EPOLLOUT before anything else of its: a frame is never cut by other bytes) or cannot be kept.
  struct Done {
    size_t whole = 0;
    bool begun = false, overflow = false;
  };
  std::vector<Done> done(jobs.size());
  for (size_t i = 0; i < jobs.size(); i++) {
    Job& j = jobs[i];
    Done& d = done[i];
    const int64_t n = WriteSome(Sink{j.fd, nullptr}, reinterpret_cast<const uint8_t*>(j.bytes.data()), j.bytes.size());
    if (n < 0) continue;  // an error: its owner's next read finds it; the frames go back (it closes)
    const size_t sent = static_cast<size_t>(n);
    size_t at = 0;
    while (d.whole < j.frames.size() && at + j.frames[d.whole].shared->size() <= sent) at += j.frames[d.whole++].shared->size();
    if (d.whole == j.frames.size() || sent == at) continue;
    const std::string& b = *j.frames[d.whole].shared;
    const size_t rest = b.size() - (sent - at);
    Conn* c = j.c;
    d.begun = true;
    if ((c->srv->out_max && static_cast<int64_t>(rest) > c->srv->out_max) ||
        !c->out.Append(reinterpret_cast<const uint8_t*>(b.data()) + (sent - at), rest)) {
      d.overflow = true;  // cannot be kept: closed as a subscriber past its bound
    } else {
      AccountBuffers(c);
    }
  }
  TableLock lock(table().mu);
  for (size_t i = 0; i < jobs.size(); i++) {
    Job& j = jobs[i];
    Done& d = done[i];
    Conn* c = j.c;
    if (d.overflow) MarkDue(*c->srv, c, j.fd, kDueOverflow);
    // The frames not begun go back to the head of its mailbox, in order, for its owner or the next flush.
    // (Unless it overflowed meanwhile: then its mailbox is dropped and it closes.)
    if (!c->topics->overflowed)
      for (size_t k = j.frames.size(); k-- > d.whole + (d.begun ? 1 : 0);) c->topics->mail.PushFront(std::move(j.frames[k]));
    frames_by_group[c->group] += static_cast<double>(d.whole);
    ReturnLentLocked(c, j.fd);
  }
}

double DirectFramesLocked(int group) {
  auto it = frames_by_group.find(group);
  return it == frames_by_group.end() ? 0 : it->second;
}

void DirectResetLocked(int group) { frames_by_group.erase(group); }

}  // namespace tcpmod
