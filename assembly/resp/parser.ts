// Request parser: RESP2 multibulk (`*N\r\n$len\r\narg\r\n...`) and inline
// commands (one line of space-separated, optionally quoted words).
//
// Contract: parse(base, pos, end) looks at the input bytes [pos, end) and
// returns NEED (the command at pos is not complete yet: consume nothing and
// wait), DONE (one command: its arguments are in the argument table, `argc` of
// them, pointing into the input; `next` is the offset just past it) or BAD
// (malformed: `errCode` says why; the connection must be answered and closed).
// It never allocates. Decisions depend only on the bytes, so the outcome is
// the same however the stream is split into reads. Inline arguments with
// escapes are decoded in place, which only ever shortens them and only touches
// the bytes of the complete line being returned.

import { IN_CAP, MAX_ARGS, LINE_MAX, MAX_BULK, setArg } from "./limits";
import { parseI64, parsed } from "./num";

export const NEED: i32 = 0;
export const DONE: i32 = 1;
export const BAD: i32 = 2;

// Why a request was BAD.
export const ERR_MBULK_LEN: i32 = 1;     // invalid multibulk length
export const ERR_BULK_LEN: i32 = 2;      // invalid bulk length
export const ERR_EXPECTED_DOLLAR: i32 = 3; // expected '$', got `errByte`
export const ERR_MBULK_LINE: i32 = 4;    // too big mbulk count string
export const ERR_BULK_LINE: i32 = 5;     // too big bulk count string
export const ERR_INLINE_BIG: i32 = 6;    // too big inline request
export const ERR_QUOTES: i32 = 7;        // unbalanced quotes in request
export const ERR_TOO_BIG: i32 = 8;       // the command cannot fit in IN_CAP
export const ERR_CRLF: i32 = 9;          // a line or bulk not ended by CRLF
export const ERR_TOO_MANY: i32 = 10;     // more inline words than MAX_ARGS

export let argc: i32 = 0;
/** After NEED inside a bulk string's payload: how many bytes from the command's start it needs at least (else 0). */
export let needAtLeast: i32 = 0;
export let next: i32 = 0;
export let errCode: i32 = 0;
export let errByte: u8 = 0;

const CR: u8 = 0x0D;
const LF: u8 = 0x0A;

export function parse(base: usize, pos: i32, end: i32): i32 {
  needAtLeast = 0;
  if (load<u8>(base + <usize>pos) == 0x2A) return parseMultibulk(base, pos, end);
  return parseInline(base, pos, end);
}

function bad(code: i32): i32 {
  errCode = code;
  return BAD;
}

/** Offset of the first CR at or after `from`, -1 if none yet (wait for more),
 *  -2 if none within LINE_MAX bytes (give up). */
function findCR(base: usize, from: i32, end: i32): i32 {
  for (let i = from; i < end; i++) {
    if (load<u8>(base + <usize>i) == CR) return i;
  }
  return end - from > LINE_MAX ? -2 : -1;
}

function parseMultibulk(base: usize, pos: i32, end: i32): i32 {
  let cr = findCR(base, pos + 1, end);
  if (cr == -2) return bad(ERR_MBULK_LINE);
  if (cr < 0 || cr + 1 >= end) return NEED;
  if (load<u8>(base + <usize>(cr + 1)) != LF) return bad(ERR_CRLF);
  if (!parseI64(base + <usize>(pos + 1), cr - pos - 1) || parsed > <i64>MAX_ARGS) return bad(ERR_MBULK_LEN);
  let p = cr + 2;
  if (parsed <= 0) {
    // Redis skips empty multibulks without a reply.
    argc = 0;
    next = p;
    return DONE;
  }
  const n = <i32>parsed;
  for (let i = 0; i < n; i++) {
    if (p >= end) return NEED;
    const b = load<u8>(base + <usize>p);
    if (b != 0x24) {
      errByte = b;
      return bad(ERR_EXPECTED_DOLLAR);
    }
    cr = findCR(base, p + 1, end);
    if (cr == -2) return bad(ERR_BULK_LINE);
    if (cr < 0 || cr + 1 >= end) return NEED;
    if (load<u8>(base + <usize>(cr + 1)) != LF) return bad(ERR_CRLF);
    if (!parseI64(base + <usize>(p + 1), cr - p - 1) || parsed < 0 || parsed > MAX_BULK) return bad(ERR_BULK_LEN);
    const len = <i32>parsed;
    const start = cr + 2;
    // Everything of this command so far plus this argument and its CRLF must
    // fit the input region, or the host could never deliver it whole.
    if (<i64>(start - pos) + <i64>len + 2 > <i64>IN_CAP) return bad(ERR_TOO_BIG);
    const stop = start + len;
    if (stop + 2 > end) {
      needAtLeast = stop + 2 - pos;
      return NEED;
    }
    if (load<u8>(base + <usize>stop) != CR || load<u8>(base + <usize>(stop + 1)) != LF) return bad(ERR_CRLF);
    setArg(i, base + <usize>start, len);
    p = stop + 2;
  }
  argc = n;
  next = p;
  return DONE;
}

// ---- inline -----------------------------------------------------------------

/** C isspace(): space, \t, \n, \v, \f, \r. */
@inline function isSpace(b: u8): bool {
  return b == 0x20 || (b >= 0x09 && b <= 0x0D);
}

@inline function hexVal(b: u8): i32 {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  const l = b | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}

function parseInline(base: usize, pos: i32, end: i32): i32 {
  let nl = -1;
  for (let i = pos; i < end; i++) {
    if (load<u8>(base + <usize>i) == LF) { nl = i; break; }
  }
  if (nl < 0) return end - pos > LINE_MAX ? bad(ERR_INLINE_BIG) : NEED;
  let stop = nl;
  if (stop > pos && load<u8>(base + <usize>(stop - 1)) == CR) stop--;
  next = nl + 1;
  return splitWords(base, pos, stop);
}

/** Splits the line [pos, stop) into words as Redis' inline protocol does:
 *  words are separated by blanks; "double quotes" take \n \r \t \b \a \\ \"
 *  and \xHH escapes, 'single quotes' take \'; a closing quote must be followed
 *  by a blank or the end of the line; a NUL byte ends the line (Redis reads
 *  the line as a C string). Decoded bytes are written back in place. */
function splitWords(base: usize, pos: i32, stop: i32): i32 {
  // Treat a NUL as the end of the line.
  for (let i = pos; i < stop; i++) {
    if (load<u8>(base + <usize>i) == 0) { stop = i; break; }
  }
  let p = pos;
  let n = 0;
  for (;;) {
    while (p < stop && isSpace(load<u8>(base + <usize>p))) p++;
    if (p >= stop) break;
    if (n == MAX_ARGS) return bad(ERR_TOO_MANY);
    const w0 = base + <usize>p; // decoded bytes go here; never ahead of the reader
    let w = w0;
    let inDouble = false;
    let inSingle = false;
    for (;;) {
      if (inDouble) {
        if (p >= stop) return bad(ERR_QUOTES);
        const b = load<u8>(base + <usize>p);
        if (b == 0x5C && p + 3 < stop && load<u8>(base + <usize>(p + 1)) == 0x78 &&
            hexVal(load<u8>(base + <usize>(p + 2))) >= 0 && hexVal(load<u8>(base + <usize>(p + 3))) >= 0) {
          store<u8>(w++, <u8>(hexVal(load<u8>(base + <usize>(p + 2))) * 16 + hexVal(load<u8>(base + <usize>(p + 3)))));
          p += 4;
        } else if (b == 0x5C && p + 1 < stop) {
          let e = load<u8>(base + <usize>(p + 1));
          if (e == 0x6E) e = 0x0A;        // \n
          else if (e == 0x72) e = 0x0D;   // \r
          else if (e == 0x74) e = 0x09;   // \t
          else if (e == 0x62) e = 0x08;   // \b
          else if (e == 0x61) e = 0x07;   // \a
          store<u8>(w++, e);
          p += 2;
        } else if (b == 0x22) {
          if (p + 1 < stop && !isSpace(load<u8>(base + <usize>(p + 1)))) return bad(ERR_QUOTES);
          p++;
          break;
        } else {
          store<u8>(w++, b);
          p++;
        }
      } else if (inSingle) {
        if (p >= stop) return bad(ERR_QUOTES);
        const b = load<u8>(base + <usize>p);
        if (b == 0x5C && p + 1 < stop && load<u8>(base + <usize>(p + 1)) == 0x27) {
          store<u8>(w++, 0x27);
          p += 2;
        } else if (b == 0x27) {
          if (p + 1 < stop && !isSpace(load<u8>(base + <usize>(p + 1)))) return bad(ERR_QUOTES);
          p++;
          break;
        } else {
          store<u8>(w++, b);
          p++;
        }
      } else {
        if (p >= stop) break;
        const b = load<u8>(base + <usize>p);
        if (b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09) break;
        if (b == 0x22) inDouble = true;
        else if (b == 0x27) inSingle = true;
        else store<u8>(w++, b);
        p++;
      }
    }
    setArg(n, w0, <i32>(w - w0));
    n++;
  }
  argc = n;
  return DONE;
}
