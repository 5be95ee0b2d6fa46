// Small helpers over the current command's arguments.

import { argPtr, argLen } from "./limits";

/** Lower-cased packing of the first 8 bytes of a name: byte i in bits 8i..8i+7.
 *  OR-ing 0x20 lower-cases letters; since every name we compare against is
 *  letters only, no other byte can collide with one. Longer names need their
 *  remaining bytes compared too. */
export function nameKey(p: usize, len: i32): u64 {
  const n = min(len, 8);
  let k: u64 = 0;
  for (let i = 0; i < n; i++) k |= <u64>(load<u8>(p + <usize>i) | 0x20) << (<u64>i << 3);
  return k;
}

/** nameKey of an ASCII lower-case constant (computed once, at start-up). */
export function keyOf(s: string): u64 {
  const n = min(s.length, 8);
  let k: u64 = 0;
  for (let i = 0; i < n; i++) k |= <u64>(s.charCodeAt(i) | 0x20) << (<u64>i << 3);
  return k;
}

/** True when argument i equals the lower-case ASCII word `w` ignoring case. */
export function argIs(i: i32, w: string): bool {
  const n = argLen(i);
  if (n != w.length) return false;
  const p = argPtr(i);
  for (let j = 0; j < n; j++) {
    const b = <i32>load<u8>(p + <usize>j);
    const e = w.charCodeAt(j);
    if (b != e && !(e >= 0x61 && e <= 0x7A && b == e - 0x20)) return false;
  }
  return true;
}

/** True when the bytes [p, p+len) equal the ASCII string `s` ignoring case. */
export function bytesEqualIgnoreCase(p: usize, len: i32, s: string): bool {
  if (len != s.length) return false;
  for (let j = 0; j < len; j++) {
    let b = <i32>load<u8>(p + <usize>j);
    let e = s.charCodeAt(j);
    if (b >= 0x41 && b <= 0x5A) b += 0x20;
    if (e >= 0x41 && e <= 0x5A) e += 0x20;
    if (b != e) return false;
  }
  return true;
}
