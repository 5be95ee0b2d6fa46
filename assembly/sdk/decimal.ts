// Signed 64-bit integers as decimal ASCII, written straight into memory (no
// strings, no allocation): for replies such as Content-Length or RESP integers.

/** Bytes formatI64(n) writes: the digits, plus one for a '-' when n < 0. */
export function decimalLength(n: i64): i32 {
  // Negating i64.MIN_VALUE wraps to itself, whose u64 reading is the right magnitude.
  let u: u64 = n < 0 ? <u64>(-n) : <u64>n;
  let digits = 1;
  for (; u >= 10; u /= 10) digits++;
  return digits + (n < 0 ? 1 : 0);
}

/** Writes n in decimal at dst; returns decimalLength(n), at most 20. */
export function formatI64(dst: usize, n: i64): i32 {
  const len = decimalLength(n);
  let u: u64 = n < 0 ? <u64>(-n) : <u64>n;
  if (n < 0) store<u8>(dst, 0x2D);
  let e = dst + <usize>len;
  do {
    store<u8>(--e, <u8>(0x30 + <u32>(u % 10)));
    u /= 10;
  } while (u != 0);
  return len;
}
