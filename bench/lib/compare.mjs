// The interleaved comparison every throughput workload uses: all servers of
// the workload run side by side (idle unless under load); for each case every
// server gets a short warm-up, then the rounds go A B C A B C …, each run
// measured for throughput and for the server's CPU time (user + system of its
// whole process group, from /proc) over the run. Per case it keeps every run,
// the median and range per server, and the per-round ratios subject/peer.
// Next to CPU time each run counts the server's context switches (every
// thread, /proc/PID/task/*/status); a server whose definition says `strace`
// also gets one more, shorter run per case under `strace -c -f` for its
// syscalls per request (a run of its own: strace slows the server down).
import { groupContextSwitches, groupCpuSeconds } from './procfs.mjs';
import { launch } from './servers.mjs';
import { syscallsPerRequest } from './strace.mjs';
import { ratio, summarize } from './stats.mjs';

const fmt = (x, d = 0) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));

/**
 * ctx: { root, rounds, seconds, warmupSeconds, log }
 * defs: server definitions (see servers.mjs); the one with id `subject` is compared against the others.
 * cases: [{ id, label, params }]
 * runOne(params, server, seconds) → { requests, seconds, rps, errors, command, ... }
 */
export async function compareServers({ ctx, workload, defs, cases, runOne, subject = 'tcpmod' }) {
  const servers = [];
  const result = { servers: {}, cases: [] };
  try {
    for (const def of defs) {
      ctx.log(`[${workload}] starting ${def.label}`);
      try {
        const s = await launch(def, ctx);
        servers.push(s);
        result.servers[def.id] = { label: def.label, command: s.command, pid: s.pid };
      } catch (e) {
        ctx.log(`[${workload}] ${def.label} failed to start: ${e.message}`);
        result.servers[def.id] = { label: def.label, error: `failed to start: ${e.message}` };
      }
    }
    for (const c of cases) {
      const entry = { id: c.id, label: c.label, params: c.params, results: {}, ratios: {} };
      for (const def of defs) entry.results[def.id] = { label: def.label, runs: [] };
      if (ctx.warmupSeconds > 0) {
        for (const s of servers) {
          if (!s.alive()) continue;
          ctx.log(`[${workload}] ${c.label} · warm-up · ${s.label}`);
          try {
            await runOne(c.params, s, ctx.warmupSeconds);
          } catch (e) {
            ctx.log(`[${workload}] warm-up of ${s.label} failed: ${e.message}`);
          }
        }
      }
      for (let round = 1; round <= ctx.rounds; round++) {
        for (const s of servers) {
          const runs = entry.results[s.id].runs;
          if (!s.alive()) {
            const x = s.exitInfo();
            runs.push({ round, error: `server exited (${x.signal ?? x.code}): ${s.stderr().trim().slice(-500)}` });
            continue;
          }
          const cpu0 = groupCpuSeconds(s.pgid);
          const cs0 = groupContextSwitches(s.pgid);
          let r;
          try {
            r = await runOne(c.params, s, ctx.seconds);
          } catch (e) {
            runs.push({ round, error: e.message });
            ctx.log(`[${workload}] ${c.label} · round ${round}/${ctx.rounds} · ${s.label}: error: ${e.message}`);
            continue;
          }
          const cpuSeconds = groupCpuSeconds(s.pgid) - cpu0;
          const switches = groupContextSwitches(s.pgid) - cs0;
          const per = (n) => (r.requests > 0 ? n / r.requests : null);
          const run = { round, ...r, cpuSeconds, cpuPerRequestUs: per(cpuSeconds * 1e6), contextSwitches: switches, switchesPerRequest: per(switches) };
          runs.push(run);
          ctx.log(
            `[${workload}] ${c.label} · round ${round}/${ctx.rounds} · ${s.label}: ${fmt(r.rps)} req/s, ` +
              `${fmt(run.cpuPerRequestUs, 2)} µs CPU/req, ${fmt(run.switchesPerRequest, 2)} ctx switches/req${r.errors ? `, ${r.errors} errors` : ''}`,
          );
        }
      }
      for (const s of servers) {
        if (!s.strace || !s.alive()) continue;
        const seconds = Math.min(2, ctx.seconds);
        try {
          const sc = await syscallsPerRequest(s.pid, seconds, (secs) => runOne(c.params, s, secs));
          if (sc) {
            entry.results[s.id].syscalls = sc;
            ctx.log(`[${workload}] ${c.label} · strace run · ${s.label}: ${fmt(sc.perRequest, 2)} syscalls/req (${Object.entries(sc.bySyscall).slice(0, 5).map(([k, v]) => `${k} ${fmt(v, 2)}`).join(', ')})`);
          }
        } catch (e) {
          entry.results[s.id].syscalls = { error: e.message };
          ctx.log(`[${workload}] ${c.label} · strace run · ${s.label}: error: ${e.message}`);
        }
      }
      for (const id of Object.keys(entry.results)) {
        const res = entry.results[id];
        const ok = res.runs.filter((r) => !r.error);
        res.rps = summarize(ok.map((r) => r.rps));
        res.cpuPerRequestUs = summarize(ok.map((r) => r.cpuPerRequestUs));
        res.switchesPerRequest = summarize(ok.map((r) => r.switchesPerRequest));
        res.errors = ok.reduce((a, r) => a + (r.errors ?? 0), 0);
        res.failedRuns = res.runs.length - ok.length;
      }
      if (subject && entry.results[subject]) {
        const mine = entry.results[subject].runs;
        for (const id of Object.keys(entry.results)) {
          if (id === subject) continue;
          const theirs = entry.results[id].runs;
          const rpsPerRound = [];
          const cpuPerRound = [];
          for (let round = 1; round <= ctx.rounds; round++) {
            const a = mine.find((r) => r.round === round && !r.error);
            const b = theirs.find((r) => r.round === round && !r.error);
            rpsPerRound.push(a && b ? ratio(a.rps, b.rps) : null);
            cpuPerRound.push(a && b ? ratio(a.cpuPerRequestUs, b.cpuPerRequestUs) : null);
          }
          entry.ratios[id] = {
            rps: { perRound: rpsPerRound, ...summarize(rpsPerRound) },
            cpuPerRequest: { perRound: cpuPerRound, ...summarize(cpuPerRound) },
          };
        }
      }
      result.cases.push(entry);
    }
  } finally {
    for (const s of servers) {
      ctx.log(`[${workload}] stopping ${s.label}`);
      await s.stop();
    }
  }
  return result;
}

export { fmt };
