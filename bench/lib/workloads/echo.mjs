// echo: closed-loop round trips of 16-byte and 4 KiB messages over 1 / 50 /
// 500 connections (bench/bin/echo-load), tcpmod's echo module against Node's
// `net` (one process and a cluster) and the single-threaded C epoll ceiling.
import { echoLoad } from '../clients.mjs';
import { compareServers } from '../compare.mjs';
import { batchOne, moduleExists } from '../servers.mjs';

export const title = 'echo';
export const MODULE = 'build/echo.wasm';

export const sizeLabel = (n) => (n >= 1024 && n % 1024 === 0 ? `${n / 1024} KiB` : `${n} B`);

export async function run(ctx) {
  if (!moduleExists(ctx.root, MODULE)) return { status: 'skipped', reason: `module missing: ${MODULE}` };
  const connections = ctx.quick ? [50] : [1, 50, 500];
  const cases = [];
  for (const size of [16, 4096]) {
    for (const c of connections) {
      cases.push({ id: `echo-${size}B-${c}c`, label: `echo ${sizeLabel(size)} × ${c} conn`, params: { size, connections: c } });
    }
  }
  const d = ctx.defs;
  const res = await compareServers({
    ctx,
    workload: 'echo',
    defs: [d.tcpmod(MODULE), ...batchOne(ctx, MODULE), d.nodeEcho(), d.nodeEchoCluster(), d.cEcho()],
    cases,
    runOne: (p, server, seconds) => echoLoad(ctx.bins, { port: server.port, connections: p.connections, size: p.size, seconds }),
  });
  return { status: 'ok', module: MODULE, client: 'bench/bin/echo-load HOST PORT CONNECTIONS SIZE SECONDS', ...res };
}
