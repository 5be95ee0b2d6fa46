// Clients of the test fixtures kv.wat and kv12.wat through tcpmod/testing: one
// request per host call, its exact result back. Shared by the store tables of
// test/kv.test.ts (process store, harness store) and test/kv-redis.e2e.test.ts.
import { beforeEach, expect, it } from 'vitest';
import type { LoadedModule, TestConn } from '../host/testing.js';

export function request(op: string, key: string | Buffer, arg: Buffer = Buffer.alloc(0)): Buffer {
  const k = Buffer.from(key);
  return Buffer.concat([Buffer.from([op.charCodeAt(0), k.length]), k, arg]);
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

export function i64(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(n);
  return b;
}

export const KV_NX = 1, KV_XX = 2, KV_KEEPTTL = 4, KV_PREPEND = 1, KV_GT = 8, KV_LT = 16, KV_DECR = 32;
export const TTL_MAX = 2n ** 46n;

export function i32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(n);
  return b;
}

/** One connection of kv12.wat, with a method per v1.2 host function. */
export class Kv12 {
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
  incrAt(key: string, offset: number, delta: bigint, flags = 0): { rc: number; value: bigint } {
    const { rc, rest } = this.call('N', key, i32(offset), i64(BigInt.asIntN(64, delta)), i32(flags));
    return { rc, value: rest.readBigUInt64LE(0) };
  }
  expireEx(key: string, ttl: bigint, flags: number): number {
    return this.call('e', key, i64(ttl), i32(flags)).rc;
  }
  getRange(key: string, offset: number, cap: number): { rc: number; version: bigint; part: string | null } {
    const { rc, rest } = this.call('R', key, i32(offset), u32(cap));
    const n = rc >= 0 ? Math.max(0, Math.min(cap, rc - offset)) : 0;
    return { rc, version: rest.readBigUInt64LE(0), part: rc >= 0 ? rest.subarray(8, 8 + n).toString('latin1') : null };
  }
  /** kv_send (op X; `otherConn`: x, for a connection that is not the one being handled): the result and what reached the client before it. */
  send(key: string, offset: number, len: number, version = 0n, head = '', otherConn = false): { rc: number; sent: string } {
    const r = this.conn.send(request(otherConn ? 'x' : 'X', key, Buffer.concat([i32(offset), i32(len), i64(BigInt.asIntN(64, version)), Buffer.from(head)])));
    if (r.fault) throw r.fault;
    const out = Buffer.from(r.output);
    return { rc: out.readInt32LE(out.length - 4), sent: out.subarray(0, out.length - 4).toString('latin1') };
  }
}


/** How a test gets kv.wat or kv12.wat on one kind of store, with a byte budget. */
export interface StoreKind {
  name: string;
  load(maxBytes?: number, name?: string): Promise<LoadedModule>;
  /** Moves the clock the store's TTLs run on (a fake clock; or, on Redis, sleeps that long). */
  advance(m: LoadedModule, ms: number): void;
  /** TTLs are exact (a fake clock): else within 50 ms below, and the edge of an expiry is not checked. */
  exact: boolean;
  /** load(maxBytes) gives a store with that budget. */
  budget: boolean;
}

/** The time-to-live kv_ttl reported: exactly `ms` on a fake clock, else up to 50 ms less (the real one ran meanwhile). */
function checkTtl(store: StoreKind, r: { rc: number; ms: bigint }, ms: number): void {
  expect(r.rc).toBe(1);
  if (store.exact) expect(r.ms).toBe(BigInt(ms));
  else expect(Number(r.ms)).toSatisfy((left: number) => left <= ms && left >= ms - 50);
}

/**
 * The v1.2 calls at every result code, as docs/abi.md §14 states them: the
 * tests of one store, inside its describe. Every test starts on an empty store.
 */
export function kv12Table(store: StoreKind): void {
  let h: LoadedModule;
  let kv: Kv12;
  const advance = (ms: number) => store.advance(h, ms);
  const ttlIs = (r: { rc: number; ms: bigint }, ms: number) => checkTtl(store, r, ms);
  beforeEach(async () => {
    h = await store.load(undefined, 'kv12');
    kv = new Kv12(h);
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
    ttlIs(kv.ttl('t'), 1000);
    advance(400);
    expect(kv.setEx('t', 'w', KV_KEEPTTL)).toBe(0);
    ttlIs(kv.ttl('t'), 600);
    advance(600);
    if (store.exact) expect(kv.get('t')).toEqual({ rc: 1, value: 'w' });
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
    ttlIs(kv.ttl('c'), 500);
    expect(kv.cas('c', 'c', kv.version('c'), KV_KEEPTTL)).toBe(0);
    ttlIs(kv.ttl('c'), 500);
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
    ttlIs(kv.ttl('x'), 70);
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
    if (store.exact) expect(kv.ttl('y')).toEqual({ rc: 1, ms: 0n });
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
    ttlIs(kv.ttl('p'), 100);
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
    ttlIs(kv.ttl('n'), 300);
  });

  it("kv_incr_at: memcached's incr/decr on the u64 after a header; incr wraps, decr stops at 0; -6 not a number there; -1; -4; the TTL kept", () => {
    const max = 2n ** 64n - 1n;
    expect(kv.incrAt('c', 4, 1n)).toEqual({ rc: -1, value: 0n });
    expect(kv.get('c').rc).toBe(-1);
    kv.set('c', 'HEAD41');
    expect(kv.incrAt('c', 4, 1n)).toEqual({ rc: 0, value: 42n });
    expect(kv.get('c').value).toBe('HEAD42');
    const v0 = kv.version('c');
    expect(kv.incrAt('c', 4, 100n, KV_DECR)).toEqual({ rc: 0, value: 0n }); // floors at 0
    expect(kv.get('c').value).toBe('HEAD0');
    expect(kv.version('c')).not.toBe(v0);
    expect(kv.incrAt('c', 4, max)).toEqual({ rc: 0, value: max });
    expect(kv.get('c').value).toBe('HEAD18446744073709551615');
    expect(kv.incrAt('c', 4, 2n)).toEqual({ rc: 0, value: 1n }); // wraps modulo 2^64
    expect(kv.get('c').value).toBe('HEAD1');
    // Trailing spaces (memcached pads a shrunk number with them) are read and dropped; leading zeros are read.
    kv.set('p', 'xx0099  ');
    expect(kv.incrAt('p', 2, 1n)).toEqual({ rc: 0, value: 100n });
    expect(kv.get('p').value).toBe('xx100');
    expect(kv.incrAt('p', 0, 1n, KV_DECR).rc).toBe(-6); // "xx100" is not a number
    kv.set('n', '7');
    expect(kv.incrAt('n', 0, 3n, KV_DECR)).toEqual({ rc: 0, value: 4n });
    for (const bad of ['HEAD', 'HEAD-1', 'HEAD1x', 'HEAD 1', 'HEAD18446744073709551616', 'HEAD000000000000000000001', 'HEAD1.5']) {
      kv.set('b', bad);
      expect(kv.incrAt('b', 4, 1n).rc, bad).toBe(-6);
      expect(kv.get('b').value, bad).toBe(bad); // nothing written
    }
    expect(kv.incrAt('b', 99, 1n).rc).toBe(-6); // past the end
    expect(kv.incrAt('b', -1, 1n).rc).toBe(-4);
    expect(kv.incrAt('b', 0, 1n, KV_XX).rc).toBe(-4);
    kv.set('t', 'HEAD5');
    kv.expire('t', 300n);
    expect(kv.incrAt('t', 4, 1n).rc).toBe(0);
    ttlIs(kv.ttl('t'), 300);
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

  if (store.budget) it('-2 when the budget is short, for every call that writes, changing nothing', async () => {
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

  it('kv_expire_ex: Redis 7 EXPIRE NX/XX/GT/LT: 1 set, 0 the condition did not hold (nothing changed); -1 missing; -4 bad flags or TTL', () => {
    expect(kv.expireEx('x', 100n, 0)).toBe(-1);
    expect(kv.expireEx('x', 100n, KV_NX)).toBe(-1);
    kv.set('x', 'v');
    for (const [ttl, flags] of [[100n, KV_NX | KV_XX], [100n, KV_NX | KV_GT], [100n, KV_NX | KV_LT], [100n, KV_GT | KV_LT], [100n, 4], [100n, 32], [-1n, 0], [TTL_MAX + 1n, KV_XX]] as const)
      expect(kv.expireEx('x', ttl, flags), `ttl ${ttl} flags ${flags}`).toBe(-4);
    // No TTL: XX and GT do nothing (none counts as infinite); NX sets one.
    expect(kv.expireEx('x', 1000n, KV_XX)).toBe(0);
    expect(kv.expireEx('x', 1000n, KV_GT)).toBe(0);
    expect(kv.ttl('x').rc).toBe(0);
    expect(kv.expireEx('x', 1000n, KV_NX)).toBe(1);
    ttlIs(kv.ttl('x'), 1000);
    // A TTL now: NX does nothing; GT only later, LT only earlier; XX with either.
    expect(kv.expireEx('x', 5000n, KV_NX)).toBe(0);
    expect(kv.expireEx('x', 500n, KV_GT)).toBe(0);
    expect(kv.expireEx('x', 2000n, KV_LT)).toBe(0);
    ttlIs(kv.ttl('x'), 1000);
    expect(kv.expireEx('x', 2000n, KV_GT | KV_XX)).toBe(1);
    ttlIs(kv.ttl('x'), 2000);
    expect(kv.expireEx('x', 300n, KV_LT)).toBe(1);
    ttlIs(kv.ttl('x'), 300);
    expect(kv.expireEx('x', 400n, KV_XX)).toBe(1);
    ttlIs(kv.ttl('x'), 400);
    // Without a TTL, LT always holds (an infinite one is later than any).
    kv.set('y', 'v');
    expect(kv.expireEx('y', 700n, KV_LT)).toBe(1);
    ttlIs(kv.ttl('y'), 700);
    // A TTL of 0 deletes the key when the condition holds, and only then.
    expect(kv.expireEx('y', 0n, KV_GT)).toBe(0);
    expect(kv.get('y').value).toBe('v');
    expect(kv.expireEx('y', 0n, KV_LT)).toBe(1);
    expect(kv.get('y').rc).toBe(-1);
    // The version is not touched; with no flags it is kv_expire with 1 for set.
    const ver = kv.version('x');
    expect(kv.expireEx('x', 9000n, 0)).toBe(1);
    ttlIs(kv.ttl('x'), 9000);
    expect(kv.version('x')).toBe(ver);
    // An expired key is missing.
    kv.setEx('e', 'x', 0, 5n);
    advance(6);
    expect(kv.expireEx('e', 100n, KV_LT)).toBe(-1);
  });

  it('kv_get_range: the length, the bytes of the range that exist, the version; -1 missing; -4 offset < 0', () => {
    expect(kv.getRange('r', 0, 4)).toEqual({ rc: -1, version: 0n, part: null });
    kv.set('r', 'hello world');
    const v = kv.version('r');
    expect(kv.getRange('r', 0, 5)).toEqual({ rc: 11, version: v, part: 'hello' });
    expect(kv.getRange('r', 6, 100)).toEqual({ rc: 11, version: v, part: 'world' });
    expect(kv.getRange('r', 0, 0)).toEqual({ rc: 11, version: v, part: '' });
    expect(kv.getRange('r', 11, 4)).toEqual({ rc: 11, version: v, part: '' });
    expect(kv.getRange('r', 50, 4)).toEqual({ rc: 11, version: v, part: '' });
    expect(kv.getRange('r', -1, 4).rc).toBe(-4);
    kv.setEx('e', 'x', 0, 5n);
    advance(6);
    expect(kv.getRange('e', 0, 4).rc).toBe(-1);
  });

  it('kv_send: the head then the range, in output order before the out region; -1, -5, -4 and -8 send nothing', () => {
    expect(kv.send('s', 0, 10, 0n, 'HEAD')).toEqual({ rc: -1, sent: '' });
    kv.set('s', 'hello world');
    const v = kv.version('s');
    expect(kv.send('s', 0, 11, 0n, 'VALUE ')).toEqual({ rc: 11, sent: 'VALUE hello world' });
    expect(kv.send('s', 6, 1000, v)).toEqual({ rc: 5, sent: 'world' });
    expect(kv.send('s', 2, 3)).toEqual({ rc: 3, sent: 'llo' });
    expect(kv.send('s', 11, 3, 0n, 'h')).toEqual({ rc: 0, sent: 'h' });
    expect(kv.send('s', 0, 0)).toEqual({ rc: 0, sent: '' });
    expect(kv.send('s', 0, 11, v + 1n, 'HEAD')).toEqual({ rc: -5, sent: '' });
    expect(kv.send('s', -1, 3, 0n, 'HEAD')).toEqual({ rc: -4, sent: '' });
    expect(kv.send('s', 0, -3, 0n, 'HEAD')).toEqual({ rc: -4, sent: '' });
    expect(kv.send('s', 0, 11, 0n, 'HEAD', true)).toEqual({ rc: -8, sent: '' });
    kv.append('s', '!');
    expect(kv.send('s', 0, 100, v)).toEqual({ rc: -5, sent: '' });
    expect(kv.send('s', 0, 100, kv.version('s'))).toEqual({ rc: 12, sent: 'hello world!' });
  });

  it('kv_send of a value larger than its staging buffer and the module\'s memory: every byte, in order', () => {
    const chunk = Array.from({ length: 4000 }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
    for (let i = 0; i < 50; i++) expect(kv.append('big', chunk)).toBe((i + 1) * 4000);
    const r = kv.send('big', 0, 1 << 30, kv.version('big'), 'H');
    expect(r.rc).toBe(200_000);
    expect(r.sent).toBe('H' + chunk.repeat(50));
    expect(kv.send('big', 199_990, 100)).toEqual({ rc: 10, sent: chunk.slice(3990) });
  });

  it('a pointer outside memory is a module fault', () => {
    const r = kv.conn.send(request('O', 'k'));
    expect(r.fault?.kind).toBe('trap');
    expect(r.fault?.message).toMatch(/kv_scan next.*outside memory/);
  });

}
