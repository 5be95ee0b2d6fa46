// The host's __collect after a call is skipped when the call allocated nothing
// managed (module/instance.ts collect(), probeHeap()): counted through the
// instance's `collections`, with a fixture AssemblyScript module compiled in
// memory that allocates on some commands only, drops references without
// allocating on others, and keeps memory flat either way. Modules the probe does
// not recognise (a __new/__collect pair of another shape) are collected after
// every call, as before.
import { beforeAll, describe, expect, it } from 'vitest';
import { loadModule, type LoadedModule } from '../host/testing.js';
import { compileAs } from './asc-source.js';
import { watToWasm } from './fixtures.js';

const FIXTURE = `
import { Conn, Action, configure } from "./sdk";
export * from "./sdk/exports";

let kept: ArrayBuffer | null = null;
let strings: string[] = [];

configure(1024, 1024, 0, onData);

// One command per line: N nothing, G garbage (strings built and dropped), B a 64 KiB buffer kept in a
// global (the one it replaces becomes garbage), D the kept buffer dropped (no allocation), K a string
// kept (live data grows), F the kept strings dropped (no allocation).
function onData(c: Conn): Action {
  while (true) {
    const nl = c.indexOf(10, c.consumed);
    if (nl < 0) return Action.Continue;
    const cmd = c.byte(c.consumed);
    if (cmd == 0x47) {
      let s = "";
      for (let i = 0; i < 50; i++) s += "x";
      c.writeInt(s.length);
    } else if (cmd == 0x42) {
      kept = new ArrayBuffer(64 * 1024);
      c.writeInt(kept!.byteLength);
    } else if (cmd == 0x44) {
      kept = null;
      c.writeInt(0);
    } else if (cmd == 0x4b) {
      strings.push("k" + strings.length.toString());
      c.writeInt(strings.length);
    } else if (cmd == 0x46) {
      strings.length = 0;
      c.writeInt(0);
    } else {
      c.writeInt(7);
    }
    c.writeByte(10);
    c.consume(nl + 1 - c.consumed);
  }
}
`;

describe('__collect after a call only when the call allocated', () => {
  let m: LoadedModule;
  beforeAll(async () => {
    m = await loadModule(await compileAs('__collect_skip_fixture', FIXTURE));
  }, 120_000);

  const run = (cmd: string, times: number) => {
    const c = m.connect();
    for (let i = 0; i < times; i++) {
      const r = c.send(`${cmd}\n`);
      if (r.fault) throw new Error(`${cmd} #${i}: ${r.fault.message}`);
    }
    c.close();
  };

  it('skips it after calls that allocate nothing', () => {
    run('G', 1); // something to collect first
    const before = m.instance.collections;
    run('N', 1000);
    // connect() and close() call on_open/on_close, which allocate nothing either.
    expect(m.instance.collections - before).toBe(0);
  });

  it('runs it after every call that allocates', () => {
    const before = m.instance.collections;
    run('G', 200);
    expect(m.instance.collections - before).toBe(200);
  });

  it('keeps memory flat when garbage is made by dropping a reference without allocating', () => {
    // Warm up: the largest heap the pattern needs.
    for (let i = 0; i < 20; i++) for (const cmd of ['B', 'D', 'N', 'B', 'B', 'D', 'G']) run(cmd, 1);
    const bytes = m.memory.buffer.byteLength;
    for (let i = 0; i < 2000; i++) for (const cmd of ['B', 'D', 'N', 'B', 'B', 'D', 'G']) run(cmd, 1);
    expect(m.memory.buffer.byteLength).toBe(bytes);
  });

  it('keeps memory flat when live data grows and is dropped without allocating', () => {
    const cycle = () => {
      run('K', 500);
      run('F', 1);
      run('N', 3);
    };
    for (let i = 0; i < 3; i++) cycle();
    const bytes = m.memory.buffer.byteLength;
    for (let i = 0; i < 100; i++) cycle();
    expect(m.memory.buffer.byteLength).toBe(bytes);
  });
});

describe('a module whose __new/__collect are not the runtime the probe knows', () => {
  it('is collected after every call', async () => {
    // __new hands out a fixed pointer: no object header, no list: the probe gives up.
    const wasm = await watToWasm('collect-other.wat', `(module
  (memory (export "memory") 1 1)
  (func (export "tcpmod_abi_v1"))
  ;; IoDesc at 0: input [1024, +1024), output [2048, +1024), no state, result record at 64.
  (func (export "tcpmod_io_desc") (result i32)
    (i32.store offset=0 (i32.const 0) (i32.const 1024))
    (i32.store offset=4 (i32.const 0) (i32.const 1024))
    (i32.store offset=8 (i32.const 0) (i32.const 2048))
    (i32.store offset=12 (i32.const 0) (i32.const 1024))
    (i32.store offset=16 (i32.const 0) (i32.const 0))
    (i32.store offset=20 (i32.const 0) (i32.const 0))
    (i32.store offset=24 (i32.const 0) (i32.const 64))
    (i32.store offset=28 (i32.const 0) (i32.const 0))
    (i32.const 0))
  (func (export "__new") (param i32 i32) (result i32) (i32.const 4096))
  (func (export "__collect"))
  ;; Consumes its input, answers nothing.
  (func (export "tcpmod_on_data") (param i32 i32 i32) (result i32)
    (i32.store (i32.const 64) (local.get 1))
    (i32.store (i32.const 68) (i32.const 0))
    (i32.const 0)))`);
    const mod = await loadModule(wasm);
    const c = mod.connect();
    const before = mod.instance.collections;
    for (let i = 0; i < 50; i++) expect(c.send('x').fault).toBeNull();
    expect(mod.instance.collections - before).toBe(50);
  });
});
