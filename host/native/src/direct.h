// Direct delivery (docs/abi.md §19): a publish that carries a pre-formatted
// frame puts it in each direct subscriber's mailbox as a frame and lists the
// subscriber as pending instead of handing it to a worker; at the end of the
// publishing event (its re-arm) the frames waiting at the head of each pending
// subscriber's mailbox leave in one write by that thread -- with no module call
// and no hand-over -- when the subscriber can take them now: plain TCP, open,
// nobody holding it, nothing queued, nothing due. Otherwise it is marked due
// and its owner appends them in mailbox order (phases.ts message()). Plain C++.
#pragma once

#include <cstdint>

namespace tcpmod {

struct ConnTopics;

// At a publish, under the table lock: lists (fd, id), whose mailbox just took a frame, for the next
// flush, when the connection is one a flush can write to (plain TCP, open, queued send mode); false
// when it is not (the caller marks it due). Listed once until flushed.
bool DirectListLocked(int fd, uint64_t id, ConnTopics* t);

// Writes the frames of every listed subscriber (see above). Without the table lock; one atomic load
// when nothing is listed. Called at the end of every event (RearmHeld) and at a close, so that frames
// listed by a thread that stopped are written by the next event of any.
void DirectFlush();

// Frames a flush wrote for the server `group` (stats().topics.direct); reset when a server starts
// on that group. Under the table lock.
double DirectFramesLocked(int group);
void DirectResetLocked(int group);

}  // namespace tcpmod
