// Upstreams (ABI v1.2): TCP connections a module opens, by a name the operator
// listed (--upstream NAME=IP:PORT[,IP:PORT…]), for the client connection it is
// handling. A module never names an address, so it reaches what the operator
// listed and nothing else.
//
// Ownership: an upstream belongs to its client connection. Its socket (and,
// while it connects, a timerfd for the connect timeout) sits in the server's
// epoll set, edge-triggered and not one-shot, and its event does no work of
// its own: UpstreamWake only flags the upstream and marks the CLIENT due
// (kDueUpstream), so the work is done by whoever claims the client next, under
// the client's one-shot ownership. A client that is held when the event comes
// keeps the mark (its holder's re-arm queues it, ownership.cc RearmEvent,
// which also asks UpstreamsPending), so a module never runs two callbacks for
// one connection at once. Closing the client (its entry unlinked) closes its
// upstreams (UpstreamsDrop).
//
// Locking: up_mu (a shared mutex) guards the maps: held exclusively to change
// them (open, connect steps, removal, configuration), shared by everything else
// -- the steady state's send, look, keep, wake and pending check -- so those
// never wait on one another. An Upstream's fields other than the atomics `wake`
// and `ended` are touched only by the client's holder (or by UpstreamsDrop,
// which runs when the client entry is unlinked, i.e. by its holder too), and only
// the holder removes its client's upstreams. Lock order: the table lock, then
// up_mu; UpstreamWake takes up_mu and releases it before marking the client.
#pragma once
#include <napi.h>

#include <cstdint>

namespace tcpmod {

// The epoll kind of an upstream socket or its connect timerfd (conn_table.h's kinds end at 5).
constexpr int kKindUpstream = 6;
// The client's due bit: one of its upstreams has something to look at (conn_table.h's Due bits).
constexpr uint32_t kDueUpstream = 1u << 20;
// Upstreams one client connection may have open at once (tcpmod.upstream_open returns -2 past it).
constexpr int kMaxUpstreamsPerConn = 8;

// An epoll event (`events`) for an upstream item (poller.cc): flags it and marks its client due.
// With `poke` false the caller takes the due list itself next (TakeDue) and no other waiter is
// woken for the mark: the worker that got the upstream's event does the work in the common case,
// instead of waking a second one to do it while the first finds nothing.
void UpstreamWake(int epfd, int fd, uint64_t tag, uint32_t events, bool poke);
// Whether the client `conn_id` has an upstream flagged and not yet looked at. Caller holds the table lock.
bool UpstreamsPending(uint64_t conn_id);
// Whether the client `conn_id` has an upstream (open or connecting). Caller holds the table lock.
bool UpstreamsAny(uint64_t conn_id);
// The client's entry is gone: its upstreams are closed (no event is reported).
void UpstreamsDrop(uint64_t conn_id);

// What the connection table (registry.cc, due.cc) provides for this file.
// Marks the client (fd, id) due with `bits` unless it is closing or already marked; `poke` as UpstreamWake's.
void MarkConnDue(int fd, uint64_t id, uint32_t bits, bool poke);
// The holder's client has queued output above its high-water mark: its upstreams wait (backpressure).
bool ConnOutputOver(int fd, uint64_t id);
// Copies the holder's state slot to `slot` (save false) or from it (save true); false when (fd, id) is gone.
bool ConnStateCopy(int fd, uint64_t id, uint8_t* slot, size_t room, bool save);

void InitUpstreams(Napi::Env env, Napi::Object exports);

}  // namespace tcpmod
