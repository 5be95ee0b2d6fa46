#include "direct.h"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <memory>
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
// A thread's scratch above this is given back after its flush (a burst to many subscribers).
constexpr size_t kKeepScratch = 4 << 20;

// One subscriber's part of a flush: its frames are frames[first, first + count) of the scratch,
// their bytes buf[off, off + len).
struct Job {
  Conn* c;
  int fd;
  size_t first, count, off, len;
};

// Per thread, reused from flush to flush: a flush allocates nothing once they have grown (the
// vectors and strings it built per subscriber were a fifth of a fan-out's CPU in malloc).
// Per job, after its write: how many frames left whole (`whole`), and whether the first other one
// was begun (its rest then heads the output queue, sent by the owner on EPOLLOUT before anything
// else of its: a frame is never cut by other bytes) or cannot be kept.
struct Done {
  size_t whole = 0;
  bool begun = false, overflow = false;
};

// A frame taken from a mailbox for a write.
struct Taken {
  std::shared_ptr<const std::string> bytes;
  size_t topic_len;
};

struct Scratch {
  std::vector<std::pair<int, uint64_t>> list;
  std::vector<Done> done;
  std::vector<Job> jobs;
  std::vector<Taken> frames;  // taken from the mailboxes, to put back what the socket did not take
  std::string buf;              // every job's frames, one after another
  bool busy = false;
};
thread_local Scratch scratch;

// Writes each job's bytes, without the lock (each subscriber is lent), then, under it, puts back
// what the socket did not take and returns the loans.
void WriteJobs(Scratch& sc) {
  std::vector<Done>& done = sc.done;
  done.assign(sc.jobs.size(), Done());
  for (size_t i = 0; i < sc.jobs.size(); i++) {
    const Job& j = sc.jobs[i];
    Done& d = done[i];
    const int64_t n = WriteSome(Sink{j.fd, nullptr}, reinterpret_cast<const uint8_t*>(sc.buf.data()) + j.off, j.len);
    if (n < 0) continue;  // an error: its owner's next read finds it; the frames go back (it closes)
    const size_t sent = static_cast<size_t>(n);
    size_t at = 0;
    while (d.whole < j.count && at + sc.frames[j.first + d.whole].bytes->size() <= sent)
      at += sc.frames[j.first + d.whole++].bytes->size();
    if (d.whole == j.count || sent == at) continue;
    const std::string& b = *sc.frames[j.first + d.whole].bytes;
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
  for (size_t i = 0; i < sc.jobs.size(); i++) {
    const Job& j = sc.jobs[i];
    const Done& d = done[i];
    Conn* c = j.c;
    if (d.overflow) MarkDue(*c->srv, c, j.fd, kDueOverflow);
    // The frames not begun go back to the head of its mailbox, in order, for its owner or the next flush.
    // (Unless it overflowed meanwhile: then its mailbox is dropped and it closes.)
    if (!c->topics->overflowed)
      for (size_t k = j.count; k-- > d.whole + (d.begun ? 1 : 0);) {
        Message m;
        m.frame = true;
        m.shared = std::move(sc.frames[j.first + k].bytes);
        m.topic_len = sc.frames[j.first + k].topic_len;
        c->topics->mail.PushFront(std::move(m));
      }
    frames_by_group[c->group] += static_cast<double>(d.whole);
    ReturnLentLocked(c, j.fd);
  }
}

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
  Scratch& sc = scratch;
  assert(!sc.busy);  // never nested: nothing below runs an event
  sc.busy = true;
  sc.jobs.clear();
  sc.frames.clear();
  sc.buf.clear();
  {
    TableLock lock(table().mu);
    sc.list.clear();
    sc.list.swap(listed);
    listed_count.store(0, std::memory_order_relaxed);
    for (auto [fd, id] : sc.list) {
      Conn* c = FindLocked(fd, id);
      if (c == nullptr || c->topics == nullptr) continue;  // closed since
      ConnTopics* t = c->topics;
      t->direct_listed = false;
      if (t->mail.empty() || t->overflowed) continue;
      // Only a connection nothing of whose could come first: no output queued (its owner's own sends
      // ended whole or wait there), nothing due, not paused, and nobody holding it (LendForWrite).
      if (!t->mail.FrontIsFrame() || !c->out.empty() || c->due != 0 || c->paused || c->life != ConnState::kOpen || !LendForWrite(c)) {
        MarkConnDueLocked(fd, id, kDueMessage);  // its owner delivers them (a holder's re-arm queues the mark)
        continue;
      }
      Job j{c, fd, sc.frames.size(), 0, sc.buf.size(), 0};
      Taken k;
      while (j.len < kFlushBytes && t->mail.PopFrame(&k.bytes, &k.topic_len)) {
        sc.frames.push_back(std::move(k));
        const std::string& b = *sc.frames.back().bytes;
        sc.buf.append(b);
        j.len += b.size();
        j.count++;
      }
      sc.jobs.push_back(j);
    }
  }
  if (!sc.jobs.empty()) WriteJobs(sc);
  sc.frames.clear();  // what was written (the rest went back): the last reference to a frame may be here
  sc.busy = false;
  if (sc.buf.capacity() > kKeepScratch) std::string().swap(sc.buf);
  if (sc.frames.capacity() * sizeof(Taken) > kKeepScratch) std::vector<Taken>().swap(sc.frames);
}

double DirectFramesLocked(int group) {
  auto it = frames_by_group.find(group);
  return it == frames_by_group.end() ? 0 : it->second;
}

void DirectResetLocked(int group) { frames_by_group.erase(group); }

}  // namespace tcpmod
