// Direct delivery (docs/abi.md, Direct delivery): a publish that carries a
// pre-formatted frame is written by the publishing thread straight to each
// direct subscriber that can take it now -- plain TCP, open, nobody holding
// it, nothing queued, nothing due, its mailbox empty -- with no module call and
// no hand-over to another worker. Everything else goes through the mailbox, in
// order (pubsub.cc). Plain C++.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tcpmod {

struct Conn;

// A subscriber lent for one write (LendForWrite), and its fd.
struct DirectTarget {
  Conn* c;
  int fd;
};

// Under the table lock: lends (fd, id) for a direct write when it can take one now; nullptr when
// the frame must wait in its mailbox instead.
Conn* DirectTakeLocked(int fd, uint64_t id);

// Without the lock: writes the frame to each target, queues what a socket did not take (in order:
// the owner's next output goes behind it), and gives each back. How many got the whole frame at once.
size_t DirectWrite(const std::vector<DirectTarget>& targets, const uint8_t* frame, size_t len);

}  // namespace tcpmod
