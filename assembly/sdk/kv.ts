// ABI v1.2 store additions (docs/abi.md §14): raw host functions and their
// result codes and flags. Pointers are offsets into this module's memory. As
// with every @external, only the functions a module calls become imports, so a
// module that uses none of these stays a v1/v1.1 module.

/** v1.2: an argument out of range (flags, TTL, cursor, count); nothing changed. */
export const KV_INVALID: i32 = -4;
/** v1.2: kv_set_ex with KV_NX found the key; kv_cas found another version. */
export const KV_EXISTS: i32 = -5;
/** v1.2: kv_incr_ex on a value that is not a canonical decimal integer, or the sum overflows i64. */
export const KV_NOT_INTEGER: i32 = -6;
/** v1.2: kv_scan's out region cannot hold the next keys (nothing written; give more room). */
export const KV_TOO_SMALL: i32 = -7;
/** v1.2: kv_send for a connection other than the one being handled, or the send failed (the connection closes). */
export const KV_NOT_SENT: i32 = -8;

/** Store only when the key is absent (kv_set_ex). */
export const KV_NX: i32 = 1;
/** Store only when the key is present (kv_set_ex, kv_append, kv_incr_ex). */
export const KV_XX: i32 = 2;
/** Keep the key's current TTL; ttl_ms must then be 0 (kv_set_ex, kv_cas). */
export const KV_KEEPTTL: i32 = 4;
/** kv_append: put the bytes in front. */
export const KV_PREPEND: i32 = 1;
/** kv_expire_ex: only when the new expiry is later than the key's (a key without a TTL: never). */
export const KV_GT: i32 = 8;
/** kv_expire_ex: only when the new expiry is earlier than the key's (a key without a TTL: always). */
export const KV_LT: i32 = 16;
/** kv_incr_at: subtract, stopping at 0 (else add, wrapping modulo 2^64). */
export const KV_DECR: i32 = 32;
/** The longest TTL, in ms (2^46). */
export const KV_TTL_MAX: i64 = 70368744177664;

/** As kv_get, and writes the value's version (a u64 that changes on each write) at `version` when found. */
// @ts-ignore: decorator
@external("tcpmod", "kv_get_ver")
export declare function kv_get_ver(key: usize, key_len: i32, out: usize, out_cap: i32, version: usize): i32;

/** As kv_get, and deletes the key, but only when the value fitted `out_cap`. */
// @ts-ignore: decorator
@external("tcpmod", "kv_getdel")
export declare function kv_getdel(key: usize, key_len: i32, out: usize, out_cap: i32): i32;

/** Stores with conditions (KV_NX, KV_XX) and a TTL in ms (0 none; KV_KEEPTTL keeps the key's).
 *  0, KV_MISSING (XX), KV_EXISTS (NX), KV_FULL, KV_INVALID, KV_UNAVAILABLE. */
// @ts-ignore: decorator
@external("tcpmod", "kv_set_ex")
export declare function kv_set_ex(key: usize, key_len: i32, val: usize, val_len: i32, flags: i32, ttl_ms: i64): i32;

/** Stores only when the key's version is `version` (flags: 0 or KV_KEEPTTL).
 *  0, KV_MISSING, KV_EXISTS (another version), KV_FULL, KV_INVALID, KV_UNAVAILABLE. */
// @ts-ignore: decorator
@external("tcpmod", "kv_cas")
export declare function kv_cas(key: usize, key_len: i32, val: usize, val_len: i32, flags: i32, ttl_ms: i64, version: u64): i32;

/** Sets the key's TTL in ms (0 deletes it now). 0, KV_MISSING, KV_INVALID, KV_UNAVAILABLE. */
// @ts-ignore: decorator
@external("tcpmod", "kv_expire")
export declare function kv_expire(key: usize, key_len: i32, ttl_ms: i64): i32;

/** Removes the key's TTL: 1 removed, 0 it had none, KV_MISSING, KV_UNAVAILABLE. */
// @ts-ignore: decorator
@external("tcpmod", "kv_persist")
export declare function kv_persist(key: usize, key_len: i32): i32;

/** 1 with the ms left written as an i64 at `ms`; 0 no TTL; KV_MISSING; KV_UNAVAILABLE. */
// @ts-ignore: decorator
@external("tcpmod", "kv_ttl")
export declare function kv_ttl(key: usize, key_len: i32, ms: usize): i32;

/** Appends (KV_PREPEND: prepends) atomically; creates the key unless KV_XX; keeps the TTL.
 *  The new length, KV_MISSING (XX), KV_FULL, KV_INVALID, KV_UNAVAILABLE. */
// @ts-ignore: decorator
@external("tcpmod", "kv_append")
export declare function kv_append(key: usize, key_len: i32, val: usize, val_len: i32, flags: i32): i32;

/** INCRBY: adds `delta` (a missing key counts as 0, unless KV_XX: then KV_MISSING); keeps the TTL.
 *  0 with the new value as an i64 at `out`, KV_MISSING, KV_NOT_INTEGER, KV_FULL, KV_INVALID, KV_UNAVAILABLE. */
// @ts-ignore: decorator
@external("tcpmod", "kv_incr_ex")
export declare function kv_incr_ex(key: usize, key_len: i32, delta: i64, flags: i32, out: usize): i32;

/** One bounded step of listing the keys that start with `prefix`: [u32 length][bytes] records
 *  at `out`; returns how many, with the next cursor (0: done) as an i64 at `next`.
 *  KV_INVALID (cursor < 0, count < 1), KV_TOO_SMALL, KV_UNAVAILABLE. */
// @ts-ignore: decorator
@external("tcpmod", "kv_scan")
export declare function kv_scan(prefix: usize, prefix_len: i32, cursor: i64, count: i32, out: usize, out_cap: i32, next: usize): i32;

/** Deletes every key that starts with `prefix` (empty: all); returns how many, or KV_UNAVAILABLE. */
// @ts-ignore: decorator
@external("tcpmod", "kv_del_prefix")
export declare function kv_del_prefix(prefix: usize, prefix_len: i32): i32;

/** The value's length; copies bytes [offset, offset + out_cap) of it (as many as there are) to `out`
 *  and its version (u64) to `version`. KV_MISSING, KV_INVALID (offset < 0), KV_UNAVAILABLE. */
// @ts-ignore: decorator
@external("tcpmod", "kv_get_range")
export declare function kv_get_range(key: usize, key_len: i32, offset: i32, out: usize, out_cap: i32, version: usize): i32;

/** Sends `head_len` bytes at `head`, then bytes [offset, offset + len) of the value (as many as there
 *  are) to the connection, in output order as tcpmod.send, without copying the value into this memory.
 *  `version` 0: any; else only that version (KV_EXISTS, nothing sent). The value bytes sent;
 *  KV_MISSING, KV_INVALID, KV_UNAVAILABLE, KV_NOT_SENT. Conn.sendStored flushes the out region first. */
// @ts-ignore: decorator
@external("tcpmod", "kv_send")
export declare function kv_send(conn: i32, key: usize, key_len: i32, offset: i32, len: i32, version: u64, head: usize, head_len: i32): i32;

/** EXPIRE with Redis 7's options: KV_NX (the key has no TTL), KV_XX (it has one), KV_GT / KV_LT
 *  (the new expiry is later / earlier; no TTL counts as infinite). 1 set (ttl_ms 0 deletes the key),
 *  0 the condition did not hold (nothing changed), KV_MISSING, KV_INVALID, KV_UNAVAILABLE. */
// @ts-ignore: decorator
@external("tcpmod", "kv_expire_ex")
export declare function kv_expire_ex(key: usize, key_len: i32, ttl_ms: i64, flags: i32): i32;

/** memcached's incr/decr on the unsigned decimal at bytes [offset, end) of the value (1 to 20 digits,
 *  at most 2^64 - 1, then only spaces), in one atomic step: adds `delta` modulo 2^64, or with KV_DECR
 *  subtracts it, stopping at 0. The bytes before `offset` stay; the number is rewritten without
 *  padding; the TTL is kept. 0 with the new value (u64) at `out`; KV_MISSING; KV_NOT_INTEGER (no such
 *  number there); KV_FULL; KV_INVALID (offset < 0, unknown flag); KV_UNAVAILABLE. docs/abi.md §18. */
// @ts-ignore: decorator
@external("tcpmod", "kv_incr_at")
export declare function kv_incr_at(key: usize, key_len: i32, offset: i32, delta: u64, flags: i32, out: usize): i32;
