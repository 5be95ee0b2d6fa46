// UTF-8 encoding of an AssemblyScript (UTF-16) string straight into a caller's
// buffer, so writing or logging a string never allocates.

/** Encodes `s` from code unit `from` into `[dst, dst + cap)`, stopping before the
 *  first character that does not fit whole. Unpaired surrogates become U+FFFD.
 *  Returns `(next code unit index << 32) | bytes written`. */
export function encodeUtf8(s: string, from: i32, dst: usize, cap: i32): u64 {
  const src = changetype<usize>(s);
  const len = s.length;
  let i = from;
  let n = 0;
  while (i < len) {
    let c = <u32>load<u16>(src + (<usize>i << 1));
    if (c < 0x80) {
      if (n + 1 > cap) break;
      store<u8>(dst + <usize>n, <u8>c);
      n += 1; i += 1;
      continue;
    }
    if (c < 0x800) {
      if (n + 2 > cap) break;
      store<u8>(dst + <usize>n, <u8>(0xC0 | (c >> 6)));
      store<u8>(dst + <usize>n, <u8>(0x80 | (c & 0x3F)), 1);
      n += 2; i += 1;
      continue;
    }
    let units = 1;
    if (c >= 0xD800 && c < 0xDC00 && i + 1 < len) {
      const d = <u32>load<u16>(src + (<usize>(i + 1) << 1));
      if (d >= 0xDC00 && d < 0xE000) {
        c = 0x10000 + ((c - 0xD800) << 10) + (d - 0xDC00);
        units = 2;
      }
    }
    if (c >= 0x10000) {
      if (n + 4 > cap) break;
      store<u8>(dst + <usize>n, <u8>(0xF0 | (c >> 18)));
      store<u8>(dst + <usize>n, <u8>(0x80 | ((c >> 12) & 0x3F)), 1);
      store<u8>(dst + <usize>n, <u8>(0x80 | ((c >> 6) & 0x3F)), 2);
      store<u8>(dst + <usize>n, <u8>(0x80 | (c & 0x3F)), 3);
      n += 4;
    } else {
      if (c >= 0xD800 && c < 0xE000) c = 0xFFFD;
      if (n + 3 > cap) break;
      store<u8>(dst + <usize>n, <u8>(0xE0 | (c >> 12)));
      store<u8>(dst + <usize>n, <u8>(0x80 | ((c >> 6) & 0x3F)), 1);
      store<u8>(dst + <usize>n, <u8>(0x80 | (c & 0x3F)), 2);
      n += 3;
    }
    i += units;
  }
  return (<u64>i << 32) | <u64>n;
}
