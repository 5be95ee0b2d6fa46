// Sizes on the command line: plain bytes, or a number with B, KiB, MiB, GiB (also KB/MB/GB as powers of 1024).
const UNITS: Record<string, number> = { b: 1, kib: 1024, kb: 1024, k: 1024, mib: 1024 ** 2, mb: 1024 ** 2, m: 1024 ** 2, gib: 1024 ** 3, gb: 1024 ** 3, g: 1024 ** 3 };

/** Bytes, or NaN when the value is not a size. */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = /^\s*(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  if (!m) return NaN;
  const unit = UNITS[m[2].toLowerCase() || 'b'];
  return unit ? Math.round(Number(m[1]) * unit) : NaN;
}
