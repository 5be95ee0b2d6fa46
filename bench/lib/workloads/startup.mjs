// Start-up: from launching the server process to its "listening on" line,
// and to the first echo reply (a client retrying connect every millisecond
// from the moment of launch). Several runs, interleaved with the echo peers
// for context; medians.
import net from 'node:net';
import { freePort, sleep, spawnTracked, withTimeout } from '../proc.mjs';
import { moduleExists } from '../servers.mjs';
import { summarize } from '../stats.mjs';
import { MODULE } from './echo.mjs';

export const title = 'startup';

export async function run(ctx) {
  if (!moduleExists(ctx.root, MODULE)) return { status: 'skipped', reason: `module missing: ${MODULE}` };
  const runs = ctx.quick ? 3 : Math.max(5, ctx.rounds);
  const d = ctx.defs;
  const defs = [d.tcpmod(MODULE), d.nodeEcho(), d.cEcho()];
  const results = Object.fromEntries(defs.map((def) => [def.id, { label: def.label, runs: [] }]));
  for (let i = 1; i <= runs; i++) {
    for (const def of defs) {
      try {
        const r = await timeStart(ctx, def);
        results[def.id].runs.push({ round: i, ...r });
        ctx.log(`[startup] run ${i}/${runs} · ${def.label}: listening after ${r.listeningMs.toFixed(1)} ms, first echo after ${r.firstEchoMs.toFixed(1)} ms`);
      } catch (e) {
        results[def.id].runs.push({ round: i, error: e.message });
        ctx.log(`[startup] run ${i}/${runs} · ${def.label}: error: ${e.message}`);
      }
    }
  }
  for (const res of Object.values(results)) {
    const ok = res.runs.filter((r) => !r.error);
    res.listeningMs = summarize(ok.map((r) => r.listeningMs));
    res.firstEchoMs = summarize(ok.map((r) => r.firstEchoMs));
  }
  return { status: 'ok', module: MODULE, runs, results };
}

/** One echo of one byte; rejects when the connection fails (e.g. refused: not listening yet). */
function echoOnce(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('no echo within 2 s'));
    }, 2000);
    s.once('connect', () => s.write('x'));
    s.once('data', () => {
      clearTimeout(timer);
      s.destroy();
      resolve();
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

async function timeStart(ctx, def) {
  const port = await freePort();
  const spec = def.start(port);
  const t0 = performance.now();
  const proc = spawnTracked(def.label, spec.cmd, spec.args, { cwd: ctx.root });
  proc.child.stderr.resume();
  try {
    let out = '';
    let listeningMs = null;
    const listening = new Promise((resolve, reject) => {
      proc.child.stdout.on('data', (chunk) => {
        out += chunk;
        if (listeningMs === null && /listening on/.test(out)) {
          listeningMs = performance.now() - t0;
          resolve();
        }
      });
      proc.child.once('exit', (code) => reject(new Error(`exited (${code}) before listening`)));
    });
    listening.catch(() => {});
    const deadline = t0 + 20_000;
    let firstEchoMs = null;
    while (performance.now() < deadline) {
      try {
        await echoOnce(port);
        firstEchoMs = performance.now() - t0;
        break;
      } catch {
        await sleep(1);
      }
    }
    if (firstEchoMs === null) throw new Error('no echo within 20 s');
    await withTimeout(listening, 20_000, 'no "listening on" line within 20 s');
    return { listeningMs, firstEchoMs, command: proc.command };
  } finally {
    await proc.stop();
  }
}
