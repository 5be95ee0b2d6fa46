// The C++ unit tests of the native core (host/native/test/*_test.cc), built and
// run without Node by scripts/native-test.mjs: one vitest case per program, so
// `npm test` runs them and a failure names the program and shows its output.
// (.ci/run runs the same programs again under AddressSanitizer and ThreadSanitizer.)
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './fixtures.js';

const programs = readdirSync(join(ROOT, 'host', 'native', 'test')).filter((f) => f.endsWith('_test.cc')).sort();

describe('native core unit tests (C++, no Node)', () => {
  it('there are some', () => {
    expect(programs).toContain('timers_test.cc');
  });

  for (const program of programs) {
    it(program, () => {
      const run = spawnSync(process.execPath, [join(ROOT, 'scripts', 'native-test.mjs'), program], {
        cwd: ROOT,
        encoding: 'utf8',
      });
      const output = `${run.stdout}${run.stderr}`;
      expect(run.status, output).toBe(0);
      expect(output).toMatch(/^ok {3}\S+_test\.cc: \d+ passed, 0 failed$/m);
    }, 300_000);
  }
});
