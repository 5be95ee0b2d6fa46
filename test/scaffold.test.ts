// The project `tcpmod new` writes, without installing it (test/sdk-package.e2e.test.ts
// installs and runs one): the C scaffold's build.sh names what is missing, in one line.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from './fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'tcpmod-scaffold-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const NEED = 'build.sh needs clang (for --target=wasm32) and wasm-ld (from lld) to build build/module.wasm; Debian/Ubuntu: apt-get install clang lld';

/** Runs the C template's build.sh in a fresh directory with `env`; its exit code and stderr. */
function buildSh(name: string, env: NodeJS.ProcessEnv): { status: number | null; stderr: string } {
  const dir = join(tmp, name);
  mkdirSync(dir);
  copyFileSync(join(ROOT, 'templates', 'c', 'build.sh'), join(dir, 'build.sh'));
  const r = spawnSync('/bin/sh', ['build.sh'], { cwd: dir, env, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stderr: r.stderr };
}

describe('templates/c/build.sh', () => {
  it('names the compiler, the linker and the apt line when the compiler is missing', () => {
    const r = buildSh('no-cc', { ...process.env, CC: 'clang-missing' });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`${NEED} (not found: clang-missing, from CC)\n`);
  });

  it('says the same when clang is there but its linker wasm-ld is not', () => {
    // A PATH with a clang that knows no wasm-ld, and the two tools build.sh uses before it: no lld.
    const bin = join(tmp, 'bin-no-lld');
    mkdirSync(bin);
    writeFileSync(join(bin, 'clang'), '#!/bin/sh\nfor a; do case "$a" in -print-prog-name=*) echo "${a#*=}"; exit 0;; esac; done\nexit 1\n');
    chmodSync(join(bin, 'clang'), 0o755);
    for (const tool of ['dirname', 'mkdir']) {
      const found = spawnSync('/bin/sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
      symlinkSync(found, join(bin, tool));
    }
    const r = buildSh('no-ld', { PATH: bin });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`${NEED} (not found: wasm-ld)\n`);
  });
});
