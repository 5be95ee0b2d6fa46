// percore: CPU per request with one core each. The server (tcpmod with one
// worker, or its peer with one process/worker) is pinned to CPU 0 and the load
// client to CPU 1 (`taskset`), so its CPU per request is not mixed with how the
// client and the server share the cores: the per-core efficiency of echo
// (against the C epoll ceiling), HTTP (against nginx) and RESP (against
// redis-server). Interleaved like every other workload (compare.mjs).
//
// Pinning: this process pins all its threads to the client core for the
// workload, so the clients it spawns (echo-load, wrk, redis-benchmark) start
// there; before every run the server's process group is pinned (all threads,
// `taskset -a`) to the server core, threads made later inherit it. The bench
// process's own mask is restored at the end.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { echoLoad, redisBenchmark, wrk } from '../clients.mjs';
import { compareServers } from '../compare.mjs';
import { groupPids } from '../procfs.mjs';
import { moduleExists, serverDefs } from '../servers.mjs';
import { hasCommand } from '../tools.mjs';

export const title = 'percore';
export const SERVER_CPU = 0;
export const CLIENT_CPU = 1;
const CONNECTIONS = 50;

/** Pins every thread of each pid to `cpus` (a taskset list, e.g. "0" or "0-1"). */
function pin(pids, cpus) {
  for (const pid of pids) {
    try {
      execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
    } catch {
      // the process ended meanwhile
    }
  }
}

/** The affinity list of this process now ("0-1"), to restore it. */
function currentCpus() {
  const out = execFileSync('taskset', ['-p', '-c', String(process.pid)], { encoding: 'utf8' });
  return out.trim().split(':').pop().trim();
}

export async function run(ctx) {
  if (os.cpus().length < 2) return { status: 'skipped', reason: 'needs 2 CPUs (one for the server, one for the client)' };
  if (!hasCommand('taskset')) return { status: 'skipped', reason: 'taskset (util-linux) is missing' };
  const d = serverDefs({ root: ctx.root, bins: ctx.bins, threads: 1 });
  const one = (module, what) => d.tcpmod(module, { workers: 1, label: `tcpmod ×1 ${what} (core ${SERVER_CPU})` });
  const groups = [
    {
      module: 'build/echo.wasm',
      defs: [one('build/echo.wasm', 'echo'), d.cEcho()],
      cases: [{ id: 'percore-echo-16B', label: `echo 16 B × ${CONNECTIONS} conn, one core each`, params: { kind: 'echo' } }],
    },
    {
      module: 'build/http.wasm',
      defs: [one('build/http.wasm', 'http'), d.nginx()],
      cases: [{ id: 'percore-http', label: `HTTP GET / × ${CONNECTIONS} conn, one core each`, params: { kind: 'http' } }],
    },
    {
      module: 'build/resp.wasm',
      defs: [one('build/resp.wasm', 'resp'), d.redis()],
      cases: ['set', 'get'].map((test) => ({ id: `percore-resp-${test}`, label: `RESP ${test.toUpperCase()} × ${CONNECTIONS} clients, one core each`, params: { kind: 'resp', test } })),
    },
  ];
  const rate = new Map(); // server|test → last req/s (redis-benchmark counts requests, not time)
  const runOne = async (p, server, seconds) => {
    pin(groupPids(server.pgid), String(SERVER_CPU));
    if (p.kind === 'echo') return echoLoad(ctx.bins, { port: server.port, connections: CONNECTIONS, size: 16, seconds });
    if (p.kind === 'http') return wrk(ctx.benchDir, { port: server.port, connections: CONNECTIONS, threads: 1, seconds, pipeline: 1 });
    const key = `${server.id}|${p.test}`;
    const known = rate.get(key);
    const requests = known ? Math.max(1000, Math.round(known * seconds)) : 10_000;
    const r = await redisBenchmark({ port: server.port, test: p.test, clients: CONNECTIONS, pipeline: 1, requests });
    rate.set(key, r.rps);
    return r;
  };
  const mask = currentCpus();
  pin([process.pid], String(CLIENT_CPU));
  const out = { status: 'ok', servers: {}, cases: [], notes: [] };
  try {
    for (const g of groups) {
      if (!moduleExists(ctx.root, g.module)) {
        out.notes.push(`${g.cases.map((c) => c.label).join(', ')}: skipped, module missing: ${g.module}`);
        continue;
      }
      const res = await compareServers({ ctx: { ...ctx, warmupSeconds: Math.max(ctx.warmupSeconds, 0.3) }, workload: 'percore', defs: g.defs, cases: g.cases, runOne });
      // Every group's subject is "tcpmod"; its label says which module it ran.
      for (const [id, s] of Object.entries(res.servers)) out.servers[id === 'tcpmod' ? `tcpmod-${g.module}` : id] = s;
      out.cases.push(...res.cases);
    }
  } finally {
    pin([process.pid], mask);
  }
  out.client = `server pinned to CPU ${SERVER_CPU} (taskset -a -p -c ${SERVER_CPU}), client to CPU ${CLIENT_CPU}: bench/bin/echo-load HOST PORT ${CONNECTIONS} 16 SECONDS; wrk -t 1 -c ${CONNECTIONS}; redis-benchmark -c ${CONNECTIONS} -t set|get`;
  out.notes.push('One worker each: tcpmod --threads 1, nginx worker_processes 1, the single-threaded C epoll server and redis-server. The server CPU µs/req column is the per-core cost.');
  return out;
}
