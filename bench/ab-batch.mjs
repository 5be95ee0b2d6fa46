#!/usr/bin/env node
// A/B of tcpmod's --batch on one workload: two servers side by side, runs
// taken back to back in alternation (A B A B …), so that load from elsewhere
// on the machine falls on both alike. Prints per run and the medians: req/s,
// server CPU µs per request, context switches per request.
//
//   node bench/ab-batch.mjs [echo|http|resp] [--batch A,B] [--rounds N] [--seconds S] [--threads N] [--connections C]
//        [--requests N] [--base DIR]
//
// echo: bench/bin/echo-load, 16 B; http: wrk GET /; resp: redis-benchmark -t set
// against resp.wasm (its embedded store), --requests per run (redis-benchmark
// counts requests, not seconds; --seconds is ignored for it).
//
// --base DIR adds, for each batch value, the same server run from another
// built checkout (e.g. `git worktree add DIR <commit>`, then its npm run
// build), interleaved with this one's: a before/after of a loop change.
//
// `npm run bench` is the full comparison with the peers; this is the quick,
// focused one for a change to the loop (see bench/results/echo-profile.md).
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { echoLoad, redisBenchmark, wrk } from './lib/clients.mjs';
import { installCleanup, killAll } from './lib/proc.mjs';
import { groupContextSwitches, groupCpuSeconds } from './lib/procfs.mjs';
import { launch, serverDefs } from './lib/servers.mjs';
import { median } from './lib/stats.mjs';
import { buildC } from './lib/tools.mjs';

const benchDir = dirname(fileURLToPath(import.meta.url));
const root = resolve(benchDir, '..');

function parse(argv) {
  const o = { workload: 'echo', batches: [1, 8], rounds: 6, seconds: 3, threads: os.cpus().length, connections: 50, requests: 200_000, base: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (argv[i + 1] === undefined) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === 'echo' || a === 'http' || a === 'resp') o.workload = a;
    else if (a === '--batch') o.batches = next().split(',').map(Number);
    else if (a === '--base') o.base = resolve(next());
    else if (a === '--rounds') o.rounds = Number(next());
    else if (a === '--seconds') o.seconds = Number(next());
    else if (a === '--threads') o.threads = Number(next());
    else if (a === '--connections') o.connections = Number(next());
    else if (a === '--requests') o.requests = Number(next());
    else throw new Error(`unknown argument ${a}`);
  }
  if (o.batches.some((b) => !Number.isInteger(b) || b < 1)) throw new Error('--batch takes positive integers, e.g. 1,8');
  if (!Number.isInteger(o.requests) || o.requests < 1) throw new Error('--requests must be a positive integer');
  return o;
}

async function main() {
  const o = parse(process.argv.slice(2));
  installCleanup();
  const log = (m) => process.stderr.write(`${m}\n`);
  const bins = { 'echo-load': buildC(benchDir, 'echo-load', log) };
  const defs = serverDefs({ root, bins, threads: o.threads });
  const module = { echo: 'build/echo.wasm', http: 'build/http.wasm', resp: 'build/resp.wasm' }[o.workload];
  const loads = {
    echo: (port) => echoLoad(bins, { port, connections: o.connections, size: 16, seconds: o.seconds }),
    http: (port) => wrk(benchDir, { port, connections: o.connections, threads: 2, seconds: o.seconds, pipeline: 1 }),
    resp: (port) => redisBenchmark({ port, test: 'set', clients: o.connections, pipeline: 1, requests: o.requests }),
  };
  const load = loads[o.workload];
  const servers = [];
  const names = [];
  for (const b of o.batches) {
    servers.push(await launch(defs.tcpmod(module, { batch: b, id: `batch${b}` }), { root }));
    names.push(`--batch ${b}`);
    if (!o.base) continue;
    servers.push(await launch(defs.tcpmod(module, { batch: b, id: `base-batch${b}` }), { root: o.base }));
    names.push(`--batch ${b} (${o.base})`);
  }
  const runs = Object.fromEntries(names.map((n) => [n, []]));
  try {
    for (const s of servers) await load(s.port); // warm-up
    for (let round = 1; round <= o.rounds; round++) {
      for (const [i, s] of servers.entries()) {
        const cpu0 = groupCpuSeconds(s.pgid);
        const cs0 = groupContextSwitches(s.pgid);
        const r = await load(s.port);
        const run = {
          rps: r.rps,
          cpuUs: ((groupCpuSeconds(s.pgid) - cpu0) / r.requests) * 1e6,
          switches: (groupContextSwitches(s.pgid) - cs0) / r.requests,
        };
        runs[names[i]].push(run);
        log(`round ${round} · ${names[i]}: ${Math.round(run.rps)} req/s, ${run.cpuUs.toFixed(2)} µs CPU/req, ${run.switches.toFixed(3)} ctx switches/req`);
      }
    }
  } finally {
    for (const s of servers) await s.stop();
    killAll();
  }
  const rows = names.map((n) => {
    const m = (k) => median(runs[n].map((r) => r[k]));
    return `| ${n} | ${Math.round(m('rps'))} | ${m('cpuUs').toFixed(2)} | ${m('switches').toFixed(3)} |`;
  });
  process.stdout.write(
    `${o.workload} × ${o.connections} connections, ${o.threads} workers, ${o.rounds} interleaved rounds × ${o.workload === 'resp' ? `${o.requests} SET` : `${o.seconds} s`} (medians)\n\n` +
      '| server | req/s | CPU µs/req | context switches/req |\n|---|--:|--:|--:|\n' +
      `${rows.join('\n')}\n`,
  );
}

main().catch((e) => {
  process.stderr.write(`ab-batch: ${e.stack ?? e}\n`);
  killAll();
  process.exit(1);
});
