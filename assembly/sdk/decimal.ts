// 64-bit integers as decimal ASCII, written straight into memory and read back
// from it (no strings, no allocation): for replies such as Content-Length or RESP
// integers, and for request fields such as memcached flags, CAS values and counters,
// which are unsigned 64-bit.

/** Bytes formatU64(u) writes: its digits, 1 to 20. */
export function decimalLengthU64(u: u64): i32 {
  let digits = 1;
  for (; u >= 10; u /= 10) digits++;
  return digits;
}

/** Bytes formatI64(n) writes: the digits, plus one for a '-' when n < 0. */
export function decimalLength(n: i64): i32 {
  // Negating i64.MIN_VALUE wraps to itself, whose u64 reading is the right magnitude.
  return decimalLengthU64(n < 0 ? <u64>(-n) : <u64>n) + (n < 0 ? 1 : 0);
}

/** Writes u in decimal at dst; returns decimalLengthU64(u), at most 20. */
export function formatU64(dst: usize, u: u64): i32 {
  const len = decimalLengthU64(u);
  let e = dst + <usize>len;
  do {
    store<u8>(--e, <u8>(0x30 + <u32>(u % 10)));
    u /= 10;
  } while (u != 0);
  return len;
}

/** Writes n in decimal at dst; returns decimalLength(n), at most 20. */
export function formatI64(dst: usize, n: i64): i32 {
  if (n >= 0) return formatU64(dst, <u64>n);
  store<u8>(dst, 0x2D);
  return 1 + formatU64(dst + 1, <u64>(-n));
}

/** parseU64/parseI64: no digit where a number should start. */
export const PARSE_NONE: i32 = 0;
/** parseU64/parseI64: the digits name a number past the type's range (nothing is stored). */
export const PARSE_OVERFLOW: i32 = -1;

/**
 * Reads the decimal digits at the start of the `len` bytes at `src` as a u64 and
 * stores it at `out` (8 bytes, any alignment). Returns how many bytes it read (> 0;
 * it stops at the first byte that is not a digit, so "12 " reads 2), PARSE_NONE
 * when the first byte is not a digit (a sign included), or PARSE_OVERFLOW when the
 * digits exceed 18446744073709551615 (2^64-1). Leading zeros are accepted.
 * Nothing is stored unless the result is > 0.
 */
export function parseU64(src: usize, len: i32, out: usize): i32 {
  let v: u64 = 0;
  let i = 0;
  for (; i < len; i++) {
    const d = <u32>load<u8>(src + <usize>i) - 0x30;
    if (d > 9) break;
    // v * 10 + d <= 2^64-1  <=>  v < 1844674407370955161, or v == that and d <= 5.
    if (v > 1844674407370955161 || (v == 1844674407370955161 && d > 5)) return PARSE_OVERFLOW;
    v = v * 10 + <u64>d;
  }
  if (i == 0) return PARSE_NONE;
  store<u64>(out, v);
  return i;
}

// parseI64 reads the magnitude here first, so `out` is left alone when it is out of range.
const MAGNITUDE = memory.data(8, 8);

/**
 * As parseU64 for an i64 with an optional leading '-': the range is
 * -9223372036854775808 to 9223372036854775807. A lone '-' is PARSE_NONE; the
 * count includes the sign.
 */
export function parseI64(src: usize, len: i32, out: usize): i32 {
  const neg = len > 0 && load<u8>(src) == 0x2D;
  const skip = neg ? 1 : 0;
  const n = parseU64(src + <usize>skip, len - skip, MAGNITUDE);
  if (n <= 0) return n;
  const u = load<u64>(MAGNITUDE);
  if (u > (neg ? <u64>0x8000000000000000 : <u64>0x7FFFFFFFFFFFFFFF)) return PARSE_OVERFLOW;
  store<i64>(out, neg ? -<i64>u : <i64>u);
  return n + skip;
}
