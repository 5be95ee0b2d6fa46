// Seeded randomness for protocol tests: a failure prints its seed, and the same
// seed replays the same splits and bytes.

/** mulberry32: a small seedable generator of floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Up to maxCuts distinct cut points strictly inside [0, length), ascending. */
export function randomCuts(rand: () => number, length: number, maxCuts = 12): number[] {
  const n = Math.floor(rand() * Math.min(maxCuts, length));
  const cuts = new Set<number>();
  for (let i = 0; i < n && length > 1; i++) cuts.add(1 + Math.floor(rand() * (length - 1)));
  return [...cuts].sort((a, b) => a - b);
}
