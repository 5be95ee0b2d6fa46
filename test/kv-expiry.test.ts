// Expiry and eviction in the process store (docs/abi.md §10, §14; --kv-eviction):
// TTLs on the real clock (within 50 ms), the active cycle deleting keys nobody
// reads, each eviction policy keeping --kv-max-bytes without refusing a write it
// can make room for, and a server under a concurrent write flood with metrics.
import { createConnection } from 'node:net';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { native } from '../host/sys.js';
import { loadModule, type TestConn } from '../host/testing.js';
import { fixture } from './fixtures.js';
import { metricsPort, scrape } from './metrics.js';
import { serve } from './server-process.js';
import { sleep, until } from './wait.js';

const budget = native.kvStats().maxBytes;

function req(op: string, key: string, ...args: Buffer[]): Buffer {
  return Buffer.concat([Buffer.from([op.charCodeAt(0), key.length]), Buffer.from(key), ...args]);
}
const u32 = (n: number) => Buffer.from(new Uint32Array([n]).buffer);
const i32 = (n: number) => Buffer.from(new Int32Array([n]).buffer);
const i64 = (n: bigint) => Buffer.from(new BigInt64Array([n]).buffer);

/** kv12.wat on the process store. */
class Store {
  constructor(readonly c: TestConn) {}
  private rc(b: Buffer): number {
    const r = this.c.send(b);
    if (r.fault) throw r.fault;
    return Buffer.from(r.output).readInt32LE(0);
  }
  setEx(key: string, value: string, ttl = 0n): number {
    return this.rc(req('S', key, i32(0), i64(ttl), Buffer.from(value)));
  }
  get(key: string): number {
    return this.rc(req('g', key, u32(0)));
  }
}

async function open(): Promise<Store> {
  return new Store((await loadModule(await fixture('kv12'), { store: 'process' })).connect());
}

describe('expiry on the real clock', () => {
  let kv: Store;
  beforeEach(async () => {
    native.kvClock(-1);
    native.kvClear();
    native.kvConfigure(budget, 'noeviction');
    kv = await open();
  });
  afterAll(() => native.kvClear());

  it('a key with a 200 ms TTL is there until 200 ms and gone within 50 ms after', async () => {
    const start = performance.now();
    expect(kv.setEx('t', 'v', 200n)).toBe(0);
    let gone = 0;
    while (performance.now() - start < 2000) {
      if (kv.get('t') === -1) {
        gone = performance.now() - start;
        break;
      }
      await sleep(2);
    }
    expect(gone).toBeGreaterThanOrEqual(200);
    expect(gone).toBeLessThanOrEqual(250);
  });

  it('the active cycle deletes expired keys that nobody reads, and counts them', async () => {
    const before = native.kvStats().expired;
    for (let i = 0; i < 2000; i++) expect(kv.setEx(`e${i}`, 'v', 1000n)).toBe(0);
    for (let i = 0; i < 100; i++) expect(kv.setEx(`keep${i}`, 'v')).toBe(0);
    expect(native.kvStats().withTtl).toBe(2000);
    await until(() => native.kvStats().keys === 100, 5000, 'the active cycle to delete 2000 expired keys');
    expect(native.kvStats().expired - before).toBe(2000);
    expect(native.kvStats().withTtl).toBe(0);
  });
});

describe('eviction at --kv-max-bytes', () => {
  const max = 200_000;
  const value = 'x'.repeat(150);
  let kv: Store;
  beforeEach(async () => {
    native.kvClock(-1);
    native.kvClear();
    kv = await open();
  });
  afterAll(() => {
    native.kvClear();
    native.kvConfigure(budget, 'noeviction');
  });

  for (const policy of ['allkeys-lru', 'allkeys-lfu'] as const) {
    it(`${policy}: every write succeeds, the bytes stay within the budget, and keys in use survive`, async () => {
      native.kvConfigure(max, policy);
      const evicted = native.kvStats().evicted;
      // About 900 entries fit. 700 cold ones, then 100 hot ones read often, then 500 more.
      for (let i = 0; i < 700; i++) expect(kv.setEx(`cold${i}`, value)).toBe(0);
      await sleep(20);
      for (let i = 0; i < 100; i++) expect(kv.setEx(`hot${i}`, value)).toBe(0);
      for (let round = 0; round < 10; round++) for (let i = 0; i < 100; i++) expect(kv.get(`hot${i}`)).toBe(150);
      await sleep(20);
      expect(native.kvStats().evicted).toBe(evicted);
      for (let i = 0; i < 500; i++) {
        expect(kv.setEx(`new${i}`, value)).toBe(0);
        expect(native.kvStats().bytes).toBeLessThanOrEqual(max);
      }
      // A value as large as kv12.wat takes (4 KB): eviction makes room for it too.
      expect(kv.setEx('big', 'b'.repeat(4000))).toBe(0);
      expect(native.kvStats().bytes).toBeLessThanOrEqual(max);
      expect(native.kvStats().evicted - evicted).toBeGreaterThan(300);
      let hot = 0;
      for (let i = 0; i < 100; i++) if (kv.get(`hot${i}`) === 150) hot++;
      expect(hot).toBeGreaterThanOrEqual(85);
      // Larger than the whole budget: no eviction can satisfy it.
      native.kvConfigure(3000, policy);
      expect(kv.setEx('huge', 'h'.repeat(3500))).toBe(-2);
      expect(kv.setEx('fits', 'f'.repeat(2000))).toBe(0);
      expect(native.kvStats().bytes).toBeLessThanOrEqual(3000);
    });
  }

  it('volatile-lru evicts only keys with a TTL, and answers -2 once none is left', () => {
    native.kvConfigure(max, 'volatile-lru');
    for (let i = 0; i < 500; i++) expect(kv.setEx(`p${i}`, value)).toBe(0);
    for (let i = 0; i < 1500; i++) expect(kv.setEx(`t${i}`, value, 3_600_000n)).toBe(0);
    expect(native.kvStats().bytes).toBeLessThanOrEqual(max);
    for (let i = 0; i < 500; i++) expect(kv.get(`p${i}`)).toBe(150);
    let rc = 0;
    for (let i = 0; i < 2000 && rc === 0; i++) rc = kv.setEx(`q${i}`, value);
    expect(rc).toBe(-2);
    expect(native.kvStats().withTtl).toBe(0);
  });

  it('noeviction answers -2 and evicts nothing', () => {
    native.kvConfigure(max, 'noeviction');
    const before = native.kvStats().evicted;
    let rc = 0;
    for (let i = 0; i < 2000 && rc === 0; i++) rc = kv.setEx(`n${i}`, value);
    expect(rc).toBe(-2);
    expect(native.kvStats().evicted).toBe(before);
  });
});

describe('a server with --kv-eviction under a concurrent write flood', () => {
  it('8 connections on 4 workers: no write refused, tcpmod_kv_bytes within --kv-max-bytes, evictions and expiries counted', async () => {
    const srv = await serve(await fixture('kv12'), ['--threads', '4', '--kv-max-bytes', '300KiB', '--kv-eviction', 'allkeys-lru', '--metrics', '127.0.0.1:0']);
    try {
      const port = await metricsPort(srv, 10_000);
      const flood = async (n: number): Promise<number[]> => {
        const s = createConnection(srv.port, srv.host);
        await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
        const codes: number[] = [];
        let buf = Buffer.alloc(0);
        let wake: (() => void) | null = null;
        s.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          wake?.();
        });
        for (let i = 0; i < 500; i++) {
          // Every tenth with a 30 ms TTL, so the active cycle has work too.
          s.write(req('S', `c${n}:${i}`, i32(0), i64(i % 10 ? 0n : 30n), Buffer.from('v'.repeat(300))));
          const deadline = Date.now() + 10_000;
          while (buf.length < 4) {
            if (Date.now() > deadline) throw new Error('no reply');
            await new Promise<void>((r) => {
              wake = r;
              setTimeout(r, 100);
            });
          }
          codes.push(buf.readInt32LE(0));
          buf = buf.subarray(4);
        }
        s.destroy();
        return codes;
      };
      const codes = (await Promise.all(Array.from({ length: 8 }, (_, n) => flood(n)))).flat();
      expect(codes.filter((c) => c !== 0)).toEqual([]);
      const m = await until(async () => {
        const x = await scrape(port);
        return x.tcpmod_kv_expired_keys_total > 0 ? x : null;
      }, 5000, 'expired keys in the metrics');
      expect(m.tcpmod_kv_bytes).toBeLessThanOrEqual(300 * 1024);
      expect(m.tcpmod_kv_bytes).toBeGreaterThan(200 * 1024);
      expect(m.tcpmod_kv_evicted_keys_total).toBeGreaterThan(1000);
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  }, 60_000);
});
