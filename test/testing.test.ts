// tcpmod/testing itself: what module authors get from it. Known outputs of the
// shipped modules; sendInPieces against a module that is wrong only at some
// splits; faults as ModuleFaults; the fake clock behind now_ms and timers; the
// module's own key-value store; load refusals worded exactly as `serve` words
// them; loading from bytes; option checks; and the harness working from plain
// node and node:test (no vitest, no sockets, no worker threads).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createServer } from '../dist/index.js';
import {
  loadModule, ModuleConfigRefused, ModuleFault, ModuleLoadError, OptionError, SplitMismatchError, splitPlans, type LoadedModule,
} from '../host/testing.js';
import { fixture, ROOT, scratchFile, watToWasm } from './fixtures.js';
import { run } from './server-process.js';

const BIN = join(ROOT, 'bin', 'tcpmod.js');
const HOST = 'Host: x\r\n';

/** The error `fn` throws (fails the test when it throws nothing). */
function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error, none was thrown');
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection, the promise resolved');
}

describe('the shipped modules give their known answers', () => {
  it('echo.wasm echoes, whole and in pieces, and closes as peer at EOF', async () => {
    const m = await loadModule('build/echo.wasm');
    const c = m.connect();
    expect(c.opened).toEqual({ conn: c.id, output: new Uint8Array(0), text: '', closed: null, fault: null, writes: 0 });
    expect(c.send('hello').text).toBe('hello');
    expect(c.send(new Uint8Array([0, 255, 10]))).toEqual({ conn: c.id, output: new Uint8Array([0, 255, 10]), text: '\u0000\ufffd\n', closed: null, fault: null, writes: 1 });
    const d = m.connect();
    expect(Buffer.from(d.sendInPieces('one\r\ntwo\r\n')).toString()).toBe('one\r\ntwo\r\n');
    const e = m.connect();
    expect(e.send('bye', { eof: true })).toMatchObject({ text: 'bye', closed: 'peer', fault: null });
    expect(e.closed).toBe('peer');
    expect(() => e.send('more')).toThrow(`connection ${e.id} is closed (peer)`);
    expect(m.faults).toEqual([]);
  });

  it('http.wasm answers GET / with its exact bytes, the Date from the fake clock', async () => {
    const m = await loadModule('build/http.wasm', { now: Date.UTC(2030, 5, 15, 10, 20, 30, 500) });
    const want =
      'HTTP/1.1 200 OK\r\nServer: tcpmod\r\nDate: Sat, 15 Jun 2030 10:20:30 GMT\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!';
    const c = m.connect();
    expect(Buffer.from(c.sendInPieces(`GET / HTTP/1.1\r\n${HOST}\r\n`)).toString('latin1')).toBe(want);
    expect(c.closed).toBeNull();
    expect(m.connect().send(`GET /nope HTTP/1.1\r\n${HOST}\r\n`).text).toMatch(/^HTTP\/1\.1 404 Not Found\r\n/);
    expect(m.faults).toEqual([]);
  });

  it('resp.wasm answers PING, SET, GET and INCR as Redis does', async () => {
    const m = await loadModule('build/resp.wasm');
    const c = m.connect();
    const out = c.sendInPieces('PING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nINCR n\r\nINCR n\r\n');
    expect(Buffer.from(out).toString('latin1')).toBe('+PONG\r\n+OK\r\n$2\r\nv1\r\n:1\r\n:2\r\n');
    // The store is as the whole input left it, not as the last of the splits did.
    expect(m.kv.get('n')).toBe('2');
    expect(m.kv.get('k')).toBe('v1');
  });
});

describe('sendInPieces', () => {
  it('tries the whole input, every two-piece split, then one-byte pieces', () => {
    expect(splitPlans(0)).toEqual([[]]);
    expect(splitPlans(1)).toEqual([[]]);
    expect(splitPlans(2)).toEqual([[], [1]]);
    expect(splitPlans(4)).toEqual([[], [1], [2], [3], [1, 2, 3]]);
  });

  it('passes a module that is right at every split, and catches one that is wrong at some, naming the split', async () => {
    const m = await loadModule(await fixture('split-sensitive'));
    // Whole, the fixture is a faithful echo.
    expect(m.connect().send('hello').text).toBe('hello');
    // One byte cannot be split; two bytes whole are the case it gets wrong, but every run agrees.
    expect(Buffer.from(m.connect().sendInPieces('x')).toString()).toBe('x');
    const e = thrown(() => m.connect().sendInPieces('hello'));
    expect(e).toBeInstanceOf(SplitMismatchError);
    const err = e as SplitMismatchError;
    expect(err.code).toBe('TCPMOD_SPLIT_MISMATCH');
    // [1] is fine ("h", then "ello"); [2] hands the module "he" alone, which it drops.
    expect(err.cuts).toEqual([2]);
    expect(err.message).toBe(
      'split-sensitive: the input (5 bytes) cuts at [2] gave a different result than the whole input (outputs differ from byte 0)\n' +
        '  whole: "hello", closed no\n' +
        '  split: "llo", closed no',
    );
    expect(Buffer.from(err.expected.output).toString()).toBe('hello');
    expect(Buffer.from(err.actual.output).toString()).toBe('llo');
  });

  it('random splits name their seed, and the cuts an error names replay the failure', async () => {
    const m = await loadModule(await fixture('split-sensitive'));
    const input = 'abcdefghijklmnopqrstuvwxyz'.repeat(4);
    const err = thrown(() => m.connect().sendInPieces(input, { at: 'random', seed: 99, count: 50 })) as SplitMismatchError;
    expect(err).toBeInstanceOf(SplitMismatchError);
    expect(err.message).toMatch(/^split-sensitive: the input \(104 bytes\) cuts at \[[\d, ]+\] \(seed 99\) gave a different result/);
    expect(err.message).toContain(`cuts at [${err.cuts.join(', ')}]`);
    // The same seed draws the same cuts.
    expect((thrown(() => m.connect().sendInPieces(input, { at: 'random', seed: 99, count: 50 })) as SplitMismatchError).cuts).toEqual(err.cuts);
    // Those cuts, given back, fail the same way.
    const replay = thrown(() => m.connect().sendInPieces(input, { at: err.cuts })) as SplitMismatchError;
    expect(replay.cuts).toEqual(err.cuts);
    expect(replay.actual.output).toEqual(err.actual.output);
  });

  it('shows bytes that are not printable escaped, and long outputs cut short', async () => {
    const m = await loadModule(await fixture('split-sensitive'));
    const err = thrown(() => m.connect().sendInPieces(new Uint8Array([0, 0xff, 0x5c]))) as SplitMismatchError;
    expect(err.message).toContain('  whole: "\\x00\\xff\\\\", closed no');
    const long = thrown(() => m.connect().sendInPieces('y'.repeat(1000))) as SplitMismatchError;
    expect(long.message).toContain(`"${'y'.repeat(400)}" … (1000 bytes), closed no`);
  });

  it('runs each split on a connection with the same id, from the same store, and leaves logs, store and faults as the whole input did', async () => {
    const m = await loadModule('build/resp.wasm');
    m.kv.set('seen', 0);
    const c = m.connect();
    // HELLO answers the connection id: it must not change between the runs.
    const out = Buffer.from(c.sendInPieces('HELLO\r\nINCR seen\r\n')).toString('latin1');
    expect(out).toContain(`$2\r\nid\r\n:${c.id}\r\n`);
    expect(out.endsWith(':1\r\n')).toBe(true);
    expect(m.kv.get('seen')).toBe('1');
    expect(m.logs).toEqual([]);
    expect(m.faults).toEqual([]);
  });

  it('with eof, closing as peer or as module counts alike; anything else must match', async () => {
    const m = await loadModule('build/http.wasm', { now: 0 });
    // The request is complete before EOF in some splits (the module closes) and only with EOF in others (the peer did).
    const c = m.connect();
    const out = Buffer.from(c.sendInPieces(`GET / HTTP/1.1\r\n${HOST}Connection: close\r\n\r\n`, { eof: true })).toString('latin1');
    expect(out).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(c.closed).toBe('peer');
  });

  it('checks its options and its connection', async () => {
    const m = await loadModule('build/echo.wasm');
    const cases: [object, string][] = [
      [{ at: 'sometimes' }, `at must be 'every', 'random' or ascending cut offsets from 1 to 4, got "sometimes"`],
      [{ at: [0] }, `at must be 'every', 'random' or ascending cut offsets from 1 to 4, got [0]`],
      [{ at: [3, 2] }, `at must be 'every', 'random' or ascending cut offsets from 1 to 4, got [3,2]`],
      [{ at: [5] }, `at must be 'every', 'random' or ascending cut offsets from 1 to 4, got [5]`],
      [{ at: 'random', seed: 1.5 }, 'seed must be an integer, got 1.5'],
      [{ at: 'random', count: 0 }, 'count must be an integer of at least 1, got 0'],
      [{ seed: 3 }, "seed only applies with at: 'random'"],
      [{ at: [1], count: 3 }, "count only applies with at: 'random'"],
      [{ cuts: [1] }, 'cuts is not an option of sendInPieces'],
    ];
    for (const [opts, message] of cases) {
      const e = thrown(() => m.connect().sendInPieces('hello', opts));
      expect(e, JSON.stringify(opts)).toBeInstanceOf(OptionError);
      expect(e.message).toBe(message);
    }
    const used = m.connect();
    used.send('x');
    expect(() => used.sendInPieces('hello')).toThrow(`sendInPieces needs a connection that has been sent nothing yet (connection ${used.id} has been sent input)`);
  });
});

describe('faults', () => {
  it('come back as ModuleFaults with kind and message; the connection closes as fault and the module serves on', async () => {
    const m = await loadModule(await fixture('faulty'), { memoryCap: 1 << 20 });
    const c = m.connect();
    const r = c.send('12t34');
    expect(r.fault).toBeInstanceOf(ModuleFault);
    expect(r.fault).toMatchObject({ kind: 'trap', code: 'TCPMOD_MODULE_FAULT' });
    expect(r.fault!.message).toMatch(/unreachable/);
    expect(r.closed).toBe('fault');
    const a = m.connect().send('a');
    expect(a.fault).toMatchObject({ kind: 'abort', message: 'boom at faulty.ts:42:7' });
    expect(m.faults).toEqual([r.fault, a.fault]);
    expect(m.connect().send('5678').text).toBe('5678');
  });

  it('in on_open are in c.opened', async () => {
    // A module whose on_open traps; on_data is never reached.
    const m = await loadModule(await watModule('open-trap', `(module (memory (export "memory") 1 1)
      (func (export "tcpmod_abi_v1"))
      (func (export "tcpmod_io_desc") (result i32)
        (i32.store offset=0 (i32.const 0) (i32.const 1024)) (i32.store offset=4 (i32.const 0) (i32.const 1024))
        (i32.store offset=8 (i32.const 0) (i32.const 2048)) (i32.store offset=12 (i32.const 0) (i32.const 1024))
        (i32.store offset=24 (i32.const 0) (i32.const 64)) (i32.const 0))
      (func (export "tcpmod_on_open") (param i32) (result i32) unreachable)
      (func (export "tcpmod_on_data") (param i32 i32 i32) (result i32) (i32.const 0)))`));
    const c = m.connect();
    expect(c.opened.closed).toBe('fault');
    expect(c.opened.fault).toMatchObject({ kind: 'trap' });
    expect(c.closed).toBe('fault');
    expect(m.faults).toHaveLength(1);
  });
});

describe('the fake clock', () => {
  it('drives tcpmod.now_ms: it starts at `now` and moves only when the test moves it', async () => {
    const start = Date.UTC(2030, 0, 1, 0, 0, 59, 0);
    const m = await loadModule('build/http.wasm', { now: start });
    const date = () => /Date: ([^\r]+)\r\n/.exec(m.connect().send(`GET / HTTP/1.1\r\n${HOST}\r\n`).text)![1];
    expect(m.clock.now).toBe(start);
    expect(date()).toBe('Tue, 01 Jan 2030 00:00:59 GMT');
    expect(m.clock.advance(999)).toEqual([]);
    expect(date()).toBe('Tue, 01 Jan 2030 00:00:59 GMT');
    m.clock.advance(1);
    expect(m.clock.now).toBe(start + 1000);
    expect(date()).toBe('Tue, 01 Jan 2030 00:01:00 GMT');
    m.clock.set(Date.UTC(1999, 11, 31, 23, 59, 59));
    expect(date()).toBe('Fri, 31 Dec 1999 23:59:59 GMT');
  });

  it('fires timers at their due times as it advances', async () => {
    const m = await loadModule(await fixture('ticker'), { now: 0 });
    const c = m.connect();
    expect(c.send('t').text).toBe('armed\n');
    const fired = m.clock.advance(350);
    expect(fired.map((f) => [f.at, f.text, f.conn])).toEqual([[100, 'tick\n', c.id], [200, 'tick\n', c.id], [300, 'tick\n', c.id]]);
    expect(m.clock.now).toBe(350);
  });

  it('gives firings and closes as plain records naming the connection by id', async () => {
    const m = await loadModule(await fixture('ticker'), { now: 0 });
    const c = m.connect();
    const other = m.connect();
    c.send('t');
    const [f] = m.clock.advance(100);
    // Printable and comparable as data: no live TestConn (with its module and memory) inside.
    expect(JSON.parse(JSON.stringify({ conn: f.conn, at: f.at, text: f.text, closed: f.closed, writes: f.writes }))).toEqual({
      conn: c.id, at: 100, text: 'tick\n', closed: null, writes: 1,
    });
    expect(() => structuredClone(f)).not.toThrow();
    expect(Object.keys(f).sort()).toEqual(['at', 'closed', 'conn', 'fault', 'output', 'text', 'writes']);
    const closed = other.close();
    expect(closed).toMatchObject({ conn: other.id, closed: 'peer', text: '' });
    expect(other.close()).toMatchObject({ conn: other.id, closed: null }); // already closed: nothing happened
    expect(c.send('x')).toMatchObject({ conn: c.id });
  });

  it('checks what it is given', async () => {
    const m = await loadModule('build/echo.wasm', { now: 5 });
    expect(() => m.clock.advance(-1)).toThrow('advance(ms): ms must be a finite number of at least 0, got -1');
    expect(() => m.clock.advance(Number.POSITIVE_INFINITY)).toThrow('advance(ms): ms must be a finite number of at least 0, got Infinity');
    expect(() => m.clock.set('soon' as unknown as number)).toThrow('set(ms): ms must be a number of ms since the epoch, got "soon"');
    expect(m.clock.now).toBe(5);
  });
});

describe("the module's key-value store (m.kv)", () => {
  it('is preloaded, read and cleared by the test, and is what the module sees', async () => {
    const m = await loadModule('build/resp.wasm');
    m.kv.set('greeting', 'hello');
    m.kv.set('count', 41);
    m.kv.set(new Uint8Array([0xfe, 0x80]), new Uint8Array([1, 2, 0xfe]));
    const c = m.connect();
    expect(c.send('GET greeting\r\nINCR count\r\nSET made here\r\n').text).toBe('$5\r\nhello\r\n:42\r\n+OK\r\n');
    expect(m.kv.get('count')).toBe('42');
    expect(m.kv.get('made')).toBe('here');
    expect(m.kv.get('missing')).toBeNull();
    // Bytes that are not UTF-8 come back as bytes.
    expect(m.kv.get(new Uint8Array([0xfe, 0x80]))).toEqual(new Uint8Array([1, 2, 0xfe]));
    expect(m.kv.getBytes('greeting')).toEqual(new TextEncoder().encode('hello'));
    // In the order first stored; resp.wasm keeps nothing of its own in the store (no key index).
    expect(m.kv.keys()).toEqual(['greeting', 'count', new Uint8Array([0xfe, 0x80]), 'made']);
    expect(m.kv.size).toBe(m.kv.keys().length);
    expect(m.kv.delete('greeting')).toBe(true);
    expect(m.kv.delete('greeting')).toBe(false);
    expect(c.send('GET greeting\r\n').text).toBe('$-1\r\n');
    m.kv.clear();
    expect(m.kv.size).toBe(0);
    expect(m.kv.usedBytes).toBe(0);
    expect(c.send('GET made\r\n').text).toBe('$-1\r\n');
  });

  it('belongs to one loaded module', async () => {
    const a = await loadModule('build/resp.wasm');
    const b = await loadModule('build/resp.wasm');
    a.connect().send('SET k a\r\n');
    expect(b.connect().send('GET k\r\n').text).toBe('$-1\r\n');
    expect(a.kv.get('k')).toBe('a');
  });

  it('keeps the byte budget kvMaxBytes, for the test as for the module', async () => {
    const m = await loadModule('build/resp.wasm', { kvMaxBytes: 200 });
    expect(m.kv.maxBytes).toBe(200);
    m.kv.set('k', 'x'.repeat(100)); // 1 + 100 + 64
    expect(m.kv.usedBytes).toBe(165);
    expect(() => m.kv.set('j', 'y'.repeat(10))).toThrow(new RangeError("an entry of 75 bytes does not fit the store's budget (165 of 200 bytes in use)"));
    expect(m.kv.get('j')).toBeNull();
    expect(m.connect().send('SET j yyyyyyyyyy\r\n').text).toMatch(/^-/);
    expect(m.kv.get('j')).toBeNull();
  });

  it('can be made unavailable: every kv_* call of the module gets -3 and nothing changes', async () => {
    const m = await loadModule(await fixture('kv'));
    const call = (op: string, key: string, arg: Uint8Array = new Uint8Array(0)) =>
      Buffer.from(m.connect().send(Buffer.concat([Buffer.from([op.charCodeAt(0), key.length]), Buffer.from(key), arg])).output).readInt32LE(0);
    m.kv.set('k', 'v');
    m.kv.unavailable = true;
    expect(call('g', 'k', new Uint8Array([64, 0, 0, 0]))).toBe(-3);
    expect(call('s', 'k', Buffer.from('w'))).toBe(-3);
    expect(call('d', 'k')).toBe(-3);
    expect(call('i', 'n', new Uint8Array(8).fill(0).map((_, i) => (i === 0 ? 1 : 0)))).toBe(-3);
    expect(m.kv.keys()).toEqual(['k']);
    expect(m.kv.get('k')).toBe('v');
    m.kv.unavailable = false;
    expect(call('d', 'k')).toBe(1);
  });

  it('can be made unavailable call by call: a function picks which kv_* calls get -3', async () => {
    const m = await loadModule(await fixture('kv'));
    const call = (op: string, key: string, arg: Uint8Array = new Uint8Array(0)) =>
      Buffer.from(m.connect().send(Buffer.concat([Buffer.from([op.charCodeAt(0), key.length]), Buffer.from(key), arg])).output).readInt32LE(0);
    m.kv.set('k', 'v');
    const asked: [string, string | Uint8Array][] = [];
    m.kv.unavailable = (op, key) => {
      asked.push([op, key]);
      return op === 'set' || key === 'down';
    };
    expect(call('g', 'k', new Uint8Array([64, 0, 0, 0]))).toBe(1);
    expect(call('s', 'k', Buffer.from('w'))).toBe(-3);
    expect(call('d', 'down')).toBe(-3);
    expect(call('d', 'k')).toBe(1);
    expect(asked).toEqual([['get', 'k'], ['set', 'k'], ['del', 'down'], ['del', 'k']]);
    expect(m.kv.keys()).toEqual([]);
  });

  it("is the server's process store with store: 'process' (then m.kv says so)", async () => {
    const m = await loadModule('build/resp.wasm', { store: 'process' });
    expect(() => m.kv).toThrow("resp.wasm uses the process store (store: 'process'): use the native store, not m.kv");
    expect(() => m.connect().sendInPieces('PING\r\n')).toThrow("sendInPieces needs the module's own store: with store: 'process' it could not put the store back between runs");
  });
});

describe('loading', () => {
  it('refuses a bad module with the message serve gives', async () => {
    const bad = await fixture('missing-export');
    const e = await rejection(loadModule(bad));
    expect(e).toBeInstanceOf(ModuleLoadError);
    const served = await rejection(createServer({ module: bad, port: 0, logLevel: 'silent' }).listen());
    expect(e.message).toBe(served.message);
    const cli = await run(process.execPath, [BIN, 'serve', bad, '--port', '0'], { timeoutMs: 20_000 });
    expect(cli.code).toBe(1);
    expect(cli.stderr).toBe(`tcpmod: ${bad}: invalid module\n${(e as ModuleLoadError).problems.map((p) => `  - ${p}\n`).join('')}`);
  });

  it('refuses a module whose IoDesc is wrong (the trial instance), as serve does', async () => {
    const bad = await fixture('iodesc-overlap');
    const e = await rejection(loadModule(bad));
    const served = await rejection(createServer({ module: bad, port: 0, logLevel: 'silent' }).listen());
    expect(e).toBeInstanceOf(ModuleLoadError);
    expect(e.message).toBe(served.message);
  });

  it('gives config to tcpmod_init, and rejects with ModuleConfigRefused when the module refuses it', async () => {
    const file = await fixture('config');
    const m = await loadModule(file, { config: 'ok, go' });
    expect(m.connect().send('?').text).toBe('ok, go');
    const e = await rejection(loadModule(file, { config: new TextEncoder().encode('nope') }));
    expect(e).toBeInstanceOf(ModuleConfigRefused);
    const cli = await run(process.execPath, [BIN, 'serve', file, '--port', '0', '--config', 'nope'], { timeoutMs: 20_000 });
    expect(cli.stderr).toBe(`tcpmod: ${e.message}\n`);
  });

  it('loads from bytes; bad bytes are refused under the name <bytes>', async () => {
    const m = await loadModule(readFileSync('build/echo.wasm'));
    expect(m.connect().send('from bytes').text).toBe('from bytes');
    const e = await rejection(loadModule(new TextEncoder().encode('not a module')));
    expect(e).toBeInstanceOf(ModuleLoadError);
    expect(e.message).toBe('<bytes>: not a WebAssembly module (the file does not start with the \\0asm magic bytes)');
    const missing = await rejection(loadModule(join(ROOT, 'no-such.wasm')));
    expect(missing.message).toBe(`${join(ROOT, 'no-such.wasm')}: cannot read the file: ENOENT`);
  });

  it('checks its options as serve checks its own', async () => {
    const cases: [object, string][] = [
      [{ memoryCap: 5 }, 'memoryCap must be an integer from 65536 to 4294967296, got 5'],
      [{ memoryCap: 'lots' }, 'memoryCap must be a size in bytes (e.g. 65536, 512KiB, 32MiB), got "lots"'],
      [{ kvMaxBytes: -1 }, `kvMaxBytes must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}, got -1`],
      [{ config: 7 }, 'config must be a string or a Uint8Array'],
      [{ now: '2030' }, 'now must be a number of ms since the epoch, got "2030"'],
      [{ store: 'shared' }, "store must be 'own' or 'process', got \"shared\""],
      [{ store: 'process', kvMaxBytes: 10 }, "kvMaxBytes does not apply with store: 'process' (the server's store has its own budget)"],
      [{ memory: 1 }, 'memory is not an option of loadModule'],
    ];
    for (const [opts, message] of cases) {
      const e = await rejection(loadModule('build/echo.wasm', opts));
      expect(e, JSON.stringify(opts)).toBeInstanceOf(OptionError);
      expect(e.message).toBe(message);
    }
    const m: LoadedModule = await loadModule('build/echo.wasm', { memoryCap: '64MiB', kvMaxBytes: '1KiB' });
    expect(m.kv.maxBytes).toBe(1024);
  });
});

describe('on_open output and logs', () => {
  it('c.opened holds what on_open sent through tcpmod.send', async () => {
    const m = await loadModule(await fixture('greeter'));
    const c = m.connect();
    expect(c.opened.output.length).toBe(4 << 20);
    expect(c.opened.output.every((b) => b === 0x67)).toBe(true);
    expect(c.send('x').text).toBe('ok\n');
  });

  it('m.logs has the level name, the message and the connection', async () => {
    const m = await loadModule(await fixture('faulty'), { memoryCap: 1 << 20 });
    const c = m.connect();
    c.send('h');
    expect(m.logs).toEqual([
      { level: 'info', message: 'hello', conn: c.id },
      { level: 'warn', message: 'oops', conn: c.id },
    ]);
  });
});

describe('outside vitest', () => {
  // dist/testing.js is what the package exports as tcpmod/testing (npm run build:host builds it).
  const entry = join(ROOT, 'dist', 'testing.js');
  const script = (body: string) => `import { loadModule, SplitMismatchError } from ${JSON.stringify(entry)};\n${body}`;

  it('runs in a plain node script', async () => {
    const file = scratchFile('plain.mjs', script(`
      const m = await loadModule(${JSON.stringify(join(ROOT, 'build', 'echo.wasm'))});
      const c = m.connect();
      const out = c.sendInPieces('plain');
      console.log(new TextDecoder().decode(out), c.closed);
    `));
    const r = await run(process.execPath, [file], { timeoutMs: 20_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('plain null\n');
    expect(r.code).toBe(0);
  });

  it('runs under node:test, where a split-sensitive module fails its test', async () => {
    const file = scratchFile('module.test.mjs', script(`
      import { test } from 'node:test';
      import assert from 'node:assert/strict';
      test('echo survives every split', async () => {
        const m = await loadModule(${JSON.stringify(join(ROOT, 'build', 'echo.wasm'))});
        assert.equal(new TextDecoder().decode(m.connect().sendInPieces('node:test')), 'node:test');
      });
      test('the split-sensitive fixture does not', async () => {
        const m = await loadModule(${JSON.stringify(await fixture('split-sensitive'))});
        assert.throws(() => m.connect().sendInPieces('hello'), SplitMismatchError);
      });
    `));
    const r = await run(process.execPath, ['--test', '--test-reporter=tap', file], { timeoutMs: 30_000 });
    expect(r.stdout).toMatch(/^# pass 2$/m);
    expect(r.stdout).toMatch(/^# fail 0$/m);
    expect(r.code).toBe(0);
  });
});

/** Compiles WAT text to a module file next to the fixtures; returns its path. */
async function watModule(name: string, text: string): Promise<string> {
  return scratchFile(`${name}.wasm`, await watToWasm(`${name}.wat`, text));
}
