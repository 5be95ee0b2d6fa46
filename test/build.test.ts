// buildModule (host/build.ts), the function behind `tcpmod build` and
// scripts/build-wasm.mjs, on module projects in temp directories that have no
// node_modules of their own: the SDK import "tcpmod/assembly/sdk" resolves to
// this repository (sdkSearchPath), abort is redirected to tcpmod.abort, and
// each kind of failure comes back as its own error with its exact message.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildError, buildModule, describeBuilt } from '../host/build.js';
import { ModuleLoadError } from '../host/module/errors.js';
import { OptionError } from '../host/options.js';

const GOOD = `import { Conn, Action, configure } from "tcpmod/assembly/sdk";
export * from "tcpmod/assembly/sdk/exports";
configure(1024, 1024, 0, onData);
function onData(c: Conn): Action {
  if (c.inputLen > 3) abort("too long");
  c.write(c.input, c.inputLen);
  c.consume(c.inputLen);
  return Action.Continue;
}
`;

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tcpmod-build-'));
  mkdirSync(join(dir, 'assembly'));
  writeFileSync(join(dir, 'assembly', 'index.ts'), GOOD);
  writeFileSync(join(dir, 'assembly', 'typo.ts'), 'export function f(): i32 { return "s"; }\n');
  writeFileSync(join(dir, 'assembly', 'noabi.ts'), 'export function tcpmod_on_data(): void {}\n');
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('buildModule', () => {
  it('builds assembly/index.ts to build/index.wasm by default, with abort going to tcpmod.abort', async () => {
    const built = await buildModule({ baseDir: dir });
    expect(built.file).toBe(join(dir, 'build', 'index.wasm'));
    expect(built.size).toBeGreaterThan(1000);
    expect(built.imports).toContain('tcpmod.abort');
    expect(built.imports).not.toContain('env.abort');
    expect(describeBuilt(built, dir)).toMatch(/^built build\/index\.wasm \(\d+ bytes; imports: tcpmod\.abort, tcpmod\.send\)$/);
  }, 120_000);

  it('refuses paths it cannot use, naming the option', async () => {
    const cases: [Parameters<typeof buildModule>[0], string][] = [
      [{ baseDir: dir, entry: 'main.js' }, 'entry must be an AssemblyScript file ending in .ts, got "main.js"'],
      [{ baseDir: dir, entry: 'types.d.ts' }, 'entry must be an AssemblyScript file ending in .ts, got "types.d.ts"'],
      [{ baseDir: dir, entry: 'assembly/none.ts' }, `entry "assembly/none.ts" is not a file in ${dir}`],
      [{ baseDir: dir, outFile: 'out.was' }, 'outFile must end in .wasm, got "out.was"'],
    ];
    for (const [opts, message] of cases) {
      const e = await buildModule(opts).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(OptionError);
      expect((e as Error).message).toBe(message);
    }
  });

  it("reports asc's diagnostics as a BuildError", async () => {
    const e = await buildModule({ baseDir: dir, entry: 'assembly/typo.ts' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(BuildError);
    expect((e as BuildError).code).toBe('TCPMOD_BUILD_FAILED');
    expect((e as BuildError).message).toMatch(/^assembly\/typo\.ts: compile failed\n/);
    expect((e as BuildError).diagnostics).toMatch(/TS2322/);
  }, 120_000);

  it('runs the load checks of serve: a module that breaks the ABI is refused with every problem', async () => {
    const e = await buildModule({ baseDir: dir, entry: 'assembly/noabi.ts', outFile: 'out/noabi.wasm' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ModuleLoadError);
    // Each problem, then (where it has a usual cause) how to fix it.
    expect((e as ModuleLoadError).problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/^missing export tcpmod_abi_v1 \(\) -> \(\); fix: /),
      'export tcpmod_on_data has signature () -> (); ABI v1 says (i32, i32, i32) -> i32',
    ]));
  }, 120_000);
});
