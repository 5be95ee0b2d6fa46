// The hostile-module fuzzer in the suite (issue 26): three rounds, each a new
// module generated from the run's seed (scripts/fuzz/generate.mjs: every
// tcpmod.* and WASI import called with edge arguments from every callback and
// tcpmod_init, bad result records, IoDescs that change between instances,
// traps, aborts, proc_exit, memory grown until refused, endless loops, timer,
// log and store storms), served by the real binary while a well-behaved client
// exchanges echoes beside it (scripts/fuzz/run.mjs checks: the process lives,
// no worker failed, every echo right, every fault a command must cause
// counted, fds and RSS back near their baseline). About 75 s in all. The seed
// is printed; FUZZ_SEED=N replays it. `npm run fuzz` runs the long form.
import { describe, expect, it } from 'vitest';
import { fuzzRound } from '../scripts/fuzz/run.mjs';

const seed0 = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : (Date.now() ^ (process.pid << 16)) >>> 0;

describe(`sandbox fuzzer (FUZZ_SEED=${seed0})`, () => {
  for (let i = 0; i < 3; i++) {
    const seed = (seed0 + i) >>> 0;
    it(`round ${i + 1}, seed ${seed}: the server holds and the well-behaved client is served`, async () => {
      console.log(`fuzz round ${i + 1}: seed ${seed} (replay with FUZZ_SEED=${seed0})`);
      const report = await fuzzRound({ seed, durationMs: 18_000, threads: i === 2 ? 1 : 2 });
      console.log(JSON.stringify({ ...report, stderrTail: undefined }));
      expect(report.problems, `seed ${seed}; module ${report.module}\n${report.stderrTail ?? ''}`).toEqual([]);
      expect(report.good).toBeGreaterThan(0);
      expect(report.faults).toBeGreaterThanOrEqual(report.expectedFaults);
    }, 60_000);
  }
});
