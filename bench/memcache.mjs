#!/usr/bin/env node
// memcache.wasm against memcached 1.6 (issue 21), on loopback, interleaved:
// every round runs each case on each server in turn, and the median of the
// rounds is printed as a Markdown table, with the server's CPU per operation
// (its process group's user + system time) beside the throughput. Report only:
// nothing is asserted. Cases (--only):
//   multiget  one `get` of 30 keys of 1 MiB each (issue 21's large-value case)
//   memcslap  memcslap (libmemcached-tools) --test=set, then --test=get (it has no get:set mix)
//   incr      N clients x M `incr` of one counter: the final count, exact or not
//   cas       N clients x M `gets` + `cas` increments of one counter, retried on EXISTS: exact or not
//   mix       get:set 9:1 of 100 B values on 10,000 preloaded keys (the bench's own load, below)
//   mget20    one `get` of 20 preloaded 100 B keys per request (same load)
//   mixbig    get:set 9:1 of 100 KiB values on 200 preloaded keys (same load)
//   eviction  resp.wasm --kv-max-bytes B --kv-eviction allkeys-lru against
//             redis-server maxmemory B allkeys-lru: RSS after a SET EX flood
//
//   node bench/memcache.mjs [--only multiget,memcslap,incr,cas,mix,mget20,mixbig,eviction] [--rounds 3] [--threads 2]
//        [--gets 20] [--ops 20000] [--clients 4] [--incrs 5000] [--mix-seconds 5] [--evict-mb 64] [--evict-keys 1000000]
//
// Needs build/memcache.wasm and build/resp.wasm, memcached, memcslap
// (libmemcached-tools), redis-server and redis-benchmark. Also a workload of
// `npm run bench` (bench/lib/workloads/memcache.mjs runs this file).
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { McClient, getReplyBytes } from './lib/mc-client.mjs';
import { freePort, installCleanup, runClient, startServer } from './lib/proc.mjs';
import { groupCpuSeconds, groupPids, groupRssKiB } from './lib/procfs.mjs';
import { readFileSync } from 'node:fs';
import { median } from './lib/stats.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULTS = {
    only: { type: 'string', default: 'multiget,memcslap,incr,cas,mix,mget20,mixbig,eviction' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    gets: { type: 'string', default: '20' },
    ops: { type: 'string', default: '20000' },
    clients: { type: 'string', default: '4' },
    incrs: { type: 'string', default: '5000' },
    'mix-seconds': { type: 'string', default: '5' },
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

/** Page faults (minor + major, every thread) of the server's processes so far: what fresh output memory costs. */
function groupFaults(pgid) {
  let n = 0;
  for (const pid of groupPids(pgid)) {
    try {
      const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      n += Number(f[7]) + Number(f[9]); // minflt, majflt (proc(5) fields 10 and 12)
    } catch { /* gone */ }
  }
  return n;
}

/** Runs fn() against the server and returns its result with the server's CPU seconds, wall seconds and page faults. */
async function measured(server, fn) {
  const cpu0 = groupCpuSeconds(server.pgid);
  const f0 = groupFaults(server.pgid);
  const t0 = performance.now();
  const r = await fn();
  return { ...r, wall: (performance.now() - t0) / 1000, cpu: groupCpuSeconds(server.pgid) - cpu0, faults: groupFaults(server.pgid) - f0 };
}

// ---- multiget: one get of 30 x 1 MiB ----------------------------------------
const BIG = 1024 * 1024;
const BIG_KEYS = Array.from({ length: 30 }, (_, i) => `big:${String(i).padStart(2, '0')}`);
const END = Buffer.from('END\r\n');

/** One `set` of key to data with flags; anything but STORED throws. */
async function setValue(c, key, data, flags) {
  const r = await c.line(Buffer.concat([Buffer.from(`set ${key} ${flags} 0 ${data.length}\r\n`), data, Buffer.from('\r\n')]));
  if (r !== 'STORED') throw new Error(`set ${key}: ${r}`);
}

/** One `get` of keys that are all stored with `size` bytes and flags: a reply of another length (a miss) throws. */
async function getAll(c, keys, size, flags) {
  const want = getReplyBytes(keys, size, flags);
  const b = await c.request(`get ${keys.join(' ')}\r\n`, (buf) => buf.length >= want, want);
  if (b.length !== want || !b.subarray(b.length - END.length).equals(END)) throw new Error(`get of ${keys.length} keys: ${b.length} bytes, wanted ${want}`);
}

async function loadBig(port) {
  const c = await McClient.connect(port);
  const data = Buffer.alloc(BIG, 'x');
  for (const k of BIG_KEYS) await setValue(c, k, data, 7);
  c.close();
}

async function multiget(port) {
  const c = await McClient.connect(port);
  const times = [];
  const n = Number(opt.gets);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await getAll(c, BIG_KEYS, BIG, 7);
    times.push(performance.now() - t0);
  }
  c.close();
  return { ops: n, msPerGet: median(times) };
}

// ---- mix, mget20, mixbig: the bench's own load --------------------------------
// memcslap has no get:set mix and no multi-get, so these cases use a load of
// their own: `clients` connections, each closed-loop (one request in flight;
// the next is sent once the reply is whole and checked) for --mix-seconds.
// Every 10th request of a connection is a set (9:1), the others gets of
// random preloaded keys, so every get hits and its reply length is known.
// An operation is a request: a 20-key get counts once.
const SHAPES = {
  mix: { keys: 10_000, size: 100, perGet: 1, sets: true, what: 'get:set 9:1, 100 B values, 10,000 keys' },
  mget20: { keys: 10_000, size: 100, perGet: 20, sets: false, what: 'get of 20 keys per request, 100 B values, 10,000 keys' },
  mixbig: { keys: 200, size: 100 * 1024, perGet: 1, sets: true, what: 'get:set 9:1, 100 KiB values, 200 keys' },
};
const mixKey = (i) => `mix:${String(i).padStart(6, '0')}`;

/** Stores every key of the shape once (flags 0). */
async function preload(port, shape) {
  const c = await McClient.connect(port);
  const data = Buffer.alloc(shape.size, 'v');
  for (let i = 0; i < shape.keys; i++) await setValue(c, mixKey(i), data, 0);
  c.close();
}

async function mixLoad(port, shape) {
  const end = performance.now() + Number(opt['mix-seconds']) * 1000;
  const data = Buffer.alloc(shape.size, 'w');
  const counts = await Promise.all(Array.from({ length: Number(opt.clients) }, async () => {
    const c = await McClient.connect(port);
    let n = 0;
    for (; performance.now() < end; n++) {
      const first = Math.floor(Math.random() * shape.keys);
      if (shape.sets && n % 10 === 9) await setValue(c, mixKey(first), data, 0);
      else await getAll(c, Array.from({ length: shape.perGet }, (_, k) => mixKey((first + k) % shape.keys)), shape.size, 0);
    }
    c.close();
    return n;
  }));
  return { ops: counts.reduce((a, b) => a + b, 0) };
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

// ---- cas: N clients x M gets + cas increments, exact? -------------------------
// Each increment reads the counter and its cas id with `gets`, then stores the
// value + 1 with `cas`; EXISTS (another client got there first) retries it.
async function casLoop(port) {
  const clients = Number(opt.clients), m = Number(opt.incrs);
  const c0 = await McClient.connect(port);
  if ((await c0.line('set casctr 0 0 1\r\n0\r\n')) !== 'STORED') throw new Error('set casctr failed');
  const retries = await Promise.all(Array.from({ length: clients }, async () => {
    const c = await McClient.connect(port);
    let lost = 0;
    for (let i = 0; i < m; i++) {
      for (;;) {
        const g = /^VALUE casctr \d+ \d+ (\d+)\r\n(\d+)\r\n/.exec((await c.untilTail('gets casctr\r\n', 'END\r\n')).toString('latin1'));
        if (!g) throw new Error('gets casctr: no value');
        const next = String(Number(g[2]) + 1);
        const r = await c.line(`cas casctr 0 0 ${next.length} ${g[1]}\r\n${next}\r\n`);
        if (r === 'STORED') break;
        if (r !== 'EXISTS') throw new Error(`cas casctr: ${r}`);
        lost++;
      }
    }
    c.close();
    return lost;
  }));
  const got = (await c0.untilTail('get casctr\r\n', 'END\r\n')).toString().split('\r\n')[1];
  c0.close();
  const lost = retries.reduce((a, b) => a + b, 0);
  // Every attempt is a gets and a cas: two requests.
  return { ops: 2 * (clients * m + lost), final: Number(got), expected: clients * m, retries: lost };
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

  const shapes = Object.keys(SHAPES).filter((k) => only.has(k));
  if (only.has('multiget') || only.has('memcslap') || only.has('incr') || only.has('cas') || shapes.length) {
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
          if (only.has('cas')) (results[`cas|${s.name}`] ??= []).push(await measured(srv, () => casLoop(srv.port)));
          for (const k of shapes) {
            await preload(srv.port, SHAPES[k]);
            (results[`${k}|${s.name}`] ??= []).push(await measured(srv, () => mixLoad(srv.port, SHAPES[k])));
          }
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
      if (kase === 'cas') row.note = `final ${runs.map((r) => r.final).join(', ')} of ${runs[0].expected}; retries on EXISTS ${runs.map((r) => r.retries).join(', ')}; an op is one gets or cas`;
      if (SHAPES[kase]) row.note = `${SHAPES[kase].what}; ${opt.clients} closed-loop connections, ${opt['mix-seconds']} s`;
      if (kase.startsWith('memcslap')) row.note = `${runs[0].timedOps} timed requests, ${opt.clients} connections`;
      if (kase === 'multiget' || kase === 'mixbig') row.note = `${row.note ? `${row.note}; ` : ''}${fmt(median(runs.map((r) => r.faults / r.ops)))} page faults per op`;
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
