// String values in the shared key-value store, with optional expiry, and the
// key index that lets FLUSHALL and DBSIZE work on a store that cannot
// enumerate its keys.
//
// Keys are stored as the client sent them, and values as their raw bytes, so
// the common cases are one host call each (plus the index check below) and
// INCR/DECR stay atomic through kv_incr (which only works on plain decimal
// text). Only two kinds of value carry a header, both starting with the byte
// 0xFF (which never starts a decimal number, so kv_incr refuses them and we
// take the slow path):
//
//   FF 'V' <value>                    a value that itself starts with 0xFF
//   FF 'X' <deadline: i64 LE> <value> a value with an expiry (ms since epoch)
//
// Anything else (including an empty value) is the value itself.
//
// Expiry is lazy: a read that finds an expired value deletes it and reports
// the key missing. An expired key nobody touches again keeps its bytes until
// it is overwritten, deleted, or removed by FLUSHALL.
// Read-modify-write sequences (APPEND, SET with NX/XX/GET/KEEPTTL, INCR on a
// key with an expiry, the lazy delete itself) are two host calls and are not
// atomic against a different connection writing the same key at that instant;
// the ABI offers no compare-and-set.
//
// ---- The key index ----------------------------------------------------------
//
// ABI v1 has no way to list, count or clear keys, and a module keeps no state
// between calls (several instances in several threads share one store), so
// the index lives in the store itself, under keys that start with the two
// reserved bytes 0xFF 0x00:
//
//   FF 00 "tm:n"            COUNT: how many slots were ever handed out (kv_incr)
//   FF 00 "tm:f"            FLOOR: the last slot already flushed (decimal; 0 if missing)
//   FF 00 "tm:m" <key>      MARK: present (empty) once <key> has a slot
//   FF 00 "tm:s" <decimal>  SLOT i: its value is the client key it names
//
// Client keys starting with 0xFF 0x00 are therefore refused with an -ERR by
// every command that takes a key (dispatch checks the key arguments the command
// table describes, two byte compares per key, before any handler runs), so no
// client can read or damage the index. Only the first two bytes are reserved
// (not the whole "FF 00 tm:" prefix) because that check is one 16-bit load.
//
// Every command that can create a key calls noteKey() first: one extra host
// call (kv_get of MARK) for a key already noted, four for a new one. DEL leaves
// the index alone: a re-created key keeps its MARK and SLOT. So the index holds
// every distinct key written since the last FLUSHALL (a deleted key's MARK and
// SLOT stay until then), and DBSIZE checks each slot's key still exists.
//
// FLUSHALL walks slots FLOOR+1..COUNT, deleting each named key (expired or not)
// with its MARK and SLOT, then raises FLOOR. DBSIZE walks the same slots and
// counts keys that exist and have not expired. Both are O(keys ever noted since
// the last FLUSHALL) host calls, which is acceptable for these admin commands
// but bounded in practice by the host's handler timeout (FLOOR is raised as the
// walk goes, so an interrupted FLUSHALL resumes where it stopped).
//
// Neither is atomic against concurrent writers (the ABI has no transactions):
// keys noted during a FLUSHALL get slots past the COUNT it read and are kept;
// a write racing with FLUSHALL on the same key may survive unindexed (its MARK
// deleted after the writer checked it), and two connections creating the same
// new key at the same instant may both give it a slot (DBSIZE then counts it
// twice until the next FLUSHALL).
//
// ---- A store that is unavailable ---------------------------------------------
//
// ABI v1.1 lets every kv function answer KV_UNAVAILABLE (-3: a remote store is
// down or timed out; nothing changed). Every store call of this module goes
// through kvGet/kvSet/kvDel/kvIncr below. The first -3 during a command marks
// the command failed, and every later store call of that command returns -3
// without reaching the host: a command never acts on a read it could not make
// (SET NX writing after a failed look-up, INCR retrying, a FLUSHALL walk going
// on). The handlers run to their end unaware (a failed read looks missing) and
// dispatch replaces whatever they answered with "-ERR store unavailable"
// (dispatch.ts), so the rule lives in one place rather than in every handler.

import { kv_get, kv_set, kv_del, kv_incr, nowMs, KV_UNAVAILABLE } from "tcpmod/assembly/sdk";
import { VAL, VAL_CAP, ENC, TAG_MAX, IN_CAP } from "./limits";
import { parseI64, parsed, formatI64 } from "./num";

export const TAG: u8 = 0xFF;
const KIND_ESCAPED: u8 = 0x56; // 'V'
const KIND_EXPIRING: u8 = 0x58; // 'X'

/** Result of the last read(): the value's bytes and its deadline (0 = none). */
export let valPtr: usize = 0;
export let valLen: i32 = 0;
export let valDeadline: i64 = 0;

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

export function kvIncr(key: usize, keyLen: i32, delta: i64, out: usize): i32 {
  return unavailable ? KV_UNAVAILABLE : noted(kv_incr(key, keyLen, delta, out));
}

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
 *  valLen is set, to its length). A store that is unavailable reads as MISSING
 *  (the command has failed by then; see storeUnavailable). */
export function read(key: usize, keyLen: i32): i32 {
  const n = kvGet(key, keyLen, VAL, VAL_CAP);
  if (n < 0) return MISSING;
  if (n > VAL_CAP) {
    valLen = n;
    valDeadline = 0;
    return UNREADABLE;
  }
  decode(n);
  if (valDeadline != 0 && now() > valDeadline) {
    kvDel(key, keyLen);
    return MISSING;
  }
  return valLen;
}

/** Stores a value with an optional deadline (0 = none). Returns kv_set's result:
 *  0 ok, -2 the store is full. `len` must be at most MAX_VALUE. */
export function write(key: usize, keyLen: i32, p: usize, len: i32, deadline: i64): i32 {
  if (deadline == 0) {
    if (len == 0 || load<u8>(p) != TAG) return kvSet(key, keyLen, p, len);
    store<u8>(ENC, TAG);
    store<u8>(ENC, KIND_ESCAPED, 1);
    memory.copy(ENC + 2, p, <usize>len);
    return kvSet(key, keyLen, ENC, len + 2);
  }
  store<u8>(ENC, TAG);
  store<u8>(ENC, KIND_EXPIRING, 1);
  store<i64>(ENC, deadline, 2);
  memory.copy(ENC + <usize>TAG_MAX, p, <usize>len);
  return kvSet(key, keyLen, ENC, len + TAG_MAX);
}

/** Whether a value exists and has not expired (an expired one is deleted, as
 *  read() does). Reads at most a small prefix unless the value is large. */
const PEEK: i32 = 64;
function live(key: usize, keyLen: i32): bool {
  const n = kvGet(key, keyLen, VAL, PEEK);
  if (n < 0) return false;
  if (n > PEEK) return read(key, keyLen) != MISSING; // too big to peek at: read it whole
  decode(n);
  if (valDeadline != 0 && now() > valDeadline) {
    kvDel(key, keyLen);
    return false;
  }
  return true;
}

// ---- key index (see the header) ---------------------------------------------

const RESERVED: u16 = 0x00FF; // bytes FF 00, as a little-endian u16

/** Whether a client key starts with the reserved bytes 0xFF 0x00. */
@inline export function isReserved(key: usize, keyLen: i32): bool {
  return keyLen >= 2 && load<u16>(key) == RESERVED;
}

/** Length of every index key's prefix: FF 00 't' 'm' ':' <kind>. */
const PFX: i32 = 6;
const K_COUNT: u8 = 0x6E; // 'n'
const K_FLOOR: u8 = 0x66; // 'f'
const K_MARK: u8 = 0x6D; // 'm'
const K_SLOT: u8 = 0x73; // 's'

// Scratch, reserved once: MARK keys are built in KEYBUF (prefix, then the
// client key, which can be as long as a request), small keys in SMALL, and
// kv_incr's i64 result lands in IDX_NUM.
const KEY_CAP: i32 = IN_CAP;
const KEYBUF: usize = heap.alloc(<usize>(PFX + KEY_CAP));
const SMALL: usize = memory.data(64, 8);
const IDX_NUM: usize = memory.data(32, 8);
const DIGITS: usize = memory.data(32, 8);

function prefix(p: usize, kind: u8): void {
  store<u8>(p, 0xFF);
  store<u8>(p, 0x00, 1);
  store<u8>(p, 0x74, 2); // 't'
  store<u8>(p, 0x6D, 3); // 'm'
  store<u8>(p, 0x3A, 4); // ':'
  store<u8>(p, kind, 5);
}

/** Builds SLOT i in SMALL; returns its length. */
function slotKey(i: i64): i32 {
  prefix(SMALL, K_SLOT);
  return PFX + formatI64(SMALL + <usize>PFX, i);
}

/** A decimal index counter (COUNT or FLOOR); 0 when missing or unreadable. */
function readCounter(kind: u8): i64 {
  prefix(SMALL, kind);
  const n = kvGet(SMALL, PFX, DIGITS, 24);
  if (n < 0 || n > 24 || !parseI64(DIGITS, n)) return 0;
  return parsed;
}

function writeFloor(v: i64): void {
  prefix(SMALL, K_FLOOR);
  kvSet(SMALL, PFX, DIGITS, formatI64(DIGITS, v));
}

/** Makes sure `key` is in the index before a command creates it. Returns false
 *  (nothing written) when the store is full. `keyLen` is at most a request's size. */
export function noteKey(key: usize, keyLen: i32): bool {
  // Within one on_data call a pipelined batch often writes the same key again
  // and again: after the first note, the MARK check is skipped. The memo is
  // cleared at the start of every call (modules keep no state between calls)
  // and by FLUSHALL, so it never outlives what it remembers.
  if (keyLen == memoLen && memory.compare(MEMO, key, <usize>keyLen) == 0) return true;
  prefix(KEYBUF, K_MARK);
  memory.copy(KEYBUF + <usize>PFX, key, <usize>keyLen);
  const markLen = PFX + keyLen;
  if (kvGet(KEYBUF, markLen, 0, 0) >= 0) { // already noted
    remember(key, keyLen);
    return true;
  }
  if (kvSet(KEYBUF, markLen, 0, 0) != 0) return false;
  prefix(SMALL, K_COUNT);
  if (kvIncr(SMALL, PFX, 1, IDX_NUM) != 0) {
    kvDel(KEYBUF, markLen);
    return false;
  }
  const sl = slotKey(load<i64>(IDX_NUM));
  if (kvSet(SMALL, sl, key, keyLen) != 0) {
    // The slot number stays unused (FLUSHALL and DBSIZE skip missing slots).
    kvDel(KEYBUF, markLen);
    return false;
  }
  remember(key, keyLen);
  return true;
}

/** The last key noted during this call (see noteKey); memoLen -1 when none. */
const MEMO_CAP: i32 = 256;
const MEMO = memory.data(MEMO_CAP);
let memoLen: i32 = -1;

function remember(key: usize, keyLen: i32): void {
  if (keyLen > MEMO_CAP) return;
  memory.copy(MEMO, key, <usize>keyLen);
  memoLen = keyLen;
}

/** Forgets the noted-key memo: at the start of every on_data call, and after FLUSHALL. */
export function forgetNotedKeys(): void {
  memoLen = -1;
}

/** Reads SLOT i's client key into KEYBUF after a MARK prefix; returns its
 *  length, or -1 when the slot is missing. */
function loadSlot(i: i64): i32 {
  const sl = slotKey(i);
  const n = kvGet(SMALL, sl, KEYBUF + <usize>PFX, KEY_CAP);
  if (n < 0 || n > KEY_CAP) return -1;
  prefix(KEYBUF, K_MARK);
  return n;
}

/** How often (in slots) FLUSHALL records its progress in FLOOR. */
const FLOOR_EVERY: i64 = 4096;

/** Deletes every indexed key (expired ones too) and its index entries.
 *  O(keys noted since the last FLUSHALL) host calls; not atomic (see the header). */
export function flushAll(): void {
  forgetNotedKeys();
  const n = readCounter(K_COUNT);
  const floor = readCounter(K_FLOOR);
  for (let i = floor + 1; i <= n; i++) {
    const kl = loadSlot(i);
    if (kl >= 0) {
      // MARK first: a writer that finds it gone afterwards notes the key anew.
      kvDel(KEYBUF, PFX + kl);
      kvDel(KEYBUF + <usize>PFX, kl);
      kvDel(SMALL, slotKey(i));
    }
    if (i % FLOOR_EVERY == 0) writeFloor(i);
  }
  if (n > floor) writeFloor(n);
}

/** Number of indexed keys that exist and have not expired. O(keys noted since
 *  the last FLUSHALL) host calls: acceptable for an admin command. */
export function dbSize(): i64 {
  const n = readCounter(K_COUNT);
  let count: i64 = 0;
  for (let i = readCounter(K_FLOOR) + 1; i <= n; i++) {
    const kl = loadSlot(i);
    if (kl >= 0 && live(KEYBUF + <usize>PFX, kl)) count++;
  }
  return count;
}
