// Compiles the WAT fixtures of test/fixtures/ into WebAssembly binaries in a
// temporary directory, once per test file, so no binary is ever committed.
// `fixture('trap-echo')` returns the path of test/fixtures/trap-echo.wat built
// as trap-echo.wasm; the directory is removed when the test file ends.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';
import { watToWasm } from '../bench/lib/wat.mjs';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
/** The repository root: tests run `node bin/tcpmod.js` from here. */
export const ROOT = resolve(FIXTURES, '..', '..');

let outDir: string | null = null;
const built = new Map<string, string>();

afterAll(() => {
  if (outDir) rmSync(outDir, { recursive: true, force: true });
  outDir = null;
  built.clear();
});

function dir(): string {
  outDir ??= mkdtempSync(join(tmpdir(), 'tcpmod-fixtures-'));
  return outDir;
}

/** WAT text → WebAssembly bytes (one compiler for the tests and the bench: bench/lib/wat.mjs). */
export { watToWasm };

/** Builds test/fixtures/<name>.wat (once per test file) and returns the .wasm path. */
export async function fixture(name: string): Promise<string> {
  const cached = built.get(name);
  if (cached) return cached;
  const text = readFileSync(join(FIXTURES, `${name}.wat`), 'utf8');
  const out = join(dir(), `${name}.wasm`);
  writeFileSync(out, await watToWasm(`${name}.wat`, text));
  built.set(name, out);
  return out;
}

/** Writes arbitrary bytes (a non-module, a truncated module, a config file) next to the fixtures. */
export function scratchFile(name: string, bytes: Uint8Array | string): string {
  const out = join(dir(), name);
  writeFileSync(out, bytes);
  return out;
}
