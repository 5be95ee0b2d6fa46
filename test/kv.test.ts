// The key-value store as modules see it through ABI v1's tcpmod.kv_get,
// kv_set, kv_del and kv_incr. In-process, test/fixtures/kv.wat turns each
// request into one host call and replies with its exact result, run through
// tcpmod/testing twice: on the server's native process store and on the store
// of the module's own the harness gives by default, so both answer alike; end
// to end, test/fixtures/counter.wat increments one key from many connections
// across several workers of a real server.
import { createConnection } from 'node:net';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { native } from '../host/sys.js';
import { fixture } from './fixtures.js';
import { loadModule, type TestConn, type LoadedModule } from '../host/testing.js';
import { serve, type ServedProcess } from './server-process.js';
import { i64, Kv12, kv12Table, request, u32, type StoreKind } from './kv-calls.js';

const OUT = 8196; // where kv.wat has the host write values (its out region + 4)

/** One connection of kv.wat, with a method per host function. */
class Kv {
  conn: TestConn;
  constructor(readonly m: LoadedModule) {
    this.conn = m.connect();
  }
  private call(req: Buffer): { rc: number; rest: Buffer } {
    const r = this.conn.send(req);
    if (r.fault) throw r.fault;
    const out = Buffer.from(r.output);
    return { rc: out.readInt32LE(0), rest: out.subarray(4) };
  }
  set(key: string | Buffer, value: string | Buffer): number {
    return this.call(request('s', key, Buffer.from(value))).rc;
  }
  get(key: string | Buffer, cap = 1024, op: 'g' | 'G' = 'g'): { rc: number; value: string | null } {
    const { rc, rest } = this.call(request(op, key, u32(cap)));
    return { rc, value: rc >= 0 && rc <= cap ? rest.toString('latin1') : null };
  }
  del(key: string | Buffer): number {
    return this.call(request('d', key)).rc;
  }
  incr(key: string | Buffer, delta: bigint): { rc: number; value: bigint } {
    const { rc, rest } = this.call(request('i', key, i64(delta)));
    return { rc, value: rest.readBigInt64LE(0) };
  }
}

const budget = native.kvStats().maxBytes;
const stores: StoreKind[] = [
  {
    name: 'the process store (serve)',
    load: async (maxBytes, name = 'kv') => {
      native.kvClear();
      native.kvConfigure(maxBytes ?? budget);
      const m = await loadModule(await fixture(name), { store: 'process' });
      processClock = m.clock.now;
      native.kvClock(processClock);
      return m;
    },
    advance: (_m, ms) => native.kvClock((processClock += ms)),
    exact: true,
    budget: true,
  },
  {
    name: "a module's own store (tcpmod/testing)",
    load: async (maxBytes, name = 'kv') => loadModule(await fixture(name), maxBytes === undefined ? {} : { kvMaxBytes: maxBytes }),
    advance: (m, ms) => void m.clock.advance(ms),
    exact: true,
    budget: true,
  },
];
let processClock = 0;

describe.each(stores)('kv_get / kv_set / kv_del / kv_incr exactly as ABI v1 states, on $name', (store) => {
  let h: LoadedModule;
  let kv: Kv;
  beforeEach(async () => {
    h = await store.load();
    kv = new Kv(h);
  });
  afterAll(() => {
    native.kvClear();
    native.kvConfigure(budget);
    native.kvClock(-1);
  });

  it('kv_get: -1 when missing, else the value length, copying only when it fits out_cap', () => {
    expect(kv.get('greeting')).toEqual({ rc: -1, value: null });
    expect(kv.set('greeting', 'hello')).toBe(0);
    expect(kv.get('greeting', 64)).toEqual({ rc: 5, value: 'hello' });
    expect(kv.get('greeting', 5)).toEqual({ rc: 5, value: 'hello' });
    // Too small: the length comes back, and not one byte is written at out.
    new Uint8Array(h.memory.buffer, OUT, 8).fill(0xee);
    expect(kv.get('greeting', 4)).toEqual({ rc: 5, value: null });
    expect([...new Uint8Array(h.memory.buffer, OUT, 8)]).toEqual(Array(8).fill(0xee));
  });

  it('kv_set: 0, overwrites, and keeps keys and values as raw bytes', () => {
    expect(kv.set('k', 'short')).toBe(0);
    expect(kv.set('k', 'a longer value')).toBe(0);
    expect(kv.get('k')).toEqual({ rc: 14, value: 'a longer value' });
    expect(kv.set('k', '')).toBe(0);
    expect(kv.get('k')).toEqual({ rc: 0, value: '' });
    const key = Buffer.from([0, 1, 0xff, 0]);
    const value = Buffer.from([0xff, 0, 0x80, 10, 13]);
    expect(kv.set(key, value)).toBe(0);
    expect(kv.get(key)).toEqual({ rc: 5, value: value.toString('latin1') });
    expect(kv.get(Buffer.from([0, 1, 0xff]))).toEqual({ rc: -1, value: null });
  });

  it('kv_del: 1 when it deleted, 0 when missing', () => {
    expect(kv.del('gone')).toBe(0);
    kv.set('gone', 'soon');
    expect(kv.del('gone')).toBe(1);
    expect(kv.del('gone')).toBe(0);
    expect(kv.get('gone').rc).toBe(-1);
  });

  it('kv_incr: a missing key counts as 0; the value is kept as decimal text', () => {
    expect(kv.incr('n', 5n)).toEqual({ rc: 0, value: 5n });
    expect(kv.incr('n', -7n)).toEqual({ rc: 0, value: -2n });
    expect(kv.get('n')).toEqual({ rc: 2, value: '-2' });
    kv.set('m', '41');
    expect(kv.incr('m', 1n)).toEqual({ rc: 0, value: 42n });
    expect(kv.get('m').value).toBe('42');
  });

  it('kv_incr: -1 when the value is not a decimal integer or would overflow, and the value is kept', () => {
    kv.set('text', 'abc');
    expect(kv.incr('text', 1n)).toEqual({ rc: -1, value: 0n });
    expect(kv.get('text').value).toBe('abc');
    kv.set('max', '9223372036854775807');
    expect(kv.incr('max', 1n)).toEqual({ rc: -1, value: 0n });
    expect(kv.get('max').value).toBe('9223372036854775807');
    expect(kv.incr('max', -1n)).toEqual({ rc: 0, value: 9223372036854775806n });
    kv.set('min', '-9223372036854775808');
    expect(kv.incr('min', -1n).rc).toBe(-1);
  });

  it('the byte budget: kv_set beyond it returns -2 and changes nothing; kv_incr then fails with -1', async () => {
    // An entry costs its key and value bytes plus an overhead of about 64 bytes
    // (the process store counts what it allocates: the entry and its table):
    // a budget of 1200 holds one 900-byte value and not a 300-byte one besides.
    kv = new Kv(await store.load(1200));
    const big = 'x'.repeat(900);
    expect(kv.set('a', big)).toBe(0);
    expect(kv.set('b', 'z'.repeat(300))).toBe(-2);
    expect(kv.get('b').rc).toBe(-1);
    expect(kv.set('a', 'y'.repeat(1200))).toBe(-2);
    expect(kv.get('a', 2048)).toEqual({ rc: 900, value: big });
    // kv_incr has no -2 in ABI v1: a full store makes it fail with -1.
    expect(kv.incr('c'.repeat(200), 1n)).toEqual({ rc: -1, value: 0n });
    expect(kv.get('c'.repeat(200)).rc).toBe(-1);
    // Deleting frees the budget again.
    expect(kv.del('a')).toBe(1);
    expect(kv.set('b', 'z'.repeat(300))).toBe(0);
    expect(kv.incr('c'.repeat(200), 1n)).toEqual({ rc: 0, value: 1n });
  });

  it('a pointer outside memory is a module fault, not a host crash', () => {
    kv.set('k', 'v');
    for (const op of ['o', 'O']) {
      const r = kv.conn.send(request(op, 'k'));
      expect(r.fault?.kind, op).toBe('trap');
      expect(r.fault?.message).toMatch(/outside memory/);
      expect(r.closed).toBe('fault');
      kv = new Kv(h); // the harness made a fresh instance
    }
    expect(kv.incr('k', 1n).rc).toBe(-1); // "v" is not a number, and still there
    expect(kv.get('k').value).toBe('v');
  });

  if (store.name.startsWith('the process')) {
    it('is one store per process, shared by every instance', async () => {
      const other = new Kv(await loadModule(await fixture('kv'), { store: 'process' }));
      expect(kv.set('shared', 'from one')).toBe(0);
      expect(other.get('shared').value).toBe('from one');
      expect(other.incr('count', 2n).value).toBe(2n);
      expect(kv.incr('count', 3n).value).toBe(5n);
    });

    // The process store's calls use the memory bound per thread (issue 25): each call must
    // read and write the calling instance's memory, also right after another instance's call
    // and after its own memory grew (a new ArrayBuffer). A stale binding would read the other
    // instance's last key ('y2') and write the value there.
    it('each call uses the calling instance\'s memory: alternating instances, and after memory.grow', async () => {
      const other = new Kv(await loadModule(await fixture('kv'), { store: 'process' }));
      expect(kv.set('x1', 'one')).toBe(0);
      expect(kv.set('y2', 'two')).toBe(0); // kv's memory now holds key 'y2'
      expect(other.get('x1')).toEqual({ rc: 3, value: 'one' });
      expect(kv.get('y2')).toEqual({ rc: 3, value: 'two' });
      expect(other.del('y2')).toBe(1);
      expect(kv.get('y2')).toEqual({ rc: -1, value: null });
      for (let i = 0; i < 3; i++) {
        expect(other.get('x1', 1024, 'G')).toEqual({ rc: 3, value: 'one' }); // grows, then gets
        expect(kv.set(`k${i}`, `v${i}`)).toBe(0);
        expect(other.get(`k${i}`)).toEqual({ rc: 2, value: `v${i}` });
        expect(other.incr('n', 5n)).toEqual({ rc: 0, value: BigInt(6 * i + 5) }); // written into other's memory
        expect(kv.incr('n', 1n)).toEqual({ rc: 0, value: BigInt(6 * i + 6) });
      }
    });
  } else {
    it('is a store of the module\'s own: another module loaded beside it sees none of it, nor does the process store', async () => {
      const other = new Kv(await loadModule(await fixture('kv')));
      native.kvClear();
      expect(kv.set('shared', 'from one')).toBe(0);
      expect(other.get('shared')).toEqual({ rc: -1, value: null });
      expect(other.incr('count', 2n).value).toBe(2n);
      expect(kv.incr('count', 3n).value).toBe(3n);
      expect(native.kvStats().keys).toBe(0);
      expect(h.kv.get('shared')).toBe('from one');
      expect(h.kv.get('count')).toBe('3');
    });

    it('answers -3 from every kv function while the store is unavailable (ABI v1.1), changing nothing', () => {
      expect(kv.set('k', 'v')).toBe(0);
      h.kv.unavailable = true;
      expect(kv.get('k')).toEqual({ rc: -3, value: null });
      expect(kv.set('k', 'w')).toBe(-3);
      expect(kv.set('new', 'w')).toBe(-3);
      expect(kv.del('k')).toBe(-3);
      expect(kv.incr('n', 1n)).toEqual({ rc: -3, value: 0n });
      expect(h.kv.keys()).toEqual(['k']);
      expect(h.kv.get('k')).toBe('v');
      h.kv.unavailable = false;
      expect(kv.get('k')).toEqual({ rc: 1, value: 'v' });
      expect(kv.incr('n', 1n)).toEqual({ rc: 0, value: 1n });
    });
  }
});

describe.each(stores)('the v1.2 store calls exactly as docs/abi.md §14 states, on $name', (store) => {
  afterAll(() => {
    native.kvClear();
    native.kvConfigure(budget);
    native.kvClock(-1);
  });

  kv12Table(store);
});

describe('the v1.2 store calls on a module\'s own store (tcpmod/testing) only', () => {
  let h: LoadedModule;
  let kv: Kv12;
  beforeEach(async () => {
    h = await loadModule(await fixture('kv12'));
    kv = new Kv12(h);
  });

  it('a snapshot (what sendInPieces restores between runs) puts TTL changes back too', () => {
    expect(kv.setEx('k', 'v', 0, 100n)).toBe(0);
    expect(kv.setEx('j', 'v')).toBe(0);
    const restore = h.kv.snapshot();
    expect(kv.persist('k')).toBe(1);
    expect(kv.expire('j', 50n)).toBe(0);
    restore();
    expect(h.kv.ttl('k')).toBe(100);
    expect(h.kv.ttl('j')).toBe(null);
  });

  it('answers -3 from every v1.2 call while the store is unavailable, changing nothing', () => {
    kv.setEx('k', 'v', 0, 100n);
    h.kv.unavailable = true;
    expect(kv.getVer('k').rc).toBe(-3);
    expect(kv.getDel('k').rc).toBe(-3);
    expect(kv.setEx('k', 'w')).toBe(-3);
    expect(kv.cas('k', 'w', 1n)).toBe(-3);
    expect(kv.expire('k', 5n)).toBe(-3);
    expect(kv.persist('k')).toBe(-3);
    expect(kv.ttl('k').rc).toBe(-3);
    expect(kv.append('k', 'w')).toBe(-3);
    expect(kv.incrEx('n', 1n).rc).toBe(-3);
    expect(kv.scan('', 0n).rc).toBe(-3);
    expect(kv.delPrefix('')).toBe(-3);
    h.kv.unavailable = false;
    expect(h.kv.keys()).toEqual(['k']);
    expect(h.kv.get('k')).toBe('v');
    expect(h.kv.ttl('k')).toBe(100);
  });
});

/** Sends `bursts` of 'i' on one connection, waiting each time for a reply line per 'i'; returns every value. */
async function count(srv: ServedProcess, bursts: number[]): Promise<number[]> {
  const s = createConnection(srv.port, srv.host);
  await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
  let text = '';
  let wake: (() => void) | null = null;
  let closed = false;
  s.on('data', (d) => {
    text += d;
    wake?.();
  });
  s.on('close', () => {
    closed = true;
    wake?.();
  });
  s.on('error', () => undefined);
  let want = 0;
  for (const n of bursts) {
    want += n;
    s.write('i'.repeat(n));
    while ((text.match(/\n/g) ?? []).length < want) {
      if (closed) throw new Error(`closed after ${text.split('\n').length - 1} replies`);
      await new Promise<void>((r) => (wake = r));
      wake = null;
    }
  }
  s.destroy();
  return text.trim().split('\n').map(Number);
}

describe('kv_incr from many connections on several workers', () => {
  let srv: ServedProcess;
  afterAll(async () => {
    await srv?.stop();
  });

  it('40 connections x 25 increments end at exactly 1000, each value handed out once', async () => {
    srv = await serve(await fixture('counter'), ['--threads', '4']);
    // Singles and bursts, so increments race both one per call and several per call.
    const plan = [1, 1, 1, 2, 5, 1, 3, 1, 1, 4, 1, 2, 1, 1];
    expect(plan.reduce((a, b) => a + b)).toBe(25);
    const seen = (await Promise.all(Array.from({ length: 40 }, () => count(srv, plan)))).flat();
    expect(seen).toHaveLength(1000);
    expect(Math.max(...seen)).toBe(1000);
    expect(new Set(seen).size).toBe(1000);
    expect(await count(srv, [1])).toEqual([1001]);
    expect(await srv.stop()).toBe(0);
  });

  it('--kv-max-bytes bounds the store: an increment that does not fit fails', async () => {
    // 10 bytes cannot hold even the entry "n" = "1"; counter.wat aborts its connection when kv_incr fails.
    srv = await serve(await fixture('counter'), ['--threads', '1', '--kv-max-bytes', '10']);
    await expect(count(srv, [1])).rejects.toThrow(/closed after 0 replies/);
    expect(await srv.stop()).toBe(0);
  });
});
