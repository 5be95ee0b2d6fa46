/*
 * tcpmod.h: ABI v1 (with the v1.1 and v1.2 additions) for tcpmod modules written in C.
 *
 * docs/abi.md is the contract; this header is that contract in C: the host
 * functions a module may import (with the attributes that make clang emit the
 * right import names), the exports the host calls, the IoDesc and the result
 * record as structs whose layout is checked below, and the numbers of actions,
 * close reasons, key-value results and log levels. It declares, it defines
 * nothing, and needs no libc: build with
 *
 *   clang --target=wasm32 -nostdlib -O2 -Wl,--no-entry \
 *         -Wl,--initial-memory=BYTES -Wl,--max-memory=BYTES  module.c -o module.wasm
 *
 * Declaring a memory maximum is required (the host refuses a module-defined
 * memory without one): BYTES a multiple of 65536, at most the host cap (32 MiB
 * unless `tcpmod serve --module-memory` says otherwise). See examples/c-kv/.
 *
 * Pointers are offsets into the module's own memory; wasm32 pointers are 32-bit,
 * which is what every i32 pointer parameter of the ABI is.
 */
#ifndef TCPMOD_H
#define TCPMOD_H

#include <stdint.h>

#if !defined(__wasm32__)
#error "tcpmod.h is for WebAssembly modules: build with clang --target=wasm32"
#endif

_Static_assert(sizeof(void *) == 4, "tcpmod modules use 32-bit pointers (wasm32)");

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- imports */

/* One host function of import module "tcpmod". clang emits an import only for
 * a function the module actually calls, so declaring them all costs nothing. */
#define TCPMOD_IMPORT(name) __attribute__((import_module("tcpmod"), import_name(#name)))

/* tcpmod.send (i32, i32, i32) -> i32. Writes `len` bytes at `ptr` to the
 * connection, ahead of this call's out region. Only from on_open, on_data and
 * on_timer, for the connection being handled. The bytes are the host's when it
 * returns: the buffer may be reused at once. Returns TCPMOD_SEND_OK,
 * TCPMOD_SEND_FAILED (not the connection being handled, or the send failed, or
 * an earlier send of this call failed: the connection closes when the call
 * returns and the out region is dropped; return TCPMOD_ABORT) or
 * TCPMOD_SEND_OUT_OF_BOUNDS (the region is not inside memory; nothing sent). */
TCPMOD_IMPORT(send) int32_t tcpmod_send(int32_t conn, const void *ptr, int32_t len);

/* tcpmod.log (i32, i32, i32) -> (). One UTF-8 line into the server's log at a
 * TCPMOD_LOG_* level (any other value logs at info). Invalid UTF-8 is replaced.
 * A region outside memory is a fault. Use this, not printf: stdio pulls in WASI
 * imports the host refuses. */
TCPMOD_IMPORT(log) void tcpmod_log(int32_t level, const void *ptr, int32_t len);

/* tcpmod.now_ms () -> f64. Wall-clock milliseconds since the Unix epoch. */
TCPMOD_IMPORT(now_ms) double tcpmod_now_ms(void);

/* tcpmod.abort (i32, i32, i32, i32) -> (). Gives up: the call ends as a fault of
 * kind "abort" and never returns. `msg` and `file` are AssemblyScript strings
 * (UTF-16LE, byte length in the u32 at ptr - 4) or 0; from C pass 0 for both and
 * say why with tcpmod_log first. */
TCPMOD_IMPORT(abort) __attribute__((noreturn))
void tcpmod_abort(const void *msg, const void *file, int32_t line, int32_t col);

/* tcpmod.kv_get (i32, i32, i32, i32) -> i32. The value's length, copying the
 * value to `out` only when it fits in `out_cap` (out_cap 0 asks for the length);
 * TCPMOD_KV_MISSING when there is no such key. */
TCPMOD_IMPORT(kv_get) int32_t tcpmod_kv_get(const void *key, int32_t key_len, void *out, int32_t out_cap);

/* tcpmod.kv_set (i32, i32, i32, i32) -> i32. TCPMOD_KV_OK (stored, replacing any
 * old value) or TCPMOD_KV_FULL (the store's budget would be exceeded; nothing changed). */
TCPMOD_IMPORT(kv_set) int32_t tcpmod_kv_set(const void *key, int32_t key_len, const void *val, int32_t val_len);

/* tcpmod.kv_del (i32, i32) -> i32. 1 deleted, 0 there was no such key. */
TCPMOD_IMPORT(kv_del) int32_t tcpmod_kv_del(const void *key, int32_t key_len);

/* tcpmod.kv_incr (i32, i32, i64, i32) -> i32. Adds `delta` to the decimal integer
 * stored under `key` (a missing key counts as 0) and writes the new value at
 * `out`: TCPMOD_KV_OK, or TCPMOD_KV_FAILED when nothing changed (the value is not
 * a canonical decimal integer, the sum overflows int64, or the store is full). */
TCPMOD_IMPORT(kv_incr) int32_t tcpmod_kv_incr(const void *key, int32_t key_len, int64_t delta, int64_t *out);

/* Every kv_* function may also return TCPMOD_KV_UNAVAILABLE when the server's
 * store is a Redis server it cannot reach in time (docs/abi.md §11): handle it. */

/* v1.1: tcpmod.conn_info (i32, i32, i32, i32) -> i32. A transport detail of the
 * connection being handled (TCPMOD_INFO_*), from on_open and on_data. Errors:
 * TCPMOD_INFO_NOT_HANDLED, TCPMOD_INFO_TOO_SMALL, TCPMOD_INFO_UNKNOWN_KEY. */
TCPMOD_IMPORT(conn_info) int32_t tcpmod_conn_info(int32_t conn, int32_t key, void *out, int32_t cap);

/* v1.1: tcpmod.set_timer (i32, i32) -> i32. Arms the connection's single timer to
 * fire `ms` (0..86400000) from now, replacing any; 0 cancels. 0 ok, negative
 * when `conn` is not the connection being handled or `ms` is out of range.
 * A module that imports it must export tcpmod_on_timer. */
TCPMOD_IMPORT(set_timer) int32_t tcpmod_set_timer(int32_t conn, int32_t ms);

/* v1.2 topics (docs/abi.md §15). kind: TCPMOD_TOPIC_EXACT, _GLOB (Redis glob),
 * _MQTT (MQTT filter). subscribe/unsubscribe act on the connection being
 * handled: 1 done, 0 nothing to do, -1 not the connection being handled,
 * -2 too many subscriptions, -3 invalid topic or pattern. unsubscribe with
 * kind -1 ends every subscription of the connection. publish, from any
 * callback, returns how many subscriptions it reached, or -3 (invalid topic)
 * or -4 (message larger than any mailbox). A module that imports subscribe
 * must export tcpmod_on_message. */
#define TCPMOD_TOPIC_EXACT 0
#define TCPMOD_TOPIC_GLOB 1
#define TCPMOD_TOPIC_MQTT 2
TCPMOD_IMPORT(subscribe) int32_t tcpmod_subscribe(int32_t conn, int32_t kind, const void *text, int32_t len);
TCPMOD_IMPORT(unsubscribe) int32_t tcpmod_unsubscribe(int32_t conn, int32_t kind, const void *text, int32_t len);
TCPMOD_IMPORT(publish) int32_t tcpmod_publish(const void *topic, int32_t topic_len, const void *msg, int32_t msg_len);
/* v1.2 direct delivery (docs/abi.md §19). A subscription made with kind |
 * TCPMOD_TOPIC_DIRECT takes the frame of a publish_frame (the bytes its client
 * must receive, the same for every such subscriber) appended to its output as
 * it is, without a tcpmod_on_message call; publish_frame is publish for every
 * other subscription (they get msg). Same results as publish (-4 also when the
 * frame is larger than any mailbox). A host without it refuses the flag
 * (subscribe returns -3): subscribe again without it. */
#define TCPMOD_TOPIC_DIRECT 0x100
TCPMOD_IMPORT(publish_frame) int32_t tcpmod_publish_frame(const void *topic, int32_t topic_len, const void *msg, int32_t msg_len,
                                                          const void *frame, int32_t frame_len);
/* This server's subscriptions (PUBSUB), from any callback. topic_count: with
 * len > 0 how many subscriptions of (kind, text) there are; with len 0 how
 * many distinct texts of that kind have one; -3 unknown kind or too long.
 * topics_list: the exact topics with a subscriber that the Redis glob accepts
 * (glob_len 0: all), in byte order, from the skip-th on, written to out as
 * many as fit, each a 4-byte little-endian length and its bytes: how many
 * (0: none left), -2 not even the next one fits, -3 glob too long. */
TCPMOD_IMPORT(topic_count) int32_t tcpmod_topic_count(int32_t kind, const void *text, int32_t len);
TCPMOD_IMPORT(topics_list) int32_t tcpmod_topics_list(const void *glob, int32_t glob_len, int32_t skip, void *out, int32_t out_cap);
/* v1.2 upstreams (docs/abi.md §16): backends the operator named with --upstream.
 * tcpmod.upstream_open (i32, i32, i32) -> i32: opens the upstream `name` for the
 * connection being handled; a handle > 0 (the result comes later as
 * TCPMOD_UPSTREAM_CONNECTED or _FAILED), or TCPMOD_UPSTREAM_UNKNOWN,
 * _TOO_MANY (8 per connection, or --max-upstreams in the process), _UNAVAILABLE.
 * "NAME#I" opens address I of NAME alone (see upstream_addr). A module that imports any upstream
 * function must export tcpmod_on_upstream. */
TCPMOD_IMPORT(upstream_open) int32_t tcpmod_upstream_open(int32_t conn, const void *name, int32_t name_len);
/* tcpmod.upstream_send (i32, i32, i32, i32) -> i32: 0 queued in order; -1 no such
 * upstream; TCPMOD_UPSTREAM_FULL its queue is at --max-output-buffer (nothing taken). */
TCPMOD_IMPORT(upstream_send) int32_t tcpmod_upstream_send(int32_t conn, int32_t up, const void *data, int32_t len);
/* tcpmod.upstream_close (i32, i32) -> i32: 0, or -1 no such upstream. No event follows. */
TCPMOD_IMPORT(upstream_close) int32_t tcpmod_upstream_close(int32_t conn, int32_t up);
/* tcpmod.upstream_addr (i32, i32, i32, i32, i32) -> i32: address `index` (0-based) of the
 * upstream `name` as text, HOST:PORT or [V6]:PORT, into out: its length; -1 no such name or
 * address (count a name's addresses by the first -1); -2 cap too small. From any callback.
 * upstream_open of "NAME#I" opens address I of NAME alone (no failover); -1 past the last. */
TCPMOD_IMPORT(upstream_addr) int32_t tcpmod_upstream_addr(const void *name, int32_t name_len, int32_t index, char *out, int32_t cap);
/* tcpmod.upstream_resume (i32, i32) -> i32: the module waits no more for what it left
 * unconsumed: `up` > 0, that upstream's held bytes come again as a DATA event; `up` 0
 * (from tcpmod_on_upstream only), the client's held input comes again in on_data;
 * both even when nothing new arrives. 0, or -1 no such upstream / not allowed here. */
TCPMOD_IMPORT(upstream_resume) int32_t tcpmod_upstream_resume(int32_t conn, int32_t up);

/* v1.2 half-close (docs/abi.md §20). A module that imports either of these keeps a
 * connection open after an EOF call it answers with CONTINUE (its input ended, its
 * output open); it closes when the module returns CLOSE/ABORT, or, with reason 0,
 * once both directions ended and no upstream is left.
 * tcpmod.upstream_shutdown (i32, i32) -> i32: ends the sending side to upstream `up`
 * once what is queued for it has gone (its FIN); its events go on, and its own end
 * comes as TCPMOD_UPSTREAM_EOF. 0, or -1 no such upstream; a later upstream_send
 * returns TCPMOD_UPSTREAM_SHUT. */
TCPMOD_IMPORT(upstream_shutdown) int32_t tcpmod_upstream_shutdown(int32_t conn, int32_t up);
/* tcpmod.shutdown_output (i32) -> i32: ends the sending side to the client after this
 * call's output and everything queued (its FIN); its input goes on. Output given in
 * later calls is discarded. 0, or -1 not the connection being handled. */
TCPMOD_IMPORT(shutdown_output) int32_t tcpmod_shutdown_output(int32_t conn);

/* v1.1: tcpmod.draining () -> i32. 1 once the server has begun a graceful stop. */
TCPMOD_IMPORT(draining) int32_t tcpmod_draining(void);

/* v1.1: tcpmod.want (i32, i32) -> i32. A hint from on_data: call again only when
 * `n` bytes are pending (or the input region is full, EOF, a timer). The host
 * may call earlier; answers must not depend on it. 0, or -1 for another conn. */
TCPMOD_IMPORT(want) int32_t tcpmod_want(int32_t conn, int32_t n);

/* v1.1: tcpmod.peer_addr (i32, i32, i32) -> i32. Writes the client's address as
 * text, "IP:PORT" or "[IPv6]:PORT", at `out` and returns its length; -1 not the
 * connection being handled, -2 `cap` too small (nothing written). */
TCPMOD_IMPORT(peer_addr) int32_t tcpmod_peer_addr(int32_t conn, char *out, int32_t cap);

/* ---- v1.2 store additions (docs/abi.md §14). Results: TCPMOD_KV_* below.
 * Versions: every value has a 64-bit version that changes on each write of the
 * value (not on a TTL change). TTLs are in ms, 0 = none, at most TCPMOD_KV_TTL_MAX.
 * On a Redis-backed store (--kv redis://) this host returns TCPMOD_KV_UNAVAILABLE
 * from every v1.2 call. */

/* tcpmod.kv_get_ver (i32, i32, i32, i32, i32) -> i32. As kv_get, and writes the
 * value's version at `version` whenever the key is found. */
TCPMOD_IMPORT(kv_get_ver) int32_t tcpmod_kv_get_ver(const void *key, int32_t key_len, void *out, int32_t out_cap, uint64_t *version);

/* tcpmod.kv_getdel (i32, i32, i32, i32) -> i32. As kv_get, and deletes the key,
 * but only when the value fitted `out_cap` (else nothing changes). */
TCPMOD_IMPORT(kv_getdel) int32_t tcpmod_kv_getdel(const void *key, int32_t key_len, void *out, int32_t out_cap);

/* tcpmod.kv_set_ex (i32, i32, i32, i32, i32, i64) -> i32. Stores with conditions
 * (TCPMOD_KV_NX / _XX) and a TTL (0 none; with TCPMOD_KV_KEEPTTL, ttl_ms must be 0
 * and the key's TTL stays). OK, MISSING (XX), EXISTS (NX), FULL, INVALID. */
TCPMOD_IMPORT(kv_set_ex) int32_t tcpmod_kv_set_ex(const void *key, int32_t key_len, const void *val, int32_t val_len, int32_t flags, int64_t ttl_ms);

/* tcpmod.kv_cas (i32, i32, i32, i32, i32, i64, i64) -> i32. Stores only when the
 * key's version is `version`. flags: 0 or TCPMOD_KV_KEEPTTL. OK, MISSING, EXISTS
 * (another version), FULL, INVALID. */
TCPMOD_IMPORT(kv_cas) int32_t tcpmod_kv_cas(const void *key, int32_t key_len, const void *val, int32_t val_len, int32_t flags, int64_t ttl_ms, uint64_t version);

/* tcpmod.kv_expire (i32, i32, i64) -> i32. Sets the TTL (0 deletes the key now).
 * OK, MISSING, INVALID. */
TCPMOD_IMPORT(kv_expire) int32_t tcpmod_kv_expire(const void *key, int32_t key_len, int64_t ttl_ms);

/* tcpmod.kv_persist (i32, i32) -> i32. 1 removed a TTL, 0 had none, MISSING. */
TCPMOD_IMPORT(kv_persist) int32_t tcpmod_kv_persist(const void *key, int32_t key_len);

/* tcpmod.kv_ttl (i32, i32, i32) -> i32. 1 with the ms left at `ms`, 0 no TTL, MISSING. */
TCPMOD_IMPORT(kv_ttl) int32_t tcpmod_kv_ttl(const void *key, int32_t key_len, int64_t *ms);

/* tcpmod.kv_append (i32, i32, i32, i32, i32) -> i32. Appends (TCPMOD_KV_PREPEND:
 * prepends) atomically, creating the key unless TCPMOD_KV_XX; keeps the TTL.
 * The new length, MISSING (XX), FULL, INVALID. */
TCPMOD_IMPORT(kv_append) int32_t tcpmod_kv_append(const void *key, int32_t key_len, const void *val, int32_t val_len, int32_t flags);

/* tcpmod.kv_incr_ex (i32, i32, i64, i32, i32) -> i32. kv_incr with distinct
 * results and TCPMOD_KV_XX (a missing key is MISSING, not 0); keeps the TTL.
 * OK, MISSING, NOT_INTEGER (not a canonical integer, or overflow), FULL, INVALID. */
TCPMOD_IMPORT(kv_incr_ex) int32_t tcpmod_kv_incr_ex(const void *key, int32_t key_len, int64_t delta, int32_t flags, int64_t *out);

/* tcpmod.kv_scan (i32, i32, i64, i32, i32, i32, i32) -> i32. One bounded step of
 * a listing of the keys starting with `prefix`: writes [u32 length][key bytes]
 * records at `out`, returns how many, and the cursor of the next step at `next`
 * (0: the listing is complete; start with cursor 0). A key present for the whole
 * listing is returned at least once. INVALID (cursor < 0, count < 1), TOO_SMALL
 * (nothing written: give more out_cap). */
TCPMOD_IMPORT(kv_scan) int32_t tcpmod_kv_scan(const void *prefix, int32_t prefix_len, int64_t cursor, int32_t count, void *out, int32_t out_cap, int64_t *next);

/* tcpmod.kv_del_prefix (i32, i32) -> i32. Deletes every key starting with
 * `prefix` (empty: all); returns how many. Each key atomically, not all at once. */
TCPMOD_IMPORT(kv_del_prefix) int32_t tcpmod_kv_del_prefix(const void *prefix, int32_t prefix_len);

/* v1.2, stored values to the output (docs/abi.md §17).
 * tcpmod.kv_get_range (i32, i32, i32, i32, i32, i32) -> i32. The value's
 * length; copies bytes [offset, offset + out_cap) of it (as many as there are)
 * to out and its version to *version. -1 missing; -4 offset < 0. */
TCPMOD_IMPORT(kv_get_range) int32_t tcpmod_kv_get_range(const void *key, int32_t key_len, int32_t offset, void *out, int32_t out_cap, uint64_t *version);

/* tcpmod.kv_send (i32, i32, i32, i32, i32, i64, i32, i32) -> i32. Sends
 * head_len bytes at head, then bytes [offset, offset + len) of the value (as
 * many as there are), to the connection being handled, in output order as
 * tcpmod_send; the value never passes through module memory. version 0: any;
 * else only that version (-5, nothing sent). The value bytes sent; -1 missing;
 * -3; -4 offset or len < 0; -8 not the connection being handled, or the send failed. */
/* tcpmod.kv_expire_ex (i32, i32, i64, i32) -> i32. kv_expire with Redis 7's
 * conditions (flags): TCPMOD_KV_NX the key has no TTL, TCPMOD_KV_XX it has one,
 * TCPMOD_KV_GT / TCPMOD_KV_LT the new expiry is later / earlier (no TTL counts
 * as infinite). 1 set (ttl_ms 0: the key deleted); 0 the condition did not
 * hold; -1 missing; -4 a bad TTL or flags (NX with XX, GT or LT; GT with LT). */
TCPMOD_IMPORT(kv_expire_ex) int32_t tcpmod_kv_expire_ex(const void *key, int32_t key_len, int64_t ttl_ms, int32_t flags);

TCPMOD_IMPORT(kv_send) int32_t tcpmod_kv_send(int32_t conn, const void *key, int32_t key_len, int32_t offset, int32_t len, uint64_t version, const void *head, int32_t head_len);

/* v1.2, counters inside a value (docs/abi.md §18).
 * tcpmod.kv_incr_at (i32, i32, i32, i64, i32, i32) -> i32. memcached's
 * incr/decr on the unsigned decimal at bytes [offset, end) of the value
 * (1 to 20 digits, at most 2^64 - 1, then only spaces): adds delta modulo 2^64,
 * or with TCPMOD_KV_DECR subtracts it, stopping at 0; the bytes before offset
 * stay, the number is rewritten without padding, the TTL is kept, the version
 * changes. OK with the new value at *out; MISSING; NOT_INTEGER (no such number
 * there); FULL; INVALID (offset < 0, unknown flag). */
TCPMOD_IMPORT(kv_incr_at) int32_t tcpmod_kv_incr_at(const void *key, int32_t key_len, int32_t offset, uint64_t delta, int32_t flags, uint64_t *out);

/* ---------------------------------------------------------------- exports */

/* Put TCPMOD_EXPORT(name) on each function the host should call; the names
 * and signatures are below. A module must define tcpmod_abi_v1 (an empty
 * marker), tcpmod_io_desc and tcpmod_on_data; the rest are optional. Declared
 * here with their export names, so a definition that does not match the
 * signature fails to compile. */
#define TCPMOD_EXPORT(name) __attribute__((export_name(#name)))

/* Required. Never called: marks the module as built for ABI v1. */
TCPMOD_EXPORT(tcpmod_abi_v1) void tcpmod_abi_v1(void);

/* Required. Called once per instance: the address of the IoDesc (below). */
struct tcpmod_iodesc;
TCPMOD_EXPORT(tcpmod_io_desc) const struct tcpmod_iodesc *tcpmod_io_desc(void);

/* Required. `in_len` bytes of input at in_ptr (the carry-over first), `flags`
 * TCPMOD_FLAG_EOF once the client has finished. Fill the result record and
 * return TCPMOD_CONTINUE, TCPMOD_CLOSE or TCPMOD_ABORT. */
TCPMOD_EXPORT(tcpmod_on_data) int32_t tcpmod_on_data(int32_t conn, int32_t in_len, int32_t flags);

/* Optional. Once per instance after tcpmod_io_desc: the --config bytes are at
 * in_ptr (`cfg_len` may be 0). Return 0 to accept; anything else refuses. */
TCPMOD_EXPORT(tcpmod_init) int32_t tcpmod_init(int32_t cfg_len);

/* Optional. A new connection, state slot zeroed, no input. Set out_len in the
 * result record (consumed is ignored) and return an action. */
TCPMOD_EXPORT(tcpmod_on_open) int32_t tcpmod_on_open(int32_t conn);

/* Optional. The connection is gone, for a TCPMOD_REASON_*; not after a fault.
 * Neither input nor state is loaded; send and conn_info return -1. */
TCPMOD_EXPORT(tcpmod_on_close) void tcpmod_on_close(int32_t conn, int32_t reason);

/* Optional, required when tcpmod_set_timer is imported (v1.1). The timer fired:
 * the carry-over (`in_len` bytes) and state are loaded as for on_data; fill the
 * result record and return an action as on_data does. */
TCPMOD_EXPORT(tcpmod_on_timer) int32_t tcpmod_on_timer(int32_t conn, int32_t in_len);

/* Optional, required when tcpmod_subscribe is imported (v1.2). A message for one
 * of the connection's subscriptions: the carry-over (in_len bytes) at in_ptr,
 * then the topic, the matching pattern (0 bytes for an exact subscription) and
 * the message. Result record and action as for tcpmod_on_timer. */
TCPMOD_EXPORT(tcpmod_on_message) int32_t tcpmod_on_message(int32_t conn, int32_t in_len, int32_t topic_len,
                                                           int32_t pattern_len, int32_t msg_len);
/* Optional, required when an upstream function is imported (v1.2). An event of
 * upstream `up` (TCPMOD_UPSTREAM_CONNECTED, _DATA, _CLOSED, _FAILED); for DATA and
 * CLOSED its bytes (`in_len`, after its own carry-over) are at in_ptr; the state is
 * loaded; result and action as for on_data (output goes to the client). */
TCPMOD_EXPORT(tcpmod_on_upstream) int32_t tcpmod_on_upstream(int32_t conn, int32_t up, int32_t event, int32_t in_len);

/* Optional (live reload, docs/abi.md §11): the version of what the state slot,
 * and the input left unconsumed, mean. On a reload an open connection moves to
 * the new module only when both return the same value (0 or more) and declare
 * the same state_size; negative: no version (connections stay on the old module). */
TCPMOD_EXPORT(tcpmod_state_version) int32_t tcpmod_state_version(void);

/* Also optional: `_initialize` () -> (), called right after instantiation
 * (without libc nothing defines it: export your own if you need set-up work),
 * and `__collect` () -> (), called after every callback (for runtimes with a
 * garbage collector). */

/* ---------------------------------------------------------------- records */

/* The IoDesc: 32 bytes, 4-byte aligned, inside memory, read once per instance,
 * so the regions never move. in_cap and out_cap are TCPMOD_IO_MIN..TCPMOD_IO_MAX;
 * state_size 0..TCPMOD_STATE_MAX (state_ptr 0 when it is 0); res points to the
 * 8-byte result record; flags must be 0. No two of input, output, state and
 * result may overlap, and each must lie inside memory. */
struct tcpmod_iodesc {
  uint8_t *in_ptr;      /* offset 0 */
  uint32_t in_cap;      /* offset 4 */
  uint8_t *out_ptr;     /* offset 8 */
  uint32_t out_cap;     /* offset 12 */
  void *state_ptr;      /* offset 16 */
  uint32_t state_size;  /* offset 20 */
  struct tcpmod_result *res_ptr; /* offset 24 */
  uint32_t flags;       /* offset 28: reserved, 0 */
};
typedef struct tcpmod_iodesc tcpmod_iodesc_t;

/* The result record, written by the module in every on_data and on_timer call
 * (and out_len in every on_open call): the host never clears it, so a value
 * left from an earlier call would be taken as this call's. */
struct tcpmod_result {
  uint32_t consumed;    /* offset 0: 0..in_len input bytes handled */
  uint32_t out_len;     /* offset 4: 0..out_cap bytes of output at out_ptr */
};
typedef struct tcpmod_result tcpmod_result_t;

_Static_assert(sizeof(struct tcpmod_iodesc) == 32, "IoDesc is 32 bytes");
_Static_assert(__builtin_offsetof(struct tcpmod_iodesc, in_ptr) == 0, "in_ptr at 0");
_Static_assert(__builtin_offsetof(struct tcpmod_iodesc, in_cap) == 4, "in_cap at 4");
_Static_assert(__builtin_offsetof(struct tcpmod_iodesc, out_ptr) == 8, "out_ptr at 8");
_Static_assert(__builtin_offsetof(struct tcpmod_iodesc, out_cap) == 12, "out_cap at 12");
_Static_assert(__builtin_offsetof(struct tcpmod_iodesc, state_ptr) == 16, "state_ptr at 16");
_Static_assert(__builtin_offsetof(struct tcpmod_iodesc, state_size) == 20, "state_size at 20");
_Static_assert(__builtin_offsetof(struct tcpmod_iodesc, res_ptr) == 24, "res_ptr at 24");
_Static_assert(__builtin_offsetof(struct tcpmod_iodesc, flags) == 28, "flags at 28");
_Static_assert(sizeof(struct tcpmod_result) == 8, "result record is 8 bytes");
_Static_assert(__builtin_offsetof(struct tcpmod_result, consumed) == 0, "consumed at 0");
_Static_assert(__builtin_offsetof(struct tcpmod_result, out_len) == 4, "out_len at 4");

/* ---------------------------------------------------------------- numbers */

/* IoDesc bounds. */
#define TCPMOD_IO_MIN 1024
#define TCPMOD_IO_MAX 4194304
#define TCPMOD_STATE_MAX 256

/* on_data flags. */
#define TCPMOD_FLAG_EOF 1 /* the client shut down its sending side */

/* Actions (returned by on_open, on_data, on_timer). Any other value is a fault. */
#define TCPMOD_CONTINUE 0 /* send the out region, keep [consumed, in_len) and go on */
#define TCPMOD_CLOSE 1    /* send the out region, then close */
#define TCPMOD_ABORT 2    /* close at once, dropping the out region */

/* Close reasons (tcpmod_on_close). */
#define TCPMOD_REASON_PEER 0         /* the client closed (or EOF answered) */
#define TCPMOD_REASON_MODULE 1       /* the module returned CLOSE or ABORT */
#define TCPMOD_REASON_SOCKET_ERROR 2 /* a receive or send failed */
#define TCPMOD_REASON_OVERFLOW 3     /* full input region with nothing consumed, or output past its limit */
#define TCPMOD_REASON_SEND_TIMEOUT 4 /* output made no progress for --send-timeout */
#define TCPMOD_REASON_SHUTDOWN 5     /* the server stopped */
#define TCPMOD_REASON_FAULT 6        /* a fault (on_close is not called for it) */
#define TCPMOD_REASON_TIMEOUT 7      /* v1.1: read or frame timeout */
#define TCPMOD_REASON_TLS 8          /* v1.1: a TLS record failed */

/* tcpmod_send results. */
#define TCPMOD_SEND_OK 0
#define TCPMOD_SEND_FAILED (-1)
#define TCPMOD_SEND_OUT_OF_BOUNDS (-2)

/* Key-value results. */
#define TCPMOD_KV_OK 0
#define TCPMOD_KV_MISSING (-1)     /* kv_get: no such key */
#define TCPMOD_KV_FAILED (-1)      /* kv_incr: not an integer, overflow, or store full */
#define TCPMOD_KV_FULL (-2)        /* kv_set: the budget would be exceeded */
#define TCPMOD_KV_UNAVAILABLE (-3) /* any kv_*: the store is unavailable (a Redis store: docs/abi.md §11) */
#define TCPMOD_KV_INVALID (-4)     /* v1.2: an argument out of range (flags, TTL, cursor, count) */
#define TCPMOD_KV_EXISTS (-5)      /* v1.2: NX found the key; kv_cas found another version */
#define TCPMOD_KV_NOT_INTEGER (-6) /* v1.2: kv_incr_ex on a value that is not an integer, or overflow */
#define TCPMOD_KV_TOO_SMALL (-7)   /* v1.2: kv_scan's out cannot hold the next keys */
#define TCPMOD_KV_NOT_SENT (-8)    /* v1.2: kv_send for another connection, or the send failed */

/* v1.2 flags: kv_set_ex (NX, XX, KEEPTTL), kv_cas (KEEPTTL), kv_append (PREPEND, XX), kv_incr_ex (XX). */
#define TCPMOD_KV_NX 1
#define TCPMOD_KV_XX 2
#define TCPMOD_KV_KEEPTTL 4
#define TCPMOD_KV_PREPEND 1
#define TCPMOD_KV_GT 8  /* kv_expire_ex: only a later expiry */
#define TCPMOD_KV_LT 16 /* kv_expire_ex: only an earlier expiry */
#define TCPMOD_KV_DECR 32 /* kv_incr_at: subtract, stopping at 0 */
#define TCPMOD_KV_TTL_MAX 70368744177664LL /* 2^46 ms */

/* Log levels (tcpmod_log). */
#define TCPMOD_LOG_DEBUG 0
#define TCPMOD_LOG_INFO 1
#define TCPMOD_LOG_WARN 2
#define TCPMOD_LOG_ERROR 3

/* v1.1 conn_info keys and errors. */
#define TCPMOD_INFO_TRANSPORT 0   /* returns 0 plain TCP, 1 TLS */
#define TCPMOD_INFO_ALPN 1        /* writes the negotiated ALPN protocol, returns its length (0 none) */
#define TCPMOD_INFO_CLIENT_CERT 2 /* returns 1 when a client certificate verified, else 0 */
#define TCPMOD_INFO_NOT_HANDLED (-1)
#define TCPMOD_INFO_TOO_SMALL (-2)
#define TCPMOD_INFO_UNKNOWN_KEY (-3)

/* v1.2 upstream events and results. */
#define TCPMOD_UPSTREAM_CONNECTED 1
#define TCPMOD_UPSTREAM_DATA 2
#define TCPMOD_UPSTREAM_CLOSED 3
#define TCPMOD_UPSTREAM_FAILED 4
#define TCPMOD_UPSTREAM_UNKNOWN (-1)
#define TCPMOD_UPSTREAM_TOO_MANY (-2)
#define TCPMOD_UPSTREAM_UNAVAILABLE (-3)
#define TCPMOD_UPSTREAM_FULL (-2)
/* v1.2 half-close (§20): the upstream ended its sending side, the handle stays for sending;
 * and upstream_send after upstream_shutdown. */
#define TCPMOD_UPSTREAM_EOF 5
#define TCPMOD_UPSTREAM_SHUT (-3)

#ifdef __cplusplus
}
#endif

#endif /* TCPMOD_H */
