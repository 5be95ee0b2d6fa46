#!/usr/bin/env node
// memcache.wasm against memcached 1.6 (issue 21), on loopback, interleaved:
// every round runs each case on each server in turn, and the median of the
// rounds is printed as a Markdown table, with the server's CPU per operation
// (its process group's user + system time) beside the throughput. Report only:
// nothing is asserted. Cases (--only):
//   multiget  one `get` of 30 keys of 1 MiB each (issue 21's large-value case)
//   memcslap  memcslap (libmemcached-tools) --test=set, then --test=get (it has no get:set mix)
//   incr      N clients x M `incr` of one counter: the final count, exact or not
//   eviction  resp.wasm --kv-max-bytes B --kv-eviction allkeys-lru against
//             redis-server maxmemory B allkeys-lru: RSS after a SET EX flood
//
//   node bench/memcache.mjs [--only multiget,memcslap,incr,eviction] [--rounds 3] [--threads 2]
//        [--gets 20] [--ops 20000] [--clients 4] [--incrs 5000] [--evict-mb 64] [--evict-keys 1000000]
//
// Needs build/memcache.wasm and build/resp.wasm, memcached, memcslap
// (libmemcached-tools), redis-server and redis-benchmark. Also a workload of
// `npm run bench` (bench/lib/workloads/memcache.mjs runs this file).
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { McClient, getReplyBytes } from './lib/mc-client.mjs';
import { freePort, installCleanup, runClient, startServer } from './lib/proc.mjs';
import { groupCpuSeconds, groupRssKiB } from './lib/procfs.mjs';
import { median } from './lib/stats.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULTS = {
    only: { type: 'string', default: 'multiget,memcslap,incr,eviction' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    gets: { type: 'string', default: '20' },
    ops: { type: 'string', default: '20000' },
    clients: { type: 'string', default: '4' },
    incrs: { type: 'string', default: '5000' },
    'evict-mb': { type: 'string', default: '64' },
    'evict-keys': { type: 'string', default: '1000000' },
    wasm: { type: 'string', default: 'build/memcache.wasm' },
};
/** The options of the run under way (measure() sets them). */
let opt = {};

async function memcached() {
  const port = await freePort();
  return startServer({
    name: 'memcached', cmd: 'memcached', port,
    args: ['-p', String(port), '-U', '0', '-l', '127.0.0.1', '-t', opt.threads, '-m', '1024', '-I', '2m', '-u', 'root'],
  });
}

async function tcpmod(wasm, extra = []) {
  const port = await freePort();
  return startServer({
    name: `tcpmod ${wasm}`, cmd: process.execPath, port, cwd: root, readyLine: /listening on/,
    args: ['bin/tcpmod.js', 'serve', wasm, '--port', String(port), '--threads', opt.threads, '--log-level', 'warn', ...extra],
  });
}

/** Runs fn() against the server and returns its result with the server's CPU seconds and wall seconds. */
async function measured(server, fn) {
  const cpu0 = groupCpuSeconds(server.pgid);
  const t0 = performance.now();
  const r = await fn();
  return { ...r, wall: (performance.now() - t0) / 1000, cpu: groupCpuSeconds(server.pgid) - cpu0 };
}

// ---- multiget: one get of 30 x 1 MiB ----------------------------------------
const BIG = 1024 * 1024;
const BIG_KEYS = Array.from({ length: 30 }, (_, i) => `big:${String(i).padStart(2, '0')}`);

async function loadBig(port) {
  const c = await McClient.connect(port);
  const data = Buffer.alloc(BIG, 'x');
  for (const k of BIG_KEYS) {
    const r = await c.line(Buffer.concat([Buffer.from(`set ${k} 7 0 ${BIG}\r\n`), data, Buffer.from('\r\n')]));
    if (r !== 'STORED') throw new Error(`set ${k}: ${r}`);
  }
  c.close();
}

async function multiget(port) {
  const c = await McClient.connect(port);
  const want = getReplyBytes(BIG_KEYS, BIG, 7);
  const req = `get ${BIG_KEYS.join(' ')}\r\n`;
  const times = [];
  const n = Number(opt.gets);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const b = await c.request(req, (buf) => buf.length >= want, want);
    times.push(performance.now() - t0);
    if (b.length !== want || !b.subarray(b.length - 5).equals(Buffer.from('END\r\n'))) throw new Error(`multiget: ${b.length} bytes, wanted ${want}`);
  }
  c.close();
  return { ops: n, msPerGet: median(times) };
}

// ---- memcslap: set, then get (libmemcached-tools) -----------------------------
// memcslap has no get:set mix: --test=set times `clients` threads x `ops` sets;
// --test=get first sets `ops` keys from one connection, then times the threads'
// gets of them. Throughput is from memcslap's own timed line; server CPU per
// operation counts every request of the run (the load included).
async function memcslap(port, test) {
  const args = [`--servers=127.0.0.1:${port}`, `--concurrency=${opt.clients}`, `--execute-number=${opt.ops}`, `--test=${test}`];
  const r = await runClient('memcslap', args, { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`memcslap failed: ${r.stderr || r.stdout}`);
  const m = /Time to (?:get|set)\s+(\d+) keys by\s+\d+ threads:\s+([\d.]+) seconds/.exec(r.stdout);
  if (!m) throw new Error(`memcslap: no timing line in ${r.stdout}`);
  const timed = Number(m[1]);
  return { ops: timed + (test === 'get' ? Number(opt.ops) : 0), timedOps: timed, timedSeconds: Number(m[2]) };
}

// ---- incr: N clients x M incr, exact? ---------------------------------------
async function incr(port) {
  const clients = Number(opt.clients), m = Number(opt.incrs);
  const c0 = await McClient.connect(port);
  if ((await c0.line('set ctr 0 0 1\r\n0\r\n')) !== 'STORED') throw new Error('set ctr failed');
  await Promise.all(Array.from({ length: clients }, async () => {
    const c = await McClient.connect(port);
    for (let i = 0; i < m; i++) await c.line('incr ctr 1\r\n');
    c.close();
  }));
  const got = (await c0.untilTail('get ctr\r\n', 'END\r\n')).toString().split('\r\n')[1];
  c0.close();
  return { ops: clients * m, final: Number(got), expected: clients * m };
}

// ---- eviction: RSS at a store bound under a SET EX flood ---------------------
async function evictionRound(server) {
  const rss0 = groupRssKiB(server.pgid);
  const r = await runClient('redis-benchmark', ['-h', '127.0.0.1', '-p', String(server.port), '-n', opt['evict-keys'], '-r', opt['evict-keys'],
    '-c', '20', '-P', '16', '-d', '100', '-q', '--csv', 'set', 'key:__rand_int__', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', 'EX', '3600'], { timeoutMs: 600_000 });
  if (r.code !== 0) throw new Error(`redis-benchmark failed: ${r.stderr || r.stdout}`);
  return { rss0MiB: rss0 / 1024, rssMiB: groupRssKiB(server.pgid) / 1024 };
}

/**
 * Runs the selected cases (o: DEFAULTS' names, values as strings); returns one
 * row per case and server: { case, server, opsPerSec, cpuUsPerOp, note }.
 */
export async function measure(o) {
  opt = o;
  const only = new Set(opt.only.split(','));
  const rounds = Number(opt.rounds);
  const rows = [];
  const fmt = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

  if (only.has('multiget') || only.has('memcslap') || only.has('incr')) {
    const servers = [
      { name: 'memcached', start: memcached },
      // A multi-get of 30 MiB is answered whole: past the default 8 MiB output bound the connection would close.
      // The store gets memcached's -m 1024: every case runs on one server, and 64 MiB would fill up and refuse sets.
      { name: 'tcpmod memcache.wasm', start: () => tcpmod(opt.wasm, ['--max-output-buffer', '64MiB', '--kv-max-bytes', '1GiB']) },
    ];
    const results = {};
    for (let round = 0; round < rounds; round++) {
      for (const s of servers) {
        // A fresh server each round: the same starting state for every case.
        const srv = await s.start();
        try {
          if (only.has('multiget')) {
            await loadBig(srv.port);
            (results[`multiget|${s.name}`] ??= []).push(await measured(srv, () => multiget(srv.port)));
          }
          if (only.has('memcslap')) {
            (results[`memcslap set|${s.name}`] ??= []).push(await measured(srv, () => memcslap(srv.port, 'set')));
            (results[`memcslap get|${s.name}`] ??= []).push(await measured(srv, () => memcslap(srv.port, 'get')));
          }
          if (only.has('incr')) (results[`incr|${s.name}`] ??= []).push(await measured(srv, () => incr(srv.port)));
        } finally {
          await srv.stop();
        }
        process.stderr.write(`[memcache] round ${round + 1}/${rounds} ${s.name} done\n`);
      }
    }
    for (const [key, runs] of Object.entries(results)) {
      const [kase, name] = key.split('|');
      const ops = runs[0].ops;
      const row = { case: kase, server: name, opsPerSec: median(runs.map((r) => (r.timedOps ? r.timedOps / r.timedSeconds : r.ops / r.wall))), cpuUsPerOp: median(runs.map((r) => (r.cpu / r.ops) * 1e6)) };
      if (kase === 'multiget') row.note = `median ${fmt(median(runs.map((r) => r.msPerGet)))} ms per get of 30 x 1 MiB`;
      if (kase === 'incr') row.note = `final ${runs.map((r) => r.final).join(', ')} of ${runs[0].expected}`;
      if (kase.startsWith('memcslap')) row.note = `${runs[0].timedOps} timed requests, ${opt.clients} connections`;
      rows.push(row);
    }
  }

  if (only.has('eviction')) {
    const mb = Number(opt['evict-mb']);
    const bytes = mb * 1024 * 1024;
    const starts = [
      { name: `redis-server maxmemory ${mb}mb allkeys-lru`, start: async () => {
        const port = await freePort();
        return startServer({ name: 'redis-server', cmd: 'redis-server', port,
          args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory', `${mb}mb`, '--maxmemory-policy', 'allkeys-lru'] });
      } },
      { name: `tcpmod resp.wasm --kv-max-bytes ${mb}MiB --kv-eviction allkeys-lru`, start: () => tcpmod('build/resp.wasm', ['--kv-max-bytes', String(bytes), '--kv-eviction', 'allkeys-lru']) },
    ];
    const res = {};
    for (let round = 0; round < rounds; round++) {
      for (const s of starts) {
        const srv = await s.start();
        try {
          const r = await measured(srv, () => evictionRound(srv));
          (res[s.name] ??= []).push({ ...r, ops: Number(opt['evict-keys']) });
        } finally {
          await srv.stop();
        }
        process.stderr.write(`[memcache] eviction round ${round + 1}/${rounds} ${s.name} done\n`);
      }
    }
    for (const [name, runs] of Object.entries(res)) {
      rows.push({ case: 'eviction', server: name, opsPerSec: median(runs.map((r) => r.ops / r.wall)), cpuUsPerOp: median(runs.map((r) => (r.cpu / r.ops) * 1e6)),
        note: `RSS ${fmt(median(runs.map((r) => r.rss0MiB)))} MiB idle, ${fmt(median(runs.map((r) => r.rssMiB)))} MiB after ${opt['evict-keys']} SET EX of 100 B (bound ${mb} MiB)` });
    }
  }
  return rows;
}

/** The rows as a Markdown table. */
export function markdown(rows, rounds) {
  const fmt = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
  return [`| case | server | ops/s (median of ${rounds}) | server CPU µs/op (median) | note |`, '| --- | --- | ---: | ---: | --- |',
    ...rows.map((r) => `| ${r.case} | ${r.server} | ${fmt(r.opsPerSec, 0)} | ${fmt(r.cpuUsPerOp)} | ${r.note ?? ''} |`)].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: DEFAULTS });
  installCleanup();
  console.log(markdown(await measure(values), Number(values.rounds)));
}
