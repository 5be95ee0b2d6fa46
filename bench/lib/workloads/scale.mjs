// Scale: N idle connections (10,000; 1,000 with --quick) opened one after
// another by bench/bin/idle-conns and held. Per server and round, on a fresh
// server: its RSS (VmRSS, summed over its processes) before and after, the
// growth per connection, and the time until the server holds them all (its
// open descriptors, polled in /proc, reach the count). tcpmod's echo module
// next to the echo peers, for context.
import { runClient, sleep } from '../proc.mjs';
import { groupFdCount, groupRssKiB } from '../procfs.mjs';
import { launch, moduleExists } from '../servers.mjs';
import { summarize } from '../stats.mjs';
import { MODULE } from './echo.mjs';

export const title = 'scale';

export async function run(ctx) {
  if (!moduleExists(ctx.root, MODULE)) return { status: 'skipped', reason: `module missing: ${MODULE}` };
  const n = ctx.quick ? 1000 : 10_000;
  const rounds = ctx.quick ? 1 : Math.min(ctx.rounds, 3);
  const d = ctx.defs;
  const defs = [d.tcpmod(MODULE), d.nodeEcho(), d.cEcho()];
  const results = Object.fromEntries(defs.map((def) => [def.id, { label: def.label, runs: [] }]));
  for (let round = 1; round <= rounds; round++) {
    for (const def of defs) {
      const runs = results[def.id].runs;
      ctx.log(`[scale] ${n.toLocaleString('en-US')} idle connections · round ${round}/${rounds} · ${def.label}`);
      try {
        const r = await holdConnections(ctx, def, n);
        runs.push({ round, ...r });
        ctx.log(
          `[scale] ${def.label}: ${r.connected} held, RSS ${r.rssBeforeKiB} → ${r.rssAfterKiB} KiB ` +
            `(${r.bytesPerConnection?.toFixed(0)} B/conn), all accepted after ${r.acceptSeconds?.toFixed(3)} s`,
        );
      } catch (e) {
        runs.push({ round, error: e.message });
        ctx.log(`[scale] ${def.label}: error: ${e.message}`);
      }
    }
  }
  for (const res of Object.values(results)) {
    const ok = res.runs.filter((r) => !r.error);
    res.bytesPerConnection = summarize(ok.map((r) => r.bytesPerConnection));
    res.acceptSeconds = summarize(ok.map((r) => r.acceptSeconds));
    res.rssBeforeKiB = summarize(ok.map((r) => r.rssBeforeKiB));
    res.rssAfterKiB = summarize(ok.map((r) => r.rssAfterKiB));
  }
  return { status: 'ok', module: MODULE, connections: n, rounds, client: `bench/bin/idle-conns HOST PORT ${n}`, results };
}

async function holdConnections(ctx, def, n) {
  const server = await launch(def, ctx);
  let client = null;
  let clientDone = null;
  try {
    await sleep(ctx.quick ? 200 : 500); // let start-up allocations settle
    const rssBeforeKiB = groupRssKiB(server.pgid);
    const fdBefore = groupFdCount(server.pgid);
    let line = null;
    const t0 = performance.now();
    clientDone = runClient(ctx.bins['idle-conns'], ['127.0.0.1', String(server.port), String(n)], {
      stdin: true,
      nofile: n + 1024,
      timeoutMs: 300_000,
      started: (c) => (client = c),
      onStdout: (all) => {
        const first = all.split('\n')[0];
        if (all.includes('\n') && !line) line = JSON.parse(first);
      },
    });
    let ended = false;
    clientDone.then(() => (ended = true));
    // All accepted once the server holds n more descriptors (or all the client managed to open).
    let acceptSeconds = null;
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline && !ended) {
      const want = line ? line.connected : n;
      if (groupFdCount(server.pgid) - fdBefore >= want) {
        acceptSeconds = (performance.now() - t0) / 1000;
        if (line) break;
      }
      if (!server.alive()) throw new Error(`server exited: ${server.stderr().trim().slice(-500)}`);
      await sleep(acceptSeconds === null ? 10 : 5);
    }
    if (!line) throw new Error(`idle-conns gave no result${ended ? ` (${(await clientDone).stderr.trim()})` : ''}`);
    if (acceptSeconds === null) throw new Error(`server did not hold ${line.connected} connections within the deadline`);
    await sleep(ctx.quick ? 300 : 1000); // held idle for a moment
    const rssAfterKiB = groupRssKiB(server.pgid);
    const fdHeld = groupFdCount(server.pgid) - fdBefore;
    client.stdin.end();
    const c = await clientDone;
    clientDone = null;
    return {
      requested: n,
      connected: line.connected,
      connectErrors: line.errors,
      firstError: line.first_error || undefined,
      connectSeconds: line.connect_seconds,
      acceptSeconds,
      fdsHeld: fdHeld,
      rssBeforeKiB,
      rssAfterKiB,
      bytesPerConnection: line.connected > 0 ? ((rssAfterKiB - rssBeforeKiB) * 1024) / line.connected : null,
      serverCommand: server.command,
      clientCommand: c.command,
    };
  } finally {
    if (clientDone) {
      client?.stdin?.end();
      await clientDone;
    }
    await server.stop();
  }
}
