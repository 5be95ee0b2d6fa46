// Publish/subscribe between the connections of one server (docs/abi.md §15):
// the N-API face of topics.h and mailbox.h. A publish, from any callback,
// matches the server's topic table and appends the message to each matching
// subscriber's mailbox under the table lock, marking the subscriber due (as a
// timer does): whichever worker takes it next calls tcpmod_on_message, so a
// connection is never in two callbacks at once. A mailbox past --max-mailbox
// closes its connection with reason 3 (counted); other subscribers and the
// publisher go on.
#pragma once
#include <napi.h>

#include <cstdint>

namespace tcpmod {

struct ConnTopics;
// The connection (fd, id) is being unlinked: drops its subscriptions and frees
// its mailbox and record. Caller holds the table lock.
void TopicsForgetLocked(int fd, uint64_t id, ConnTopics* t);

void InitPubSub(Napi::Env env, Napi::Object exports);

}  // namespace tcpmod
