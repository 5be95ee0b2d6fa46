// `tcpmod inspect --json`, as a module project's CI would run it: the binary
// users run, one JSON document on stdout (nothing on stderr), exit 0 with the
// module's description or exit 1 with { ok: false, code, problems } — the same
// problems, one string each, that the text output lists, fixes included.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ModuleDescription, ModuleRefusal } from '../host/inspect.js';
import { fixture, ROOT, scratchFile, watToWasm } from './fixtures.js';
import { run } from './server-process.js';

const BIN = join(ROOT, 'bin', 'tcpmod.js');

function tcpmod(args: string[]) {
  return run(process.execPath, [BIN, ...args], { timeoutMs: 20_000 });
}

/** Runs inspect --json; checks the stream discipline and returns the parsed document. */
async function inspectJson<T>(args: string[], code: number): Promise<T> {
  const r = await tcpmod(['inspect', '--json', ...args]);
  expect(r.code, `exit code; stdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(code);
  expect(r.stderr, 'nothing on stderr').toBe('');
  expect(r.stdout.endsWith('}\n')).toBe(true);
  return JSON.parse(r.stdout) as T;
}

/** The problem lines of the text output ("  - problem"). */
async function textProblems(args: string[]): Promise<string[]> {
  const r = await tcpmod(['inspect', ...args]);
  expect(r.code).toBe(1);
  return r.stderr.split('\n').filter((l) => l.startsWith('  - ')).map((l) => l.slice(4));
}

describe('a module that passes: the description as JSON', () => {
  it('memory, IoDesc regions, imports, exports, callbacks (an imported memory cut to a lowered cap)', async () => {
    const file = await fixture('faulty');
    const m = await inspectJson<ModuleDescription>([file, '--module-memory', '1MiB'], 0);
    expect(m).toMatchObject({
      ok: true,
      file,
      abi: 'v1',
      memory: { source: 'imported', declared: { initial: 1, maximum: 65536 }, maximumPages: 16, capPages: 16, pagesAfterStartup: 1 },
      ioDesc: { in: { ptr: 1024, size: 1024 }, out: { ptr: 2048, size: 1024 }, state: null, result: { ptr: 64, size: 8 } },
      stateSize: 0,
      v1_1: [],
      v1_2: [],
      config: { taken: false, bytes: 0 },
      logs: [],
    });
    expect(m.imports).toContainEqual({ module: 'tcpmod', name: 'abort', kind: 'function', signature: '(i32, i32, i32, i32) -> ()' });
    expect(m.imports).toContainEqual({ module: 'wasi_snapshot_preview1', name: 'proc_exit', kind: 'function', signature: '(i32) -> ()' });
    expect(m.imports).toContainEqual({ module: 'env', name: 'memory', kind: 'memory', signature: null, memory: { initial: 1, maximum: 65536 } });
    expect(m.exports).toContainEqual({ name: 'tcpmod_on_data', kind: 'function', signature: '(i32, i32, i32) -> i32' });
    expect(m.exports).toContainEqual({ name: 'tcpmod_abi_v1', kind: 'function', signature: '() -> ()' });
    expect(m.callbacks).toEqual(['tcpmod_on_data', 'tcpmod_on_close']);
  });

  it('its own memory, a state slot, v1.1 imports and a config tcpmod_init accepts', async () => {
    const [ticker, config] = await Promise.all([fixture('ticker'), fixture('config')]);
    const t = await inspectJson<ModuleDescription>([ticker], 0);
    expect(t.memory.source).toBe('own');
    expect(t.memory.declared.maximum).toBe(t.memory.maximumPages);
    expect(t.v1_1).toContain('tcpmod.set_timer');
    expect(t.v1_2).toEqual([]);
    expect(t.callbacks).toContain('tcpmod_on_timer');
    const c = await inspectJson<ModuleDescription>([config, '--config', 'okay'], 0);
    expect(c.config).toEqual({ taken: true, bytes: 4 });
    expect(c.callbacks).toContain('tcpmod_init');
  });

  it('the v1.2 store imports a module uses, in JSON and in the text output', async () => {
    const file = await fixture('kv12');
    const m = await inspectJson<ModuleDescription>([file], 0);
    expect(m.v1_2).toEqual(['get_ver', 'getdel', 'set_ex', 'cas', 'expire', 'persist', 'ttl', 'append', 'incr_ex', 'scan', 'del_prefix', 'get_range', 'expire_ex', 'incr_at', 'send'].map((n) => `tcpmod.kv_${n}`));
    expect(m.v1_1).toEqual([]);
    const text = await tcpmod(['inspect', file]);
    expect(text.stdout).toMatch(/^v1\.2: +tcpmod\.kv_get_ver\n +tcpmod\.kv_getdel\n(?: +tcpmod\.kv_\w+\n)* +tcpmod\.kv_send\nconfig:/m);
  });

  it('what the module logs during start-up', async () => {
    const wasm = await watToWasm('logs-at-start.wat', `(module
      (import "tcpmod" "log" (func $log (param i32 i32 i32)))
      (memory (export "memory") 1 1)
      (data (i32.const 0) "\\00\\04\\00\\00\\00\\04\\00\\00\\00\\08\\00\\00\\00\\04\\00\\00\\00\\00\\00\\00\\00\\00\\00\\00\\40\\00\\00\\00\\00\\00\\00")
      (data (i32.const 128) "ready")
      (func (export "_initialize") (call $log (i32.const 2) (i32.const 128) (i32.const 5)))
      (func (export "tcpmod_abi_v1"))
      (func (export "tcpmod_io_desc") (result i32) (i32.const 0))
      (func (export "tcpmod_on_data") (param i32 i32 i32) (result i32) (i32.const 0)))`);
    const m = await inspectJson<ModuleDescription>([scratchFile('logs-at-start.wasm', wasm)], 0);
    expect(m.logs).toEqual([{ level: 'warn', message: 'ready' }]);
    expect(m.callbacks).toEqual(['tcpmod_on_data', '_initialize']);
  });

  it('says what the text output says, for every module of the fixtures that passes', async () => {
    for (const name of ['greeter', 'counter', 'config', 'conninfo', 'peer', 'ticker', 'kv', 'opener']) {
      const file = await fixture(name);
      const [m, text] = await Promise.all([inspectJson<ModuleDescription>([file], 0), tcpmod(['inspect', file])]);
      expect(text.code, name).toBe(0);
      for (const i of m.imports) expect(text.stdout, name).toContain(`${i.module}.${i.name} ${i.signature ?? `(memory ${i.memory!.initial}..${i.memory!.maximum ?? 'unbounded'} pages)`}`);
      for (const e of m.exports) if (e.signature) expect(text.stdout, name).toContain(`${e.name} ${e.signature}`);
      expect(text.stdout, name).toContain(`callbacks: ${m.callbacks.join(', ')}`);
      expect(text.stdout, name).toContain(`state:     ${m.stateSize} bytes per connection`);
      expect(text.stdout, name).toContain(`in     [${m.ioDesc.in.ptr}, ${m.ioDesc.in.ptr + m.ioDesc.in.size})`);
      expect(text.stdout, name).toContain(`${m.memory.pagesAfterStartup} pages after start-up`);
    }
  });
});

describe('a refused module: { ok: false, code, problems } on stdout, exit 1', () => {
  it('every static problem, each with its fix, the same lines as the text output', async () => {
    const file = await fixture('bad-imports');
    const r = await inspectJson<ModuleRefusal>([file], 1);
    expect(r).toMatchObject({ ok: false, file, code: 'TCPMOD_MODULE_INVALID' });
    expect(r.problems).toHaveLength(2);
    expect(r.problems[0]).toMatch(/^import env\.abort is not allowed by ABI v1; fix: point AssemblyScript's abort at tcpmod\.abort/);
    expect(r.problems[1]).toMatch(/^import env\.seed is not allowed by ABI v1; fix: /);
    expect(r.problems).toEqual(await textProblems([file]));
  });

  it('the same problems as the text output for each kind of refusal', async () => {
    const cases: [string, string[]][] = [
      ['import-signature', []],
      ['memory-no-max', []],
      ['memory-over-cap', []],
      ['iodesc-overlap', []],
      ['iodesc-caps', []],
      ['initialize-trap', []],
      ['wasi-stdio', []],
      ['iodesc-caps', ['--module-memory', '1MiB']],
    ];
    for (const [name, args] of cases) {
      const file = await fixture(name);
      const [json, text] = await Promise.all([inspectJson<ModuleRefusal>([file, ...args], 1), textProblems([file, ...args])]);
      expect(json.code, name).toBe('TCPMOD_MODULE_INVALID');
      expect(json.problems.length, name).toBeGreaterThan(0);
      expect(json.problems, name).toEqual(text);
    }
  });

  it('not a module, and a file that cannot be read', async () => {
    const notes = scratchFile('notes.wasm', 'not a module\n');
    expect((await inspectJson<ModuleRefusal>([notes], 1)).problems).toEqual(['not a WebAssembly module (the file does not start with the \\0asm magic bytes)']);
    const missing = join(ROOT, 'no-such-module.wasm');
    expect(await inspectJson<ModuleRefusal>([missing], 1)).toEqual({ ok: false, file: missing, code: 'TCPMOD_MODULE_INVALID', problems: ['cannot read the file: ENOENT'] });
  });

  it('a config tcpmod_init refuses', async () => {
    const file = await fixture('config');
    expect(await inspectJson<ModuleRefusal>([file, '--config', 'nope'], 1)).toEqual({
      ok: false, file, code: 'TCPMOD_CONFIG_REFUSED', problems: ['tcpmod_init refused the config (returned 42)'],
    });
  });

  it('a bad option, named by its flag', async () => {
    const file = await fixture('greeter');
    expect(await inspectJson<ModuleRefusal>([file, '--module-memory', '1000'], 1)).toEqual({
      ok: false, file, code: 'TCPMOD_INVALID_OPTION', problems: ['--module-memory must be at least 65536 bytes (one page), got "1000"'],
    });
  });
});
