// MQTT fan-out: one publisher → 100 and 1,000 subscribers of one topic, small
// QoS 0 messages (16 bytes), mqtt.wasm against mosquitto (Debian's broker, one
// process) and aedes (the npm broker, one Node process: bench/mqtt-aedes.mjs).
// The client is the bench's own, on the npm `mqtt` package
// (bench/lib/mqtt-fanout.mjs): delivered messages/s with a bounded window of
// about 25,600 deliveries in flight, then p50/p99 delivery latency sending one
// message at a time. Each run connects its subscribers afresh (not timed; the server's CPU
// per delivery includes those connections).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { runClient } from '../proc.mjs';
import { compareServers } from '../compare.mjs';
import { moduleExists } from '../servers.mjs';
import { summarize } from '../stats.mjs';

export const title = 'mqtt';
export const MODULE = 'build/mqtt.wasm';
export const SUBSCRIBERS = [100, 1000];
const CLIENT = 'bench/lib/mqtt-fanout.mjs';

/** mosquitto on a port: anonymous, no persistence, no log. */
function mosquittoDef() {
  return {
    id: 'mosquitto',
    label: 'mosquitto',
    start: (port) => {
      const dir = mkdtempSync(join(os.tmpdir(), 'tcpmod-bench-mosquitto-'));
      const conf = join(dir, 'mosquitto.conf');
      writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\nmax_connections -1\n`);
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
    runOne: async (p, server, seconds) => {
      const r = await runClient(process.execPath, [CLIENT, String(server.port), String(p.subscribers), String(seconds)], {
        cwd: ctx.root,
        nofile: 65536,
        timeoutMs: 120_000,
      });
      const line = r.stdout.trim().split('\n').pop();
      if (r.code !== 0 || !line?.startsWith('{')) throw new Error(`${CLIENT} exited ${r.code ?? r.signal}: ${r.stderr.trim().slice(-300)}`);
      return { ...JSON.parse(line), errors: 0, command: r.command };
    },
  });
  return { status: 'ok', module: MODULE, client: `node ${CLIENT} PORT SUBSCRIBERS SECONDS`, ...res, notes: [latencyTable(res)] };
}

/** Delivery latency (median over the rounds of each run's p50 and p99), and what the client could do. */
function latencyTable(res) {
  const ms = (s) => (s.median === null ? '–' : `${s.median.toFixed(2)} (${s.min.toFixed(2)}–${s.max.toFixed(2)})`);
  const rows = [
    '| case | server | delivery latency p50, ms (median, min–max over rounds) | p99, ms | lost deliveries | client CPU ÷ wall time, throughput phase |',
    '|---|---|--:|--:|--:|--:|',
  ];
  for (const c of res.cases) {
    for (const r of Object.values(c.results)) {
      const ok = r.runs.filter((x) => !x.error);
      const p50 = summarize(ok.map((x) => x.p50Ms));
      const p99 = summarize(ok.map((x) => x.p99Ms));
      const busy = summarize(ok.map((x) => x.clientCpuSeconds / x.seconds));
      const lost = ok.reduce((a, x) => a + (x.lost ?? 0), 0);
      rows.push(`| ${c.label} | ${r.label} | ${ms(p50)} | ${ms(p99)} | ${lost} | ${busy.median === null ? '–' : busy.median.toFixed(2)} |`);
    }
  }
  return ['Delivery latency: one message at a time, publish → each subscriber (the spread of one fan-out).', '', ...rows].join('\n');
}
