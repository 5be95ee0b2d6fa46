// SCAN and KEYS over the store's own listing (kv_scan): no index of our own,
// so they see every key in the store, whoever wrote it. A pattern's literal
// start (the bytes before its first special character) is the listing's
// prefix, so the store only walks the keys that can match; the rest of the
// pattern is matched here, byte for byte and case-sensitive, as Redis does.

import { Conn } from "tcpmod/assembly/sdk";
import { argPtr, argLen, VAL, VAL_CAP } from "./limits";
import { parseI64, parsed, formatI64 } from "./num";
import { argIs, bytesEqualIgnoreCase } from "./args";
import { out, replyArray, replyBulk, replyError, E_SYNTAX, E_NOT_INT, R_EMPTY_ARRAY } from "./reply";
import { argCount } from "./strings";
import { scanStep, scanNext, SCAN_OUT, WALK_STEP } from "./store";

/** The cursor's digits (NUM is where replies format their lengths). */
const CURSOR: usize = memory.data(24, 8);

/** Does [s, s+slen) match the glob [p, p+plen)? `*` any run, `?` any byte,
 *  `[abc]` `[a-z]` `[^...]` sets, `\` takes the next byte literally. Iterative
 *  with one backtrack point (the last `*`): linear-ish, never deep. */
export function matchBytes(p: usize, plen: i32, s: usize, slen: i32): bool {
  let pi = 0, si = 0, starP = -1, starS = 0;
  while (si < slen) {
    if (pi < plen) {
      const pc = <i32>load<u8>(p + <usize>pi);
      const sc = <i32>load<u8>(s + <usize>si);
      if (pc == 0x2A) { // '*'
        starP = pi++;
        starS = si;
        continue;
      }
      if (pc == 0x3F) { pi++; si++; continue; } // '?'
      if (pc == 0x5B) { // '['
        let i = pi + 1;
        const neg = i < plen && load<u8>(p + <usize>i) == 0x5E; // '^'
        if (neg) i++;
        let hit = false;
        while (i < plen && load<u8>(p + <usize>i) != 0x5D) { // ']'
          let lo = <i32>load<u8>(p + <usize>i);
          if (lo == 0x5C && i + 1 < plen) lo = <i32>load<u8>(p + <usize>(++i));
          let hi = lo;
          if (i + 2 < plen && load<u8>(p + <usize>(i + 1)) == 0x2D && load<u8>(p + <usize>(i + 2)) != 0x5D) { // a-z
            hi = <i32>load<u8>(p + <usize>(i + 2));
            i += 2;
            if (lo > hi) { const t = lo; lo = hi; hi = t; }
          }
          if (sc >= lo && sc <= hi) hit = true;
          i++;
        }
        if (hit != neg) { pi = i < plen ? i + 1 : i; si++; continue; }
      } else {
        let lit = pc;
        let next = pi + 1;
        if (pc == 0x5C && pi + 1 < plen) { lit = <i32>load<u8>(p + <usize>(pi + 1)); next = pi + 2; } // '\'
        if (lit == sc) { pi = next; si++; continue; }
      }
    }
    if (starP < 0) return false;
    pi = starP + 1;
    si = ++starS;
  }
  while (pi < plen && load<u8>(p + <usize>pi) == 0x2A) pi++;
  return pi == plen;
}

/** How many leading bytes of the pattern are literal (the listing's prefix). */
function literalPrefix(p: usize, plen: i32): i32 {
  for (let i = 0; i < plen; i++) {
    const b = load<u8>(p + <usize>i);
    if (b == 0x2A || b == 0x3F || b == 0x5B || b == 0x5C) return i;
  }
  return plen;
}

/**
 * Replies the keys of one listing step's records (at SCAN_OUT) that match the
 * pattern, as an array; the array's length is counted in a first pass, so
 * nothing is copied twice.
 */
function replyMatches(c: Conn, records: i32, pat: usize, patLen: i32, all: bool): void {
  let matched = 0;
  let at = SCAN_OUT;
  for (let i = 0; i < records; i++) {
    const n = load<u32>(at);
    if (all || matchBytes(pat, patLen, at + 4, <i32>n)) matched++;
    at += 4 + <usize>n;
  }
  replyArray(c, matched);
  at = SCAN_OUT;
  for (let i = 0; i < records; i++) {
    const n = load<u32>(at);
    if (all || matchBytes(pat, patLen, at + 4, <i32>n)) replyBulk(c, at + 4, <i32>n);
    at += 4 + <usize>n;
  }
}

/** SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]: the store's cursor
 *  as Redis' (0 starts and ends), every value a string. */
export function cmdScan(c: Conn): i32 {
  if (!parseI64(argPtr(1), argLen(1)) || parsed < 0) {
    replyError(c, "ERR invalid cursor");
    return 0;
  }
  const cursor = parsed;
  let pat: usize = 0;
  let patLen = -1;
  let count = 10;
  let stringsOnly = true;
  for (let j = 2; j < argCount; j += 2) {
    if (j + 1 >= argCount) { out(c, E_SYNTAX); return 0; }
    if (argIs(j, "match")) {
      pat = argPtr(j + 1);
      patLen = argLen(j + 1);
    } else if (argIs(j, "count")) {
      if (!parseI64(argPtr(j + 1), argLen(j + 1))) { out(c, E_NOT_INT); return 0; }
      if (parsed < 1) { out(c, E_SYNTAX); return 0; }
      count = parsed > 100000 ? 100000 : <i32>parsed;
    } else if (argIs(j, "type")) {
      stringsOnly = bytesEqualIgnoreCase(argPtr(j + 1), argLen(j + 1), "string");
    } else {
      out(c, E_SYNTAX);
      return 0;
    }
  }
  const all = patLen < 0 || (patLen == 1 && load<u8>(pat) == 0x2A);
  const records = scanStep(pat, all ? 0 : literalPrefix(pat, patLen), cursor, count);
  if (records < 0) {
    if (records == -4) replyError(c, "ERR invalid cursor");
    else replyError(c, "ERR the store could not list its keys");
    return 0;
  }
  replyArray(c, 2);
  replyBulk(c, CURSOR, formatI64(CURSOR, scanNext));
  if (!stringsOnly) out(c, R_EMPTY_ARRAY);
  else replyMatches(c, records, pat, patLen, all);
  return 0;
}

/** KEYS pattern: every matching key, collected over the whole listing first
 *  (the reply's length comes first) into the value buffer. */
export function cmdKeys(c: Conn): i32 {
  const pat = argPtr(1);
  const patLen = argLen(1);
  const all = patLen == 1 && load<u8>(pat) == 0x2A;
  const prefixLen = all ? 0 : literalPrefix(pat, patLen);
  let used = 0;
  let matched = 0;
  let cursor: i64 = 0;
  do {
    const records = scanStep(pat, prefixLen, cursor, WALK_STEP);
    if (records < 0) {
      replyError(c, "ERR the store could not list its keys");
      return 0;
    }
    let at = SCAN_OUT;
    for (let i = 0; i < records; i++) {
      const n = <i32>load<u32>(at);
      if (all || matchBytes(pat, patLen, at + 4, n)) {
        if (used + 4 + n > VAL_CAP) {
          replyError(c, "ERR too many keys for one reply; use SCAN");
          return 0;
        }
        memory.copy(VAL + <usize>used, at, <usize>(4 + n));
        used += 4 + n;
        matched++;
      }
      at += 4 + <usize>n;
    }
    cursor = scanNext;
  } while (cursor != 0);
  replyArray(c, matched);
  let at = VAL;
  for (let i = 0; i < matched; i++) {
    const n = <i32>load<u32>(at);
    replyBulk(c, at + 4, n);
    at += 4 + <usize>n;
  }
  return 0;
}
