// Decimal integers as Redis reads and writes them.

/** Value of the last successful parseI64. */
export let parsed: i64 = 0;

/** Parses exactly the bytes [p, p+len) as a signed 64-bit decimal with Redis'
 *  rules for integer arguments and stored counters: an optional '-', then
 *  digits, no '+', no spaces, no leading zeros (only "0" itself), at most 20
 *  bytes, inside i64. On success sets `parsed` and returns true. */
export function parseI64(p: usize, len: i32): bool {
  if (len <= 0 || len > 20) return false;
  let i = 0;
  const neg = load<u8>(p) == 0x2D;
  if (neg) {
    i = 1;
    if (len == 1) return false;
  }
  const first = load<u8>(p + <usize>i);
  if (first == 0x30) {
    // "0" alone is fine; "-0" and "01" are not.
    if (len == 1) { parsed = 0; return true; }
    return false;
  }
  let v: u64 = 0;
  for (; i < len; i++) {
    const d = <u32>load<u8>(p + <usize>i) - 0x30;
    if (d > 9) return false;
    // v * 10 + d must stay within 2^63 (the magnitude of i64.MIN_VALUE).
    if (v > 922337203685477580 || (v == 922337203685477580 && d > 8)) return false;
    v = v * 10 + <u64>d;
  }
  if (neg) {
    parsed = v == 0x8000000000000000 ? i64.MIN_VALUE : -<i64>v;
  } else {
    if (v > <u64>i64.MAX_VALUE) return false;
    parsed = <i64>v;
  }
  return true;
}

export { formatI64 } from "tcpmod/assembly/sdk";
