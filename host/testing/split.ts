// The ways sendInPieces cuts an input, and how it reports two cuts that
// disagree. TCP may deliver a byte stream in any pieces, so a module must give
// the same answer however its input is cut; these plans try that.

/** Every way to cut `length` bytes into two pieces, plus one-byte pieces (and first the whole, uncut): the splits `at: 'every'` runs. */
export function splitPlans(length: number): number[][] {
  const plans: number[][] = [[]];
  for (let i = 1; i < length; i++) plans.push([i]);
  if (length > 2) plans.push(Array.from({ length: length - 1 }, (_, i) => i + 1));
  return plans;
}

/** mulberry32: a small seedable generator of floats in [0, 1), so a seed replays the same cuts. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `count` random plans for `length` bytes from `seed`, after the whole input:
 * each cuts at up to `maxCuts` distinct offsets strictly inside the input,
 * ascending. Plans that repeat one already made are kept (the draw is what it is).
 */
export function randomPlans(length: number, seed: number, count: number, maxCuts = 256): number[][] {
  const rand = seededRandom(seed);
  const plans: number[][] = [[]];
  for (let i = 0; i < count; i++) {
    const n = length > 1 ? 1 + Math.floor(rand() * Math.min(maxCuts, length - 1)) : 0;
    const cuts = new Set<number>();
    for (let j = 0; j < n; j++) cuts.add(1 + Math.floor(rand() * (length - 1)));
    plans.push([...cuts].sort((a, b) => a - b));
  }
  return plans;
}

/** A plan as an error names it: its cut offsets (one-byte pieces said so, not listed). */
export function describeCuts(cuts: readonly number[], length: number): string {
  if (cuts.length === 0) return 'the whole input';
  if (length > 2 && cuts.length === length - 1) return `one-byte pieces (cuts at 1..${length - 1})`;
  return `cuts at [${cuts.join(', ')}]`;
}

/** What one run of the input produced, as sendInPieces compares it. */
export interface PieceRun {
  output: Uint8Array;
  closed: string | null;
  fault: { kind: string; message: string } | null;
}

/** Longest part of an output an error quotes; the rest is summarised. */
const SHOW_MAX = 400;

/** Bytes as an error shows them: printable ASCII as is, the rest escaped, cut short after SHOW_MAX bytes. */
export function showBytes(b: Uint8Array): string {
  let s = '';
  for (const c of b.subarray(0, SHOW_MAX)) {
    if (c === 0x5c) s += '\\\\';
    else if (c >= 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else if (c === 10) s += '\\n';
    else if (c === 13) s += '\\r';
    else s += `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return `"${s}"${b.length > SHOW_MAX ? ` … (${b.length} bytes)` : ''}`;
}

function showRun(r: PieceRun): string {
  const fault = r.fault ? `, fault ${r.fault.kind}: ${r.fault.message}` : '';
  return `${showBytes(r.output)}, closed ${r.closed ?? 'no'}${fault}`;
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

/** Two splits of the same input gave different results: a module that depends on how TCP cut its input. */
export class SplitMismatchError extends Error {
  readonly code = 'TCPMOD_SPLIT_MISMATCH';
  constructor(
    /** The offsets the disagreeing run was cut at. */
    readonly cuts: number[],
    /** What the whole, uncut input gave. */
    readonly expected: PieceRun,
    /** What the input cut at `cuts` gave. */
    readonly actual: PieceRun,
    length: number,
    seed: number | null,
  ) {
    const at = firstDifference(expected.output, actual.output);
    const where = at < Math.max(expected.output.length, actual.output.length) ? ` (outputs differ from byte ${at})` : '';
    super(
      `split-sensitive: the input (${length} bytes) ${describeCuts(cuts, length)}${seed === null ? '' : ` (seed ${seed})`} ` +
        `gave a different result than the whole input${where}\n` +
        `  whole: ${showRun(expected)}\n` +
        `  split: ${showRun(actual)}`,
    );
    this.name = 'SplitMismatchError';
  }
}
