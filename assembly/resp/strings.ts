// String and key commands over the shared store: GET SET SETNX GETSET GETDEL
// DEL EXISTS INCR DECR INCRBY DECRBY MGET MSET STRLEN APPEND TTL PTTL EXPIRE
// PEXPIRE PERSIST. Each handler runs with its arity already checked and
// returns 0 (carry on) — none of them closes the connection. Each maps to the
// store's own calls (ABI v1.2: conditions, TTLs, atomic append and increment),
// so what Redis does atomically is atomic here too, across connections,
// workers and (on --kv redis://) processes. Store calls go through store.ts
// (kvGet...), which notes a store that is unavailable; the handlers need not
// check: dispatch answers such a command with an error.

import { Conn, KV_NX, KV_XX, KV_GT, KV_LT, KV_KEEPTTL, KV_EXISTS, KV_NOT_INTEGER, KV_TTL_MAX } from "tcpmod/assembly/sdk";
import { argPtr, argLen, MAX_VALUE, NUM, VAL, VAL_CAP } from "./limits";
import { parseI64, parsed } from "./num";
import { argIs } from "./args";
import {
  out, replyInt, replyArray, replyBulkInPlace, replyError,
  R_OK, R_NIL, R_ZERO, R_ONE, E_NOT_INT, E_OVERFLOW, E_SYNTAX, E_OOM, E_TOO_LARGE_READ,
} from "./reply";
import {
  read, now, kvGet, kvSet, kvDel, kvGetVer, kvGetDel, kvSetEx, kvCas, kvExpire, kvExpireEx, kvPersist, kvTtl, kvAppend, kvIncrEx,
  valPtr, valLen, MISSING, UNREADABLE, SEND_DIRECT_OVER, sendValue,
} from "./store";

/** Number of arguments of the command being executed (set by the dispatcher). */
export let argCount: i32 = 0;
export function setArgCount(n: i32): void { argCount = n; }

// kv_incr_ex and kv_ttl write their i64 result here; kv_get_ver its version at +8.
const I64_OUT: usize = NUM;
const VERSION: usize = NUM + 8;

export function cmdGet(c: Conn): i32 {
  // Small values are read here and answered with the other replies; larger ones (any size) go from the store to the client.
  let n = kvGet(argPtr(1), argLen(1), VAL, SEND_DIRECT_OVER);
  if (n < 0) n = MISSING; // unavailable too: noted, the command has failed (as read())
  else if (n <= SEND_DIRECT_OVER) replyBulkInPlace(c, VAL, n);
  else n = sendValue(c, argPtr(1), argLen(1));
  if (n == MISSING) out(c, R_NIL);
  else if (n == UNREADABLE) out(c, E_TOO_LARGE_READ);
  return 0;
}

/** How many times SET ... GET retries when another writer changes the key
 *  between its read and its compare-and-set. */
const CAS_TRIES: i32 = 100;

/**
 * Stores argument 2 at argument 1 with kv_set_ex's flags and TTL (ms, 0 none),
 * replying as SET does: +OK, nil when NX/XX refused, or with `get` the old
 * value (nil when there was none). `gone`: the expiry is already past, so the
 * key ends up absent (as Redis does). With `get` it is a compare-and-set on
 * the version just read, so the value replied is exactly the one replaced.
 */
function setAndReply(c: Conn, flags: i32, ttl: i64, get: bool, gone: bool): void {
  const key = argPtr(1);
  const keyLen = argLen(1);
  const v = argPtr(2);
  const vLen = argLen(2);
  if (!get) {
    const rc = kvSetEx(key, keyLen, v, vLen, flags, ttl);
    if (rc == 0) {
      if (gone) kvDel(key, keyLen);
      out(c, R_OK);
    } else if (rc == MISSING || rc == KV_EXISTS) out(c, R_NIL);
    else out(c, E_OOM);
    return;
  }
  for (let attempt = 0; attempt < CAS_TRIES; attempt++) {
    const n = kvGetVer(key, keyLen, VAL, VAL_CAP, VERSION);
    if (n > VAL_CAP) { out(c, E_TOO_LARGE_READ); return; }
    let rc: i32;
    if (n < 0) {
      if (flags & KV_XX || n != MISSING) { out(c, R_NIL); return; }
      rc = kvSetEx(key, keyLen, v, vLen, flags | KV_NX, ttl);  // only if still absent
    } else {
      if (flags & KV_NX) { replyBulkInPlace(c, VAL, n); return; }
      rc = kvCas(key, keyLen, v, vLen, flags & KV_KEEPTTL, ttl, load<u64>(VERSION));
    }
    if (rc == KV_EXISTS || (rc == MISSING && n >= 0)) continue;  // changed meanwhile: read again
    if (rc != 0) { out(c, E_OOM); return; }
    if (gone) kvDel(key, keyLen);
    if (n >= 0) replyBulkInPlace(c, VAL, n);
    else out(c, R_NIL);
    return;
  }
  replyError(c, "ERR the key kept changing; try again");
}

// SET option flags.
const F_NX: i32 = 1;
const F_XX: i32 = 2;
const F_GET: i32 = 4;
const F_KEEPTTL: i32 = 8;
const F_EX: i32 = 16;
const F_PX: i32 = 32;
const F_EXAT: i32 = 64;
const F_PXAT: i32 = 128;
const F_EXPIRE: i32 = F_EX | F_PX | F_EXAT | F_PXAT;

/** Set by expiryArg when it replied an error. */
let expiryBad = false;

/** An expiry argument in ms from now (seconds: EX/EXAT; at: a Unix time); sets
 *  expiryBad (after replying the error) when it is not a positive integer Redis would take. */
function expiryArg(c: Conn, i: i32, seconds: bool, at: bool, cmd: string): i64 {
  expiryBad = true;
  if (!parseI64(argPtr(i), argLen(i))) {
    out(c, E_NOT_INT);
    return 0;
  }
  let ms = parsed;
  if (ms <= 0 || (seconds && ms > i64.MAX_VALUE / 1000)) {
    invalidExpire(c, cmd);
    return 0;
  }
  expiryBad = false;
  if (seconds) ms *= 1000;
  const t = now();
  if (at) ms -= t;
  else if (ms > i64.MAX_VALUE - t) {
    // As Redis: the deadline it would make does not fit.
    expiryBad = true;
    invalidExpire(c, cmd);
    return 0;
  }
  return ms;
}

function invalidExpire(c: Conn, cmd: string): void {
  if (cmd == "set") replyError(c, "ERR invalid expire time in 'set' command");
  else if (cmd == "expire") replyError(c, "ERR invalid expire time in 'expire' command");
  else replyError(c, "ERR invalid expire time in 'pexpire' command");
}

export function cmdSet(c: Conn): i32 {
  const argc = argCount;
  if (argc == 3) {
    // The plain form: one host call, straight from the input region.
    out(c, kvSet(argPtr(1), argLen(1), argPtr(2), argLen(2)) == 0 ? R_OK : E_OOM);
    return 0;
  }
  // Options, with the same compatibility rules Redis applies: NX/XX exclude
  // each other, one kind of expiry at most (repeating the same one is fine,
  // the last value wins), KEEPTTL excludes any expiry.
  let flags = 0;
  let expArg = -1;
  for (let j = 3; j < argc; j++) {
    const hasNext = j + 1 < argc;
    if (argIs(j, "nx") && !(flags & F_XX)) flags |= F_NX;
    else if (argIs(j, "xx") && !(flags & F_NX)) flags |= F_XX;
    else if (argIs(j, "get")) flags |= F_GET;
    else if (argIs(j, "keepttl") && !(flags & F_EXPIRE)) flags |= F_KEEPTTL;
    else if (argIs(j, "ex") && !(flags & (F_KEEPTTL | F_EXPIRE & ~F_EX)) && hasNext) { flags |= F_EX; expArg = ++j; }
    else if (argIs(j, "px") && !(flags & (F_KEEPTTL | F_EXPIRE & ~F_PX)) && hasNext) { flags |= F_PX; expArg = ++j; }
    else if (argIs(j, "exat") && !(flags & (F_KEEPTTL | F_EXPIRE & ~F_EXAT)) && hasNext) { flags |= F_EXAT; expArg = ++j; }
    else if (argIs(j, "pxat") && !(flags & (F_KEEPTTL | F_EXPIRE & ~F_PXAT)) && hasNext) { flags |= F_PXAT; expArg = ++j; }
    else {
      out(c, E_SYNTAX);
      return 0;
    }
  }
  let ttl: i64 = 0;
  let gone = false;
  if (expArg >= 0) {
    ttl = expiryArg(c, expArg, (flags & (F_EX | F_EXAT)) != 0, (flags & (F_EXAT | F_PXAT)) != 0, "set");
    if (expiryBad) return 0;
    // Beyond the store's longest TTL (about 2,200 years) is as good as never: the longest.
    if (ttl > KV_TTL_MAX) ttl = KV_TTL_MAX;
    if (ttl <= 0) {
      // A Unix time already past: stored, then gone at once.
      ttl = 1;
      gone = true;
    }
  }
  let kf = 0;
  if (flags & F_NX) kf |= KV_NX;
  if (flags & F_XX) kf |= KV_XX;
  if (flags & F_KEEPTTL) kf |= KV_KEEPTTL;
  setAndReply(c, kf, ttl, (flags & F_GET) != 0, gone);
  return 0;
}

/** SETNX key value: 1 stored, 0 the key exists. */
export function cmdSetnx(c: Conn): i32 {
  const rc = kvSetEx(argPtr(1), argLen(1), argPtr(2), argLen(2), KV_NX, 0);
  if (rc == 0) out(c, R_ONE);
  else if (rc == KV_EXISTS) out(c, R_ZERO);
  else out(c, E_OOM);
  return 0;
}

/** GETSET key value: SET key value GET. */
export function cmdGetset(c: Conn): i32 {
  setAndReply(c, 0, 0, true, false);
  return 0;
}

/** GETDEL key: the value, and the key deleted; nil when absent. */
export function cmdGetdel(c: Conn): i32 {
  const n = kvGetDel(argPtr(1), argLen(1), VAL, VAL_CAP);
  if (n > VAL_CAP) out(c, E_TOO_LARGE_READ);
  else if (n >= 0) replyBulkInPlace(c, VAL, n);
  else out(c, R_NIL);
  return 0;
}

export function cmdDel(c: Conn): i32 {
  let n: i64 = 0;
  for (let i = 1; i < argCount; i++) {
    const rc = kvDel(argPtr(i), argLen(i));
    if (rc > 0) n += rc;
  }
  replyInt(c, n);
  return 0;
}

export function cmdExists(c: Conn): i32 {
  let n: i64 = 0;
  for (let i = 1; i < argCount; i++) {
    if (kvGet(argPtr(i), argLen(i), 0, 0) >= 0) n++;
  }
  replyInt(c, n);
  return 0;
}

/** Adds `delta` to the integer at `key` (kv_incr_ex: INCRBY's rules, the TTL
 *  kept) and replies the result or Redis' error for it. */
function incrBy(c: Conn, delta: i64): void {
  const key = argPtr(1);
  const keyLen = argLen(1);
  const rc = kvIncrEx(key, keyLen, delta, 0, I64_OUT);
  if (rc == 0) { replyInt(c, load<i64>(I64_OUT)); return; }
  if (rc != KV_NOT_INTEGER) { out(c, E_OOM); return; }
  // Not an integer, or the sum overflows: which one decides Redis' wording.
  const n = read(key, keyLen);
  out(c, n >= 0 && parseI64(valPtr, valLen) ? E_OVERFLOW : E_NOT_INT);
}

export function cmdIncr(c: Conn): i32 { incrBy(c, 1); return 0; }
export function cmdDecr(c: Conn): i32 { incrBy(c, -1); return 0; }

export function cmdIncrBy(c: Conn): i32 {
  if (!parseI64(argPtr(2), argLen(2))) out(c, E_NOT_INT);
  else incrBy(c, parsed);
  return 0;
}

export function cmdDecrBy(c: Conn): i32 {
  if (!parseI64(argPtr(2), argLen(2))) out(c, E_NOT_INT);
  else if (parsed == i64.MIN_VALUE) replyError(c, "ERR decrement would overflow");
  else incrBy(c, -parsed);
  return 0;
}

export function cmdMget(c: Conn): i32 {
  replyArray(c, argCount - 1);
  for (let i = 1; i < argCount; i++) {
    if (read(argPtr(i), argLen(i)) >= 0) replyBulkInPlace(c, valPtr, valLen);
    else out(c, R_NIL);
  }
  return 0;
}

export function cmdMset(c: Conn): i32 {
  if ((argCount & 1) == 0) {
    replyError(c, "ERR wrong number of arguments for 'mset' command");
    return 0;
  }
  for (let i = 1; i < argCount; i += 2) {
    if (kvSet(argPtr(i), argLen(i), argPtr(i + 1), argLen(i + 1)) != 0) {
      out(c, E_OOM);
      return 0;
    }
  }
  out(c, R_OK);
  return 0;
}

export function cmdStrlen(c: Conn): i32 {
  const n = kvGet(argPtr(1), argLen(1), 0, 0);  // the length, nothing copied
  if (n < 0) out(c, R_ZERO);
  else replyInt(c, n);
  return 0;
}

export function cmdAppend(c: Conn): i32 {
  const key = argPtr(1);
  const keyLen = argLen(1);
  const addLen = argLen(2);
  // Redis' limit on a string (this module's own: a value it can read back).
  const cur = kvGet(key, keyLen, 0, 0);
  if (cur > 0 && <i64>cur + <i64>addLen > <i64>MAX_VALUE) {
    replyError(c, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    return 0;
  }
  const n = kvAppend(key, keyLen, argPtr(2), addLen, 0);
  if (n >= 0) replyInt(c, n);
  else out(c, E_OOM);
  return 0;
}

function ttl(c: Conn, ms: bool): void {
  const rc = kvTtl(argPtr(1), argLen(1), I64_OUT);
  if (rc < 0) { replyInt(c, -2); return; }
  if (rc == 0) { replyInt(c, -1); return; }
  const left = load<i64>(I64_OUT);
  replyInt(c, ms ? left : (left + 500) / 1000);
}

export function cmdTtl(c: Conn): i32 { ttl(c, false); return 0; }
export function cmdPttl(c: Conn): i32 { ttl(c, true); return 0; }

/** EXPIRE / PEXPIRE key time [NX|XX|GT|LT ...]: 1 the TTL is set (a time <= 0
 *  deletes the key, as Redis does), 0 the key is absent or the condition did not
 *  hold (Redis 7: kv_expire_ex). The options are checked first, worded as Redis' errors. */
function expire(c: Conn, seconds: bool): void {
  let flags = 0;
  for (let j = 3; j < argCount; j++) {
    if (argIs(j, "nx")) flags |= KV_NX;
    else if (argIs(j, "xx")) flags |= KV_XX;
    else if (argIs(j, "gt")) flags |= KV_GT;
    else if (argIs(j, "lt")) flags |= KV_LT;
    else {
      c.writeString("-ERR Unsupported option ");
      c.write(argPtr(j), argLen(j));
      c.writeString("\r\n");
      return;
    }
  }
  if ((flags & KV_NX) && (flags & (KV_XX | KV_GT | KV_LT))) {
    replyError(c, "ERR NX and XX, GT or LT options at the same time are not compatible");
    return;
  }
  if ((flags & KV_GT) && (flags & KV_LT)) {
    replyError(c, "ERR GT and LT options at the same time are not compatible");
    return;
  }
  if (!parseI64(argPtr(2), argLen(2))) {
    out(c, E_NOT_INT);
    return;
  }
  let t = parsed;
  if (seconds && (t > i64.MAX_VALUE / 1000 || t < i64.MIN_VALUE / 1000)) {
    invalidExpire(c, "expire");
    return;
  }
  if (seconds) t *= 1000;
  if (t > KV_TTL_MAX) t = KV_TTL_MAX;  // about 2,200 years: as good as never
  // Without options kv_expire, which a store that predates kv_expire_ex has: 0 is "set" there.
  const rc = flags == 0 ? kvExpire(argPtr(1), argLen(1), t < 0 ? 0 : t) : kvExpireEx(argPtr(1), argLen(1), t < 0 ? 0 : t, flags);
  if (flags == 0 ? rc == 0 : rc == 1) out(c, R_ONE);
  else if (rc == MISSING || rc == 0) out(c, R_ZERO);
  else out(c, E_OOM);
}

export function cmdExpire(c: Conn): i32 { expire(c, true); return 0; }
export function cmdPexpire(c: Conn): i32 { expire(c, false); return 0; }

/** PERSIST key: 1 a TTL was removed, 0 none or absent. */
export function cmdPersist(c: Conn): i32 {
  out(c, kvPersist(argPtr(1), argLen(1)) == 1 ? R_ONE : R_ZERO);
  return 0;
}
