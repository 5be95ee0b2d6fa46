// RESP: redis-benchmark with 50 clients, without and with -P 16, for the
// ping, set and get tests (ping = PING_INLINE and PING_MBULK; --quick: MBULK only), tcpmod's resp
// module against redis-server. redis-benchmark counts requests, not time, so
// each test runs once per round with -n sized from the server's previous rate
// to last about the round duration; one test per invocation, so the server's
// CPU per request is per command.
import { redisBenchmark } from '../clients.mjs';
import { compareServers } from '../compare.mjs';
import { batchOne, moduleExists } from '../servers.mjs';

export const title = 'resp';
export const MODULE = 'build/resp.wasm';
export const CLIENTS = 50;
export const TESTS = ['ping_inline', 'ping_mbulk', 'set', 'get'];
/** --quick leaves out the inline PING (the multibulk one stays). */
export const QUICK_TESTS = ['ping_mbulk', 'set', 'get'];

export async function run(ctx) {
  const cases = [];
  for (const pipeline of [1, 16]) {
    for (const test of ctx.quick ? QUICK_TESTS : TESTS) {
      cases.push({
        id: `resp-${test}${pipeline > 1 ? `-p${pipeline}` : ''}`,
        label: `RESP ${test.toUpperCase()} × ${CLIENTS} clients${pipeline > 1 ? `, -P ${pipeline}` : ''}`,
        params: { test, pipeline, clients: CLIENTS },
      });
    }
  }
  const rate = new Map(); // server|test|pipeline → last req/s seen
  if (!moduleExists(ctx.root, MODULE)) return { status: 'skipped', reason: `module missing: ${MODULE}`, plannedCases: cases.map((c) => c.label) };
  const d = ctx.defs;
  const res = await compareServers({
    // Without a warm-up there would be no rate to size -n from: always have one.
    ctx: { ...ctx, warmupSeconds: Math.max(ctx.warmupSeconds, 0.3) },
    workload: 'resp',
    defs: [d.tcpmod(MODULE), ...batchOne(ctx, MODULE), d.redis()],
    cases,
    runOne: async (p, server, seconds) => {
      const key = `${server.id}|${p.test}|${p.pipeline}`;
      const known = rate.get(key);
      const requests = known ? Math.max(1000, Math.round(known * seconds)) : p.pipeline > 1 ? 100_000 : 10_000;
      const r = await redisBenchmark({ port: server.port, test: p.test, clients: p.clients, pipeline: p.pipeline, requests });
      rate.set(key, r.rps);
      return r;
    },
  });
  return { status: 'ok', module: MODULE, client: `redis-benchmark -c ${CLIENTS} -n N -t TEST --csv [-P 16]`, ...res };
}
