// The Redis-backed key-value store (--kv redis://…) end to end: our own
// redis-server, two `tcpmod serve` processes sharing it, real clients
// (redis-cli, raw sockets). Then the store goes away (stopped, killed) and
// comes back on the same port, with test/fixtures/kv.wat reporting each kv
// call's exact result code. Also the native RESP2 reply parser, fed at every
// split point. A missing redis-server or redis-cli fails the suite (.ci/run
// installs them).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { native } from '../host/sys.js';
import { fixture } from './fixtures.js';
import { loadModule } from '../host/testing.js';
import { newCommandsWithCli } from './resp-commands.js';
import { Kv12, kv12Table, KV_PREPEND, KV_XX, type StoreKind } from './kv-calls.js';
import { metricsPort, scrape } from './metrics.js';
import { open, readBytes } from './net-client.js';
import { requireTool, run, serve, type ServedProcess } from './server-process.js';
import { freePort, RedisServer, startTlsRedis, type TlsRedis } from './services.js';
import { makeTestCerts, type TestCerts } from './tls-certs.js';
import { sleep, until } from './wait.js';

// ---- our own redis-server -----------------------------------------------------

const store = new RedisServer();
const startRedis = () => store.start();
const killRedis = () => store.kill();
const redisCli = (...args: string[]) => store.cli(...args);

// ---- clients --------------------------------------------------------------------

/** A text-protocol connection: ask() sends a request and waits for `n` reply lines. */
class LineConn {
  private buf = '';
  private waiting: { n: number; resolve: (lines: string[]) => void } | null = null;
  constructor(readonly s: Socket) {
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      this.buf += d;
      this.deliver();
    });
  }
  private deliver(): void {
    if (!this.waiting) return;
    const lines = this.buf.split('\r\n');
    if (lines.length - 1 < this.waiting.n) return;
    const w = this.waiting;
    this.waiting = null;
    this.buf = lines.slice(w.n).join('\r\n');
    w.resolve(lines.slice(0, w.n));
  }
  ask(req: string): Promise<string>;
  ask(req: string, n: number): Promise<string[]>;
  ask(req: string, n?: number): Promise<string | string[]> {
    const p = new Promise<string[]>((resolve) => (this.waiting = { n: n ?? 1, resolve }));
    this.s.write(req);
    this.deliver();
    return p.then((lines) => (n === undefined ? lines[0] : lines));
  }
}

/** A RESP client on a raw socket: one command at a time, one reply line back (no bulk values). */
class RespConn extends LineConn {
  command(...args: string[]): Promise<string> {
    return this.ask(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
  }
}

/** One connection to kv.wat: each request is one kv call; the reply starts with its i32 result. */
class KvConn {
  private buf = Buffer.alloc(0);
  private want: { n: number; resolve: (b: Buffer) => void } | null = null;
  private closed = false;
  private onClose: (() => void) | null = null;
  constructor(readonly s: Socket) {
    s.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.deliver();
    });
    s.on('error', () => undefined);
    s.once('close', () => {
      this.closed = true;
      this.onClose?.();
    });
  }
  private deliver(): void {
    if (!this.want || this.buf.length < this.want.n) return;
    const out = this.buf.subarray(0, this.want.n);
    this.buf = this.buf.subarray(this.want.n);
    const w = this.want;
    this.want = null;
    w.resolve(out);
  }
  /** A closed connection (the server's watchdog stopped the worker) rejects the call in progress. */
  private call(req: Buffer, replyLen: (rc: number) => number): Promise<{ rc: number; rest: Buffer }> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error('connection closed'));
      this.onClose = () => reject(new Error('the server closed the connection during a kv call'));
      this.want = {
        n: 4,
        resolve: (head) => {
          const rc = head.readInt32LE(0);
          const more = replyLen(rc);
          if (more === 0) return resolve({ rc, rest: Buffer.alloc(0) });
          this.want = { n: more, resolve: (rest) => resolve({ rc, rest }) };
          this.deliver();
        },
      };
      this.s.write(req);
      this.deliver();
    });
  }
  async set(key: string, value: string): Promise<number> {
    return (await this.call(Buffer.concat([Buffer.from([0x73, key.length]), Buffer.from(key), Buffer.from(value)]), () => 0)).rc;
  }
  async get(key: string, cap = 64): Promise<{ rc: number; value: string | null }> {
    const arg = Buffer.alloc(4);
    arg.writeUInt32LE(cap);
    const r = await this.call(Buffer.concat([Buffer.from([0x67, key.length]), Buffer.from(key), arg]), (rc) => (rc >= 0 && rc <= cap ? rc : 0));
    return { rc: r.rc, value: r.rc >= 0 && r.rc <= cap ? r.rest.toString('latin1') : null };
  }
  async incr(key: string, delta: bigint): Promise<{ rc: number; value: bigint }> {
    const arg = Buffer.alloc(8);
    arg.writeBigInt64LE(delta);
    const r = await this.call(Buffer.concat([Buffer.from([0x69, key.length]), Buffer.from(key), arg]), () => 8);
    return { rc: r.rc, value: r.rest.readBigInt64LE(0) };
  }
  /** A request that calls no kv function (kv.wat answers an unknown op with 0). */
  async ping(): Promise<number> {
    return (await this.call(Buffer.from([0x78, 0]), () => 0)).rc;
  }
  async del(key: string): Promise<number> {
    return (await this.call(Buffer.concat([Buffer.from([0x64, key.length]), Buffer.from(key)]), () => 0)).rc;
  }
}

beforeAll(async () => {
  await requireTool('redis-server');
  await requireTool('redis-cli');
  await startRedis();
}, 60_000);

afterAll(async () => {
  await killRedis();
});

// ---- RESP2 reply parser -------------------------------------------------------------

describe('the native RESP2 reply parser', () => {
  const parse = (s: string | Buffer) => native.kvParseReply(Buffer.from(s as string, 'latin1'), 0, Buffer.byteLength(s as string, 'latin1'));
  const complete: [string, object][] = [
    ['+OK\r\n', { type: '+', off: 1, len: 2 }],
    ['-ERR value is not an integer or out of range\r\n', { type: '-', off: 1, len: 43 }],
    [':0\r\n', { type: ':', integer: 0 }],
    [':-9223372036854775807\r\n', { type: ':', integer: -9223372036854775807 }],
    ['$-1\r\n', { type: '$', nil: true }],
    ['$0\r\n\r\n', { type: '$', nil: false, off: 4, len: 0 }],
    ['$5\r\nh\r\nlo\r\n', { type: '$', off: 4, len: 5 }],
  ];

  it('needs more at every split point of a complete reply, and completes at its end only', () => {
    for (const [text, want] of complete) {
      for (let i = 0; i < text.length; i++) expect(parse(text.slice(0, i)).used, `${JSON.stringify(text)} cut at ${i}`).toBe(0);
      expect(parse(text)).toMatchObject({ used: text.length, ...want });
      // What follows a reply (the next one) is not part of it.
      expect(parse(text + ':1\r\n').used).toBe(text.length);
    }
  });

  it('refuses bytes that are not a reply this client accepts, as soon as they are seen', () => {
    const bad = ['*1\r\n:1\r\n', '!3\r\nerr\r\n', ':1x\r\n', ':\r\n', ':99999999999999999999\r\n', '$-2\r\n', '$abc\r\n',
      `$${2 ** 29 + 1}\r\n`, '$3\r\nabcXY', '+OK\rX', '+O\nK\r\n', '$5\r\nhello\n\n'];
    for (const text of bad) expect(parse(text).used, JSON.stringify(text)).toBe(-1);
    // A line with no end in sight is bounded.
    expect(parse(`+${'a'.repeat(5000)}`).used).toBe(-1);
    expect(parse(`+${'a'.repeat(4000)}`).used).toBe(0);
  });
});

// ---- two processes, one Redis --------------------------------------------------------

/**
 * Starts two `tcpmod serve` processes of `module` on the one redis-server before
 * the enclosing describe's tests (handing them to `set`), and stops them after.
 */
function twoProcesses(module: string, set: (a: ServedProcess, b: ServedProcess) => void): void {
  let procs: ServedProcess[] = [];
  beforeAll(async () => {
    const kv = ['--kv', `redis://127.0.0.1:${store.port}`, '--threads', '2'];
    procs = await Promise.all([serve(module, kv), serve(module, kv)]);
    set(procs[0], procs[1]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
  });
}

describe('two tcpmod processes on one redis-server', () => {
  let a: ServedProcess;
  let b: ServedProcess;
  twoProcesses('build/resp.wasm', (x, y) => ([a, b] = [x, y]));

  it('40 connections x 25 INCR split across both processes give exactly 1,000', async () => {
    await redisCli('DEL', 'e2e:count');
    const conns = await Promise.all(Array.from({ length: 40 }, (_, i) => open(i % 2 ? b.port : a.port)));
    try {
      const clients = conns.map((s) => new RespConn(s));
      const replies = await Promise.all(clients.map(async (c) => {
        const seen: string[] = [];
        for (let i = 0; i < 25; i++) seen.push(await c.command('INCR', 'e2e:count'));
        return seen;
      }));
      for (const r of replies.flat()) expect(r).toMatch(/^:\d+$/);
      // Every value from 1 to 1,000 was handed out exactly once.
      const values = replies.flat().map((r) => Number(r.slice(1))).sort((x, y) => x - y);
      expect(values).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
      expect((await redisCli('GET', 'e2e:count')).stdout).toBe('1000\n');
    } finally {
      for (const s of conns) s.destroy();
    }
  }, 120_000);

  it('resp.wasm\'s v1.2 commands with redis-cli on --kv redis://, as on the process store; Redis itself sees the TTLs, and FLUSHALL clears it', async () => {
    const cliTo = (port: number) => (...args: string[]) => run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args]);
    await redisCli('FLUSHALL');
    await newCommandsWithCli(cliTo(a.port), 'v12');
    // A key written to Redis by another client is listed and counted, and a TTL set through tcpmod is Redis' own.
    await redisCli('SET', 'outside', 'x');
    expect((await cliTo(b.port)('KEYS', 'out*')).stdout).toBe('outside\n');
    expect((await cliTo(b.port)('EXPIRE', 'outside', '100')).stdout).toBe('1\n');
    expect(Number((await redisCli('TTL', 'outside')).stdout)).toSatisfy((t: number) => t > 95 && t <= 100);
    // Redis counts one key more: the version counter (SET ... GET read a version), which tcpmod never lists nor flushes.
    expect(Number((await cliTo(b.port)('DBSIZE')).stdout)).toBe(Number((await redisCli('DBSIZE')).stdout) - 1);
    expect((await cliTo(b.port)('FLUSHALL')).stdout).toBe('OK\n');
    expect((await redisCli('--no-raw', 'KEYS', '*')).stdout).toBe('1) "\\xfftcpmod:seq"\n');
  }, 60_000);

  it('a key written through one process is read through the other, and redis-cli on Redis sees it', async () => {
    const cliTo = (port: number, ...args: string[]) => run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args]);
    expect((await cliTo(a.port, 'SET', 'e2e:shared', 'from a')).stdout).toBe('OK\n');
    expect((await cliTo(b.port, 'GET', 'e2e:shared')).stdout).toBe('from a\n');
    expect((await redisCli('GET', 'e2e:shared')).stdout).toBe('from a\n');
    expect((await redisCli('SET', 'e2e:shared', 'from redis')).stdout).toBe('OK\n');
    expect((await cliTo(a.port, 'GET', 'e2e:shared')).stdout).toBe('from redis\n');
    expect((await cliTo(b.port, 'DEL', 'e2e:shared')).stdout).toBe('1\n');
    expect((await redisCli('EXISTS', 'e2e:shared')).stdout).toBe('0\n');
  }, 60_000);
});

// ---- the store goes away and comes back -------------------------------------------------

describe('kv calls while Redis is stopped, killed and restarted (kv.wat)', () => {
  let srv: ServedProcess;
  let conn: KvConn;
  beforeAll(async () => {
    srv = await serve(await fixture('kv'), ['--kv', `redis://127.0.0.1:${store.port}`, '--kv-timeout', '200ms', '--handler-timeout', '1s', '--threads', '2']);
    conn = new KvConn(await open(srv.port));
  }, 60_000);
  afterAll(async () => {
    conn?.s.destroy();
    await srv?.stop();
    if (!store.proc) await startRedis().catch(() => undefined); // leave no test without its store
  });

  it('the four calls as the ABI states, on Redis', async () => {
    await redisCli('DEL', 'k', 'n', 't');
    expect(await conn.get('k')).toEqual({ rc: -1, value: null });
    expect(await conn.set('k', 'value')).toBe(0);
    expect(await conn.get('k')).toEqual({ rc: 5, value: 'value' });
    expect(await conn.get('k', 4)).toEqual({ rc: 5, value: null }); // too small: the length, nothing copied
    expect(await conn.incr('n', 41n)).toEqual({ rc: 0, value: 41n });
    expect(await conn.incr('n', 1n)).toEqual({ rc: 0, value: 42n });
    expect((await redisCli('GET', 'n')).stdout).toBe('42\n');
    expect(await conn.set('t', 'text')).toBe(0);
    expect(await conn.incr('t', 1n)).toEqual({ rc: -1, value: 0n });
    await redisCli('SET', 'n', '9223372036854775807');
    expect(await conn.incr('n', 1n)).toEqual({ rc: -1, value: 0n }); // overflow: Redis' INCRBY error
    expect(await conn.del('k')).toBe(1);
    expect(await conn.del('k')).toBe(0);
  });

  it('a stopped (hung) Redis: -3 once the timeout passes, and the module keeps answering', async () => {
    expect(await conn.set('k', 'before')).toBe(0);
    store.proc!.kill('SIGSTOP');
    try {
      // The first call waits out --kv-timeout (200 ms, far below the 1 s handler timeout: no watchdog kill);
      // the following ones wait it out too, or are refused at once during the backoff. All say -3.
      expect((await conn.get('k')).rc).toBe(-3);
      // Writes go to other keys: a write sent before its timeout may still be applied once Redis
      // resumes (-3 after a timeout cannot promise that nothing changed; see the report).
      expect(await conn.set('w', 'during')).toBe(-3);
      expect((await conn.incr('n', 1n)).rc).toBe(-3);
      expect(await conn.del('w')).toBe(-3);
    } finally {
      store.proc!.kill('SIGCONT');
    }
    // Nothing was killed: the same connection answers again. Each worker has its own Redis connection
    // and backoff, and this connection's events go to either worker, so until every worker's backoff
    // (at most 2 s) has passed a call may still say -3 -- but never anything other than -3 or the value.
    const replies: unknown[] = [];
    await until(async () => {
      const r = await conn.get('k');
      replies.push(r);
      return r.rc === 6;
    }, 20_000, 'GET k to answer again', 100);
    for (const r of replies) expect([{ rc: -3, value: null }, { rc: 6, value: 'before' }]).toContainEqual(r);
    await sleep(2_100);
    for (let i = 0; i < 10; i++) expect(await conn.get('k')).toEqual({ rc: 6, value: 'before' });
    await until(() => /key-value store unavailable/.test(srv.stderr()), 20_000, 'the unavailable line', 100);
    expect(srv.stderr()).toMatch(/"timeout":[1-9]/);
  }, 60_000);

  it('a killed Redis: -3; restarted on the same port: calls succeed again without restarting tcpmod', async () => {
    await killRedis();
    expect((await conn.get('k')).rc).toBe(-3);
    expect(await conn.set('k', 'x')).toBe(-3);
    // A connection used within the last 20 ms is not checked before its next command, so the first
    // calls may find theirs closed (-3, kind closed); the calls after them connect and count the refusal.
    await until(async () => {
      expect((await conn.get('k')).rc).toBe(-3);
      return /"connect":[1-9]/.test(srv.stderr());
    }, 20_000, 'a counted connect error', 100);
    await startRedis();
    // The backoff is at most 2 s: within it the calls still say -3, then they reach the new server.
    await until(async () => (await conn.set('k', 'after')) === 0, 20_000, 'SET to succeed again', 100);
    expect(await conn.get('k')).toEqual({ rc: 5, value: 'after' });
    expect((await redisCli('GET', 'k')).stdout).toBe('after\n');
  }, 60_000);
});

// ---- the v1.2 calls on Redis ----------------------------------------------------------

// This test thread's kv calls go to our redis-server, as a worker's do under --kv redis://.
const redisCells = { i32: new Int32Array(new SharedArrayBuffer(16)), f64: new Float64Array(new SharedArrayBuffer(64)) };
const pointAtRedis = () =>
  native.kvBackend({ host: '127.0.0.1', port: store.port, db: 0, username: '', password: '', timeoutMs: 5000 }, redisCells.i32, 0, 1, 2, redisCells.f64, 0);
/** Redis' clock is the real one: "advancing" it is sleeping (blocking this thread, as the calls are synchronous). */
const sleepSync = (ms: number) => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const onRedis: StoreKind = {
  name: 'Redis',
  load: async (_maxBytes, name = 'kv') => {
    await redisCli('FLUSHALL');
    return loadModule(await fixture(name), { store: 'process' });
  },
  advance: (_m, ms) => sleepSync(ms + 1),
  exact: false,
  budget: false,
};

describe('the v1.2 store calls on Redis: the assertion table of test/kv.test.ts (kv12.wat through tcpmod/testing)', () => {
  beforeAll(pointAtRedis);
  afterAll(() => void native.kvBackend(null));
  kv12Table(onRedis);
});

describe('the v1.2 store calls on Redis: what only Redis has', () => {
  let kv: Kv12;
  beforeAll(pointAtRedis);
  afterAll(async () => {
    native.kvBackend(null);
    await redisCli('CONFIG', 'SET', 'maxmemory', '0');
  });
  beforeEach(async () => {
    await redisCli('FLUSHALL');
    kv = new Kv12(await loadModule(await fixture('kv12'), { store: 'process' }));
  });

  it('at maxmemory every call that writes is -2 and changes nothing; reads still answer', async () => {
    expect(kv.setEx('a', 'old')).toBe(0);
    expect(kv.setEx('n', '5')).toBe(0);
    const ver = kv.version('a');
    await redisCli('CONFIG', 'SET', 'maxmemory', '1');
    try {
      expect(kv.set('a', 'new')).toBe(-2);
      expect(kv.setEx('a', 'new', KV_XX)).toBe(-2);
      expect(kv.cas('a', 'new', ver)).toBe(-2);
      expect(kv.append('a', 'new')).toBe(-2);
      expect(kv.append('a', 'new', KV_PREPEND)).toBe(-2);
      expect(kv.incrEx('n', 1n).rc).toBe(-2);
      expect(kv.getVer('a')).toEqual({ rc: 3, version: ver, value: 'old' });
      expect(kv.ttl('a').rc).toBe(0);
    } finally {
      await redisCli('CONFIG', 'SET', 'maxmemory', '0');
    }
    expect((await redisCli('MGET', 'a', 'n')).stdout).toBe('old\n5\n');
  });

  it('other Redis clients see the value as a plain string; the version is a reserved companion key kv_scan never lists', async () => {
    expect(kv.setEx('user:1', 'v', 0, 60_000n)).toBe(0);
    const ver = kv.version('user:1');
    expect((await redisCli('GET', 'user:1')).stdout).toBe('v\n');
    expect((await redisCli('TYPE', 'user:1')).stdout).toBe('string\n');
    // The companion (and the version counter) sit under "\xfftcpmod:", with the key's TTL.
    const keys = (await redisCli('--no-raw', 'KEYS', '*')).stdout;
    expect(keys).toContain('"\\xfftcpmod:ver:user:1"');
    expect(keys).toContain('"\\xfftcpmod:seq"');
    // (redis-cli's arguments would reach Redis as UTF-8: Lua spells the byte 0xff.)
    const companionTtl = await redisCli('EVAL', "return redis.call('PTTL', '\\255tcpmod:ver:user:1')", '0');
    expect(Number(companionTtl.stdout)).toBeGreaterThan(59_000);
    expect(kv.scanAll('', 10)).toEqual(['user:1']);
    // A write through another client does not change the version: documented (docs/abi.md §14).
    await redisCli('SET', 'user:1', 'w');
    expect(kv.getVer('user:1').version).toBe(ver);
    // A key whose name needs escaping in SCAN's MATCH pattern is still a plain prefix.
    for (const k of ['a*b', 'a*c', 'a?b', 'a[b]', 'a\\b', 'ab']) kv.set(k, 'v');
    expect(kv.scanAll('a*', 5).sort()).toEqual(['a*b', 'a*c']);
    expect(kv.scanAll('a[', 5)).toEqual(['a[b]']);
    expect(kv.scanAll('a\\', 5)).toEqual(['a\\b']);
    expect(kv.delPrefix('a?')).toBe(1);
    // kv_del_prefix('') deletes every key and its version, never the counter: versions are never handed out twice.
    expect(kv.delPrefix('')).toBe(6);
    expect((await redisCli('--no-raw', 'KEYS', '*')).stdout).toBe('1) "\\xfftcpmod:seq"\n');
    kv.set('user:1', 'v');
    expect(kv.version('user:1')).toBeGreaterThan(ver);
  });

  it('a script flushed from the server (SCRIPT FLUSH, a restart) is loaded again: NOSCRIPT is not an error', async () => {
    expect(kv.setEx('k', 'v')).toBe(0);
    await redisCli('SCRIPT', 'FLUSH');
    expect(kv.setEx('k', 'w', KV_XX)).toBe(0);
    expect(kv.getVer('k').value).toBe('w');
  });
});

describe('compare-and-set from many connections of two tcpmod processes on one Redis (memcache.wasm incr and cas)', () => {
  let a: ServedProcess;
  let b: ServedProcess;
  twoProcesses('build/memcache.wasm', (x, y) => ([a, b] = [x, y]));

  it('20 connections x 25 incr (a get-version / cas loop in the module) and x 10 gets/cas loops end exact', async () => {
    const conns = await Promise.all(Array.from({ length: 20 }, (_, i) => open(i % 2 ? b.port : a.port)));
    const lines = conns.map((s) => new LineConn(s));
    try {
      expect(await lines[0].ask('set n 0 0 1\r\n0\r\n')).toBe('STORED');
      expect(await lines[0].ask('set c 0 0 1\r\n0\r\n')).toBe('STORED');
      const seen = await Promise.all(lines.map(async (c) => {
        const got: number[] = [];
        for (let i = 0; i < 25; i++) got.push(Number(await c.ask('incr n 1\r\n')));
        for (let i = 0; i < 10; i++) {
          for (let tries = 0; ; tries++) {
            expect(tries).toBeLessThan(1000);
            const item = await c.ask('gets c\r\n', 3);
            const [, , , , unique] = item[0].split(' ');
            const next = String(Number(item[1]) + 1);
            const rc = await c.ask(`cas c 0 0 ${next.length} ${unique}\r\n${next}\r\n`);
            if (rc === 'STORED') break;
            expect(rc).toBe('EXISTS');
          }
        }
        return got;
      }));
      // Every incr result from 1 to 500 handed out exactly once; the cas counter at exactly 200.
      expect(seen.flat().sort((x, y) => x - y)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
      expect(await lines[0].ask('get n c\r\n', 5)).toEqual(['VALUE n 0 3', '500', 'VALUE c 0 3', '200', 'END']);
    } finally {
      for (const s of conns) s.destroy();
    }
  }, 120_000);
});


describe('a kv call waiting on Redis counts as blocked (kv.wat)', () => {
  let srv: ServedProcess;
  beforeAll(async () => {
    // The kv timeout is longer than the handler timeout: only the exclusion of kv waits keeps the watchdog away.
    srv = await serve(await fixture('kv'), ['--kv', `redis://127.0.0.1:${store.port}`, '--kv-timeout', '1500ms',
      '--handler-timeout', '300ms', '--min-threads', '1', '--max-threads', '2']);
  }, 60_000);
  afterAll(async () => {
    store.proc?.kill('SIGCONT');
    await srv?.stop();
  });

  it('is left out of the handler timeout, and the pool grows to serve others meanwhile', async () => {
    const slow = new KvConn(await open(srv.port));
    const other = new KvConn(await open(srv.port));
    try {
      expect(await slow.set('blocked', 'yes')).toBe(0);
      expect(await other.ping()).toBe(0);
      store.proc!.kill('SIGSTOP');
      const order: string[] = [];
      const waiting = slow.get('blocked').then((r) => (order.push('kv'), r));
      await sleep(100); // let the only worker enter the call
      const served = other.ping().then((rc) => (order.push('other'), rc));
      expect(await served).toBe(0);
      // The other connection was answered while the kv call still waited: by a second worker.
      expect(order).toEqual(['other']);
      expect((await waiting).rc).toBe(-3);
      store.proc!.kill('SIGCONT');
      await until(async () => (await slow.get('blocked')).rc === 3, 20_000, 'the blocked GET to answer', 100);
      expect(srv.stderr()).not.toMatch(/handler timeout/);
    } finally {
      store.proc?.kill('SIGCONT');
      slow.s.destroy();
      other.s.destroy();
    }
  }, 60_000);
});

describe('AUTH and SELECT on connect', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcpmod-kv-redis-'));
  afterAll(async () => {
    await redisCli('-a', 'pw', '--no-auth-warning', 'CONFIG', 'SET', 'requirepass', '');
    rmSync(dir, { recursive: true, force: true });
  });

  it('a password file and a database number reach Redis; a wrong password is -3 and says why', async () => {
    expect((await redisCli('CONFIG', 'SET', 'requirepass', 'pw')).stdout).toBe('OK\n');
    const file = join(dir, 'password');
    writeFileSync(file, 'pw\n');
    const good = await serve(await fixture('kv'), ['--kv', `redis://127.0.0.1:${store.port}/3`, '--kv-password-file', file, '--threads', '1']);
    const bad = await serve(await fixture('kv'), ['--kv', `redis://:wrong@127.0.0.1:${store.port}`, '--threads', '1']);
    const g = new KvConn(await open(good.port));
    const b = new KvConn(await open(bad.port));
    try {
      expect(await g.set('in-db-3', 'yes')).toBe(0);
      expect((await redisCli('-a', 'pw', '--no-auth-warning', '-n', '3', 'GET', 'in-db-3')).stdout).toBe('yes\n');
      expect((await redisCli('-a', 'pw', '--no-auth-warning', '-n', '0', 'EXISTS', 'in-db-3')).stdout).toBe('0\n');
      expect(await b.set('x', 'no')).toBe(-3);
      await until(() => /key-value store unavailable.*AUTH: WRONGPASS/.test(bad.stderr()), 20_000, 'the WRONGPASS line', 100);
      expect(bad.stderr()).not.toContain('wrong@'); // the password is never logged
    } finally {
      g.s.destroy();
      b.s.destroy();
      await Promise.all([good.stop(), bad.stop()]);
    }
  }, 60_000);
});

/** The kv fixture on one worker, its store the scripted Redis `fake` (listening on a free port once this returns). */
async function serveOnScripted(fake: Server): Promise<{ srv: Awaited<ReturnType<typeof serve>>; conn: KvConn }> {
  await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
  const port = (fake.address() as { port: number }).port;
  const srv = await serve(await fixture('kv'), ['--kv', `redis://127.0.0.1:${port}`, '--kv-timeout', '2s', '--threads', '1']);
  return { srv, conn: new KvConn(await open(srv.port)) };
}

describe('a connection the server closes between two calls', () => {
  it('right after a reply, reused at once: at most that call says -3, and the next one connects again without a backoff', async () => {
    // A scripted server that answers one GET per connection, then closes it. A call right after the
    // previous one's reply is not checked for a close first (kv_redis.cc kRecentMs), so it may find the
    // connection closed: one -3. The call after it must reconnect at once, as after the check.
    let accepted = 0;
    const fake = createServer((sock) => {
      accepted++;
      sock.on('data', () => sock.end('$1\r\nx\r\n'));
      sock.on('error', () => undefined);
    });
    const { srv, conn } = await serveOnScripted(fake);
    try {
      // Back to back: each call may find the connection the last reply closed (-3), unless it came
      // 20 ms or more after that reply (a slow round trip on a loaded machine): then it is checked
      // and replaced quietly. Either way the call after a -3 connects at once and succeeds.
      const rcs: number[] = [];
      for (let i = 0; i < 40; i++) rcs.push((await conn.get('k')).rc);
      expect(rcs[0]).toBe(1);
      rcs.forEach((rc, i) => {
        expect([1, -3]).toContain(rc);
        if (rc === -3) expect(rcs[i + 1] ?? 1, `call ${i + 1} after a -3: ${rcs.join(' ')}`).toBe(1);
      });
      const ok = rcs.filter((rc) => rc === 1).length;
      expect(ok).toBeGreaterThanOrEqual(20);
      expect(accepted).toBe(ok); // one connection per answered call: none left in a backoff
    } finally {
      conn.s.destroy();
      await srv.stop();
      fake.close();
    }
  }, 60_000);

  it('after it was idle (CLIENT KILL): the call connects again and succeeds', async () => {
    const srv = await serve(await fixture('kv'), ['--kv', `redis://127.0.0.1:${store.port}`, '--kv-timeout', '2s', '--threads', '1']);
    const conn = new KvConn(await open(srv.port));
    try {
      for (let i = 0; i < 3; i++) {
        expect(await conn.set('idle', `v${i}`)).toBe(0);
        expect((await redisCli('CLIENT', 'KILL', 'TYPE', 'normal')).stdout).toMatch(/^[1-9]/); // the worker's connection
        await sleep(60); // idle past the 20 ms within which a connection is reused unchecked
        expect(await conn.get('idle')).toEqual({ rc: 2, value: `v${i}` });
      }
      expect(srv.stderr()).not.toMatch(/key-value store unavailable/);
    } finally {
      conn.s.destroy();
      await srv.stop();
    }
  }, 60_000);
});

describe('replies that arrive a byte at a time, and bytes that are no reply (a scripted server)', () => {
  it('parses each reply across every split, and drops the connection on garbage (-3, kind protocol)', async () => {
    // Each command the worker sends gets the next scripted reply, written one byte per write.
    // Writes go through the store script: SCRIPT LOAD once (its SHA1 back), then EVALSHA; incr answers an array.
    const sha = '0123456789abcdef0123456789abcdef01234567';
    // A SET without conditions is no script run: MULTI, SET, DEL of its version companion, EXEC, in one write.
    const script = ['$5\r\nhello\r\n', `$40\r\n${sha}\r\n`, '*2\r\n:0\r\n:-7\r\n', '+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:0\r\n', ':1\r\n', '%1\r\n', '$-1\r\n'];
    const commands: string[] = [];
    const fake = createServer((sock) => {
      sock.setNoDelay(true);
      sock.on('data', async (d) => {
        commands.push(d.toString('latin1'));
        const reply = script.shift() ?? '-ERR script over\r\n';
        for (const byte of Buffer.from(reply, 'latin1')) {
          if (sock.destroyed) return;
          sock.write(Buffer.from([byte]));
          await sleep(2);
        }
      });
      sock.on('error', () => undefined);
    });
    const { srv, conn } = await serveOnScripted(fake);
    try {
      expect(await conn.get('k')).toEqual({ rc: 5, value: 'hello' });
      expect(await conn.incr('n', -7n)).toEqual({ rc: 0, value: -7n });
      expect(await conn.set('k', 'v')).toBe(0);
      expect(await conn.del('k')).toBe(1);
      const evalsha = (...args: string[]) => `*${args.length + 3}\r\n$7\r\nEVALSHA\r\n$40\r\n${sha}\r\n$1\r\n1\r\n${args.map((a) => `$${a.length}\r\n${a}\r\n`).join('')}`;
      expect(commands.length).toBe(5);
      expect(commands[0]).toBe('*2\r\n$3\r\nGET\r\n$1\r\nk\r\n');
      expect(commands[1]).toMatch(/^\*3\r\n\$6\r\nSCRIPT\r\n\$4\r\nLOAD\r\n\$\d+\r\n/);
      const cmd = (...args: string[]) => `*${args.length}\r\n${args.map((a) => `$${a.length}\r\n${a}\r\n`).join('')}`;
      const setK = cmd('MULTI') + cmd('SET', 'k', 'v') + cmd('DEL', '\xfftcpmod:ver:k') + cmd('EXEC');
      expect(commands.slice(2)).toEqual([evalsha('n', 'incr', '-7', '0'), setK, evalsha('k', 'del')]);
      expect(await conn.get('k')).toEqual({ rc: -3, value: null }); // '%': not a RESP2 reply
      await until(() => /"protocol":1/.test(srv.stderr()), 20_000, 'a counted protocol error', 100);
      // After the backoff, a new connection, in step again.
      await until(async () => (await conn.get('k')).rc === -1, 20_000, 'GET k to reach Redis again (-1: no such key)', 100);
    } finally {
      conn.s.destroy();
      await srv.stop();
      fake.close();
    }
  }, 60_000);
});

describe('rediss:// (TLS to Redis)', () => {
  let certs: TestCerts;
  let tlsRedis: TlsRedis | null = null;
  let tlsPort = 0;
  const tlsCli = (...args: string[]) => tlsRedis!.cli(...args);

  beforeAll(async () => {
    certs = makeTestCerts();
    // Bound to two addresses: the certificate names 127.0.0.1, not 127.0.0.2.
    tlsRedis = await startTlsRedis(certs, { bind: '127.0.0.1 127.0.0.2' });
    tlsPort = tlsRedis.tlsPort;
  }, 60_000);
  afterAll(async () => {
    await tlsRedis?.kill();
    certs?.remove();
  });

  it('verifies the server against --kv-tls-ca and its name, then serves the kv calls', async () => {
    const good = await serve(await fixture('kv'), ['--kv', `rediss://127.0.0.1:${tlsPort}`, '--kv-tls-ca', certs.caCert, '--threads', '1']);
    // Node's bundled roots do not know the test CA; and 127.0.0.2 is not a name the certificate carries.
    const untrusted = await serve(await fixture('kv'), ['--kv', `rediss://127.0.0.1:${tlsPort}`, '--threads', '1']);
    const misnamed = await serve(await fixture('kv'), ['--kv', `rediss://127.0.0.2:${tlsPort}`, '--kv-tls-ca', certs.caCert, '--threads', '1']);
    const conns = await Promise.all([good, untrusted, misnamed].map(async (p) => new KvConn(await open(p.port))));
    try {
      const [g, u, m] = conns;
      expect(await g.set('over-tls', 'secret')).toBe(0);
      expect(await g.get('over-tls')).toEqual({ rc: 6, value: 'secret' });
      expect((await g.incr('tls-n', 5n)).rc).toBe(0);
      expect((await tlsCli('GET', 'over-tls')).stdout).toBe('secret\n');
      // The worker keeps its one connection across calls:
      // between two INFO calls only the second redis-cli connects.
      const accepted = async () => Number(/total_connections_received:(\d+)/.exec((await tlsCli('INFO', 'stats')).stdout)![1]);
      const before = await accepted();
      for (let i = 0; i < 5; i++) expect((await g.get('over-tls')).rc).toBe(6);
      expect(await accepted()).toBe(before + 1);
      expect(await u.get('over-tls')).toEqual({ rc: -3, value: null });
      expect(await m.get('over-tls')).toEqual({ rc: -3, value: null });
      await until(() => /TLS handshake: .*certificate/.test(untrusted.stderr()), 20_000, 'the certificate failure line', 100);
      await until(() => /TLS handshake: .*mismatch/i.test(misnamed.stderr()), 20_000, 'the name mismatch line', 100);
      expect(good.stderr()).not.toMatch(/unavailable/);
    } finally {
      for (const c of conns) c.s.destroy();
      await Promise.all([good.stop(), untrusted.stop(), misnamed.stop()]);
    }
  }, 60_000);
});

// ---- large values: streamed from the socket, never buffered whole ------------------------

/** FNV-1a (32-bit), as test/fixtures/kv-big.wat hashes its value buffer. */
function fnv(...parts: Buffer[]): number {
  let h = 0x811c9dc5;
  for (const b of parts) for (const byte of b) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  return h;
}

/** One connection to kv-big.wat: GET with any out_cap up to 2.4 MiB; the reply is the result and the buffer's hash. */
class BigConn {
  constructor(readonly s: Socket) {
    s.on('error', () => undefined);
  }
  async get(key: string, cap: number, fill: number): Promise<{ rc: number; hash: number }> {
    const arg = Buffer.alloc(5);
    arg.writeUInt32LE(cap);
    arg[4] = fill;
    const reply = readBytes(this.s, 8, 60_000);
    this.s.write(Buffer.concat([Buffer.from([0x67, key.length]), Buffer.from(key), arg]));
    const r = await reply;
    return { rc: r.readInt32LE(0), hash: r.readUInt32LE(4) };
  }
}

/** What kv-big.wat's hash is when `value` was copied into a buffer of `cap` bytes filled with `fill` (value null: nothing copied). */
const bufferHash = (value: Buffer | null, cap: number, fill: number) =>
  fnv(value ?? Buffer.alloc(0), Buffer.alloc(cap - (value?.length ?? 0), fill));

/** SET of arbitrary bytes on a raw socket (a value too large for a command line). */
async function setBytes(port: number, key: string, value: Buffer): Promise<void> {
  const s = await open(port);
  try {
    const reply = readBytes(s, 5, 60_000);
    s.write(Buffer.concat([Buffer.from(`*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${value.length}\r\n`), value, Buffer.from('\r\n')]));
    expect((await reply).toString('latin1')).toBe('+OK\r\n');
  } finally {
    s.destroy();
  }
}

/** The peak resident set of a process, in bytes (Linux). */
function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

describe('large values (kv-big.wat): a GET copies straight from the socket or drops the bytes, never buffering the value', () => {
  let srv: ServedProcess;
  let conn: BigConn;
  const MiB = 1 << 20;
  const oneMiB = Buffer.from(Array.from({ length: MiB }, (_, i) => (i * 7 + (i >> 11)) & 0xff));
  beforeAll(async () => {
    // One worker, so every call goes over the same Redis connection; a timeout that reading 64 MiB on a busy machine fits in.
    srv = await serve(await fixture('kv-big'), ['--kv', `redis://127.0.0.1:${store.port}`, '--kv-timeout', '30s', '--threads', '1']);
    conn = new BigConn(await open(srv.port));
    await setBytes(store.port, 'big:1m', oneMiB);
    await setBytes(store.port, 'big:small', Buffer.from('small value'));
    // 64 MiB of zero bytes ending in "x", made by Redis itself.
    await redisCli('DEL', 'big:64m');
    expect((await redisCli('SETRANGE', 'big:64m', String(64 * MiB - 1), 'x')).stdout).toBe(`${64 * MiB}\n`);
  }, 60_000);
  afterAll(async () => {
    conn?.s.destroy();
    await srv?.stop();
    await redisCli('DEL', 'big:1m', 'big:small', 'big:64m');
  });

  it('a 1 MiB value that fits is copied whole across many socket reads; one byte too few copies nothing', async () => {
    expect(await conn.get('big:1m', MiB, 0xee)).toEqual({ rc: MiB, hash: bufferHash(oneMiB, MiB, 0xee) });
    expect(await conn.get('big:1m', MiB + 1000, 0xee)).toEqual({ rc: MiB, hash: bufferHash(oneMiB, MiB + 1000, 0xee) });
    expect(await conn.get('big:1m', MiB - 1, 0xee)).toEqual({ rc: MiB, hash: bufferHash(null, MiB - 1, 0xee) });
    expect(await conn.get('big:1m', 0, 0xee)).toEqual({ rc: MiB, hash: bufferHash(null, 0, 0xee) });
    expect(await conn.get('big:small', 11, 0)).toEqual({ rc: 11, hash: bufferHash(Buffer.from('small value'), 11, 0) });
    expect(await conn.get('big:none', 64, 0)).toEqual({ rc: -1, hash: bufferHash(null, 64, 0) });
    expect(srv.stderr()).not.toMatch(/unavailable/);
  }, 60_000);

  it('a 64 MiB value with a small out_cap: its exact length, nothing copied, the connection still in step, no 64 MiB in memory', async () => {
    const accepted = async () => Number(/total_connections_received:(\d+)/.exec((await redisCli('INFO', 'stats')).stdout)![1]);
    expect(await conn.get('big:small', 64, 1)).toEqual({ rc: 11, hash: bufferHash(Buffer.from('small value'), 64, 1) });
    const before = await accepted();
    const peak = peakRss(srv.proc.pid!);
    expect(await conn.get('big:64m', 16, 0xab)).toEqual({ rc: 64 * MiB, hash: bufferHash(null, 16, 0xab) });
    // The next reply on the same Redis connection parses as its own: the 64 MiB and their "\r\n" were all read.
    expect(await conn.get('big:small', 64, 1)).toEqual({ rc: 11, hash: bufferHash(Buffer.from('small value'), 64, 1) });
    expect(await conn.get('big:1m', MiB, 2)).toEqual({ rc: MiB, hash: bufferHash(oneMiB, MiB, 2) });
    expect(await conn.get('big:64m', 0, 0)).toEqual({ rc: 64 * MiB, hash: bufferHash(null, 0, 0) });
    // No reconnect in between: only this INFO's redis-cli connected since the last one.
    expect(await accepted()).toBe(before + 1);
    // Buffering the value would have raised the peak by 64 MiB or more; dropping it costs a small fixed buffer.
    const grown = peakRss(srv.proc.pid!) - peak;
    expect(grown, `VmHWM grew by ${(grown / MiB).toFixed(1)} MiB`).toBeLessThan(32 * MiB);
    expect(srv.stderr()).not.toMatch(/unavailable/);
  }, 120_000);
});

describe('a server that stops halfway through a large value (a scripted server)', () => {
  it('the call returns -3 at --kv-timeout, the connection is dropped, and the next one is in step', async () => {
    // The first connection gets the header of a 64 MiB value and 1 MiB of it, then nothing. Later
    // connections answer each GET with "hello", written a byte at a time.
    let accepted = 0;
    const commands: string[] = [];
    const fake = createServer((sock) => {
      const n = ++accepted;
      sock.setNoDelay(true);
      sock.on('error', () => undefined);
      sock.on('data', async (d) => {
        commands.push(d.toString('latin1'));
        if (n === 1) {
          sock.write(Buffer.concat([Buffer.from(`$${64 << 20}\r\n`), Buffer.alloc(1 << 20, 0x61)]));
          return;
        }
        for (const byte of Buffer.from('$5\r\nhello\r\n', 'latin1')) {
          if (sock.destroyed) return;
          sock.write(Buffer.from([byte]));
          await sleep(1);
        }
      });
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    const port = (fake.address() as { port: number }).port;
    const srv = await serve(await fixture('kv-big'), ['--kv', `redis://127.0.0.1:${port}`, '--kv-timeout', '500ms', '--threads', '1']);
    const conn = new BigConn(await open(srv.port));
    try {
      expect(await conn.get('k', 16, 0)).toEqual({ rc: -3, hash: bufferHash(null, 16, 0) });
      await until(() => /"timeout":1/.test(srv.stderr()), 20_000, 'a counted timeout', 100);
      // After the backoff, a new connection: the value is copied when it fits and dropped when it does
      // not, a byte per read, each reply read to its end (or the next would not parse).
      const first = await until(async () => {
        const r = await conn.get('k', 5, 0);
        return r.rc === -3 ? null : r;
      }, 20_000, 'GET k to reach the server again', 100);
      expect(first).toEqual({ rc: 5, hash: bufferHash(Buffer.from('hello'), 5, 0) });
      expect(await conn.get('k', 4, 0x7a)).toEqual({ rc: 5, hash: bufferHash(null, 4, 0x7a) });
      expect(await conn.get('k', 2, 0x7a)).toEqual({ rc: 5, hash: bufferHash(null, 2, 0x7a) });
      expect(await conn.get('k', 9, 0x7a)).toEqual({ rc: 5, hash: bufferHash(Buffer.from('hello'), 9, 0x7a) });
      expect(accepted).toBe(2);
      expect(commands.slice(1).every((c) => c === '*2\r\n$3\r\nGET\r\n$1\r\nk\r\n')).toBe(true);
    } finally {
      conn.s.destroy();
      await srv.stop();
      fake.close();
    }
  }, 60_000);
});

describe('large values over rediss:// (kv-big.wat): TLS records read straight into the buffer or dropped', () => {
  let certs: TestCerts;
  let tlsRedis: TlsRedis | null = null;
  let srv: ServedProcess | null = null;
  let plainPort = 0;
  const MiB = 1 << 20;

  beforeAll(async () => {
    certs = makeTestCerts();
    // A plain port beside the TLS one, for the test's own raw-socket SET.
    plainPort = await freePort();
    tlsRedis = await startTlsRedis(certs, { plainPort });
    const tlsPort = tlsRedis.tlsPort;
    srv = await serve(await fixture('kv-big'), ['--kv', `rediss://127.0.0.1:${tlsPort}`, '--kv-tls-ca', certs.caCert, '--kv-timeout', '30s', '--threads', '1']);
  }, 60_000);
  afterAll(async () => {
    await srv?.stop();
    await tlsRedis?.kill();
    certs?.remove();
  });

  it('a 1 MiB value is copied whole or dropped, an 8 MiB one dropped, and each next reply parses', async () => {
    const value = Buffer.from(Array.from({ length: MiB }, (_, i) => (i * 13 + (i >> 9)) & 0xff));
    await setBytes(plainPort, 'tls:1m', value);
    await setBytes(plainPort, 'tls:small', Buffer.from('tiny'));
    expect((await run('redis-cli', ['-p', String(plainPort), 'SETRANGE', 'tls:8m', String(8 * MiB - 1), 'x'])).stdout).toBe(`${8 * MiB}\n`);
    const conn = new BigConn(await open(srv!.port));
    try {
      expect(await conn.get('tls:1m', MiB, 0x55)).toEqual({ rc: MiB, hash: bufferHash(value, MiB, 0x55) });
      expect(await conn.get('tls:small', 8, 0)).toEqual({ rc: 4, hash: bufferHash(Buffer.from('tiny'), 8, 0) });
      expect(await conn.get('tls:1m', 100, 0x55)).toEqual({ rc: MiB, hash: bufferHash(null, 100, 0x55) });
      expect(await conn.get('tls:small', 8, 0)).toEqual({ rc: 4, hash: bufferHash(Buffer.from('tiny'), 8, 0) });
      expect(await conn.get('tls:8m', 1, 0x55)).toEqual({ rc: 8 * MiB, hash: bufferHash(null, 1, 0x55) });
      expect(await conn.get('tls:1m', MiB + 1, 0x55)).toEqual({ rc: MiB, hash: bufferHash(value, MiB + 1, 0x55) });
      expect(srv!.stderr()).not.toMatch(/unavailable/);
    } finally {
      conn.s.destroy();
    }
  }, 60_000);
});

describe('a streamed value not followed by "\\r\\n" (a scripted server)', () => {
  it('is a protocol error: -3, the connection dropped, the next one in step', async () => {
    // The first connection's value runs two bytes past its length; later ones answer correctly.
    let accepted = 0;
    const fake = createServer((sock) => {
      const n = ++accepted;
      sock.on('error', () => undefined);
      sock.on('data', () => sock.write(n === 1 ? '$5\r\nhelloXY' : '$5\r\nhello\r\n'));
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    const port = (fake.address() as { port: number }).port;
    const srv = await serve(await fixture('kv-big'), ['--kv', `redis://127.0.0.1:${port}`, '--kv-timeout', '2s', '--threads', '1']);
    const conn = new BigConn(await open(srv.port));
    try {
      // The value fits, so it was copied before the bad ending was seen: after -3 the buffer's bytes are unspecified.
      expect((await conn.get('k', 5, 0)).rc).toBe(-3);
      await until(() => /"protocol":1/.test(srv.stderr()), 20_000, 'a counted protocol error', 100);
      const next = await until(async () => {
        const r = await conn.get('k', 2, 0);
        return r.rc === -3 ? null : r;
      }, 20_000, 'GET k to reach the server again', 100);
      expect(next).toEqual({ rc: 5, hash: bufferHash(null, 2, 0) });
      expect(await conn.get('k', 5, 0)).toEqual({ rc: 5, hash: bufferHash(Buffer.from('hello'), 5, 0) });
      expect(accepted).toBe(2);
    } finally {
      conn.s.destroy();
      await srv.stop();
      fake.close();
    }
  }, 60_000);
});

describe('an instance that cannot be made while Redis is down (initkv.wat)', () => {
  let srv: ServedProcess;
  let metrics: number;
  beforeAll(async () => {
    if (!store.proc) await startRedis();
    srv = await serve(await fixture('initkv'), ['--kv', `redis://127.0.0.1:${store.port}`, '--kv-timeout', '200ms',
      '--threads', '1', '--metrics', '127.0.0.1:0']);
    metrics = await metricsPort(srv, 10_000);
  }, 60_000);
  afterAll(async () => {
    await srv?.stop();
    if (!store.proc) await startRedis().catch(() => undefined);
  });

  const exchange = async (input: string): Promise<string> => {
    const s = await open(srv.port);
    s.write(input);
    return (await untilClosedOrBytes(s, input.length)).toString();
  };

  it('closes the connections that need it (reason fault), keeps its worker, and serves again once the store is back', async () => {
    expect(await exchange('hi')).toBe('hi');
    const before = await scrape(metrics);
    await killRedis();
    // A fault: the worker renews its instance at once, and tcpmod_init finds the store down.
    expect(await exchange('!')).toBe('');
    await until(() => /cannot make an instance of initkv.wasm: .*refused/.test(srv.stderr()), 10_000, 'the warning', 50);
    // Every connection meanwhile is closed at its first event, without the worker going.
    for (let i = 0; i < 5; i++) expect(await exchange('x')).toBe('');
    // The client sees its close before the worker's count reaches the metrics: wait (bounded) for
    // the sixth, then check it is exactly six (a clean-clone CI read 5 at once).
    const faultCloses = (m: Record<string, number>) => m['tcpmod_connections_closed_total{reason="fault"}'] - (before['tcpmod_connections_closed_total{reason="fault"}'] ?? 0);
    await until(async () => faultCloses(await scrape(metrics)) >= 6, 5_000, 'six fault closes counted', 50);
    const during = await scrape(metrics);
    expect(faultCloses(during)).toBe(6);
    expect(during.tcpmod_workers_started_total).toBe(before.tcpmod_workers_started_total);
    expect(during.tcpmod_workers_stopped_total ?? 0).toBe(before.tcpmod_workers_stopped_total ?? 0);
    expect(during['tcpmod_module_faults_total{kind="trap"}']).toBe(1); // the trap; the refusals are not faults
    await startRedis();
    // After the worker's Redis backoff (at most 2 s), tcpmod_init runs again and the module serves.
    await until(async () => (await exchange('back')) === 'back', 20_000, 'the module to serve again', 200);
    const after = await scrape(metrics);
    expect(after.tcpmod_workers_started_total).toBe(before.tcpmod_workers_started_total);
    expect(after['tcpmod_instances_live{generation="1"}']).toBe(1);
  }, 60_000);
});

/** Reads until `n` bytes came or the server closed the connection; what came. */
function untilClosedOrBytes(s: Socket, n: number, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => reject(new Error(`neither ${n} bytes nor a close within ${timeoutMs} ms (got ${got.length})`)), timeoutMs);
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(got);
    };
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length >= n) done();
    });
    s.on('close', done);
    s.on('error', () => undefined);
  });
}
