// HTTP: wrk with 50 connections on GET /, without and with pipelining 16
// (bench/pipeline.lua), tcpmod's http module against Node's `http` (one
// process and a cluster) and nginx with as many workers as tcpmod has.
import { wrk } from '../clients.mjs';
import { compareServers } from '../compare.mjs';
import { batchOne, moduleExists } from '../servers.mjs';

export const title = 'http';
export const MODULE = 'build/http.wasm';
export const CONNECTIONS = 50;
/** wrk's own threads; the load generator shares the machine's cores with the server. */
export const WRK_THREADS = 2;

export async function run(ctx) {
  const cases = [1, 16].map((pipeline) => ({
    id: pipeline > 1 ? `http-p${pipeline}` : 'http',
    label: pipeline > 1 ? `HTTP GET / × ${CONNECTIONS} conn, pipeline ${pipeline}` : `HTTP GET / × ${CONNECTIONS} conn`,
    params: { pipeline, connections: CONNECTIONS },
  }));
  if (!moduleExists(ctx.root, MODULE)) return { status: 'skipped', reason: `module missing: ${MODULE}`, plannedCases: cases.map((c) => c.label) };
  const d = ctx.defs;
  const res = await compareServers({
    ctx,
    workload: 'http',
    defs: [d.tcpmod(MODULE), ...batchOne(ctx, MODULE), d.nodeHttp(), d.nodeHttpCluster(), d.nginx()],
    cases,
    runOne: (p, server, seconds) =>
      wrk(ctx.benchDir, { port: server.port, connections: p.connections, threads: WRK_THREADS, seconds, pipeline: p.pipeline }),
  });
  return { status: 'ok', module: MODULE, client: `wrk -t ${WRK_THREADS} -c ${CONNECTIONS} -d SECONDS [-s bench/pipeline.lua URL -- 16]`, ...res };
}
