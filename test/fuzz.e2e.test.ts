// The hostile-module fuzzer in the suite (issue 26): two rounds, each a new
// module generated from the run's seed (scripts/fuzz/generate.mjs: every
// tcpmod.* and WASI import called with edge arguments from every callback and
// tcpmod_init, bad result records, IoDescs that change between instances,
// traps, aborts, proc_exit, memory grown until refused, endless loops, timer,
// log and store storms), served by the real binary while a well-behaved client
// exchanges echoes beside it (scripts/fuzz/run.mjs checks: the process lives,
// no worker failed, every echo right, every fault a command must cause
// counted, fds and RSS back near their baseline). One round with 2 workers, one
// with 1 (only that one runs cases from the next instance's tcpmod_init and
// IoDesc); each module holds every terminal and every call kind, and each round
// first sweeps every case, so a short round drops no kind: 8 s of hostile
// traffic a round, about 30 s in all. The seed is printed; FUZZ_SEED=N replays
// it. `npm run fuzz` runs the long form (10 min of 60 s rounds).
import { describe, expect, it } from 'vitest';
import { fuzzRound } from '../scripts/fuzz/run.mjs';

const seed0 = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : (Date.now() ^ (process.pid << 16)) >>> 0;

describe(`sandbox fuzzer (FUZZ_SEED=${seed0})`, () => {
  for (let i = 0; i < 2; i++) {
    const seed = (seed0 + i) >>> 0;
    it(`round ${i + 1}, seed ${seed}: the server holds and the well-behaved client is served`, async () => {
      console.log(`fuzz round ${i + 1}: seed ${seed} (replay with FUZZ_SEED=${seed0})`);
      const report = await fuzzRound({ seed, durationMs: 8_000, threads: i === 1 ? 1 : 2 });
      console.log(JSON.stringify({ ...report, stderrTail: undefined }));
      expect(report.problems, `seed ${seed}; module ${report.module}\n${report.stderrTail ?? ''}`).toEqual([]);
      expect(report.good).toBeGreaterThan(0);
      expect(report.faults).toBeGreaterThanOrEqual(report.expectedFaults);
    }, 90_000);
  }
});
