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

const OUT = 8196; // where kv.wat has the host write values (its out region + 4)

function request(op: string, key: string | Buffer, arg: Buffer = Buffer.alloc(0)): Buffer {
  const k = Buffer.from(key);
  return Buffer.concat([Buffer.from([op.charCodeAt(0), k.length]), k, arg]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function i64(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(n);
  return b;
}

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
  get(key: string | Buffer, cap = 1024): { rc: number; value: string | null } {
    const { rc, rest } = this.call(request('g', key, u32(cap)));
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

/** How a test gets kv.wat on one kind of store, with a byte budget. */
interface StoreKind {
  name: string;
  load(maxBytes?: number, name?: string): Promise<LoadedModule>;
  /** Moves the clock the store's TTLs run on (the harness' fake clock; the native store's test clock). */
  advance(m: LoadedModule, ms: number): void;
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
  },
  {
    name: "a module's own store (tcpmod/testing)",
    load: async (maxBytes, name = 'kv') => loadModule(await fixture(name), maxBytes === undefined ? {} : { kvMaxBytes: maxBytes }),
    advance: (m, ms) => void m.clock.advance(ms),
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

const KV_NX = 1, KV_XX = 2, KV_KEEPTTL = 4, KV_PREPEND = 1;
const TTL_MAX = 2n ** 46n;

function i32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(n);
  return b;
}

/** One connection of kv12.wat, with a method per v1.2 host function. */
class Kv12 {
  conn: TestConn;
  constructor(readonly m: LoadedModule) {
    this.conn = m.connect();
  }
  private call(op: string, key: string | Buffer, ...args: Buffer[]): { rc: number; rest: Buffer } {
    const r = this.conn.send(request(op, key, Buffer.concat(args)));
    if (r.fault) throw r.fault;
    const out = Buffer.from(r.output);
    return { rc: out.readInt32LE(0), rest: out.subarray(4) };
  }
  set(key: string, value: string): number {
    return this.call('s', key, Buffer.from(value)).rc;
  }
  get(key: string, cap = 1024): { rc: number; value: string | null } {
    const { rc, rest } = this.call('g', key, u32(cap));
    return { rc, value: rc >= 0 && rc <= cap ? rest.toString('latin1') : null };
  }
  getVer(key: string, cap = 1024): { rc: number; version: bigint; value: string | null } {
    const { rc, rest } = this.call('V', key, u32(cap));
    return { rc, version: rest.readBigUInt64LE(0), value: rc >= 0 && rc <= cap ? rest.subarray(8).toString('latin1') : null };
  }
  version(key: string): bigint {
    return this.getVer(key).version;
  }
  getDel(key: string, cap = 1024): { rc: number; value: string | null } {
    const { rc, rest } = this.call('G', key, u32(cap));
    return { rc, value: rc >= 0 && rc <= cap ? rest.toString('latin1') : null };
  }
  setEx(key: string, value: string, flags = 0, ttl = 0n): number {
    return this.call('S', key, i32(flags), i64(ttl), Buffer.from(value)).rc;
  }
  cas(key: string, value: string, version: bigint, flags = 0, ttl = 0n): number {
    return this.call('C', key, i32(flags), i64(ttl), i64(BigInt.asIntN(64, version)), Buffer.from(value)).rc;
  }
  expire(key: string, ttl: bigint): number {
    return this.call('E', key, i64(ttl)).rc;
  }
  persist(key: string): number {
    return this.call('P', key).rc;
  }
  ttl(key: string): { rc: number; ms: bigint } {
    const { rc, rest } = this.call('T', key);
    return { rc, ms: rest.readBigInt64LE(0) };
  }
  append(key: string, value: string, flags = 0): number {
    return this.call('A', key, i32(flags), Buffer.from(value)).rc;
  }
  incrEx(key: string, delta: bigint, flags = 0): { rc: number; value: bigint } {
    const { rc, rest } = this.call('I', key, i64(delta), i32(flags));
    return { rc, value: rest.readBigInt64LE(0) };
  }
  scan(prefix: string, cursor: bigint, count = 10, cap = 4096): { rc: number; next: bigint; keys: string[] } {
    const { rc, rest } = this.call('L', prefix, i64(cursor), i32(count), u32(cap));
    const keys: string[] = [];
    let at = 8;
    for (let i = 0; i < rc; i++) {
      const n = rest.readUInt32LE(at);
      keys.push(rest.subarray(at + 4, at + 4 + n).toString('latin1'));
      at += 4 + n;
    }
    return { rc, next: rest.readBigInt64LE(0), keys };
  }
  /** Every key with the prefix, scanning `count` at a time; `between` runs after each call. */
  scanAll(prefix: string, count: number, between: (call: number) => void = () => undefined): string[] {
    const keys: string[] = [];
    let cursor = 0n;
    for (let call = 0; call < 100_000; call++) {
      const r = this.scan(prefix, cursor, count);
      expect(r.rc).toBeGreaterThanOrEqual(0);
      keys.push(...r.keys);
      between(call);
      if (r.next === 0n) return keys;
      cursor = r.next;
    }
    throw new Error('the scan did not end');
  }
  delPrefix(prefix: string): number {
    return this.call('D', prefix).rc;
  }
}

describe.each(stores)('the v1.2 store calls exactly as docs/abi.md §14 states, on $name', (store) => {
  let h: LoadedModule;
  let kv: Kv12;
  const advance = (ms: number) => store.advance(h, ms);
  beforeEach(async () => {
    h = await store.load(undefined, 'kv12');
    kv = new Kv12(h);
  });
  afterAll(() => {
    native.kvClear();
    native.kvConfigure(budget);
    native.kvClock(-1);
  });

  it('kv_set_ex: 0; NX -5 when present; XX -1 when missing; -4 for bad flags or TTLs, changing nothing', () => {
    expect(kv.setEx('a', '1', KV_XX)).toBe(-1);
    expect(kv.get('a').rc).toBe(-1);
    expect(kv.setEx('a', '1', KV_NX)).toBe(0);
    expect(kv.setEx('a', '2', KV_NX)).toBe(-5);
    expect(kv.setEx('a', '3', KV_XX)).toBe(0);
    expect(kv.get('a').value).toBe('3');
    for (const [flags, ttl] of [[KV_NX | KV_XX, 0n], [8, 0n], [0, -1n], [0, TTL_MAX + 1n], [KV_KEEPTTL, 5n]] as const)
      expect(kv.setEx('a', 'bad', flags, ttl), `flags ${flags} ttl ${ttl}`).toBe(-4);
    expect(kv.setEx('a', 'max', 0, TTL_MAX)).toBe(0);
    expect(kv.get('a').value).toBe('max');
  });

  it('kv_set_ex with a TTL expires exactly: alive at its expiry time, gone 1 ms later; KEEPTTL keeps it, a plain set clears it', () => {
    expect(kv.setEx('t', 'v', 0, 1000n)).toBe(0);
    expect(kv.ttl('t')).toEqual({ rc: 1, ms: 1000n });
    advance(400);
    expect(kv.setEx('t', 'w', KV_KEEPTTL)).toBe(0);
    expect(kv.ttl('t')).toEqual({ rc: 1, ms: 600n });
    advance(600);
    expect(kv.get('t')).toEqual({ rc: 1, value: 'w' });
    advance(1);
    expect(kv.get('t').rc).toBe(-1);
    expect(kv.ttl('t').rc).toBe(-1);
    // KEEPTTL on a new key: no TTL. A v1 kv_set clears a TTL, as Redis' SET does.
    expect(kv.setEx('k', 'v', KV_KEEPTTL)).toBe(0);
    expect(kv.ttl('k').rc).toBe(0);
    kv.setEx('k', 'v', 0, 50n);
    expect(kv.set('k', 'plain')).toBe(0);
    expect(kv.ttl('k').rc).toBe(0);
    advance(100);
    expect(kv.get('k').value).toBe('plain');
    // NX sees an expired key as absent.
    kv.setEx('n', 'old', 0, 10n);
    advance(11);
    expect(kv.setEx('n', 'new', KV_NX)).toBe(0);
  });

  it('kv_get_ver: -1 missing; the length (copying only when it fits) and a version that changes on every write and only then', () => {
    expect(kv.getVer('v')).toEqual({ rc: -1, version: 0n, value: null });
    kv.set('v', 'one');
    const v1 = kv.getVer('v');
    expect(v1.rc).toBe(3);
    expect(v1.value).toBe('one');
    expect(v1.version).not.toBe(0n);
    const small = kv.getVer('v', 2);
    expect(small).toEqual({ rc: 3, version: v1.version, value: null });
    const seen = new Set([v1.version]);
    const write = [
      () => kv.set('v', 'two'), () => kv.setEx('v', '3', KV_XX), () => kv.append('v', '4'), () => kv.incrEx('v', 1n),
      () => kv.cas('v', 'five', kv.version('v')),
    ];
    for (const w of write) {
      w();
      const v = kv.version('v');
      expect(seen.has(v)).toBe(false);
      seen.add(v);
    }
    // Changing only the TTL is not a write of the value.
    const before = kv.version('v');
    kv.expire('v', 10_000n);
    kv.persist('v');
    kv.get('v');
    expect(kv.version('v')).toBe(before);
    // Another key's versions never equal this one's.
    kv.set('w', 'five');
    expect(kv.version('w')).not.toBe(before);
  });

  it('kv_cas: 0 on the current version; -5 on another; -1 missing; -4 bad flags or TTL; TTL set or kept', () => {
    expect(kv.cas('c', 'x', 1n)).toBe(-1);
    kv.set('c', 'a');
    const v = kv.version('c');
    expect(kv.cas('c', 'b', v + 1000n)).toBe(-5);
    expect(kv.get('c').value).toBe('a');
    expect(kv.cas('c', 'b', v, KV_NX)).toBe(-4);
    expect(kv.cas('c', 'b', v, 0, -5n)).toBe(-4);
    expect(kv.cas('c', 'b', v, 0, 500n)).toBe(0);
    expect(kv.cas('c', 'c', v)).toBe(-5);
    expect(kv.ttl('c')).toEqual({ rc: 1, ms: 500n });
    expect(kv.cas('c', 'c', kv.version('c'), KV_KEEPTTL)).toBe(0);
    expect(kv.ttl('c')).toEqual({ rc: 1, ms: 500n });
    expect(kv.cas('c', 'd', kv.version('c'))).toBe(0);
    expect(kv.ttl('c').rc).toBe(0);
    expect(kv.get('c').value).toBe('d');
    // An expired key is missing for cas.
    kv.setEx('e', 'x', 0, 5n);
    const ev = kv.version('e');
    advance(6);
    expect(kv.cas('e', 'y', ev)).toBe(-1);
  });

  it('kv_getdel: the value, deleted; the length and nothing deleted when out_cap is too small; -1 missing', () => {
    expect(kv.getDel('d')).toEqual({ rc: -1, value: null });
    kv.set('d', 'hello');
    expect(kv.getDel('d', 4)).toEqual({ rc: 5, value: null });
    expect(kv.get('d').value).toBe('hello');
    expect(kv.getDel('d', 5)).toEqual({ rc: 5, value: 'hello' });
    expect(kv.get('d').rc).toBe(-1);
  });

  it('kv_expire / kv_persist / kv_ttl: every result code', () => {
    expect(kv.expire('x', 100n)).toBe(-1);
    expect(kv.persist('x')).toBe(-1);
    expect(kv.ttl('x')).toEqual({ rc: -1, ms: 0n });
    kv.set('x', 'v');
    expect(kv.ttl('x')).toEqual({ rc: 0, ms: 0n });
    expect(kv.persist('x')).toBe(0);
    expect(kv.expire('x', -1n)).toBe(-4);
    expect(kv.expire('x', TTL_MAX + 1n)).toBe(-4);
    expect(kv.expire('x', 100n)).toBe(0);
    advance(30);
    expect(kv.ttl('x')).toEqual({ rc: 1, ms: 70n });
    expect(kv.persist('x')).toBe(1);
    expect(kv.ttl('x')).toEqual({ rc: 0, ms: 0n });
    advance(1000);
    expect(kv.get('x').value).toBe('v');
    // ttl 0 deletes at once, as Redis' EXPIRE with 0 does.
    expect(kv.expire('x', 0n)).toBe(0);
    expect(kv.get('x').rc).toBe(-1);
    kv.set('y', 'v');
    kv.expire('y', 20n);
    advance(20);
    expect(kv.ttl('y')).toEqual({ rc: 1, ms: 0n });
    advance(1);
    expect(kv.expire('y', 100n)).toBe(-1);
  });

  it('kv_append: the new length; PREPEND; XX -1 when missing; created otherwise; the TTL kept; -4 bad flags', () => {
    expect(kv.append('p', 'x', KV_XX)).toBe(-1);
    expect(kv.get('p').rc).toBe(-1);
    expect(kv.append('p', 'mid')).toBe(3);
    expect(kv.append('p', 'end', KV_XX)).toBe(6);
    expect(kv.append('p', 'start-', KV_PREPEND | KV_XX)).toBe(12);
    expect(kv.get('p').value).toBe('start-midend');
    expect(kv.append('p', '!', 8)).toBe(-4);
    kv.expire('p', 100n);
    expect(kv.append('p', '!')).toBe(13);
    expect(kv.ttl('p')).toEqual({ rc: 1, ms: 100n });
    expect(kv.append('p', '', 0)).toBe(13);
  });

  it('kv_incr_ex: INCRBY on canonical integers; XX -1 when missing; -6 not an integer or overflow; the TTL kept; -4 bad flags', () => {
    expect(kv.incrEx('n', 5n, KV_XX)).toEqual({ rc: -1, value: 0n });
    expect(kv.get('n').rc).toBe(-1);
    expect(kv.incrEx('n', 5n)).toEqual({ rc: 0, value: 5n });
    expect(kv.incrEx('n', -8n, KV_XX)).toEqual({ rc: 0, value: -3n });
    expect(kv.get('n').value).toBe('-3');
    kv.set('t', '007');
    expect(kv.incrEx('t', 1n)).toEqual({ rc: -6, value: 0n });
    kv.set('m', '9223372036854775807');
    expect(kv.incrEx('m', 1n)).toEqual({ rc: -6, value: 0n });
    expect(kv.get('m').value).toBe('9223372036854775807');
    expect(kv.incrEx('n', 1n, KV_NX)).toEqual({ rc: -4, value: 0n });
    kv.expire('n', 300n);
    expect(kv.incrEx('n', 1n).rc).toBe(0);
    expect(kv.ttl('n')).toEqual({ rc: 1, ms: 300n });
  });

  it('kv_scan: every key with the prefix once, in bounded steps; -4 bad cursor or count; -7 when out cannot hold a key', () => {
    for (let i = 0; i < 300; i++) kv.set(`user:${i}`, 'v');
    for (let i = 0; i < 50; i++) kv.set(`other:${i}`, 'v');
    const r = kv.scan('user:', 0n, 10);
    expect(r.rc).toBe(r.keys.length);
    expect(r.next).not.toBe(0n);
    expect(r.keys.length).toBeLessThanOrEqual(20);
    const all = kv.scanAll('user:', 10);
    expect(new Set(all).size).toBe(300);
    expect(all.every((k) => k.startsWith('user:'))).toBe(true);
    expect(new Set(kv.scanAll('', 7)).size).toBe(350);
    expect(kv.scan('user:', -1n).rc).toBe(-4);
    expect(kv.scan('user:', 0n, 0).rc).toBe(-4);
    expect(kv.scan('user:', 0n, 10, 5).rc).toBe(-7); // no "user:N" key fits 5 bytes with its length
    expect(kv.scanAll('nothing:', 100)).toEqual([]);
    // Expired keys are not listed.
    kv.setEx('user:gone', 'v', 0, 1n);
    advance(2);
    expect(kv.scanAll('user:gone', 50)).toEqual([]);
  });

  it('kv_scan is stable under concurrent writes: a key present for the whole scan comes back, however the store grows and shrinks', () => {
    for (let i = 0; i < 500; i++) kv.set(`k${i}`, 'v');
    const seen = kv.scanAll('k', 10, (call) => {
      if (call === 3) for (let i = 0; i < 3000; i++) kv.set(`g${i}`, 'v');
      if (call === 20) expect(kv.delPrefix('g')).toBe(3000);
      if (call === 25) for (let i = 0; i < 100; i++) kv.set(`k-new${i}`, 'v');
    });
    const old = new Set(seen.filter((k) => !k.startsWith('k-new')));
    expect(old.size).toBe(500);
  });

  it('kv_del_prefix: how many it deleted; other keys stay', () => {
    for (let i = 0; i < 20; i++) kv.set(`s:${i}`, 'v');
    kv.set('t:1', 'v');
    kv.set('s', 'v');
    expect(kv.delPrefix('s:')).toBe(20);
    expect(kv.delPrefix('s:')).toBe(0);
    expect(kv.get('t:1').value).toBe('v');
    expect(kv.get('s').value).toBe('v');
    expect(kv.delPrefix('')).toBe(2);
    expect(kv.get('t:1').rc).toBe(-1);
  });

  it('-2 when the budget is short, for every call that writes, changing nothing', async () => {
    kv = new Kv12(await store.load(1200, 'kv12'));
    expect(kv.setEx('a', 'x'.repeat(900))).toBe(0);
    const big = 'z'.repeat(300);
    expect(kv.setEx('b', big)).toBe(-2);
    expect(kv.setEx('a', 'y'.repeat(1200), KV_XX)).toBe(-2);
    expect(kv.cas('a', 'y'.repeat(1200), kv.version('a'))).toBe(-2);
    expect(kv.append('a', big)).toBe(-2);
    expect(kv.incrEx('c'.repeat(250), 1n)).toEqual({ rc: -2, value: 0n });
    expect(kv.get('a', 2048)).toEqual({ rc: 900, value: 'x'.repeat(900) });
    expect(kv.get('b').rc).toBe(-1);
    expect(kv.getDel('a', 2048).rc).toBe(900);
    expect(kv.setEx('b', big)).toBe(0);
  });

  it('a pointer outside memory is a module fault', () => {
    const r = kv.conn.send(request('O', 'k'));
    expect(r.fault?.kind).toBe('trap');
    expect(r.fault?.message).toMatch(/kv_scan next.*outside memory/);
  });

  if (!store.name.startsWith('the process')) {
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
  }
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
