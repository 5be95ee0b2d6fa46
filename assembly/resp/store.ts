// String values in the shared key-value store: each under the key the client
// sent, as its raw bytes, with the store's own expiry (ABI v1.2, docs/abi.md
// §14). So every command is as few host calls as its meaning needs (GET, SET
// with any options, INCR, APPEND, EXPIRE, TTL: one each), each atomic in the
// store, and keys written by anything else sharing the store (another module,
// another process on the same Redis, redis-cli on that Redis) are seen as
// they are: SCAN, KEYS, DBSIZE and FLUSHALL list and clear the store itself
// (kv_scan, kv_del_prefix), not an index of this module's writes.
//
// ---- A store that is unavailable ---------------------------------------------
//
// ABI v1.1 lets every kv function answer KV_UNAVAILABLE (-3: a remote store is
// down or timed out; nothing changed). Every store call of this module goes
// through the wrappers below. The first -3 during a command marks the command
// failed, and every later store call of that command returns -3 without
// reaching the host: a command never acts on a read it could not make (SET GET
// writing after a failed look-up, a DBSIZE walk going on). The handlers run to
// their end unaware (a failed read looks missing) and dispatch replaces
// whatever they answered with "-ERR store unavailable" (dispatch.ts), so the
// rule lives in one place rather than in every handler.

import {
  kv_get, kv_set, kv_del, kv_get_ver, kv_getdel, kv_set_ex, kv_cas, kv_expire, kv_expire_ex, kv_persist, kv_ttl,
  kv_append, kv_incr_ex, kv_scan, kv_del_prefix, nowMs, KV_UNAVAILABLE,
  Conn, kv_get_range, formatI64, KV_EXISTS, KV_MISSING,
} from "tcpmod/assembly/sdk";
import { VAL, VAL_CAP, ENC } from "./limits";

/** Result of the last read(): the value's bytes. */
export let valPtr: usize = 0;
export let valLen: i32 = 0;

export const MISSING: i32 = -1;
export const UNREADABLE: i32 = -3;

let unavailable = false;

/** Starts a command with the store presumed available (dispatch, before each handler). */
export function beginCommand(): void {
  unavailable = false;
}

/** Whether a store call of the current command answered KV_UNAVAILABLE. */
export function storeUnavailable(): bool {
  return unavailable;
}

/** `rc` of a store call: notes KV_UNAVAILABLE for the rest of the command. */
@inline function noted(rc: i32): i32 {
  if (rc == KV_UNAVAILABLE) unavailable = true;
  return rc;
}

export function kvGet(key: usize, keyLen: i32, out: usize, cap: i32): i32 {
  return unavailable ? KV_UNAVAILABLE : noted(kv_get(key, keyLen, out, cap));
}
export function kvSet(key: usize, keyLen: i32, val: usize, valLen: i32): i32 {
  return unavailable ? KV_UNAVAILABLE : noted(kv_set(key, keyLen, val, valLen));
}
export function kvDel(key: usize, keyLen: i32): i32 {
  return unavailable ? KV_UNAVAILABLE : noted(kv_del(key, keyLen));
}
export function kvGetVer(key: usize, keyLen: i32, out: usize, cap: i32, version: usize): i32 {
  return unavailable ? KV_UNAVAILABLE : noted(kv_get_ver(key, keyLen, out, cap, version));
}
export function kvGetDel(key: usize, keyLen: i32, out: usize, cap: i32): i32 {
  return unavailable ? KV_UNAVAILABLE : noted(kv_getdel(key, keyLen, out, cap));
}
export function kvSetEx(key: usize, keyLen: i32, val: usize, valLen: i32, flags: i32, ttl: i64): i32 {
  return unavailable ? KV_UNAVAILABLE : noted(kv_set_ex(key, keyLen, val, valLen, flags, ttl));
}
export function kvCas(key: usize, keyLen: i32, val: usize, valLen: i32, flags: i32, ttl: i64, version: u64): i32 {
  return unavailable ? KV_UNAVAILABLE : noted(kv_cas(key, keyLen, val, valLen, flags, ttl, version));
}
export function kvExpire(key: usize, keyLen: i32, ttl: i64): i32 {
  return unavailable ? KV_UNAVAILABLE : noted(kv_expire(key, keyLen, ttl));
}
export function kvExpireEx(key: usize, keyLen: i32, ttl: i64, flags: i32): i32 {
  return unavailable ? KV_UNAVAILABLE : noted(kv_expire_ex(key, keyLen, ttl, flags));
}
export function kvPersist(key: usize, keyLen: i32): i32 {
  return unavailable ? KV_UNAVAILABLE : noted(kv_persist(key, keyLen));
}
export function kvTtl(key: usize, keyLen: i32, ms: usize): i32 {
  return unavailable ? KV_UNAVAILABLE : noted(kv_ttl(key, keyLen, ms));
}
export function kvAppend(key: usize, keyLen: i32, val: usize, valLen: i32, flags: i32): i32 {
  return unavailable ? KV_UNAVAILABLE : noted(kv_append(key, keyLen, val, valLen, flags));
}
export function kvIncrEx(key: usize, keyLen: i32, delta: i64, flags: i32, out: usize): i32 {
  return unavailable ? KV_UNAVAILABLE : noted(kv_incr_ex(key, keyLen, delta, flags, out));
}
export function kvScan(prefix: usize, prefixLen: i32, cursor: i64, count: i32, out: usize, cap: i32, next: usize): i32 {
  return unavailable ? KV_UNAVAILABLE : noted(kv_scan(prefix, prefixLen, cursor, count, out, cap, next));
}
export function kvDelPrefix(prefix: usize, prefixLen: i32): i32 {
  return unavailable ? KV_UNAVAILABLE : noted(kv_del_prefix(prefix, prefixLen));
}

/** Current wall-clock time in ms, as an integer. */
@inline export function now(): i64 {
  return <i64>nowMs();
}

/** Reads a key's value into VAL. Returns its length (valPtr/valLen set),
 *  MISSING (absent or expired), or UNREADABLE (larger than any value this
 *  module writes; only valLen is set, to its length). A store that is
 *  unavailable reads as MISSING (the command has failed by then; see
 *  storeUnavailable). */
export function read(key: usize, keyLen: i32): i32 {
  const n = kvGet(key, keyLen, VAL, VAL_CAP);
  valPtr = VAL;
  valLen = n;
  if (n < 0) return MISSING;
  if (n > VAL_CAP) return UNREADABLE;
  return n;
}

/** GET answers a value longer than this from the store straight to the client (kv_send). */
export const SEND_DIRECT_OVER: i32 = 16 * 1024;
const BULK_HEAD = memory.data(32);
const RANGE_VER = memory.data(8, 8);

/**
 * A bulk reply of the key's value sent by the host from the store (kv_send):
 * "$<length>\r\n" of one version and that version's bytes (a write in
 * between is seen by kv_send and the value read again), then CRLF. What was
 * written before goes first (Conn.sendStored flushes it), so pipelined replies
 * keep their order. The length; MISSING (gone meanwhile, or unavailable: noted
 * as read() does); UNREADABLE when it kept changing.
 */
export function sendValue(c: Conn, key: usize, keyLen: i32): i32 {
  for (let attempt = 0; attempt < 100 && !unavailable; attempt++) {
    const n = noted(kv_get_range(key, keyLen, 0, VAL, 0, RANGE_VER));
    if (n < 0) return MISSING;
    store<u8>(BULK_HEAD, 0x24);
    const k = formatI64(BULK_HEAD + 1, n);
    store<u16>(BULK_HEAD + 1 + <usize>k, 0x0A0D);
    const rc = noted(c.sendStored(key, keyLen, 0, n, load<u64>(RANGE_VER), BULK_HEAD, k + 3));
    if (rc == KV_EXISTS) continue;
    if (rc < 0) return MISSING;
    c.writeString("\r\n");
    return n;
  }
  return unavailable ? MISSING : UNREADABLE;
}

// ---- listing -------------------------------------------------------------------

/** Where one kv_scan step puts its [u32 length][key] records: room for the
 *  longest key a request can carry, so a step never answers "too small". */
export const SCAN_OUT: usize = ENC;
export const SCAN_CAP: i32 = VAL_CAP;
const NEXT: usize = memory.data(8, 8);

/** The cursor the last scanStep returned (0: the listing is complete). */
export let scanNext: i64 = 0;

/** One bounded listing step of the keys starting with the prefix: how many
 *  records are at SCAN_OUT (scanNext set), or a negative kv_scan result. */
export function scanStep(prefix: usize, prefixLen: i32, cursor: i64, count: i32): i32 {
  const n = kvScan(prefix, prefixLen, cursor, count, SCAN_OUT, SCAN_CAP, NEXT);
  scanNext = n >= 0 ? load<i64>(NEXT) : 0;
  return n;
}

/** Keys per listing step of DBSIZE (and KEYS, in keys.ts). */
export const WALK_STEP: i32 = 1000;

/** Deletes every key in the store: each atomically, not all at once. */
export function flushAll(): void {
  kvDelPrefix(0, 0);
}

/** Number of keys in the store (expired ones are never listed): O(keys) in
 *  bounded steps of host calls. */
export function dbSize(): i64 {
  let count: i64 = 0;
  let cursor: i64 = 0;
  do {
    const n = scanStep(0, 0, cursor, WALK_STEP);
    if (n < 0) return count;
    count += n;
    cursor = scanNext;
  } while (cursor != 0);
  return count;
}
