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
import net from 'node:net';
import { redisBenchmark } from '../clients.mjs';
import { compareServers } from '../compare.mjs';
import { moduleExists } from '../servers.mjs';
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
  return {
    status: 'ok',
    module: MODULE,
    client: `bench/bin/idle-conns (IDLE_CONNS_SEND='SUBSCRIBE ch:{i}\\r\\n'); redis-benchmark -c ${PUBLISHERS} -n N --csv PUBLISH ${CHANNEL} <16 B> with one counting subscriber`,
    idle,
    ...fanin,
    notes: [idleTable(idle)],
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
