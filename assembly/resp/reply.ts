// RESP2 reply encoding on top of Conn's write path. Replies are composed into
// small static buffers (or straight from the pool of literals) so that a reply
// is usually one Conn.write call.

import { Conn } from "tcpmod/assembly/sdk";
import { NUM, lit, litPtr, litLen, VAL_BUF } from "./limits";
import { formatI64 } from "./num";

export const R_OK = lit("+OK\r\n");
export const R_PONG = lit("+PONG\r\n");
export const R_NIL = lit("$-1\r\n");
export const R_EMPTY_ARRAY = lit("*0\r\n");
export const R_CRLF = lit("\r\n");
export const R_ZERO = lit(":0\r\n");
export const R_ONE = lit(":1\r\n");
export const E_NOT_INT = lit("-ERR value is not an integer or out of range\r\n");
export const E_OVERFLOW = lit("-ERR increment or decrement would overflow\r\n");
export const E_SYNTAX = lit("-ERR syntax error\r\n");
export const E_OOM = lit("-OOM command not allowed when used memory > 'maxmemory'.\r\n");
export const E_TOO_LARGE_READ = lit("-ERR stored value is larger than this server can read\r\n");
/** ABI v1.1: a store call answered KV_UNAVAILABLE (a remote store down or timed out). */
export const E_UNAVAILABLE = lit("-ERR store unavailable\r\n");

/** Writes a literal from the pool. */
@inline export function out(c: Conn, l: u64): void {
  c.write(litPtr(l), litLen(l));
}

/** `<prefix><n>\r\n`, e.g. `:42\r\n`, `*3\r\n`, `$5\r\n`. */
export function replyPrefixed(c: Conn, prefix: u8, n: i64): void {
  store<u8>(NUM, prefix);
  const k = formatI64(NUM + 1, n);
  store<u16>(NUM + 1 + <usize>k, 0x0A0D);
  c.write(NUM, k + 3);
}

@inline export function replyInt(c: Conn, n: i64): void { replyPrefixed(c, 0x3A, n); }
@inline export function replyArray(c: Conn, n: i64): void { replyPrefixed(c, 0x2A, n); }

/** A bulk string copied from anywhere. */
export function replyBulk(c: Conn, p: usize, len: i32): void {
  replyPrefixed(c, 0x24, len);
  c.write(p, len);
  out(c, R_CRLF);
}

/** A bulk string whose bytes are in the value buffer (VAL..): the header goes
 *  in the head room right before them and CRLF in the spare bytes after, so the
 *  whole reply is a single write. Only for pointers inside the value buffer. */
export function replyBulkInPlace(c: Conn, p: usize, len: i32): void {
  // Format the length into NUM first to learn its width.
  const k = formatI64(NUM, len);
  const start = p - <usize>(k + 3);
  if (start < VAL_BUF) {
    replyBulk(c, p, len);
    return;
  }
  store<u8>(start, 0x24);
  memory.copy(start + 1, NUM, <usize>k);
  store<u16>(p - 2, 0x0A0D);
  store<u16>(p + <usize>len, 0x0A0D);
  c.write(start, k + 3 + len + 2);
}

/** A bulk string holding an ASCII string constant. */
export function replyBulkStr(c: Conn, s: string): void {
  replyPrefixed(c, 0x24, s.length);
  c.writeString(s);
  out(c, R_CRLF);
}

/** A bulk string holding a decimal integer. */
export function replyBulkInt(c: Conn, n: i64): void {
  const k = formatI64(NUM + 32, n);
  replyBulk(c, NUM + 32, k);
}

/** `+<s>\r\n` for an ASCII constant. */
export function replyStatus(c: Conn, s: string): void {
  c.writeByte(0x2B);
  c.writeString(s);
  out(c, R_CRLF);
}

/** `-<s>\r\n` for an ASCII constant (s starts with the error code, e.g. "ERR ..."). */
export function replyError(c: Conn, s: string): void {
  c.writeByte(0x2D);
  c.writeString(s);
  out(c, R_CRLF);
}

/** Writes `len` bytes of untrusted text inside an error message the way Redis
 *  does: stopping at a NUL (it formats with %s) and turning CR/LF into spaces so
 *  the error stays one line. At most `max` bytes; returns how many were written. */
export function writeErrorText(c: Conn, p: usize, len: i32, max: i32): i32 {
  let n = 0;
  while (n < len && n < max) {
    let b = load<u8>(p + <usize>n);
    if (b == 0) break;
    if (b == 0x0D || b == 0x0A) b = 0x20;
    c.writeByte(b);
    n++;
  }
  return n;
}
