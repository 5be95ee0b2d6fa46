// build/proxy.wasm (the same module as redis-proxy.wasm) set up as issue 23 writes it:
// `--upstream redis=A,B` and nothing else, over two real redis-server: each address of the
// one name is a shard (upstream_open "redis#I", tcpmod.upstream_addr), placed as nutcracker
// places the same two servers listed by address (ketama, fnv1a_64); MGET across both; one
// backend killed gives errors for its keys only, restarted it is served again. And
// --max-upstreams: past it upstream_open is -2 (the shard's keys get the proxy's error),
// counted in tooMany, the open gauge back to its baseline after.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type TcpmodServer } from '../dist/index.js';
import { metricsRegistry } from '../dist/metrics.js';
import { native } from '../host/sys.js';
import { ROOT } from './fixtures.js';
import { open, readBytes } from './net-client.js';
import { requireTool, run } from './server-process.js';
import { freePort, RedisServer } from './services.js';
import { until } from './wait.js';

const WASM = join(ROOT, 'build', 'proxy.wasm');
const backends = [new RedisServer(), new RedisServer()];
const servers: TcpmodServer[] = [];
const scratch = mkdtempSync(join(tmpdir(), 'proxy-by-address-'));

beforeAll(async () => {
  await requireTool('redis-server');
  await Promise.all(backends.map((s) => s.start()));
}, 30_000);
afterAll(async () => {
  for (const s of servers) await s.close({ drainTimeout: 0 }).catch(() => undefined);
  await Promise.all(backends.map((s) => s.kill()));
  rmSync(scratch, { recursive: true, force: true });
});

/** proxy.wasm with `--upstream redis=127.0.0.1:A,127.0.0.1:B` and no --config. */
async function proxy(extra: { maxUpstreams?: number } = {}): Promise<number> {
  const server = createServer({
    module: WASM, port: 0, threads: 2, logLevel: 'silent', ...extra,
    upstream: `redis=${backends.map((b) => `127.0.0.1:${b.port}`).join(',')}`,
  });
  servers.push(server);
  return (await server.listen()).port;
}

const resp = (...args: (string | Buffer)[]) =>
  Buffer.concat([Buffer.from(`*${args.length}\r\n`), ...args.flatMap((a) => [Buffer.from(`$${Buffer.byteLength(a)}\r\n`), Buffer.from(a), Buffer.from('\r\n')])]);
// Varied keys: fnv1a_64 (32 bits kept) of near-identical keys such as key:0..key:59 can all fall on
// one of two ketama servers (as in nutcracker), which would leave a backend unchecked.
let seed = 11;
const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
const keys = Array.from({ length: 300 }, (_, i) => Buffer.from(`${(rnd() % 100000).toString(36)}:${i}`));

/** Sets every key through `port`; then up to 30 keys of each backend: one MGET takes them all
 *  (the proxy refuses an MGET of more keys than its reply ring holds, 169). */
async function fewOfEach(port: number): Promise<Buffer[]> {
  const all = await setAll(port, keys);
  const few = [0, 1].flatMap((b) => keys.filter((_, j) => all[j] === b).slice(0, 30));
  expect(few.length).toBeGreaterThan(30);
  return few;
}

/** Which backend holds each key (EXISTS on each, pipelined). */
async function placement(ks: Buffer[]): Promise<number[]> {
  const where = ks.map(() => -1);
  for (let i = 0; i < backends.length; i++) {
    const c = await open(backends[i].port);
    const got = readBytes(c, ks.length * 4);
    c.write(Buffer.concat(ks.map((k) => resp('EXISTS', k))));
    const lines = (await got).toString().split('\r\n');
    ks.forEach((_, j) => { if (lines[j] === ':1') where[j] = i; });
    c.destroy();
  }
  return where;
}

/** SETs every key through `port` (after emptying both backends) and returns where they went. */
async function setAll(port: number, ks: Buffer[]): Promise<number[]> {
  await Promise.all(backends.map((b) => b.cli('FLUSHALL')));
  const c = await open(port);
  const got = readBytes(c, ks.length * 5);
  c.write(Buffer.concat(ks.map((k) => resp('SET', k, 'v'))));
  expect((await got).toString()).toBe('+OK\r\n'.repeat(ks.length));
  c.destroy();
  return placement(ks);
}

describe('proxy.wasm with --upstream redis=A,B: each address a shard', () => {
  it('puts every key where nutcracker puts it with the same two servers listed by address', async () => {
    await requireTool('nutcracker');
    const ncPort = await freePort();
    const conf = join(scratch, 'nc.yml');
    // Servers with no name: nutcracker hashes them by their address (what the proxy reproduces).
    writeFileSync(conf, [
      'pool:', `  listen: 127.0.0.1:${ncPort}`, '  hash: fnv1a_64', '  distribution: ketama', '  redis: true',
      '  auto_eject_hosts: false', '  servers:', ...backends.map((b) => `   - 127.0.0.1:${b.port}:1`), '',
    ].join('\n'));
    const nc: ChildProcess = spawn('nutcracker', ['-c', conf, '-s', String(await freePort())], { stdio: 'ignore' });
    try {
      await until(async () => (await run('redis-cli', ['-p', String(ncPort), 'GET', 'x'], { timeoutMs: 2_000 })).code === 0, 10_000, 'nutcracker listening');
      const byNutcracker = await setAll(ncPort, keys);
      const byProxy = await setAll(await proxy(), keys);
      expect(byNutcracker.every((w) => w >= 0)).toBe(true);
      expect(new Set(byNutcracker).size).toBe(2);
      expect(byProxy).toEqual(byNutcracker);
    } finally {
      nc.kill('SIGKILL');
      await once(nc, 'exit').catch(() => undefined);
    }
  }, 60_000);

  it('MGET across both; a backend killed: errors for its keys only; restarted: served again', async () => {
    const port = await proxy();
    const few = await fewOfEach(port);
    const where = await placement(few);
    expect(new Set(where).size).toBe(2);
    const c = await open(port);
    const all = `*${few.length}\r\n${'$1\r\nv\r\n'.repeat(few.length)}`;
    let got = readBytes(c, Buffer.byteLength(all));
    c.write(resp('MGET', ...few));
    expect((await got).toString()).toBe(all);
    const down = where[0];
    const downName = `127.0.0.1:${backends[down].port}`;
    await backends[down].kill();
    const fresh = await open(port);
    for (const conn of [c, fresh]) {
      const expected = where.map((w) => (w === down ? `-ERR proxy: shard ${downName} unavailable\r\n` : '$1\r\nv\r\n')).join('');
      got = readBytes(conn, Buffer.byteLength(expected));
      conn.write(Buffer.concat(few.map((k) => resp('GET', k))));
      expect((await got).toString()).toBe(expected);
      const joined = `*${few.length}\r\n${expected}`;
      got = readBytes(conn, Buffer.byteLength(joined));
      conn.write(resp('MGET', ...few));
      expect((await got).toString()).toBe(joined);
    }
    await backends[down].start(); // the same port, empty
    got = readBytes(c, few.length * 5);
    c.write(Buffer.concat(few.map((k) => resp('SET', k, 'w'))));
    expect((await got).toString()).toBe('+OK\r\n'.repeat(few.length));
    expect(await placement(few)).toEqual(where);
    c.destroy();
    fresh.destroy();
  }, 60_000);

  it('--max-upstreams 1: the second shard\'s open is refused (-2, counted), its keys get the error, while a server of the same process configured after it keeps its own bound; the open gauge returns to its baseline', async () => {
    const few = await fewOfEach(await proxy());
    const where = await placement(few);
    expect(new Set(where).size).toBe(2);
    // No upstream left open in this process (earlier clients closed), so the bound of 1 is one shard.
    await until(() => native.upstreamStats().open === 0, 5_000, 'earlier upstreams closed');
    const port = await proxy({ maxUpstreams: 1 });
    const bounded = servers[servers.length - 1];
    // Configured after the bounded one, with the default bound: each server keeps its own.
    const otherPort = await proxy();
    const before = native.upstreamStats();
    const c = await open(port);
    // The first key's shard opens; the other's open is past the bound.
    const first = where[0];
    const expected = where.map((w) => (w === first ? '$1\r\nv\r\n' : `-ERR proxy: shard 127.0.0.1:${backends[w].port} unavailable\r\n`)).join('');
    const got = readBytes(c, Buffer.byteLength(expected));
    c.write(Buffer.concat(few.map((k) => resp('GET', k))));
    expect((await got).toString()).toBe(expected);
    const during = native.upstreamStats();
    expect(during.tooMany).toBeGreaterThan(before.tooMany);
    expect(during.open).toBe(before.open + 1);
    // The other server opens both shards while the bounded one holds its one.
    const o = await open(otherPort);
    const all = where.map(() => '$1\r\nv\r\n').join('');
    const gotAll = readBytes(o, Buffer.byteLength(all));
    o.write(Buffer.concat(few.map((k) => resp('GET', k))));
    expect((await gotAll).toString()).toBe(all);
    expect(native.upstreamStats().open).toBe(before.open + 3);
    expect(native.upstreamStats().tooMany).toBe(during.tooMany);
    o.destroy();
    await until(() => native.upstreamStats().open === before.open + 1, 5_000, 'the other server\'s upstreams closed with its client');
    let text = await metricsRegistry(bounded).scrape();
    expect(text).toMatch(new RegExp(`^tcpmod_upstream_too_many_total ${during.tooMany}$`, 'm'));
    expect(text).toMatch(new RegExp(`^tcpmod_upstream_open ${before.open + 1}$`, 'm'));
    c.destroy();
    await until(() => native.upstreamStats().open === before.open, 5_000, 'upstreams closed with their client');
    text = await metricsRegistry(bounded).scrape();
    expect(text).toMatch(new RegExp(`^tcpmod_upstream_open ${before.open}$`, 'm'));
  }, 30_000);
});
