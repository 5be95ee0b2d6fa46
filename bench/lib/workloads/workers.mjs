// Workers: tcpmod's echo throughput with 1, 2 and 4 worker threads, 16-byte
// messages over 50 connections, interleaved like the comparisons. Reported,
// not judged (no ratios, no goal).
import { echoLoad } from '../clients.mjs';
import { compareServers } from '../compare.mjs';
import { moduleExists } from '../servers.mjs';
import { MODULE } from './echo.mjs';

export const title = 'workers';
export const COUNTS = [1, 2, 4];

export async function run(ctx) {
  if (!moduleExists(ctx.root, MODULE)) return { status: 'skipped', reason: `module missing: ${MODULE}` };
  const d = ctx.defs;
  const res = await compareServers({
    ctx,
    workload: 'workers',
    defs: COUNTS.map((n) => d.tcpmod(MODULE, { workers: n, id: `tcpmod-${n}w`, label: `tcpmod, ${n} worker${n > 1 ? "s" : ""}` })),
    cases: [{ id: 'workers-16B-50c', label: 'echo 16 B × 50 conn, by worker count', params: { size: 16, connections: 50 } }],
    runOne: (p, server, seconds) => echoLoad(ctx.bins, { port: server.port, connections: p.connections, size: p.size, seconds }),
    subject: null,
  });
  return { status: 'ok', module: MODULE, client: 'bench/bin/echo-load HOST PORT 50 16 SECONDS', ...res };
}
