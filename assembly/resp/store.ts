// String values in the shared key-value store, with optional expiry.
//
// Keys are stored as the client sent them, and values as their raw bytes, so
// the common cases are one host call each and INCR/DECR stay atomic through
// kv_incr (which only works on plain decimal text). Only two kinds of value
// carry a header, both starting with the byte 0xFF (which never starts a
// decimal number, so kv_incr refuses them and we take the slow path):
//
//   FF 'V' <value>                    a value that itself starts with 0xFF
//   FF 'X' <deadline: i64 LE> <value> a value with an expiry (ms since epoch)
//
// Anything else (including an empty value) is the value itself.
//
// Expiry is lazy: a read that finds an expired value deletes it and reports
// the key missing. The store has no way to enumerate keys, so an expired key
// nobody touches again keeps its bytes until it is overwritten or deleted.
// Read-modify-write sequences (APPEND, SET with NX/XX/GET/KEEPTTL, INCR on a
// key with an expiry, the lazy delete itself) are two host calls and are not
// atomic against a different connection writing the same key at that instant;
// the ABI offers no compare-and-set.

import { kv_get, kv_set, kv_del, nowMs } from "../sdk";
import { VAL, VAL_CAP, ENC, TAG_MAX } from "./limits";

export const TAG: u8 = 0xFF;
const KIND_ESCAPED: u8 = 0x56; // 'V'
const KIND_EXPIRING: u8 = 0x58; // 'X'

/** Result of the last read(): the value's bytes and its deadline (0 = none). */
export let valPtr: usize = 0;
export let valLen: i32 = 0;
export let valDeadline: i64 = 0;

export const MISSING: i32 = -1;
export const UNREADABLE: i32 = -3;

/** Current wall-clock time in ms, as an integer. */
@inline export function now(): i64 {
  return <i64>nowMs();
}

/** Interprets `n` stored bytes at VAL: sets valPtr/valLen/valDeadline. */
function decode(n: i32): void {
  valPtr = VAL;
  valLen = n;
  valDeadline = 0;
  if (n >= 2 && load<u8>(VAL) == TAG) {
    const kind = load<u8>(VAL, 1);
    if (kind == KIND_ESCAPED) {
      valPtr = VAL + 2;
      valLen = n - 2;
    } else if (kind == KIND_EXPIRING && n >= TAG_MAX) {
      valDeadline = load<i64>(VAL, 2);
      valPtr = VAL + <usize>TAG_MAX;
      valLen = n - TAG_MAX;
    }
  }
}

/** Reads a key's value into VAL. Returns its length (valPtr/valLen/valDeadline
 *  set), MISSING (absent or expired; an expired value is deleted), or
 *  UNREADABLE (larger than any value this module writes, so not ours; only
 *  valLen is set, to its length). */
export function read(key: usize, keyLen: i32): i32 {
  const n = kv_get(key, keyLen, VAL, VAL_CAP);
  if (n < 0) return MISSING;
  if (n > VAL_CAP) {
    valLen = n;
    valDeadline = 0;
    return UNREADABLE;
  }
  decode(n);
  if (valDeadline != 0 && now() > valDeadline) {
    kv_del(key, keyLen);
    return MISSING;
  }
  return valLen;
}

/** Stores a value with an optional deadline (0 = none). Returns kv_set's result:
 *  0 ok, -2 the store is full. `len` must be at most MAX_VALUE. */
export function write(key: usize, keyLen: i32, p: usize, len: i32, deadline: i64): i32 {
  if (deadline == 0) {
    if (len == 0 || load<u8>(p) != TAG) return kv_set(key, keyLen, p, len);
    store<u8>(ENC, TAG);
    store<u8>(ENC, KIND_ESCAPED, 1);
    memory.copy(ENC + 2, p, <usize>len);
    return kv_set(key, keyLen, ENC, len + 2);
  }
  store<u8>(ENC, TAG);
  store<u8>(ENC, KIND_EXPIRING, 1);
  store<i64>(ENC, deadline, 2);
  memory.copy(ENC + <usize>TAG_MAX, p, <usize>len);
  return kv_set(key, keyLen, ENC, len + TAG_MAX);
}
