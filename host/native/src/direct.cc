#include "direct.h"

#include "conn.h"
#include "mailbox.h"
#include "sender.h"

namespace tcpmod {

Conn* DirectTakeLocked(int fd, uint64_t id) {
  Conn* c = FindLocked(fd, id);
  if (c == nullptr || c->kind != kKindConn || c->srv == nullptr) return nullptr;
  Server& s = *c->srv;
  // Only where one send can do it and nothing of the connection's could come before it: queued send
  // mode (a partial write has somewhere to wait), plain TCP (a TLS record is the owner's to make),
  // the module met it and has not closed it, no output queued (the owner's own sends end whole or
  // wait there), no due mark (its claimer would be turned away), nothing in its mailbox (order).
  if (!s.queued || s.conn_events == 0 || c->tls != nullptr || c->life != ConnState::kOpen || c->due != 0 || c->paused) return nullptr;
  if (!c->out.empty() || (c->topics != nullptr && !c->topics->mail.empty())) return nullptr;
  return LendForWrite(c) ? c : nullptr;
}

size_t DirectWrite(const std::vector<DirectTarget>& targets, const uint8_t* frame, size_t len) {
  size_t whole = 0;
  for (const DirectTarget& t : targets) {
    Conn* c = t.c;
    int64_t n = WriteSome(Sink{t.fd, nullptr}, frame, len);
    // An error is the owner's to find (its next read reports it): nothing more is written now.
    if (n >= 0 && static_cast<size_t>(n) < len) {
      const size_t rest = len - static_cast<size_t>(n);
      const int64_t cap = c->srv->out_max;
      // The rest waits in its output queue, flushed by its owner on EPOLLOUT before anything else it sends.
      if ((cap && static_cast<int64_t>(rest) > cap) || !c->out.Append(frame + n, rest)) {
        TableLock lock(table().mu);
        MarkDue(*c->srv, c, t.fd, kDueOverflow);  // cannot be kept: closed as a subscriber past its bound
      } else {
        AccountBuffers(c);
      }
    } else if (n >= 0) {
      whole++;
    }
    ReturnAfterWrite(c, t.fd, c->srv->epfd, c->srv->conn_events);
  }
  return whole;
}

}  // namespace tcpmod
