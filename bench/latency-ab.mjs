#!/usr/bin/env node
// Latency at a moderate fixed rate, A/B of tcpmod's --batch: CONNECTIONS
// connections each send 16 bytes every INTERVAL ms to the echo module (open
// loop, ≈ CONNECTIONS × 1000 / INTERVAL round trips per second) and time each
// echo; rounds alternate between the servers. Prints p50 / p99 / p99.9 (ms).
// The client is Node, so its own event-loop delays are in the figures alike
// for both servers; compare the rows, not the absolute values.
//
//   node bench/latency-ab.mjs [--batch 1,8] [--rounds 3] [--seconds 5] [--connections 50] [--interval 5] [--threads N]
import { connect } from 'node:net';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { installCleanup, killAll } from './lib/proc.mjs';
import { launch, serverDefs } from './lib/servers.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function parse(argv) {
  const o = { batches: [1, 8], rounds: 3, seconds: 5, connections: 50, interval: 5, threads: os.cpus().length };
  const keys = { '--rounds': 'rounds', '--seconds': 'seconds', '--connections': 'connections', '--interval': 'interval', '--threads': 'threads' };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`${argv[i]} needs a value`);
    if (argv[i] === '--batch') o.batches = v.split(',').map(Number);
    else if (keys[argv[i]]) o[keys[argv[i]]] = Number(v);
    else throw new Error(`unknown argument ${argv[i]}`);
    i++;
  }
  return o;
}

/** One round against port: every round trip's time in ms. */
async function round(port, o) {
  const socks = await Promise.all(Array.from({ length: o.connections }, () => new Promise((r, j) => {
    const c = connect({ port, host: '127.0.0.1', noDelay: true }, () => r(c));
    c.once('error', j);
  })));
  const times = [];
  const end = Date.now() + o.seconds * 1000;
  await Promise.all(socks.map((c, i) => new Promise((done) => {
    let t0 = 0n;
    c.on('data', () => times.push(Number(process.hrtime.bigint() - t0) / 1e6));
    const tick = () => {
      if (Date.now() > end) {
        c.destroy();
        return done();
      }
      t0 = process.hrtime.bigint();
      c.write('0123456789abcdef');
      setTimeout(tick, o.interval);
    };
    setTimeout(tick, (i * o.interval) / o.connections); // spread the connections over the interval
  })));
  return times;
}

async function main() {
  const o = parse(process.argv.slice(2));
  installCleanup();
  const defs = serverDefs({ root, bins: {}, threads: o.threads });
  const servers = [];
  for (const b of o.batches) servers.push({ b, s: await launch(defs.tcpmod('build/echo.wasm', { batch: b, id: `batch${b}` }), { root }), times: [] });
  try {
    for (let r = 0; r < o.rounds; r++) for (const x of servers) x.times.push(...(await round(x.s.port, o)));
  } finally {
    for (const x of servers) await x.s.stop();
    killAll();
  }
  const rows = servers.map(({ b, times }) => {
    const v = times.sort((a, c) => a - c);
    const q = (p) => v[Math.min(v.length - 1, Math.floor(p * v.length))].toFixed(3);
    return `| --batch ${b} | ${v.length} | ${q(0.5)} | ${q(0.99)} | ${q(0.999)} |`;
  });
  process.stdout.write(
    `echo 16 B, ${o.connections} connections × 1 per ${o.interval} ms, ${o.threads} workers, ${o.rounds} interleaved rounds × ${o.seconds} s\n\n` +
      `| server | round trips | p50 ms | p99 ms | p99.9 ms |\n|---|--:|--:|--:|--:|\n${rows.join('\n')}\n`,
  );
}

main().catch((e) => {
  process.stderr.write(`latency-ab: ${e.stack ?? e}\n`);
  killAll();
  process.exit(1);
});
