// Seeded randomness for protocol tests: a failure prints its seed, and the same
// seed replays the same splits and bytes.

/** A seedable generator of floats in [0, 1): the one tcpmod/testing cuts inputs with. */
export { seededRandom as prng } from '../host/testing/split.js';

/** Up to maxCuts distinct cut points strictly inside [0, length), ascending. */
export function randomCuts(rand: () => number, length: number, maxCuts = 12): number[] {
  const n = Math.floor(rand() * Math.min(maxCuts, length));
  const cuts = new Set<number>();
  for (let i = 0; i < n && length > 1; i++) cuts.add(1 + Math.floor(rand() * (length - 1)));
  return [...cuts].sort((a, b) => a - b);
}
