// MQTT fan-out: one publisher → 100 and 1,000 subscribers of one topic, small
// QoS 0 messages (16 bytes), mqtt.wasm against mosquitto (Debian's broker, one
// process) and aedes (the npm broker, one Node process: bench/mqtt-aedes.mjs).
// The client is native (bench/mqtt-load.c, one epoll thread, so it is not what
// limits the brokers): delivered messages/s keeping at most WINDOW messages on
// their way to the slowest subscriber, then p50/p99 delivery latency sending
// one message at a time (every subscriber timed). Every run checks that no
// delivery was lost or came out of order. Each run connects its subscribers
// afresh (not timed; the server's CPU per delivery includes those connections).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { mqttLoad } from '../clients.mjs';
import { compareServers } from '../compare.mjs';
import { moduleExists } from '../servers.mjs';
import { summarize } from '../stats.mjs';

export const title = 'mqtt';
export const MODULE = 'build/mqtt.wasm';
export const SUBSCRIBERS = [100, 1000];
export const WINDOW = 64;
export const LATENCY_SECONDS = 1;

/** mosquitto on a port: anonymous, no persistence, no log; Nagle off, as tcpmod and aedes have it. */
function mosquittoDef() {
  return {
    id: 'mosquitto',
    label: 'mosquitto',
    strace: true, // its syscalls per delivery beside tcpmod's (a run of its own per case)
    start: (port) => {
      const dir = mkdtempSync(join(os.tmpdir(), 'tcpmod-bench-mosquitto-'));
      const conf = join(dir, 'mosquitto.conf');
      writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\nmax_connections -1\nset_tcp_nodelay true\n`);
      return { cmd: 'mosquitto', args: ['-c', conf], cleanup: () => rmSync(dir, { recursive: true, force: true }) };
    },
  };
}

function aedesDef() {
  return {
    id: 'aedes',
    label: 'aedes (node)',
    start: (port) => ({ cmd: process.execPath, args: ['bench/mqtt-aedes.mjs', String(port)], readyLine: /listening on \S+:\d+/ }),
  };
}

export async function run(ctx) {
  const cases = (ctx.quick ? [100] : SUBSCRIBERS).map((n) => ({
    id: `mqtt-fanout-${n}`,
    label: `MQTT fan-out 1 → ${n.toLocaleString('en-US')} subscribers, QoS 0, 16 B`,
    params: { subscribers: n },
  }));
  if (!moduleExists(ctx.root, MODULE)) return { status: 'skipped', reason: `module missing: ${MODULE}`, plannedCases: cases.map((c) => c.label) };
  const res = await compareServers({
    ctx,
    workload: 'mqtt',
    defs: [ctx.defs.tcpmod(MODULE), mosquittoDef(), aedesDef()],
    cases,
    runOne: (p, server, seconds) =>
      mqttLoad(ctx.bins, { port: server.port, subscribers: p.subscribers, seconds, window: WINDOW, latencySeconds: LATENCY_SECONDS }),
  });
  return { status: 'ok', module: MODULE, client: `bench/bin/mqtt-load 127.0.0.1 PORT SUBSCRIBERS SECONDS ${WINDOW} ${LATENCY_SECONDS}`, ...res, notes: [latencyTable(res)] };
}

/** Delivery latency (median over the rounds of each run's p50 and p99), losses, and what the client could do. */
function latencyTable(res) {
  const ms = (s) => (s.median === null ? '–' : `${s.median.toFixed(2)} (${s.min.toFixed(2)}–${s.max.toFixed(2)})`);
  const rows = [
    '| case | server | one at a time: p50, ms (median, min–max over rounds) | p99, ms | under load: p50, ms | p99, ms | lost or out-of-order deliveries | client CPU ÷ wall time, throughput phase |',
    '|---|---|--:|--:|--:|--:|--:|--:|',
  ];
  for (const c of res.cases) {
    for (const r of Object.values(c.results)) {
      const ok = r.runs.filter((x) => !x.error);
      const col = (key) => ms(summarize(ok.map((x) => x[key])));
      const busy = summarize(ok.map((x) => x.clientCpuSeconds / x.seconds));
      const bad = ok.reduce((a, x) => a + (x.errors ?? 0), 0);
      rows.push(`| ${c.label} | ${r.label} | ${col('p50Ms')} | ${col('p99Ms')} | ${col('loadedP50Ms')} | ${col('loadedP99Ms')} | ${bad} | ${busy.median === null ? '–' : busy.median.toFixed(2)} |`);
    }
  }
  return [
    `Delivery latency, publish → subscriber: one message at a time (every subscriber: the spread of one fan-out; the goal’s p99), and under load (window ${WINDOW}, 8 subscribers sampled: mostly queueing behind the window, so it follows msgs/s).`,
    '',
    ...rows,
  ].join('\n');
}
