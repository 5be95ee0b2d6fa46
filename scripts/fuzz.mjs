#!/usr/bin/env node
// The sandbox fuzzer, long form (npm run fuzz): rounds of scripts/fuzz/run.mjs,
// each with a new generated module, until --duration is up or a round fails.
//   node scripts/fuzz.mjs [--duration 10m] [--seed N] [--round 60s] [--threads N]
// Without --threads, rounds alternate between 2 workers and 1 (only 1-worker
// rounds change the next instance's tcpmod_init and IoDesc: see run.mjs).
// Prints every round's seed and report; a failed round keeps its module's WAT
// and exits 1. `--seed N` replays a run: round i uses seed N + i.
import { fuzzRound } from './fuzz/run.mjs';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}
function duration(text, option) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text);
  if (!m) {
    console.error(`--${option}: expected a duration such as 90s or 10m, got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2]];
}

const total = duration(arg('duration', '10m'), 'duration');
const round = duration(arg('round', '60s'), 'round');
const threadsArg = arg('threads', null);
const threads = threadsArg === null ? null : Number(threadsArg);
if (threads !== null && !(Number.isInteger(threads) && threads >= 1 && threads <= 64)) {
  console.error('--threads: expected an integer 1..64');
  process.exit(2);
}
const seed0 = Number(arg('seed', String((Date.now() ^ (process.pid << 16)) >>> 0)));
if (!Number.isInteger(seed0) || seed0 < 0) {
  console.error('--seed: expected a non-negative integer');
  process.exit(2);
}
console.log(`fuzz: seed ${seed0}, ${total / 1000} s in rounds of ${round / 1000} s, --threads ${threads ?? '2 and 1 in turn'}`);
const end = Date.now() + total;
for (let i = 0; Date.now() < end; i++) {
  const seed = (seed0 + i) >>> 0;
  const report = await fuzzRound({
    seed, durationMs: Math.min(round, Math.max(5000, end - Date.now())), threads: threads ?? (i % 2 === 0 ? 2 : 1), log: (l) => console.log(l),
  });
  console.log(JSON.stringify(report));
  if (!report.ok) {
    console.error(`fuzz: round with seed ${seed} failed: ${report.problems.join('; ')}\nmodule: ${report.module}\n${report.stderrTail}`);
    process.exit(1);
  }
}
console.log('fuzz: every round held');
