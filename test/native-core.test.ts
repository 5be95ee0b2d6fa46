// The C++ unit tests of the native core (host/native/test/*_test.cc), built and
// run without Node by scripts/native-test.mjs: all of them in one run (which
// builds and runs them side by side, one per core), then one vitest case per
// program, so a failure names the program and shows the run's output.
// (.ci/run runs the same programs again under AddressSanitizer and ThreadSanitizer.)
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './fixtures.js';

const programs = readdirSync(join(ROOT, 'host', 'native', 'test')).filter((f) => f.endsWith('_test.cc')).sort();

describe('native core unit tests (C++, no Node)', () => {
  let output = '';
  let status: number | null = null;
  beforeAll(async () => {
    const child = spawn(process.execPath, [join(ROOT, 'scripts', 'native-test.mjs')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d: Buffer) => (output += d));
    child.stderr.on('data', (d: Buffer) => (output += d));
    status = await new Promise<number | null>((done) => child.on('close', done));
  }, 300_000);

  it('there are some, and the run passed', () => {
    expect(status, output).toBe(0);
    expect(output).toMatch(new RegExp(`^native: ${programs.length} passed, 0 failed$`, 'm'));
    expect(programs).toContain('timers_test.cc');
  });

  for (const program of programs) {
    it(program, () => {
      expect(output).toMatch(new RegExp(`^ok {3}${program.replace('.', '\\.')}: \\d+ passed, 0 failed$`, 'm'));
    });
  }
});
