// build/redis-proxy.wasm (assembly/redis-proxy.ts) in front of three real
// redis-server shards, over real sockets: redis-cli and redis-benchmark through
// it, keys on the shard nutcracker (twemproxy) puts them with the same pool,
// replies in request order when a later shard answers first (upstream_resume),
// requests and replies split at every byte, more pipelined requests than its
// ring holds (the client's input resumed), a shard down and back.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as netServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type TcpmodServer } from '../dist/index.js';
import { native } from '../host/sys.js';
import { ROOT } from './fixtures.js';
import { open, readBytes } from './net-client.js';
import { requireTool, run } from './server-process.js';
import { freePort, RedisServer } from './services.js';
import { sleep, until } from './wait.js';

const WASM = join(ROOT, 'build', 'redis-proxy.wasm');
const shards = [new RedisServer(), new RedisServer(), new RedisServer()];
const servers: TcpmodServer[] = [];
const scratch = mkdtempSync(join(tmpdir(), 'redis-proxy-'));

beforeAll(async () => {
  await requireTool('redis-server');
  await requireTool('redis-benchmark');
  await Promise.all(shards.map((s) => s.start()));
}, 30_000);
afterAll(async () => {
  for (const s of servers) await s.close({ drainTimeout: 0 }).catch(() => undefined);
  await Promise.all(shards.map((s) => s.kill()));
  rmSync(scratch, { recursive: true, force: true });
});

/** The proxy over `ports` as upstreams s0, s1, … listed in that order in --config. */
async function proxy(ports: number[], config = '', weights: number[] = [], extra: Record<string, unknown> = {}): Promise<{ server: TcpmodServer; port: number }> {
  const upstream = ports.map((p, i) => `s${i}=127.0.0.1:${p}`);
  const names = ports.map((_, i) => `s${i}${weights[i] ? `:${weights[i]}` : ''}`).join(',');
  const server = createServer({
    module: WASM, port: 0, threads: 2, logLevel: 'silent', upstream,
    config: Buffer.from(`servers=${names} ${config}`.trim()), ...extra,
  });
  servers.push(server);
  return { server, port: (await server.listen()).port };
}

const resp = (...args: (string | Buffer)[]) =>
  Buffer.concat([Buffer.from(`*${args.length}\r\n`), ...args.flatMap((a) => [Buffer.from(`$${Buffer.byteLength(a)}\r\n`), Buffer.from(a), Buffer.from('\r\n')])]);
const flushAll = () => Promise.all(shards.map((s) => s.cli('FLUSHALL')));

/** Which shard holds each key (EXISTS on each, pipelined). */
async function placement(keys: Buffer[]): Promise<number[]> {
  const where = keys.map(() => -1);
  for (let i = 0; i < shards.length; i++) {
    const c = await open(shards[i].port);
    const want = keys.length * 4; // ":0\r\n" or ":1\r\n"
    const got = readBytes(c, want);
    c.write(Buffer.concat(keys.map((k) => resp('EXISTS', k))));
    const lines = (await got).toString().split('\r\n');
    keys.forEach((_, j) => { if (lines[j] === ':1') where[j] = i; });
    c.destroy();
  }
  return where;
}

/** Sends `req` and reads exactly `n` reply bytes. */
async function exchange(port: number, req: Buffer, n: number, split?: number): Promise<string> {
  const c = await open(port);
  const got = readBytes(c, n);
  if (split === undefined) c.write(req);
  else {
    c.write(req.subarray(0, split));
    await sleep(2);
    c.write(req.subarray(split));
  }
  const out = (await got).toString();
  c.destroy();
  return out;
}

describe('redis-proxy.wasm over three redis-server shards', () => {
  it('answers redis-cli: routed commands, MSET/MGET/DEL split and joined, PING, refusals', async () => {
    const { port } = await proxy(shards.map((s) => s.port));
    await flushAll();
    const cli = (...a: string[]) => run('redis-cli', ['-p', String(port), ...a], { timeoutMs: 10_000 }).then((r) => r.stdout.replace(/\n$/, ''));
    expect(await cli('PING')).toBe('PONG');
    expect(await cli('SET', 'foo', 'bar')).toBe('OK');
    expect(await cli('GET', 'foo')).toBe('bar');
    expect(await cli('MSET', 'a', '1', 'b', '2', 'c', '3', 'd', '4', 'e', '5')).toBe('OK');
    expect(await cli('MGET', 'a', 'b', 'nope', 'c', 'd', 'e')).toBe('1\n2\n\n3\n4\n5');
    // Keys are spread over every shard (fnv1a_64 with ketama clusters short keys: a..e all land on one).
    const spread = Array.from({ length: 100 }, (_, i) => `key:${i}`);
    expect(await cli('MSET', ...spread.flatMap((k) => [k, 'v']))).toBe('OK');
    expect(new Set(await placement(spread.map((k) => Buffer.from(k)))).size).toBe(3);
    expect(await cli('DEL', ...spread)).toBe('100');
    expect(await cli('EXISTS', 'a', 'b', 'nope')).toBe('2');
    expect(await cli('DEL', 'a', 'b', 'c', 'nope')).toBe('3');
    expect(await cli('MGET', 'a', 'd')).toBe('\n4');
    expect(await cli('INCRBY', 'n', '41')).toBe('41');
    expect(await cli('RPUSH', 'l', 'x', 'y')).toBe('2');
    expect(await cli('LRANGE', 'l', '0', '-1')).toBe('x\ny');
    expect(await cli('KEYS', '*')).toMatch(/^ERR proxy: command not supported/);
    expect(await cli('GET')).toMatch(/^ERR proxy: wrong number of arguments/);
    expect(await cli('MSET', 'a', '1', 'b')).toMatch(/^ERR proxy: wrong number of arguments/);
    // QUIT: +OK, then the proxy closes.
    expect(await exchange(port, Buffer.concat([resp('PING'), resp('QUIT'), resp('PING')]), 12)).toBe('+PONG\r\n+OK\r\n');
    // A value larger than the module's regions (256 KiB in, 64 KiB out) streams through both ways.
    const big = 'v'.repeat(700_000);
    expect((await run('redis-cli', ['-p', String(port), '-x', 'SET', 'big'], { input: big, timeoutMs: 10_000 })).stdout.trim()).toBe('OK');
    expect((await run('redis-cli', ['-p', String(port), 'GET', 'big'], { timeoutMs: 10_000 })).stdout.trim()).toBe(big);
  }, 60_000);

  it('puts every key on the shard nutcracker puts it (ketama and modula, fnv1a_64, hash_tag, weights)', async () => {
    await requireTool('nutcracker');
    // Keys of every kind: text, binary (bytes >= 0x80 hash as signed chars), hash tags.
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    const keys: Buffer[] = [];
    for (let i = 0; i < 400; i++) keys.push(Buffer.from(`key:${i}`));
    for (let i = 0; i < 150; i++) keys.push(Buffer.from(Array.from({ length: 1 + (rnd() % 24) }, () => rnd() % 256)));
    for (let i = 0; i < 50; i++) keys.push(Buffer.from(`user{${i % 7}}:${i}`));
    const unique = [...new Map(keys.map((k) => [k.toString('hex'), k])).values()];
    const setAll = async (port: number) => {
      await flushAll();
      const c = await open(port);
      const got = readBytes(c, unique.length * 5);
      c.write(Buffer.concat(unique.map((k) => resp('SET', k, 'v'))));
      expect((await got).toString()).toBe('+OK\r\n'.repeat(unique.length));
      c.destroy();
      return placement(unique);
    };
    for (const [distribution, tag, weights] of [['ketama', '', [1, 1, 1]], ['modula', '', [1, 1, 1]], ['ketama', '{}', [1, 1, 1]], ['ketama', '', [1, 3, 2]], ['modula', '', [2, 1, 3]]] as const) {
      const ncPort = await freePort();
      const conf = join(scratch, `nc-${distribution}${tag ? '-tag' : ''}-${weights.join('')}.yml`);
      writeFileSync(conf, [
        'pool:', `  listen: 127.0.0.1:${ncPort}`, '  hash: fnv1a_64', `  distribution: ${distribution}`,
        ...(tag ? [`  hash_tag: "${tag}"`] : []), '  redis: true', '  auto_eject_hosts: false', '  servers:',
        ...shards.map((s, i) => `   - 127.0.0.1:${s.port}:${weights[i]} s${i}`), '',
      ].join('\n'));
      const nc: ChildProcess = spawn('nutcracker', ['-c', conf, '-s', String(await freePort())], { stdio: 'ignore' });
      try {
        await until(async () => (await run('redis-cli', ['-p', String(ncPort), 'GET', 'x'], { timeoutMs: 2_000 })).code === 0, 10_000, 'nutcracker listening');
        const byNutcracker = await setAll(ncPort);
        const { port } = await proxy(shards.map((s) => s.port), `distribution=${distribution}${tag ? ` hash_tag=${tag}` : ''}`, [...weights]);
        const byProxy = await setAll(port);
        expect(byNutcracker.every((w) => w >= 0)).toBe(true);
        expect(new Set(byNutcracker).size).toBe(3);
        expect(byProxy).toEqual(byNutcracker);
      } finally {
        nc.kill('SIGKILL');
        await once(nc, 'exit').catch(() => undefined);
      }
    }
  }, 120_000);

  it('answers in request order when a later request\'s shard answers first (held, then resumed)', async () => {
    // s0 answers every request 150 ms late; s1 is redis-server, at once.
    const slow = await scriptedShard(async (s, req) => {
      await sleep(150);
      s.write(`$4\r\nslow\r\n`.repeat(req));
    });
    try {
      const { port } = await proxy([slow.port, shards[1].port]);
      await flushAll();
      const { slowKey, fastKey } = await findKeys(port, slow);
      await shards[1].cli('SET', fastKey, 'fast');
      const req = Buffer.concat([resp('GET', slowKey), resp('GET', fastKey), resp('GET', fastKey), resp('GET', slowKey), resp('GET', fastKey), resp('PING')]);
      const expected = '$4\r\nslow\r\n$4\r\nfast\r\n$4\r\nfast\r\n$4\r\nslow\r\n$4\r\nfast\r\n+PONG\r\n';
      expect(await exchange(port, req, expected.length)).toBe(expected);
      // MGET over both: the array's elements in key order.
      const mget = resp('MGET', fastKey, slowKey, fastKey);
      const joined = '*3\r\n$4\r\nfast\r\n$4\r\nslow\r\n$4\r\nfast\r\n';
      expect(await exchange(port, mget, joined.length)).toBe(joined);
    } finally {
      slow.server.close();
    }
  }, 60_000);

  it('requests split at every byte and replies sent a byte at a time give the same answers', async () => {
    // s0 sends its replies one byte at a time; s1 and s2 are redis-server.
    const dribble = await scriptedShard(async (s, req) => {
      for (const b of Buffer.from('$5\r\nhello\r\n'.repeat(req))) {
        s.write(Buffer.from([b]));
        await sleep(0);
      }
    });
    try {
      const { port } = await proxy([dribble.port, shards[1].port, shards[2].port]);
      await flushAll();
      const { slowKey, fastKey, fastKey2 } = await findKeys(port, dribble);
      const req = Buffer.concat([
        resp('SET', fastKey, 'abc'), resp('GET', slowKey), resp('MGET', slowKey, fastKey, fastKey2), resp('PING'),
        resp('DEL', fastKey, fastKey2), resp('GET', fastKey),
      ]);
      const expected = '+OK\r\n$5\r\nhello\r\n*3\r\n$5\r\nhello\r\n$3\r\nabc\r\n$-1\r\n+PONG\r\n:1\r\n$-1\r\n';
      for (let i = 1; i < req.length; i++) expect(await exchange(port, req, expected.length, i), `split at ${i}`).toBe(expected);
    } finally {
      dribble.server.close();
    }
  }, 180_000);

  it('takes more pipelined requests than its ring holds: the client\'s held input is resumed', async () => {
    const { port } = await proxy(shards.map((s) => s.port));
    await flushAll();
    const n = 3000;
    const req = Buffer.concat([
      ...Array.from({ length: n }, (_, i) => resp('SET', `p:${i}`, String(i))),
      ...Array.from({ length: n }, (_, i) => resp('GET', `p:${i}`)),
    ]);
    const expected = '+OK\r\n'.repeat(n) + Array.from({ length: n }, (_, i) => `$${String(i).length}\r\n${i}\r\n`).join('');
    expect(await exchange(port, req, Buffer.byteLength(expected))).toBe(expected);
  }, 60_000);

  it('a shard that stops reading: its queue fills (upstream_send -2), the client\'s requests wait, then all are answered in order', async () => {
    // s0 reads nothing for 1.5 s, then answers +OK to each request; --max-output-buffer 64 KiB bounds what waits for it.
    let paused = true;
    const stalled = await scriptedShard(async (s, req) => {
      while (paused) await sleep(50);
      s.write('+OK\r\n'.repeat(req));
    }, (s) => {
      s.pause();
      setTimeout(() => { paused = false; s.resume(); }, 1500);
    });
    try {
      const server = createServer({
        module: WASM, port: 0, threads: 2, logLevel: 'silent', upstream: [`s0=127.0.0.1:${stalled.port}`],
        config: Buffer.from('servers=s0'), maxOutputBuffer: '64KiB',
      });
      servers.push(server);
      const { port } = await server.listen();
      const n = 1500;
      const value = 'v'.repeat(10_000);
      const req = Buffer.concat(Array.from({ length: n }, (_, i) => resp('SET', `k${i}`, value)));
      expect(await exchange(port, req, n * 5)).toBe('+OK\r\n'.repeat(n));
      expect(stalled.seen.length).toBe(n);
      expect(stalled.seen.every((r, i) => r.equals(resp('SET', `k${i}`, value)))).toBe(true);
    } finally {
      stalled.server.close();
    }
  }, 60_000);

  it('redis-benchmark -c 50 and -P 16: every INCR reaches its shard exactly once, no fault', async () => {
    const { server, port } = await proxy(shards.map((s) => s.port));
    await flushAll();
    const bench = (extra: string[]) => run('redis-benchmark', ['-p', String(port), '-q', '-n', '5000', '-c', '50', '-t', 'set,get,incr,mset', ...extra], { timeoutMs: 120_000 });
    let r = await bench([]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/INCR: [\d.]+ requests per second/);
    expect(r.stdout).toMatch(/MSET \(10 keys\): [\d.]+ requests per second/);
    const counter = async () => {
      let total = 0;
      for (const s of shards) total += Number((await s.cli('GET', 'counter:__rand_int__')).stdout.trim() || '0');
      return total;
    };
    expect(await counter()).toBe(5000);
    r = await bench(['-P', '16']);
    expect(r.code, r.stderr).toBe(0);
    const n = await counter();
    expect(n).toBeGreaterThanOrEqual(10_000);
    expect(n).toBeLessThan(10_000 + 50 * 16);
    expect(Object.values(server.stats().moduleFaults).reduce((a, b) => a + b, 0)).toBe(0);
    await until(() => native.upstreamStats().open === 0, 10_000, 'every upstream closed with its client');
  }, 240_000);

  it('a shard that accepts and never answers: with --upstream-read-timeout its keys get the error, the other shard serves, nothing stays open', async () => {
    const mute: Socket[] = [];
    const stall = netServer((s) => { s.on('error', () => undefined); s.resume(); mute.push(s); });
    await new Promise<void>((r) => stall.listen(0, '127.0.0.1', r));
    const before = native.upstreamStats();
    const { port } = await proxy([(stall.address() as { port: number }).port, shards[1].port], '', [], { upstreamReadTimeout: 300 });
    const keys = Array.from({ length: 12 }, (_, i) => `rt:absent:${i}`);
    const err = '-ERR proxy: shard s0 unavailable\r\n';
    const c = await open(port);
    let got = '';
    c.on('data', (d) => { got += d.toString(); });
    // One request at a time: each answered within a bounded time (the client's own read timeout is minutes).
    const answers: string[] = [];
    for (const k of keys) {
      got = '';
      const t0 = Date.now();
      c.write(resp('GET', k));
      await until(() => got.endsWith('\r\n'), 5_000, `the answer to GET ${k}`);
      answers.push(got);
      if (got === err) expect(Date.now() - t0).toBeGreaterThanOrEqual(250);  // after the timeout, not at once
    }
    expect(answers.every((a) => a === err || a === '$-1\r\n')).toBe(true);
    expect(answers).toContain(err);
    expect(answers).toContain('$-1\r\n');  // the healthy shard served its keys meanwhile
    // Pipelined: the healthy shard's replies wait for the mute one's error, in request order.
    got = '';
    const expected = answers.join('');
    c.write(Buffer.concat(keys.map((k) => resp('GET', k))));
    await until(() => got.length >= expected.length, 5_000, 'the pipelined answers');
    expect(got).toBe(expected);
    expect(native.upstreamStats().readTimeouts - before.readTimeouts).toBeGreaterThanOrEqual(answers.filter((a) => a === err).length);
    c.destroy();
    await until(() => native.upstreamStats().open <= before.open, 5_000, 'the upstream gauge back to its baseline');  // per process: earlier tests' may close meanwhile
    for (const s of mute) s.destroy();
    stall.close();
  }, 30_000);

  it('a shard down: its keys get an error, the others are served; back up, served again without a restart', async () => {
    const { port } = await proxy(shards.map((s) => s.port));
    await flushAll();
    const keys = Array.from({ length: 60 }, (_, i) => Buffer.from(`key:${i}`));
    const c = await open(port);
    const setAll = readBytes(c, keys.length * 5);
    c.write(Buffer.concat(keys.map((k) => resp('SET', k, 'x'))));
    expect((await setAll).toString()).toBe('+OK\r\n'.repeat(keys.length));
    const where = await placement(keys);
    const down = where.find((w) => w !== where[0])!;
    expect(down).toBeGreaterThanOrEqual(0);
    expect(where.filter((w) => w !== down).length).toBeGreaterThan(0);
    await shards[down].kill();
    // The same connection (its upstream to s1 closes) and a new one.
    for (const conn of [c, await open(port)]) {
      const expected = where.map((w) => (w === down ? `-ERR proxy: shard s${down} unavailable\r\n` : '$1\r\nx\r\n')).join('');
      const got = readBytes(conn, Buffer.byteLength(expected));
      conn.write(Buffer.concat(keys.map((k) => resp('GET', k))));
      expect((await got).toString()).toBe(expected);
      // MGET: the down shard's keys are error elements of the array.
      const joined = `*${keys.length}\r\n${expected}`;
      const mget = readBytes(conn, Buffer.byteLength(joined));
      conn.write(resp('MGET', ...keys));
      expect((await mget).toString()).toBe(joined);
    }
    await shards[down].start(); // the same port, empty
    const again = await exchange(port, Buffer.concat(keys.map((k) => resp('SET', k, 'y'))), keys.length * 5);
    expect(again).toBe('+OK\r\n'.repeat(keys.length));
    c.destroy();
  }, 60_000);
});

/** A shard played by a script: `answer(socket, requests)` for each batch of complete RESP requests it receives. */
async function scriptedShard(answer: (s: Socket, requests: number) => Promise<void>, onConn?: (s: Socket) => void): Promise<{ port: number; server: Server; seen: Buffer[] }> {
  const seen: Buffer[] = [];
  const server = netServer((s) => {
    s.on('error', () => undefined);
    onConn?.(s);
    let buf = Buffer.alloc(0);
    let chain = Promise.resolve();
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      let n = 0;
      for (;;) {
        const end = requestEnd(buf);
        if (end < 0) break;
        seen.push(buf.subarray(0, end));
        buf = buf.subarray(end);
        n++;
      }
      if (n > 0) chain = chain.then(() => answer(s, n));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, server, seen };
}

/** The end of the first complete RESP array of bulk strings in `b`, or -1. */
function requestEnd(b: Buffer): number {
  let p = b.indexOf('\r\n');
  if (p < 0) return -1;
  const n = Number(b.subarray(1, p).toString());
  p += 2;
  for (let i = 0; i < n; i++) {
    const e = b.indexOf('\r\n', p);
    if (e < 0) return -1;
    p = e + 2 + Number(b.subarray(p + 1, e).toString()) + 2;
    if (p > b.length) return -1;
  }
  return p;
}

/** A key the scripted shard s0 gets and one it does not, found by asking through the proxy. */
async function findKeys(port: number, shard: { seen: Buffer[] }): Promise<{ slowKey: string; fastKey: string; fastKey2: string }> {
  let slowKey = '';
  const fast: string[] = [];
  for (let i = 0; i < 64 && (!slowKey || fast.length < 2); i++) {
    const key = `key:${i}`;
    const before = shard.seen.length;
    await run('redis-cli', ['-p', String(port), 'EXISTS', key], { timeoutMs: 10_000 });
    if (shard.seen.length > before) slowKey ||= key;
    else fast.push(key);
  }
  expect(slowKey && fast.length >= 2).toBeTruthy();
  shard.seen.length = 0;
  return { slowKey, fastKey: fast[0], fastKey2: fast[1] };
}
