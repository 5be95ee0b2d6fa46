#!/usr/bin/env node
// The cost of the Redis-backed key-value store (issue 13): redis-benchmark's
// SET and GET against redis-server itself, against tcpmod's resp.wasm with the
// embedded store, and against resp.wasm with --kv redis:// (every command one
// more hop, to the same redis-server). Rounds are interleaved so the three see
// the same machine; the median of each is printed as a Markdown table. Report
// only: nothing is asserted.
//
// A second table is the CPU each process spent per request (SET and GET runs
// together, from /proc: redis-server, tcpmod, and redis-benchmark as a waited-for
// child), and what that costs on this machine: with every core busy, throughput
// can be at most cores / total CPU per request. Through tcpmod every request
// crosses two TCP connections instead of one, so the three processes share the
// cores: the ceiling, not a worker count, bounds the ratio on a small machine.
//
//   node bench/kv-redis.mjs [--rounds 3] [--requests 100000] [--clients 50] [--threads N]
//
// Needs build/resp.wasm (npm run build), redis-server and redis-benchmark.
import { readFileSync } from 'node:fs';
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
  // --kv-timeout 2s: on a loaded machine a call can wait past the 200 ms default, and one -3 (an error
  // reply) ends redis-benchmark's run.
  { name: 'tcpmod resp.wasm, --kv redis://', server: await tcpmod('tcpmod-redis', ['--kv', `redis://127.0.0.1:${redisPort}`, '--kv-timeout', '2s']) },
  // Workers blocked on Redis leave the CPU idle: a pool allowed to grow fills that time.
  {
    name: `tcpmod resp.wasm, --kv redis://, up to ${4 * Number(opt.threads)} workers`,
    server: await tcpmod('tcpmod-redis-grow', ['--kv', `redis://127.0.0.1:${redisPort}`, '--kv-timeout', '2s', '--max-threads', String(4 * Number(opt.threads))]),
  },
];

/** CPU seconds (user + system) of a process, or with `children` of the waited-for children of this one. */
function cpuSeconds(pid, children = false) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields after the command name start at field 3 (state): utime 14, stime 15, cutime 16, cstime 17.
  const at = (n) => Number(f[n - 3]);
  return (children ? at(16) + at(17) : at(14) + at(15)) / clockTicks;
}
const clockTicks = 100; // USER_HZ on Linux

/** One redis-benchmark run: requests per second of SET and GET, and CPU microseconds per request of each process. */
async function bench(t) {
  const port = t.server.port;
  const before = { redis: cpuSeconds(redis.pid), tcpmod: t.server === redis ? 0 : cpuSeconds(t.server.pid), client: cpuSeconds('self', true) };
  const r = await runClient('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), '-t', 'set,get', '-n', opt.requests, '-c', opt.clients, '--csv'], { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`redis-benchmark failed: ${r.stderr || r.stdout}`);
  const rps = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^"(SET|GET)","([\d.]+)"/.exec(line);
    if (m) rps[m[1]] = Number(m[2]);
  }
  const perReq = (s) => (s * 1e6) / (2 * Number(opt.requests));
  rps.cpu = {
    redis: perReq(cpuSeconds(redis.pid) - before.redis),
    tcpmod: t.server === redis ? 0 : perReq(cpuSeconds(t.server.pid) - before.tcpmod),
    client: perReq(cpuSeconds('self', true) - before.client),
  };
  return rps;
}

const results = targets.map(() => ({ SET: [], GET: [], redis: [], tcpmod: [], client: [] }));
for (let round = 1; round <= Number(opt.rounds); round++) {
  for (const [i, t] of targets.entries()) {
    const rps = await bench(t);
    results[i].SET.push(rps.SET);
    results[i].GET.push(rps.GET);
    for (const k of ['redis', 'tcpmod', 'client']) results[i][k].push(rps.cpu[k]);
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
const cores = os.availableParallelism();
console.log(`\nCPU per request (microseconds, SET and GET together; medians), and the most ${cores} cores could serve at that cost:\n`);
console.log('| server | redis-server | tcpmod | redis-benchmark | total | ceiling req/s |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
for (const [i, t] of targets.entries()) {
  const [r, m, c] = ['redis', 'tcpmod', 'client'].map((k) => median(results[i][k]));
  console.log(`| ${t.name} | ${r.toFixed(1)} | ${i === 0 ? '-' : m.toFixed(1)} | ${c.toFixed(1)} | ${(r + m + c).toFixed(1)} | ${fmt((cores * 1e6) / (r + m + c))} |`);
}
for (const t of targets) await t.server.stop();
