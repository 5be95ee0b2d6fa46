// Durations on the command line and in options: plain milliseconds (a number
// or digits) or a number with a unit: ms, s, m, h. "1.5s" is 1500.
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds, or NaN when the value is not a duration. Negative values parse (the caller rejects them). */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = /^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
  if (!m) return NaN;
  return Number(m[1]) * (m[2] ? UNITS[m[2]] : 1);
}
