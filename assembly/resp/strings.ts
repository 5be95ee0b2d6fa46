// String commands over the shared store: GET SET DEL EXISTS INCR DECR INCRBY
// DECRBY MGET MSET STRLEN APPEND TTL PTTL. Each handler runs with its arity
// already checked (and its key arguments checked against the reserved prefix,
// see store.ts) and returns 0 (carry on) — none of them closes the connection.
// Every path that can create a key calls noteKey() right before storing it, so
// FLUSHALL and DBSIZE can find it (the key index, store.ts). Store calls go
// through store.ts (kvGet...), which notes a store that is unavailable; the
// handlers need not check: dispatch answers such a command with an error.

import { Conn } from "tcpmod/assembly/sdk";
import { argPtr, argLen, MAX_VALUE, NUM, VAL } from "./limits";
import { parseI64, parsed, formatI64 } from "./num";
import { argIs } from "./args";
import {
  out, replyInt, replyArray, replyBulkInPlace, replyError,
  R_OK, R_NIL, R_ZERO, E_NOT_INT, E_OVERFLOW, E_SYNTAX, E_OOM, E_TOO_LARGE_READ,
} from "./reply";
import { read, write, now, noteKey, kvSet, kvDel, kvIncr, valPtr, valLen, valDeadline, MISSING, UNREADABLE, TAG } from "./store";

/** Number of arguments of the command being executed (set by the dispatcher). */
export let argCount: i32 = 0;
export function setArgCount(n: i32): void { argCount = n; }

// kv_incr writes its i64 result here; digits for a re-encoded counter go at +16.
const INCR_OUT: usize = NUM;
const DIGITS: usize = NUM + 16;

export function cmdGet(c: Conn): i32 {
  const n = read(argPtr(1), argLen(1));
  if (n >= 0) replyBulkInPlace(c, valPtr, valLen);
  else if (n == MISSING) out(c, R_NIL);
  else out(c, E_TOO_LARGE_READ);
  return 0;
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

export function cmdSet(c: Conn): i32 {
  const key = argPtr(1);
  const keyLen = argLen(1);
  const v = argPtr(2);
  const vLen = argLen(2);
  const argc = argCount;
  if (argc == 3) {
    // The plain form: one host call (after the index check), straight from the input region.
    if (!noteKey(key, keyLen)) { out(c, E_OOM); return 0; }
    const rc = vLen == 0 || load<u8>(v) != TAG ? kvSet(key, keyLen, v, vLen) : write(key, keyLen, v, vLen, 0);
    out(c, rc == 0 ? R_OK : E_OOM);
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
  let deadline: i64 = 0;
  if (expArg >= 0) {
    if (!parseI64(argPtr(expArg), argLen(expArg))) {
      out(c, E_NOT_INT);
      return 0;
    }
    let ms = parsed;
    const seconds = (flags & (F_EX | F_EXAT)) != 0;
    if (ms <= 0 || (seconds && ms > i64.MAX_VALUE / 1000)) {
      replyError(c, "ERR invalid expire time in 'set' command");
      return 0;
    }
    if (seconds) ms *= 1000;
    if (flags & (F_EX | F_PX)) {
      const t = now();
      if (ms > i64.MAX_VALUE - t) {
        replyError(c, "ERR invalid expire time in 'set' command");
        return 0;
      }
      ms += t;
    }
    deadline = ms;
  }
  // The old value, when an option needs it (it stays in VAL for the GET reply).
  let old = MISSING;
  if (flags & (F_NX | F_XX | F_GET | F_KEEPTTL)) {
    old = read(key, keyLen);
    if (old == UNREADABLE) {
      out(c, E_TOO_LARGE_READ);
      return 0;
    }
  }
  const exists = old >= 0;
  if (((flags & F_NX) && exists) || ((flags & F_XX) && !exists)) {
    if ((flags & F_GET) && exists) replyBulkInPlace(c, valPtr, valLen);
    else out(c, R_NIL);
    return 0;
  }
  if ((flags & F_KEEPTTL) && exists) deadline = valDeadline;
  if (deadline != 0 && deadline <= now()) {
    // Already in the past: the key ends up absent, as Redis does.
    kvDel(key, keyLen);
  } else if (!noteKey(key, keyLen) || write(key, keyLen, v, vLen, deadline) != 0) {
    out(c, E_OOM);
    return 0;
  }
  if (flags & F_GET) {
    if (exists) replyBulkInPlace(c, valPtr, valLen);
    else out(c, R_NIL);
  } else {
    out(c, R_OK);
  }
  return 0;
}

export function cmdDel(c: Conn): i32 {
  let n: i64 = 0;
  for (let i = 1; i < argCount; i++) {
    const p = argPtr(i);
    const l = argLen(i);
    // Read first: a key that has expired counts as missing.
    if (read(p, l) != MISSING) n += kvDel(p, l);
  }
  replyInt(c, n);
  return 0;
}

export function cmdExists(c: Conn): i32 {
  let n: i64 = 0;
  for (let i = 1; i < argCount; i++) {
    if (read(argPtr(i), argLen(i)) != MISSING) n++;
  }
  replyInt(c, n);
  return 0;
}

/** Adds `delta` to the integer at `key` and replies the result (or the error). */
function incrBy(c: Conn, delta: i64): void {
  const key = argPtr(1);
  const keyLen = argLen(1);
  // kv_incr refuses a value that is not plain decimal text, a sum that would
  // overflow, and (the host folds it into the same -1) a full store; a refusal
  // is examined below. A key that vanishes in between is simply retried.
  if (!noteKey(key, keyLen)) {
    out(c, E_OOM);
    return;
  }
  for (let attempt = 0; attempt < 4; attempt++) {
    if (kvIncr(key, keyLen, delta, INCR_OUT) == 0) {
      replyInt(c, load<i64>(INCR_OUT));
      return;
    }
    const n = read(key, keyLen);
    if (n == MISSING) continue;
    if (n == UNREADABLE || !parseI64(valPtr, valLen) || (valDeadline == 0 && valPtr != VAL)) {
      out(c, E_NOT_INT);
      return;
    }
    const cur = parsed;
    if ((delta < 0 && cur < i64.MIN_VALUE - delta) || (delta > 0 && cur > i64.MAX_VALUE - delta)) {
      out(c, E_OVERFLOW);
      return;
    }
    if (valDeadline == 0) continue; // plain integer that kv_incr refused: store full, or it changed meanwhile
    // An integer with an expiry: rewrite it keeping the deadline.
    const next = cur + delta;
    if (write(key, keyLen, DIGITS, formatI64(DIGITS, next), valDeadline) != 0) {
      out(c, E_OOM);
      return;
    }
    replyInt(c, next);
    return;
  }
  out(c, E_OOM);
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
    if (!noteKey(argPtr(i), argLen(i)) || write(argPtr(i), argLen(i), argPtr(i + 1), argLen(i + 1), 0) != 0) {
      out(c, E_OOM);
      return 0;
    }
  }
  out(c, R_OK);
  return 0;
}

export function cmdStrlen(c: Conn): i32 {
  const n = read(argPtr(1), argLen(1));
  if (n == MISSING) out(c, R_ZERO);
  else replyInt(c, valLen);
  return 0;
}

export function cmdAppend(c: Conn): i32 {
  const key = argPtr(1);
  const keyLen = argLen(1);
  const add = argPtr(2);
  const addLen = argLen(2);
  const n = read(key, keyLen);
  if (n == UNREADABLE) {
    out(c, E_TOO_LARGE_READ);
    return 0;
  }
  // noteKey reads nothing into VAL, so the old value read above stays intact.
  if (!noteKey(key, keyLen)) {
    out(c, E_OOM);
    return 0;
  }
  if (n == MISSING || (n == 0 && valPtr == VAL && valDeadline == 0)) {
    // Nothing (or a plain empty string) before: the result is just the new bytes.
    if (write(key, keyLen, add, addLen, 0) != 0) out(c, E_OOM);
    else replyInt(c, addLen);
    return 0;
  }
  const total = <i64>valLen + <i64>addLen;
  if (total > <i64>MAX_VALUE) {
    replyError(c, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    return 0;
  }
  // The stored form in VAL (any header, then the value) stays valid with the
  // new bytes after it, so store it as it is.
  memory.copy(valPtr + <usize>valLen, add, <usize>addLen);
  const stored = <i32>(valPtr - VAL) + valLen + addLen;
  if (kvSet(key, keyLen, VAL, stored) != 0) out(c, E_OOM);
  else replyInt(c, total);
  return 0;
}

function ttl(c: Conn, ms: bool): void {
  const n = read(argPtr(1), argLen(1));
  if (n == MISSING) { replyInt(c, -2); return; }
  if (n == UNREADABLE || valDeadline == 0) { replyInt(c, -1); return; }
  let left = valDeadline - now();
  if (left < 0) left = 0;
  replyInt(c, ms ? left : (left + 500) / 1000);
}

export function cmdTtl(c: Conn): i32 { ttl(c, false); return 0; }
export function cmdPttl(c: Conn): i32 { ttl(c, true); return 0; }
