// Redis sharding proxies: build/redis-proxy.wasm against nutcracker
// (twemproxy) in front of the same two redis-server shards, same key
// distribution (ketama, fnv1a_64, servers named s0/s1 in both), measured with
// redis-benchmark -c 50 -t set / get, unpipelined and -P 16, interleaved
// rounds. The shards are started once for the whole workload; the CPU per
// request compared is the proxy's process group. The shards' CPU per request is
// recorded beside it (backendCpuPerRequestUs in each run): it is NOT the same
// work for both, since nutcracker multiplexes every client onto one connection
// per shard (a shard's read returns many requests) while the proxy module opens
// an upstream per client connection (a read and a write per request at the shard).
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { redisBenchmark } from '../clients.mjs';
import { compareServers } from '../compare.mjs';
import { freePort, startServer } from '../proc.mjs';
import { groupCpuSeconds } from '../procfs.mjs';
import { moduleExists } from '../servers.mjs';
import { hasCommand } from '../tools.mjs';

export const title = 'redis-proxy';
export const MODULE = 'build/redis-proxy.wasm';
export const CLIENTS = 50;
export const SHARDS = 2;
const NUTCRACKER = '/usr/sbin/nutcracker';

export async function run(ctx) {
  const cases = [];
  for (const pipeline of [1, 16]) {
    for (const test of ['set', 'get']) {
      cases.push({
        id: `redis-proxy-${test}${pipeline > 1 ? `-p${pipeline}` : ''}`,
        label: `proxy ${test.toUpperCase()} × ${CLIENTS} clients over ${SHARDS} shards${pipeline > 1 ? `, -P ${pipeline}` : ''}`,
        params: { test, pipeline, clients: CLIENTS },
      });
    }
  }
  if (!moduleExists(ctx.root, MODULE)) return { status: 'skipped', reason: `module missing: ${MODULE}`, plannedCases: cases.map((c) => c.label) };
  const nutcracker = (await hasCommand('nutcracker')) ? 'nutcracker' : NUTCRACKER;
  const shards = [];
  try {
    for (let i = 0; i < SHARDS; i++) {
      const port = await freePort();
      shards.push(await startServer({
        name: `redis-shard-${i}`, port, cmd: 'redis-server',
        args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--logfile', ''],
      }));
    }
    const dir = mkdtempSync(join(os.tmpdir(), 'tcpmod-bench-nutcracker-'));
    const names = shards.map((_, i) => `s${i}`);
    const statsPort = await freePort(); // one nutcracker at a time
    const defs = [
      ctx.defs.tcpmod(MODULE, {
        args: [...shards.flatMap((s, i) => ['--upstream', `s${i}=127.0.0.1:${s.port}`]), '--config', `servers=${names.join(',')}`],
      }),
      {
        id: 'nutcracker',
        label: 'nutcracker (twemproxy)',
        start: (port) => {
          const conf = join(dir, `nc-${port}.yml`);
          writeFileSync(conf, ['pool:', `  listen: 127.0.0.1:${port}`, '  hash: fnv1a_64', '  distribution: ketama', '  redis: true',
            '  auto_eject_hosts: false', '  servers:', ...shards.map((s, i) => `   - 127.0.0.1:${s.port}:1 s${i}`), ''].join('\n'));
          return { cmd: nutcracker, args: ['-c', conf, '-s', String(statsPort)] };
        },
      },
    ];
    const rate = new Map();
    const res = await compareServers({
      ctx: { ...ctx, warmupSeconds: Math.max(ctx.warmupSeconds, 0.3) },
      workload: 'redis-proxy',
      defs,
      cases,
      runOne: async (p, server, seconds) => {
        const key = `${server.id}|${p.test}|${p.pipeline}`;
        const known = rate.get(key);
        const requests = known ? Math.max(1000, Math.round(known * seconds)) : p.pipeline > 1 ? 50_000 : 5_000;
        const shardCpu = () => shards.reduce((t, s) => t + groupCpuSeconds(s.pgid), 0);
        const cpu0 = shardCpu();
        const r = await redisBenchmark({ port: server.port, test: p.test, clients: p.clients, pipeline: p.pipeline, requests });
        rate.set(key, r.rps);
        return { ...r, backendCpuPerRequestUs: r.requests > 0 ? ((shardCpu() - cpu0) * 1e6) / r.requests : null };
      },
    });
    return { status: 'ok', module: MODULE, client: `redis-benchmark -c ${CLIENTS} -n N -t TEST --csv [-P 16]`, ...res };
  } finally {
    for (const s of shards) await s.stop();
  }
}
