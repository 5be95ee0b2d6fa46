// Pub/sub fan-out (issue 22): one publisher, 100 and 1,000 subscribers of one
// channel, small messages (20 bytes), resp.wasm's PUBLISH/SUBSCRIBE against
// redis-server, interleaved. The client (bench/fanout-load.c) keeps at most
// WINDOW messages on their way to the slowest subscriber, so the figure is the
// rate a server delivers at, never a backlog it piles up (tcpmod would close a
// subscriber past --max-mailbox). Delivered messages per second (all
// subscribers together), CPU per delivered message, and p50/p99 delivery
// latency seen by two of the subscribers.
import { fanoutLoad } from '../clients.mjs';
import { compareServers } from '../compare.mjs';
import { moduleExists } from '../servers.mjs';
import { median } from '../stats.mjs';

export const title = 'fanout';
export const MODULE = 'build/resp.wasm';
export const WINDOW = 64;

export async function run(ctx) {
  const cases = [100, 1000].map((subscribers) => ({
    id: `fanout-${subscribers}`,
    label: `PUBLISH → ${subscribers.toLocaleString('en-US')} subscribers (window ${WINDOW})`,
    params: { subscribers },
  }));
  if (!moduleExists(ctx.root, MODULE)) return { status: 'skipped', reason: `module missing: ${MODULE}`, plannedCases: cases.map((c) => c.label) };
  const d = ctx.defs;
  const res = await compareServers({
    ctx,
    workload: 'fanout',
    defs: [d.tcpmod(MODULE), d.redis()],
    cases,
    runOne: (p, server, seconds) => fanoutLoad(ctx.bins, { port: server.port, subscribers: p.subscribers, seconds, window: WINDOW }),
  });
  for (const c of res.cases) {
    for (const r of Object.values(c.results)) {
      const ok = r.runs.filter((x) => !x.error);
      r.p50Us = median(ok.map((x) => x.p50Us));
      r.p99Us = median(ok.map((x) => x.p99Us));
    }
  }
  return { status: 'ok', module: MODULE, client: `bench/bin/fanout-load 127.0.0.1 PORT SUBSCRIBERS SECONDS ${WINDOW}`, ...res };
}
