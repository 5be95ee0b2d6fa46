// --bus (docs/abi.md §15): topics across processes through Redis. Two
// `tcpmod serve` processes of resp.wasm on one real redis-server, driven by
// node-redis (subscribers, publishers) and redis-cli: a message published in
// one process reaches the subscribers of both, each exactly once (the echo of
// one's own publish is dropped), in publish order per publisher; a plain Redis
// client's PUBLISH reaches them too; with Redis stopped (SIGSTOP) or killed the
// loss is counted and nothing arrives twice or out of order, and after Redis
// comes back (same port) messages flow again without the clients doing anything.
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metricsPort, scrape } from './metrics.js';
import { requireTool, serve, type ServedProcess } from './server-process.js';
import { RedisServer } from './services.js';
import { sleep, until } from './wait.js';

const store = new RedisServer();
let a: ServedProcess;
let b: ServedProcess;
const metrics: Record<string, number> = {};
type Client = ReturnType<typeof createClient>;
const clients: Client[] = [];

async function client(port: number): Promise<Client> {
  const c = createClient({ url: `redis://127.0.0.1:${port}`, socket: { reconnectStrategy: false } });
  c.on('error', () => undefined); // a test's own assertions report what went wrong
  clients.push(c);
  await c.connect();
  return c;
}

/** The bus counters of one process, from its /metrics. */
async function bus(p: ServedProcess): Promise<{ published: number; received: number; dropped: number; unconfirmed: number; failures: number; connected: number }> {
  const m = await scrape(metrics[p.port]);
  return {
    published: m.tcpmod_bus_published_total ?? 0, received: m.tcpmod_bus_received_total ?? 0,
    dropped: m['tcpmod_bus_lost_total{why="dropped"}'] ?? 0, unconfirmed: m['tcpmod_bus_lost_total{why="unconfirmed"}'] ?? 0,
    failures: m.tcpmod_bus_failures_total ?? 0, connected: m.tcpmod_bus_connected ?? 0,
  };
}

/** Waits until Redis holds `n` subscriptions of the channel (one per tcpmod process that has a subscriber). */
async function redisSubscribers(channel: string, n: number): Promise<void> {
  await until(async () => (await store.cli('PUBSUB', 'NUMSUB', channel)).stdout === `${channel}\n${n}\n`, 10_000, `${n} Redis subscribers of ${channel}`);
}

beforeAll(async () => {
  await requireTool('redis-server');
  await store.start();
  const args = ['--bus', `redis://127.0.0.1:${store.port}`, '--threads', '2', '--metrics', '127.0.0.1:0'];
  [a, b] = await Promise.all([serve('build/resp.wasm', args), serve('build/resp.wasm', args)]);
  for (const p of [a, b]) metrics[p.port] = await metricsPort(p, 10_000);
}, 60_000);

afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.disconnect()));
  await Promise.all([a?.stop(), b?.stop()]);
  await store.kill();
});

describe('--bus: two tcpmod processes on one redis-server', () => {
  it('a publish reaches the subscribers of both processes once each (no echo), the count is the local one, and a plain Redis PUBLISH arrives too', async () => {
    const [subA, subB, pubA] = await Promise.all([client(a.port), client(b.port), client(a.port)]);
    const gotA: string[] = [];
    const gotB: string[] = [];
    await subA.subscribe('room', (m, ch) => gotA.push(`message ${ch} ${m}`));
    await subB.subscribe('room', (m, ch) => gotB.push(`message ${ch} ${m}`));
    await subB.pSubscribe('ro*', (m, ch) => gotB.push(`pmessage ${ch} ${m}`));
    await redisSubscribers('room', 2);
    expect((await store.cli('PUBSUB', 'NUMPAT')).stdout).toBe('1\n'); // b's one pattern, once for the process

    expect(await pubA.publish('room', 'm1')).toBe(1); // subA only: the count stays this process's own
    await until(() => gotA.length >= 1 && gotB.length >= 2, 10_000, 'm1 everywhere');
    expect((await store.cli('PUBLISH', 'room', 'from redis')).stdout).toBe('3\n'); // both buses' channel, b's pattern
    await until(() => gotA.length >= 2 && gotB.length >= 4, 10_000, 'the plain PUBLISH everywhere');
    await sleep(300); // an echo or a duplicate would have arrived by now
    expect(gotA).toEqual(['message room m1', 'message room from redis']);
    expect(gotB.sort()).toEqual(['message room from redis', 'message room m1', 'pmessage room from redis', 'pmessage room m1']);

    // Unsubscribing the last local subscriber drops the process's Redis subscription.
    await subA.unsubscribe('room');
    await redisSubscribers('room', 1);
    await subB.pUnsubscribe('ro*');
    await until(async () => (await store.cli('PUBSUB', 'NUMPAT')).stdout === '0\n', 10_000, 'no Redis pattern left');
    await subB.unsubscribe('room');
    await redisSubscribers('room', 0);
  }, 60_000);

  it('messages from one publisher arrive in publish order in both processes, with another publisher in the other process at once', async () => {
    const [subA, subB, pubA, pubB] = await Promise.all([client(a.port), client(b.port), client(a.port), client(b.port)]);
    const gotA: string[] = [];
    const gotB: string[] = [];
    await subA.subscribe('order', (m) => gotA.push(m));
    await subB.subscribe('order', (m) => gotB.push(m));
    await redisSubscribers('order', 2);
    const n = 400;
    // node-redis pipelines commands issued together on one connection, in order.
    await Promise.all([
      Promise.all(Array.from({ length: n }, (_, i) => pubA.publish('order', `a:${i}`))),
      Promise.all(Array.from({ length: n }, (_, i) => pubB.publish('order', `b:${i}`))),
    ]);
    await until(() => gotA.length >= 2 * n && gotB.length >= 2 * n, 30_000, `${2 * n} messages in each (${gotA.length}, ${gotB.length})`);
    for (const got of [gotA, gotB]) {
      expect(got.length).toBe(2 * n);
      for (const who of ['a', 'b']) expect(got.filter((m) => m.startsWith(`${who}:`))).toEqual(Array.from({ length: n }, (_, i) => `${who}:${i}`));
    }
    await Promise.all([subA.unsubscribe('order'), subB.unsubscribe('order')]);
  }, 60_000);

  it('Redis stopped (SIGSTOP) then killed and restarted: loss counted, nothing twice or out of order, and delivery recovers with no client action', async () => {
    const [subB, pubA] = await Promise.all([client(b.port), client(a.port)]);
    const got: number[] = [];
    await subB.subscribe('live', (m) => got.push(Number(m)));
    await redisSubscribers('live', 1);
    const before = await bus(a);
    let sent = 0;
    let publishing = true;
    // One message every 10 ms from a: each PUBLISH is answered by tcpmod at once (the bus never waits for Redis).
    const publisher = (async () => {
      while (publishing) {
        expect(await pubA.publish('live', String(sent))).toBe(0);
        sent++;
        await sleep(10);
      }
    })();
    await until(() => got.length >= 20, 10_000, 'messages before the stop');
    store.proc!.kill('SIGSTOP');
    try {
      // Past the bus's 3 s reply timeout: both processes give their connections up and retry.
      await until(async () => (await bus(a)).failures > before.failures && (await bus(b)).failures >= 1, 20_000, 'the bus to see the stopped Redis');
    } finally {
      store.proc!.kill('SIGCONT');
    }
    await until(() => /bus to Redis unavailable/.test(a.stderr()), 10_000, 'the warning line');
    const resumedAt = sent;
    await until(() => got.some((v) => v > resumedAt), 30_000, 'messages after SIGCONT');
    await store.kill();
    await sleep(500);
    await store.start(); // same port, empty: the buses subscribe again on their own
    const restartedAt = sent;
    await until(() => got.some((v) => v > restartedAt), 30_000, 'messages after the restart');
    publishing = false;
    await publisher;
    await sleep(500);

    // At most once, in order: strictly increasing.
    for (let i = 1; i < got.length; i++) expect(got[i]).toBeGreaterThan(got[i - 1]);
    const after = await bus(a);
    const dropped = after.dropped - before.dropped;
    const unconfirmed = after.unconfirmed - before.unconfirmed;
    // Some were lost, and counted; none counted as never sent arrived anyway.
    expect(got.length).toBeLessThan(sent);
    expect(dropped + unconfirmed).toBeGreaterThan(0);
    expect(got.length).toBeLessThanOrEqual(sent - dropped);
    expect(after.connected).toBe(1);
    expect((await bus(b)).connected).toBe(1);
  }, 120_000);
});
