// Raw host functions of ABI v1 (import module `tcpmod`), nothing more.
// Pointers are offsets into this module's own memory. AssemblyScript only emits
// an import for a declaration that is actually used, so a module that never
// touches the key-value store does not import kv_*.

/** Queues `len` bytes at `ptr` for connection `conn` ahead of the out region.
 *  0 ok; negative when the send failed or `conn` is not the one being handled. */
// @ts-ignore: decorator
@external("tcpmod", "send")
export declare function host_send(conn: i32, ptr: usize, len: i32): i32;

/** One UTF-8 line into the host log (level 0 debug, 1 info, 2 warn, 3 error). */
// @ts-ignore: decorator
@external("tcpmod", "log")
export declare function host_log(level: i32, ptr: usize, len: i32): void;

/** Wall-clock milliseconds since the Unix epoch. */
// @ts-ignore: decorator
@external("tcpmod", "now_ms")
export declare function host_now_ms(): f64;

/** Copies the value of `key` to `out` when it fits in `out_cap`. Returns the value's
 *  length (nothing copied when it exceeds `out_cap`), KV_MISSING (-1) when the key is
 *  missing, or KV_UNAVAILABLE (-3). */
/** kv_get: no such key. */
export const KV_MISSING: i32 = -1;
/** kv_set: the store's memory budget would be exceeded (nothing changed). */
export const KV_FULL: i32 = -2;
/** ABI v1.1, any kv_* function: the store is unavailable (a remote store that is down or timed
 *  out); nothing changed. Modules answer it as a temporary failure (an error reply, a 503),
 *  never as "missing" or "zero". The host's own in-memory store never returns it. */
export const KV_UNAVAILABLE: i32 = -3;

// @ts-ignore: decorator
@external("tcpmod", "kv_get")
export declare function kv_get(key: usize, key_len: i32, out: usize, out_cap: i32): i32;

/** Stores a value. 0 ok, KV_FULL (-2) when the store is full, KV_UNAVAILABLE (-3); nothing
 *  changed on a negative result. */
// @ts-ignore: decorator
@external("tcpmod", "kv_set")
export declare function kv_set(key: usize, key_len: i32, val: usize, val_len: i32): i32;

/** 1 deleted, 0 missing, KV_UNAVAILABLE (-3). */
// @ts-ignore: decorator
@external("tcpmod", "kv_del")
export declare function kv_del(key: usize, key_len: i32): i32;

/** Atomically adds `delta` (a missing key counts as 0; stored as decimal text).
 *  0 ok with the new value written as an i64 at `out`; -1 when the stored value
 *  is not a decimal integer, the sum would overflow or the store is full; KV_UNAVAILABLE (-3). */
// @ts-ignore: decorator
@external("tcpmod", "kv_incr")
export declare function kv_incr(key: usize, key_len: i32, delta: i64, out: usize): i32;

/** v1.1: a transport detail of connection `conn` (the one being handled). key 0: 1 when the
 *  connection is TLS, else 0; key 1: the negotiated ALPN protocol written at `out` (returns its
 *  length, 0 when none); key 2: 1 when the client presented a verified certificate. Negative:
 *  -1 not the connection being handled, -2 `cap` too small, -3 unknown key. */
// @ts-ignore: decorator
@external("tcpmod", "conn_info")
export declare function conn_info(conn: i32, key: i32, out: usize, cap: i32): i32;

/** v1.1: arms the single timer of connection `conn` (the one being handled) to fire `ms` from now,
 *  replacing any; 0 cancels. 0 ok; negative when `conn` is not the one being handled or `ms` is
 *  outside 0..86,400,000. The module must export tcpmod_on_timer (the SDK does). */
// @ts-ignore: decorator
@external("tcpmod", "set_timer")
export declare function host_set_timer(conn: i32, ms: i32): i32;

/** v1.2 upstreams (docs/abi.md §16): opens the backend the operator named `name` for connection
 *  `conn`; a handle > 0 (its result comes as an upstream event), or -1 unknown name, -2 too many
 *  (8 per connection), -3 unavailable. The module must export tcpmod_on_upstream (the SDK does). */
// @ts-ignore: decorator
@external("tcpmod", "upstream_open")
export declare function host_upstream_open(conn: i32, name: usize, nameLen: i32): i32;
/** v1.2: queues bytes for upstream `up`, in order: 0, -1 no such upstream, -2 its queue is full (nothing taken). */
// @ts-ignore: decorator
@external("tcpmod", "upstream_send")
export declare function host_upstream_send(conn: i32, up: i32, ptr: usize, len: i32): i32;
/** v1.2: closes upstream `up` at once (queued bytes dropped, no event): 0, or -1 no such upstream. */
// @ts-ignore: decorator
@external("tcpmod", "upstream_close")
export declare function host_upstream_close(conn: i32, up: i32): i32;
/** v1.2: offers again what the module left unconsumed: upstream `up`'s bytes (a DATA event), or with
 *  up = 0 (from an upstream event only) the client's input (on_data), even with nothing new: 0, or -1. */
/** v1.2 (§16): address `index` of upstream `name` as text (HOST:PORT) into out: its length, -1 no such
 *  name or address, -2 cap too small. No connection needed (tcpmod_init may ask). */
// @ts-ignore: decorator
@external("tcpmod", "upstream_addr")
export declare function host_upstream_addr(name: usize, name_len: i32, index: i32, out: usize, cap: i32): i32;
// @ts-ignore: decorator
@external("tcpmod", "upstream_resume")
export declare function host_upstream_resume(conn: i32, up: i32): i32;
/** v1.2 (§20): ends the sending side to upstream `up` once what is queued for it has gone (its
 *  events go on; later sends give UPSTREAM_SHUT): 0, or -1 no such upstream. Importing it (or
 *  shutdown_output) keeps a connection open after an EOF call answered with CONTINUE. */
// @ts-ignore: decorator
@external("tcpmod", "upstream_shutdown")
export declare function host_upstream_shutdown(conn: i32, up: i32): i32;
/** v1.2 (§20): ends the sending side to the client after this call's output and everything
 *  queued (its FIN); its input goes on. 0, or -1 not the connection being handled. */
// @ts-ignore: decorator
@external("tcpmod", "shutdown_output")
export declare function host_shutdown_output(conn: i32): i32;

/** v1.1: 1 once the server has begun a graceful stop, else 0. */
// @ts-ignore: decorator
@external("tcpmod", "draining")
export declare function host_draining(): i32;

/** v1.1: a hint for connection `conn` (the one being handled): do not call on_data again before
 *  `n` bytes of input are pending (or the input region is full, the peer finished, or a timer
 *  fires). The host appends arriving bytes without calling, so a slowly arriving frame costs only
 *  what it sends. The host may call earlier anyway; 0 ok, negative: not the connection being handled. */
// @ts-ignore: decorator
@external("tcpmod", "want")
export declare function host_want(conn: i32, n: i32): i32;

/** v1.1: writes the client's address of connection `conn` (the one being handled) at `out` as text,
 *  `IP:PORT` or `[IPv6]:PORT`; returns its length, -1 when `conn` is not the one being handled,
 *  -2 when `cap` is too small. */
// @ts-ignore: decorator
@external("tcpmod", "peer_addr")
export declare function host_peer_addr(conn: i32, out: usize, cap: i32): i32;
