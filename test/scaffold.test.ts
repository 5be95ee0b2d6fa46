// The project `tcpmod new` writes, without installing it (test/sdk-package.e2e.test.ts
// installs and runs one): where the scaffold takes tcpmod from (a registry range
// only when npm's lockfile says this copy came from a registry), and the C
// scaffold's build.sh naming what is missing, in one line.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolvedFrom } from '../host/scaffold.js';
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

describe('resolvedFrom: where npm got a package, from its lockfiles', () => {
  /** A project at tmp/<name> whose lockfile `file` records tcpmod (at `key`) as resolved from `resolved`. */
  function project(name: string, file: string, key: string, resolved: string): string {
    const dir = join(tmp, name);
    mkdirSync(join(dir, ...key.split('/')), { recursive: true });
    writeFileSync(join(dir, file), JSON.stringify({ lockfileVersion: 3, packages: { '': {}, [key]: { version: '0.1.0', resolved } } }));
    return join(dir, ...key.split('/'));
  }

  it("reads npm's record in node_modules, then the project's package-lock.json, nested packages included", () => {
    const registry = 'https://registry.npmjs.org/tcpmod/-/tcpmod-0.1.0.tgz';
    expect(resolvedFrom(project('hidden', 'node_modules/.package-lock.json', 'node_modules/tcpmod', registry))).toBe(registry);
    expect(resolvedFrom(project('lock', 'package-lock.json', 'node_modules/tcpmod', 'file:../pack/tcpmod-0.1.0.tgz'))).toBe('file:../pack/tcpmod-0.1.0.tgz');
    expect(resolvedFrom(project('nested', 'package-lock.json', 'node_modules/app/node_modules/tcpmod', registry))).toBe(registry);
  });

  it('knows nothing of a checkout (no node_modules above it)', () => {
    expect(resolvedFrom(ROOT)).toBeNull();
  });
});
