// Pub/sub beyond fan-out (issue 22), resp.wasm against redis-server:
// 1. Idle subscribers: N connections (10,000; 1,000 with --quick) held by
//    bench/bin/idle-conns, once plain and once each sending
//    `SUBSCRIBE ch:{i}` (one channel of its own per connection), each on a
//    fresh server; the server's RSS growth per connection in both, and the
//    difference: what one subscription costs.
// 2. Fan-in: 100 publishers (redis-benchmark -c 100 PUBLISH fanin <16 B>) → 1
//    subscriber that counts what it receives (every message is a frame of one
//    known length); interleaved rounds, delivered messages per second and the
//    server's CPU per delivered message. The subscriber must see every
//    message, or the run is an error.
// 3. Across processes (--bus): two tcpmod processes (one worker each) on one
//    redis-server bus, the subscriber on one and the publisher on the other,
//    against one process holding both and against redis-server itself:
//    publish → delivery latency one message at a time (p50/p99), and the
//    fan-in rate through the bus (at most once across processes: what did not
//    arrive is reported, not an error).
import net from 'node:net';
import { redisBenchmark } from '../clients.mjs';
import { compareServers } from '../compare.mjs';
import { sleep } from '../proc.mjs';
import { launch, moduleExists } from '../servers.mjs';
import { summarize } from '../stats.mjs';
import { holdConnections } from './scale.mjs';

export const title = 'pubsub';
export const MODULE = 'build/resp.wasm';
const PUBLISHERS = 100;
const CHANNEL = 'fanin';
const PAYLOAD = 'x'.repeat(16);
const FRAME = Buffer.byteLength(`*3\r\n$7\r\nmessage\r\n$${CHANNEL.length}\r\n${CHANNEL}\r\n$${PAYLOAD.length}\r\n${PAYLOAD}\r\n`);
const CONFIRM = Buffer.byteLength(`*3\r\n$9\r\nsubscribe\r\n$${CHANNEL.length}\r\n${CHANNEL}\r\n:1\r\n`);

export async function run(ctx) {
  if (!moduleExists(ctx.root, MODULE)) return { status: 'skipped', reason: `module missing: ${MODULE}` };
  const d = ctx.defs;
  const idle = await idleSubscribers(ctx, [d.tcpmod(MODULE), d.redis()]);

  const rate = new Map();
  const fanin = await compareServers({
    ctx: { ...ctx, warmupSeconds: Math.max(ctx.warmupSeconds, 0.3) }, // the warm-up sizes -n
    workload: 'pubsub',
    defs: [d.tcpmod(MODULE), d.redis()],
    cases: [{ id: 'fanin-100', label: `fan-in: ${PUBLISHERS} publishers → 1 subscriber, 16 B`, params: {} }],
    runOne: async (_p, server, seconds) => {
      const requests = Math.max(2000, Math.round((rate.get(server.id) ?? 20_000) * seconds));
      const r = await faninRun(server.port, requests);
      rate.set(server.id, r.rps);
      return r;
    },
  });
  const across = await acrossProcesses(ctx);
  return {
    status: 'ok',
    module: MODULE,
    across,
    client: `bench/bin/idle-conns (IDLE_CONNS_SEND='SUBSCRIBE ch:{i}\\r\\n'); redis-benchmark -c ${PUBLISHERS} -n N --csv PUBLISH ${CHANNEL} <16 B> with one counting subscriber`,
    idle,
    ...fanin,
    notes: [idleTable(idle), acrossTable(across)],
  };
}

/** Part 1: per server, rounds of (plain, subscribed) holds on fresh servers. */
async function idleSubscribers(ctx, defs) {
  const n = ctx.quick ? 1000 : 10_000;
  const rounds = ctx.quick ? 1 : Math.min(ctx.rounds, 3);
  const out = { connections: n, rounds, results: {} };
  for (const def of defs) out.results[def.id] = { label: def.label, plain: [], subscribed: [] };
  for (let round = 1; round <= rounds; round++) {
    for (const def of defs) {
      for (const kind of ['plain', 'subscribed']) {
        const env = kind === 'subscribed' ? { IDLE_CONNS_SEND: 'SUBSCRIBE ch:{i}\r\n' } : undefined;
        ctx.log(`[pubsub] ${n.toLocaleString('en-US')} idle ${kind} connections · round ${round}/${rounds} · ${def.label}`);
        try {
          const r = await holdConnections(ctx, def, n, { env, settleMs: ctx.quick ? 500 : 1500 });
          out.results[def.id][kind].push({ round, ...r });
          ctx.log(`[pubsub] ${def.label} ${kind}: ${r.connected} held, ${r.bytesPerConnection?.toFixed(0)} B/conn`);
        } catch (e) {
          out.results[def.id][kind].push({ round, error: e.message });
          ctx.log(`[pubsub] ${def.label} ${kind}: error: ${e.message}`);
        }
      }
    }
  }
  for (const res of Object.values(out.results)) {
    const per = (runs) => summarize(runs.filter((r) => !r.error).map((r) => r.bytesPerConnection));
    res.plainBytesPerConnection = per(res.plain);
    res.subscribedBytesPerConnection = per(res.subscribed);
    const a = res.subscribedBytesPerConnection.median;
    const b = res.plainBytesPerConnection.median;
    res.bytesPerSubscription = a === null || b === null ? null : a - b;
  }
  return out;
}

function idleTable(idle) {
  const b = (s) => (s.median === null ? '–' : `${Math.round(s.median).toLocaleString('en-US')} (${Math.round(s.min)}–${Math.round(s.max)})`);
  const rows = [
    `Idle connections (${idle.connections.toLocaleString('en-US')} held, ${idle.rounds} round(s), fresh server each): server RSS growth per connection.`,
    '',
    '| server | plain, B/conn (median, min–max) | one subscription each, B/conn | per subscription, B |',
    '|---|--:|--:|--:|',
  ];
  for (const r of Object.values(idle.results)) {
    const per = r.bytesPerSubscription === null ? '–' : Math.round(r.bytesPerSubscription).toLocaleString('en-US');
    rows.push(`| ${r.label} | ${b(r.plainBytesPerConnection)} | ${b(r.subscribedBytesPerConnection)} | ${per} |`);
  }
  return rows.join('\n');
}

/** Part 3: latency and fan-in rate, one process vs two on a Redis bus vs redis-server. */
async function acrossProcesses(ctx) {
  const d = ctx.defs;
  const count = ctx.quick ? 300 : 2000;
  const requests = ctx.quick ? 5000 : 50_000;
  const started = [];
  const out = { messages: count, faninRequests: requests, setups: [] };
  try {
    const bus = await launch(d.redis(), ctx);
    started.push(bus);
    const busArgs = ['--bus', `redis://127.0.0.1:${bus.port}`];
    const a = await launch(d.tcpmod(MODULE, { workers: 1, id: 'tcpmod-a', label: 'tcpmod A', args: busArgs }), ctx);
    started.push(a);
    const b = await launch(d.tcpmod(MODULE, { workers: 1, id: 'tcpmod-b', label: 'tcpmod B', args: busArgs }), ctx);
    started.push(b);
    const one = await launch(d.tcpmod(MODULE), ctx);
    started.push(one);
    const ref = await launch(d.redis(), ctx);
    started.push(ref);
    const setups = [
      { id: 'one-process', label: `tcpmod, one process ×${ctx.threads}`, pub: one.port, sub: one.port },
      { id: 'two-processes', label: 'tcpmod, two processes ×1 on a Redis bus', pub: a.port, sub: b.port },
      { id: 'redis-server', label: 'redis-server', pub: ref.port, sub: ref.port },
    ];
    for (const s of setups) {
      const row = { id: s.id, label: s.label, rounds: [] };
      for (let round = 1; round <= (ctx.quick ? 1 : Math.min(ctx.rounds, 3)); round++) {
        try {
          const lat = await latencyRun(s.pub, s.sub, count);
          const sub = await subscriber(s.sub);
          const pub = net.connect(s.pub, '127.0.0.1');
          pub.on('data', () => {});
          let got;
          let before;
          let t0;
          try {
            await new Promise((ok, fail) => pub.once('connect', ok).once('error', fail));
            await primed(pub, sub);
            before = sub.count();
            t0 = performance.now();
            await redisBenchmark({ port: s.pub, command: ['PUBLISH', CHANNEL, PAYLOAD], clients: PUBLISHERS, pipeline: 1, requests });
            got = await sub.settle(2000);
          } finally {
            pub.destroy();
            sub.close();
          }
          const delivered = got.messages - before;
          const r = { round, p50Ms: lat.p50Ms, p99Ms: lat.p99Ms, delivered, deliveredPerSec: delivered > 0 ? delivered / ((got.lastAt - t0) / 1000) : 0, lost: requests - delivered };
          row.rounds.push(r);
          ctx.log(`[pubsub] across · ${s.label} · round ${round}: p50 ${r.p50Ms.toFixed(3)} ms, p99 ${r.p99Ms.toFixed(3)} ms; fan-in ${Math.round(r.deliveredPerSec)} msgs/s, ${r.lost} lost`);
        } catch (e) {
          row.rounds.push({ round, error: e.message });
          ctx.log(`[pubsub] across · ${s.label}: error: ${e.message}`);
        }
      }
      const ok = row.rounds.filter((r) => !r.error);
      for (const k of ['p50Ms', 'p99Ms', 'deliveredPerSec']) row[k] = summarize(ok.map((r) => r[k]));
      row.lost = ok.reduce((n, r) => n + r.lost, 0);
      out.setups.push(row);
    }
  } catch (e) {
    out.error = e.message;
    ctx.log(`[pubsub] across processes: error: ${e.message}`);
  } finally {
    for (const s of started.reverse()) await s.stop();
  }
  return out;
}

function acrossTable(across) {
  if (across.error) return `Across processes: not measured (${across.error}).`;
  const f = (s, d) => (s.median === null ? '–' : s.median.toFixed(d));
  const rows = [
    `Across processes (--bus): publish → delivery latency, ${across.messages.toLocaleString('en-US')} messages one at a time; fan-in of ${across.faninRequests.toLocaleString('en-US')} publishes from ${PUBLISHERS} clients (at most once across processes: lost = not delivered).`,
    '',
    '| setup | latency p50, ms | p99, ms | fan-in delivered msgs/s | lost |',
    '|---|--:|--:|--:|--:|',
  ];
  for (const r of across.setups) rows.push(`| ${r.label} | ${f(r.p50Ms, 3)} | ${f(r.p99Ms, 3)} | ${r.deliveredPerSec.median === null ? '–' : Math.round(r.deliveredPerSec.median).toLocaleString('en-US')} | ${r.lost} |`);
  return rows.join('\n');
}

/** `count` messages one at a time: PUBLISH on one connection, the time until the subscriber (maybe elsewhere) has it. */
async function latencyRun(pubPort, subPort, count) {
  const sub = await subscriber(subPort);
  const pub = net.connect(pubPort, '127.0.0.1');
  pub.setNoDelay(true);
  pub.on('data', () => {}); // the publish replies (:N) are not needed
  try {
    await new Promise((ok, fail) => pub.once('connect', ok).once('error', fail));
    await primed(pub, sub);
    const ms = [];
    for (let i = 0; i < count; i++) {
      const n = sub.count() + 1;
      const t0 = performance.now();
      pub.write(`PUBLISH ${CHANNEL} ${PAYLOAD}\r\n`);
      ms.push((await sub.until(n, 5000)) - t0);
    }
    ms.sort((x, y) => x - y);
    return { p50Ms: ms[Math.floor(ms.length * 0.5)], p99Ms: ms[Math.min(ms.length - 1, Math.floor(ms.length * 0.99))] };
  } finally {
    pub.destroy();
    sub.close();
  }
}

/**
 * Publishes on `pub` until the subscriber has a message (5 s at most): a bus
 * subscription is made asynchronously, after the client's is confirmed.
 */
async function primed(pub, sub) {
  const deadline = Date.now() + 5000;
  while (sub.count() === 0) {
    if (Date.now() > deadline) throw new Error('no message reached the subscriber within 5 s');
    pub.write(`PUBLISH ${CHANNEL} ${PAYLOAD}\r\n`);
    await sleep(20);
  }
  await sleep(100); // the rest of the priming messages arrive
}

/** One fan-in run: a subscriber counts while redis-benchmark publishes `requests` messages; every one must arrive. */
async function faninRun(port, requests) {
  const sub = await subscriber(port);
  try {
    const t0 = performance.now();
    const pub = await redisBenchmark({ port, command: ['PUBLISH', CHANNEL, PAYLOAD], clients: PUBLISHERS, pipeline: 1, requests });
    const last = await sub.until(requests, 10_000);
    const seconds = (last - t0) / 1000;
    return { requests, seconds, rps: requests / seconds, publishRps: pub.rps, errors: pub.errors, command: pub.command };
  } finally {
    sub.close();
  }
}

/** A subscriber of CHANNEL that counts whole message frames and when the last one came. */
function subscriber(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let bytes = -CONFIRM;
    let lastAt = 0;
    let want = Infinity;
    let wake = null;
    s.setNoDelay(true);
    s.on('error', reject);
    s.on('connect', () => s.write(`SUBSCRIBE ${CHANNEL}\r\n`));
    s.on('data', (d) => {
      const was = bytes;
      bytes += d.length;
      if (was < 0 && bytes >= 0) resolve(api);
      lastAt = performance.now();
      if (bytes >= want * FRAME) wake?.();
    });
    const api = {
      close: () => s.destroy(),
      count: () => Math.max(0, Math.floor(bytes / FRAME)),
      /** Resolves once nothing has arrived for `quietMs`: the messages counted and when the last came. */
      settle: async (quietMs) => {
        while (performance.now() - lastAt < quietMs) await sleep(50);
        return { messages: Math.max(0, Math.floor(bytes / FRAME)), lastAt };
      },
      until: (n, ms) =>
        new Promise((ok, fail) => {
          want = n;
          const t = setTimeout(() => fail(new Error(`subscriber got ${Math.floor(bytes / FRAME)} of ${n} messages`)), ms);
          wake = () => {
            clearTimeout(t);
            ok(lastAt);
          };
          if (bytes >= n * FRAME) wake();
        }),
    };
  });
}
