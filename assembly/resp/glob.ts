// Glob matching for CONFIG GET patterns, case-insensitive: `*` any run, `?` any
// byte, `[abc]`, `[a-z]`, `[^...]` sets, and `\` to take the next byte literally.
// Iterative with one backtrack point for the last `*`, so it cannot recurse deep
// or blow up on hostile patterns.

@inline function lower(b: i32): i32 {
  return b >= 0x41 && b <= 0x5A ? b + 0x20 : b;
}

/** Does the ASCII string `s` match the pattern bytes [p, p+plen)? */
export function globMatch(p: usize, plen: i32, s: string): bool {
  const slen = s.length;
  let pi = 0;
  let si = 0;
  let starP = -1;
  let starS = 0;
  while (si < slen) {
    if (pi < plen) {
      const pc = <i32>load<u8>(p + <usize>pi);
      if (pc == 0x2A) { // '*'
        starP = pi++;
        starS = si;
        continue;
      }
      const sc = lower(s.charCodeAt(si));
      if (pc == 0x3F) { // '?'
        pi++; si++;
        continue;
      }
      if (pc == 0x5B) { // '['
        const r = matchSet(p, plen, pi + 1, sc);
        if (r > 0) {
          pi = r; si++;
          continue;
        }
      } else {
        let lit = pc;
        let adv = 1;
        if (pc == 0x5C && pi + 1 < plen) { lit = <i32>load<u8>(p + <usize>(pi + 1)); adv = 2; }
        if (lower(lit) == sc) {
          pi += adv; si++;
          continue;
        }
      }
    }
    if (starP < 0) return false;
    pi = starP + 1;
    si = ++starS;
  }
  while (pi < plen && load<u8>(p + <usize>pi) == 0x2A) pi++;
  return pi == plen;
}

/** Matches `sc` against the set starting at pattern offset `i` (just after '[').
 *  Returns the offset after the closing ']' on a match, 0 otherwise. An
 *  unterminated set runs to the end of the pattern. */
function matchSet(p: usize, plen: i32, i: i32, sc: i32): i32 {
  let negate = false;
  if (i < plen && load<u8>(p + <usize>i) == 0x5E) { negate = true; i++; }
  let hit = false;
  while (i < plen) {
    let b = <i32>load<u8>(p + <usize>i);
    if (b == 0x5D) break; // ']'
    if (b == 0x5C && i + 1 < plen) {
      i++;
      b = <i32>load<u8>(p + <usize>i);
      if (lower(b) == sc) hit = true;
      i++;
      continue;
    }
    if (i + 2 < plen && load<u8>(p + <usize>(i + 1)) == 0x2D && load<u8>(p + <usize>(i + 2)) != 0x5D) {
      let lo = lower(b);
      let hi = lower(<i32>load<u8>(p + <usize>(i + 2)));
      if (lo > hi) { const t = lo; lo = hi; hi = t; }
      if (sc >= lo && sc <= hi) hit = true;
      i += 3;
      continue;
    }
    if (lower(b) == sc) hit = true;
    i++;
  }
  if (negate) hit = !hit;
  return hit ? (i < plen ? i + 1 : plen) : 0;
}
