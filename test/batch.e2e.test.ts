// --batch K: one epoll_wait takes up to K ready connections for one worker.
// What must not change: one connection is in one callback at a time (ONESHOT
// ownership), a slow callback does not hold up the connections that came in
// its batch for longer than the batch budget, and a worker stopped while
// holding a batch strands none of it.
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type TcpmodServer } from '../dist/index.js';
import { BATCH_BUDGET_MS } from '../dist/worker/loop.js';
import { DEFAULTS, resolveOptions } from '../dist/options.js';
import { fixture } from './fixtures.js';
import { open, readBytes, untilClosed } from './net-client.js';

const servers: TcpmodServer[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  while (servers.length) await servers.pop()!.close({ drainTimeout: 0 });
});

async function start(opts: Parameters<typeof createServer>[0]): Promise<{ server: TcpmodServer; port: number }> {
  const server = createServer({ logLevel: 'silent', port: 0, ...opts });
  servers.push(server);
  const { port } = await server.listen();
  return { server, port };
}

async function connections(port: number, n: number): Promise<Socket[]> {
  const list = await Promise.all(Array.from({ length: n }, () => open(port)));
  sockets.push(...list);
  return list;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** When `n` bytes have arrived on s (ms since the epoch). */
const arrival = (s: Socket, n: number) => readBytes(s, n, 30_000).then(() => Date.now());
/** races.wat: "d" N busy-waits N ms in the callback, then replies "ok\n"; other bytes are echoed. */
const busy = (ms: number) => Buffer.from([0x64, ms]);
const letters = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => 0x61 + ((seed + i) % 26)));

describe('--batch', () => {
  it('defaults to a batch above 1, and takes 1..256', () => {
    expect(DEFAULTS.batch).toBeGreaterThan(1);
    // `npm run test:batch1` moves only the default (TCPMOD_TEST_BATCH); without it, the table's.
    const env = process.env.TCPMOD_TEST_BATCH;
    expect(resolveOptions({ module: 'm.wasm' }).batch).toBe(env ? Number(env) : DEFAULTS.batch);
    expect(resolveOptions({ module: 'm.wasm', batch: 1 }).batch).toBe(1);
    expect(resolveOptions({ module: 'm.wasm', batch: 256 }).batch).toBe(256);
    for (const bad of [0, 257, 1.5]) {
      expect(() => resolveOptions({ module: 'm.wasm', batch: bad })).toThrow(`batch must be an integer from 1 to 256, got ${bad}`);
    }
  });

  it.each([1, 8])('a callback busy for 200 ms holds up none of the connections that arrived with it (batch %i, 2 workers)', async (batch) => {
    const { port } = await start({ module: await fixture('races'), threads: 2, batch, handlerTimeout: '10s' });
    const [p1, p2, slow, ...quick] = await connections(port, 10);
    // Both workers busy for 150 ms, so that everything below is ready at once
    // when one of them next waits: the slow request first, then the quick ones.
    const pDone = Promise.all([arrival(p1, 3), arrival(p2, 3)]);
    p1.write(busy(150));
    p2.write(busy(150));
    await sleep(40);
    const slowDone = arrival(slow, 3);
    slow.write(busy(200));
    await sleep(10);
    const quickDone = Promise.all(quick.map((s) => arrival(s, 1)));
    for (const s of quick) s.write('x');
    const freed = Math.max(...(await pDone));
    const quickAt = await quickDone;
    const slowAt = await slowDone;
    // Each quick echo waits for a worker to come free (the later of the two busy
    // ones), plus at most the batch budget and generous slack for a shared
    // machine — never for the slow callback to end.
    for (const t of quickAt) expect(t).toBeLessThan(slowAt);
    expect(Math.max(...quickAt) - freed).toBeLessThan(BATCH_BUDGET_MS + 120);
  });

  it.each([1, 8])('a worker stopped while holding a batch strands nothing: the one in the callback is closed (reason 6), the rest are served (batch %i)', async (batch) => {
    const { server, port } = await start({ module: await fixture('races'), threads: 1, batch, handlerTimeout: 100 });
    const closes: string[] = [];
    server.on('close', (_conn, reason) => closes.push(reason));
    const [p, stuck, ...rest] = await connections(port, 9);
    // The only worker is busy for 60 ms; meanwhile a callback that will pass the
    // handler timeout, then 7 more, become ready: one wait takes them together.
    const pDone = arrival(p, 3);
    p.write(busy(60));
    await sleep(15);
    const stuckClosed = untilClosed(stuck, 30_000);
    stuck.write(busy(250));
    await sleep(5);
    const restDone = Promise.all(rest.map((s, i) => readBytes(s, 3, 30_000).then((b) => b.toString() === `r${i}\n`)));
    rest.forEach((s, i) => s.write(`r${i}\n`));
    await pDone;
    expect((await stuckClosed).length).toBe(0);
    expect(await restDone).toEqual(rest.map(() => true));
    await new Promise((r) => setTimeout(r, 50));
    expect(closes.filter((r) => r === 'fault')).toHaveLength(1);
    expect(server.stats().moduleFaults.timeout).toBe(1);
    expect(server.connections()).toHaveLength(8);
  });

  it.each([1, 8])('never runs two callbacks for one connection at once: 150 connections x 40 pipelined writes (batch %i)', async (batch) => {
    const { server, port } = await start({ module: await fixture('owner'), threads: 2, batch });
    const one = async (c: number) => {
      const [s] = await connections(port, 1);
      const sent: Buffer[] = [];
      // Letters only: a "!" in the reply can only be the module's report.
      for (let m = 0; m < 40; m++) sent.push(letters(1 + ((c * 7 + m) % 60), c + m));
      const all = Buffer.concat(sent);
      // Pipelined: each write can become its own event while earlier ones are being handled.
      const back = readBytes(s, all.length, 60_000);
      for (let m = 0; m < sent.length; m++) {
        s.write(sent[m]);
        if (m % 3 === 2) await new Promise((r) => setImmediate(r));
      }
      const got = await back;
      return { violation: got.includes(0x21), same: got.equals(all) };
    };
    const results = await Promise.all(Array.from({ length: 150 }, (_, c) => one(c)));
    expect(results.filter((r) => r.violation)).toEqual([]);
    expect(results.filter((r) => !r.same)).toEqual([]);
    expect(server.stats().moduleFaults).toEqual(Object.fromEntries(Object.keys(server.stats().moduleFaults).map((k) => [k, 0])));
  });
});
