#!/usr/bin/env node
// The cost of the Redis-backed key-value store (issue 13): redis-benchmark's
// SET and GET against redis-server itself, against tcpmod's resp.wasm with the
// embedded store, and against resp.wasm with --kv redis:// (every command one
// more hop, to the same redis-server). Rounds are interleaved so the three see
// the same machine; the median of each is printed as a Markdown table. Report
// only: nothing is asserted.
//
//   node bench/kv-redis.mjs [--rounds 3] [--requests 100000] [--clients 50] [--threads N]
//
// Needs build/resp.wasm (npm run build), redis-server and redis-benchmark.
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort, installCleanup, runClient, startServer } from './lib/proc.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    requests: { type: 'string', default: '100000' },
    clients: { type: 'string', default: '50' },
    threads: { type: 'string', default: String(os.availableParallelism()) },
  },
});
installCleanup();

const redisPort = await freePort();
const redis = await startServer({
  name: 'redis-server', cmd: 'redis-server', port: redisPort,
  args: ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
});

/** tcpmod serving resp.wasm on a free port, with extra options. */
async function tcpmod(name, extra) {
  const port = await freePort();
  const threads = extra.includes('--max-threads') ? ['--min-threads', opt.threads] : ['--threads', opt.threads];
  return startServer({
    name, cmd: process.execPath, port, cwd: root, readyLine: /listening on/,
    args: ['bin/tcpmod.js', 'serve', 'build/resp.wasm', '--port', String(port), ...threads, '--log-level', 'warn', ...extra],
  });
}

const targets = [
  { name: 'redis-server (direct)', server: redis },
  { name: 'tcpmod resp.wasm, embedded store', server: await tcpmod('tcpmod-memory', []) },
  { name: 'tcpmod resp.wasm, --kv redis://', server: await tcpmod('tcpmod-redis', ['--kv', `redis://127.0.0.1:${redisPort}`]) },
  // Workers blocked on Redis leave the CPU idle: a pool allowed to grow fills that time.
  {
    name: `tcpmod resp.wasm, --kv redis://, up to ${4 * Number(opt.threads)} workers`,
    server: await tcpmod('tcpmod-redis-grow', ['--kv', `redis://127.0.0.1:${redisPort}`, '--max-threads', String(4 * Number(opt.threads))]),
  },
];

/** One redis-benchmark run: requests per second of SET and GET. */
async function bench(port) {
  const r = await runClient('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), '-t', 'set,get', '-n', opt.requests, '-c', opt.clients, '--csv'], { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`redis-benchmark failed: ${r.stderr || r.stdout}`);
  const rps = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^"(SET|GET)","([\d.]+)"/.exec(line);
    if (m) rps[m[1]] = Number(m[2]);
  }
  return rps;
}

const results = targets.map(() => ({ SET: [], GET: [] }));
for (let round = 1; round <= Number(opt.rounds); round++) {
  for (const [i, t] of targets.entries()) {
    const rps = await bench(t.server.port);
    results[i].SET.push(rps.SET);
    results[i].GET.push(rps.GET);
    process.stderr.write(`round ${round}: ${t.name}: SET ${rps.SET}/s, GET ${rps.GET}/s\n`);
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (n) => Math.round(n).toLocaleString('en-US');
const base = results[0];
console.log(`redis-benchmark -t set,get -n ${opt.requests} -c ${opt.clients}; median of ${opt.rounds} interleaved rounds; ` +
  `tcpmod --threads ${opt.threads}; ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), Node ${process.version}\n`);
console.log('| server | SET req/s | GET req/s | SET vs direct | GET vs direct |');
console.log('| --- | ---: | ---: | ---: | ---: |');
for (const [i, t] of targets.entries()) {
  const s = median(results[i].SET);
  const g = median(results[i].GET);
  console.log(`| ${t.name} | ${fmt(s)} | ${fmt(g)} | ${(s / median(base.SET) * 100).toFixed(0)}% | ${(g / median(base.GET) * 100).toFixed(0)}% |`);
}
for (const t of targets) await t.server.stop();
