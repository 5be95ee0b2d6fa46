// memcache.wasm against memcached, and the store under eviction against
// redis-server (issue 21): bench/memcache.mjs's cases, interleaved rounds,
// medians, the server's CPU per operation beside the throughput. Reported,
// never asserted.
import { DEFAULTS, markdown, measure } from '../../memcache.mjs';
import { moduleExists } from '../servers.mjs';

export const title = 'memcache';

export async function run(ctx) {
  for (const m of ['build/memcache.wasm', 'build/resp.wasm'])
    if (!moduleExists(ctx.root, m)) return { status: 'skipped', reason: `module missing: ${m}` };
  const o = Object.fromEntries(Object.entries(DEFAULTS).map(([k, v]) => [k, v.default]));
  o.rounds = String(ctx.rounds);
  o.threads = String(ctx.threads);
  if (ctx.quick) Object.assign(o, { gets: '3', ops: '2000', incrs: '500', 'mix-seconds': '1', 'evict-keys': '200000', 'evict-mb': '16' });
  const rows = await measure(o);
  for (const r of rows) ctx.log(`[memcache] ${r.case} · ${r.server}: ${Math.round(r.opsPerSec)} ops/s, ${r.cpuUsPerOp.toFixed(1)} µs CPU/op ${r.note ?? ''}`);
  return {
    status: 'ok', rows, table: markdown(rows, Number(o.rounds)),
    notes: [`Options: ${JSON.stringify(o)}. Server CPU is its process group's user + system time over the case (10 ms clock ticks).`],
  };
}
