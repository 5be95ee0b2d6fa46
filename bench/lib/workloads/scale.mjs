// Scale, three parts.
//
// 1. N idle connections (10,000; 1,000 with --quick) opened one after another
//    by bench/bin/idle-conns and held. Per server and round, on a fresh
//    server: its RSS (VmRSS, summed over its processes) before and after, the
//    growth per connection, and the time until the server holds them all (its
//    open descriptors, polled in /proc, reach the count). tcpmod's echo module
//    next to the echo peers, for context.
// 2. 100,000 idle connections against tcpmod alone, once (also with --quick:
//    this is the part that shows whether the machine gets there). The server
//    and the client run under `prlimit --nofile` raised past 100,000, the
//    server with --max-connections to match; the client spreads its
//    connections over the source addresses 127.0.0.2–127.0.0.5, since one
//    source address gets only about 28,000 ephemeral ports towards one
//    server port. Same figures as part 1; its row sits in the same table.
//    Raising RLIMIT_NOFILE past its hard limit needs CAP_SYS_RESOURCE; without
//    it (a container that drops it, even for root) the run holds as many as
//    the hard limit allows instead, and says why (results .many.limitedBy).
// 3. 10,000 connections, each with a module timer firing every second: a WAT
//    module built here (timerModuleWat) re-arms tcpmod.set_timer(conn, 1000)
//    in tcpmod_on_timer and sends its tcpmod.now_ms() as an f64;
//    bench/lib/timer-client.mjs derives lateness = interval − 1000 ms from
//    consecutive stamps. Reported: server CPU µs per fired timer (user +
//    system over the window ÷ stamps received) and lateness p50/p99/max.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { runClient, sleep } from '../proc.mjs';
import { groupCpuSeconds, groupFdCount, groupRssKiB } from '../procfs.mjs';
import { launch, moduleExists } from '../servers.mjs';
import { summarize } from '../stats.mjs';
import { watToWasm } from '../wat.mjs';
import { MODULE } from './echo.mjs';

export const title = 'scale';

/** Part 2: the target, and the source addresses its connections are spread over (25,000 each). */
const MANY = 100_000;
const SOURCES = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];
/** Part 3: connections with a 1 s timer each, and the measured window (after a warm-up). */
const TIMER_CONNECTIONS = 10_000;
const TIMER_INTERVAL_MS = 1000;

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
        logHeld(ctx, def.label, r);
      } catch (e) {
        runs.push({ round, error: e.message });
        ctx.log(`[scale] ${def.label}: error: ${e.message}`);
      }
    }
  }

  // Part 2: 100,000 idle connections, tcpmod only, one run; fewer when the
  // descriptor limit cannot be raised that far (then as many as it allows).
  const lim = nofileFor(MANY + 4096);
  const target = lim.raised ? MANY : Math.max(1000, Math.min(MANY, lim.nofile - 256));
  const manyDef = manyConnectionsDef(d, ctx.threads, target, lim.nofile);
  results[manyDef.id] = { label: manyDef.label, runs: [] };
  if (!lim.raised) ctx.log(`[scale] ${MANY.toLocaleString('en-US')} connections are out of reach: ${lim.why}; holding ${target.toLocaleString('en-US')} instead`);
  ctx.log(`[scale] ${target.toLocaleString('en-US')} idle connections from ${SOURCES.join(', ')} · ${manyDef.label}`);
  try {
    const r = await holdConnections(ctx, manyDef, target, { sources: SOURCES, clientNofile: lim.nofile, pollMs: 50, settleMs: 2000, kernelMemory: true });
    results[manyDef.id].runs.push({ round: 1, ...r });
    logHeld(ctx, manyDef.label, r);
  } catch (e) {
    results[manyDef.id].runs.push({ round: 1, error: e.message });
    ctx.log(`[scale] ${manyDef.label}: error: ${e.message}`);
  }

  for (const res of Object.values(results)) {
    const ok = res.runs.filter((r) => !r.error);
    res.bytesPerConnection = summarize(ok.map((r) => r.bytesPerConnection));
    res.acceptSeconds = summarize(ok.map((r) => r.acceptSeconds));
    res.rssBeforeKiB = summarize(ok.map((r) => r.rssBeforeKiB));
    res.rssAfterKiB = summarize(ok.map((r) => r.rssAfterKiB));
  }

  // Part 3: timers.
  let timers;
  const timerSeconds = ctx.quick ? 3 : 10;
  ctx.log(`[scale] ${TIMER_CONNECTIONS.toLocaleString('en-US')} connections with a ${TIMER_INTERVAL_MS} ms module timer each · ${timerSeconds} s measured`);
  try {
    timers = await timerRun(ctx, TIMER_CONNECTIONS, timerSeconds);
    ctx.log(
      `[scale] timers: ${timers.fired.toLocaleString('en-US')} fired in ${timers.seconds.toFixed(1)} s ` +
        `(${timers.firedPerSecond.toFixed(0)}/s), server CPU ${timers.cpuPerTimerUs?.toFixed(2)} µs per timer, lateness ` +
        `p50 ${timers.latenessMs.p50} ms, p99 ${timers.latenessMs.p99} ms, max ${timers.latenessMs.max} ms`,
    );
  } catch (e) {
    timers = { error: e.message };
    ctx.log(`[scale] timers: error: ${e.message}`);
  }

  return {
    status: 'ok',
    module: MODULE,
    connections: n,
    rounds,
    client: `bench/bin/idle-conns HOST PORT ${n}`,
    results,
    many: {
      goal: MANY,
      target,
      nofile: lim.nofile,
      limitedBy: lim.raised ? null : lim.why,
      sources: SOURCES,
      row: manyDef.id,
      client: `prlimit --nofile=${lim.nofile}:${lim.nofile} bench/bin/idle-conns HOST PORT ${target} ${SOURCES.join(',')}`,
    },
    timers,
  };
}

function logHeld(ctx, label, r) {
  ctx.log(
    `[scale] ${label}: ${r.connected.toLocaleString('en-US')} held${r.connectErrors ? ` (${r.connectErrors} connect errors: ${r.firstError})` : ''}, ` +
      `RSS ${r.rssBeforeKiB} → ${r.rssAfterKiB} KiB (${r.bytesPerConnection?.toFixed(0)} B/conn), all accepted after ${r.acceptSeconds?.toFixed(3)} s`,
  );
}

/**
 * The descriptor limit part 2 can have: `want` when `prlimit` may set it
 * (root with CAP_SYS_RESOURCE, or a hard limit already that high), else the
 * hard limit this process has, and why.
 */
function nofileFor(want) {
  if (spawnSync('prlimit', [`--nofile=${want}:${want}`, 'true'], { stdio: 'ignore' }).status === 0) return { nofile: want, raised: true };
  const out = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout?.trim();
  const hard = /^\d+$/.test(out ?? '') ? Number(out) : 1024;
  const caps = /^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'));
  const hasSysResource = caps ? (BigInt(`0x${caps[1]}`) >> 24n) & 1n : null; // CAP_SYS_RESOURCE is capability 24
  return {
    nofile: hard,
    raised: false,
    why:
      `prlimit --nofile=${want}:${want} is refused: the hard RLIMIT_NOFILE is ${hard}` +
      (hasSysResource === 0n ? ' and this process lacks CAP_SYS_RESOURCE, which raising it needs (even as root)' : '') +
      '; one tcpmod server is one process, so it holds at most that many descriptors',
  };
}

/**
 * tcpmod's echo for part 2: started under prlimit with RLIMIT_NOFILE set to
 * `nofile` (launch()'s own `ulimit -n` is switched off by nofile: null), and
 * --max-connections set to the target.
 */
function manyConnectionsDef(d, threads, target, nofile) {
  const base = d.tcpmod(MODULE, { id: 'tcpmod-100k', label: `tcpmod ×${threads}, ${target === MANY ? '100k' : 'fd-limited'}` });
  return {
    ...base,
    start: (port) => {
      const s = base.start(port);
      return {
        ...s,
        cmd: 'prlimit',
        args: [`--nofile=${nofile}:${nofile}`, s.cmd, ...s.args, '--max-connections', String(target + 64)],
        nofile: null,
      };
    },
  };
}

/** Total kernel slab memory in KiB (/proc/meminfo Slab): sockets, files, epoll items. */
function slabKiB() {
  const m = /^Slab:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) : null;
}

/**
 * A client that opens its connections to server, prints a JSON line for each
 * result on stdout and holds the connections until its stdin ends
 * (bench/bin/idle-conns, bench/lib/timer-client.mjs). It runs as runClient
 * runs it (its own process group, killed after 300 s).
 *   lines       the JSON lines printed so far, parsed
 *   ended()     whether it has exited
 *   send(text)  writes to its stdin
 *   line(k, ms, what)  waits for the k-th line; throws when the client ends,
 *               the server exits or ms pass first (`what` names the line)
 *   finish()    ends its stdin and resolves runClient's result; again: the same
 */
function holdingClient(name, server, cmd, args, nofile, env) {
  const lines = [];
  let child = null;
  let ended = false;
  const done = runClient(cmd, args, {
    stdin: true,
    nofile,
    env,
    timeoutMs: 300_000,
    started: (c) => (child = c),
    onStdout: (all) => {
      const complete = all.split('\n').slice(0, -1);
      while (lines.length < complete.length) lines.push(JSON.parse(complete[lines.length]));
    },
  });
  done.then(
    () => (ended = true),
    () => (ended = true),
  );
  return {
    lines,
    ended: () => ended,
    send: (text) => child.stdin.write(text),
    async line(k, ms, what) {
      const deadline = Date.now() + ms;
      while (lines.length < k) {
        if (ended) throw new Error(`${name} ended before ${what}: ${(await done).stderr.trim().slice(-500)}`);
        assertAlive(server);
        if (Date.now() > deadline) throw new Error(`${name}: no ${what} within ${ms / 1000} s`);
        await sleep(20);
      }
      return lines[k - 1];
    },
    finish: () => {
      child?.stdin?.end();
      return done;
    },
  };
}

function assertAlive(server) {
  if (!server.alive()) throw new Error(`server exited: ${server.stderr().trim().slice(-500)}`);
}

/**
 * One fresh server holding n idle connections. opts: sources (client source
 * addresses), clientNofile (runs the client under prlimit), pollMs (the
 * /proc/PID/fd poll; listing 100,000 descriptors takes a while), settleMs
 * (idle time before the second RSS reading), kernelMemory (also /proc/meminfo Slab).
 */
export async function holdConnections(ctx, def, n, opts = {}) {
  const server = await launch(def, ctx);
  let client = null;
  try {
    await sleep(ctx.quick ? 200 : 500); // let start-up allocations settle
    const rssBeforeKiB = groupRssKiB(server.pgid);
    const fdBefore = groupFdCount(server.pgid);
    const slabBeforeKiB = opts.kernelMemory ? slabKiB() : null;
    const t0 = performance.now();
    const clientArgs = ['127.0.0.1', String(server.port), String(n), ...(opts.sources ? [opts.sources.join(',')] : [])];
    const [cmd, args, nofile] = opts.clientNofile
      ? ['prlimit', [`--nofile=${opts.clientNofile}:${opts.clientNofile}`, ctx.bins['idle-conns'], ...clientArgs], undefined]
      : [ctx.bins['idle-conns'], clientArgs, n + 1024];
    client = holdingClient('idle-conns', server, cmd, args, nofile, opts.env);
    // All accepted once the server holds n more descriptors (or all the client managed to open).
    let acceptSeconds = null;
    const deadline = Date.now() + 120_000;
    const pollMs = opts.pollMs ?? 5;
    while (Date.now() < deadline && !client.ended()) {
      const want = client.lines.length ? client.lines[0].connected : n;
      if (groupFdCount(server.pgid) - fdBefore >= want) {
        acceptSeconds = (performance.now() - t0) / 1000;
        if (client.lines.length) break;
      }
      assertAlive(server);
      await sleep(acceptSeconds === null ? Math.max(10, pollMs) : pollMs);
    }
    const line = client.lines[0];
    if (!line) throw new Error(`idle-conns gave no result${client.ended() ? ` (${(await client.finish()).stderr.trim()})` : ''}`);
    if (acceptSeconds === null) throw new Error(`server did not hold ${line.connected} connections within the deadline`);
    await sleep(opts.settleMs ?? (ctx.quick ? 300 : 1000)); // held idle for a moment
    const rssAfterKiB = groupRssKiB(server.pgid);
    const fdHeld = groupFdCount(server.pgid) - fdBefore;
    const slabAfterKiB = opts.kernelMemory ? slabKiB() : null;
    const c = await client.finish();
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
      ...(opts.kernelMemory && slabBeforeKiB !== null && slabAfterKiB !== null
        ? {
            kernelSlabBeforeKiB: slabBeforeKiB,
            kernelSlabAfterKiB: slabAfterKiB,
            // Both ends of every connection are on this machine: per connection, client and server sockets together.
            kernelSlabBytesPerConnection: line.connected > 0 ? ((slabAfterKiB - slabBeforeKiB) * 1024) / line.connected : null,
          }
        : {}),
      serverCommand: server.command,
      clientCommand: c.command,
    };
  } finally {
    await client?.finish();
    await server.stop();
  }
}

/**
 * The timer module, in WAT: on_open arms a 1 s timer; on_timer re-arms it and
 * answers 8 bytes, tcpmod.now_ms() as a little-endian f64; on_data discards
 * what the client sends (and closes on EOF).
 * Layout: IoDesc [0, 32), result record [32, 40), input [1024, +1024), output [4096, +1024).
 */
export function timerModuleWat(intervalMs = TIMER_INTERVAL_MS) {
  return `(module
  (import "tcpmod" "set_timer" (func $set_timer (param i32 i32) (result i32)))
  (import "tcpmod" "now_ms" (func $now_ms (result f64)))
  (memory (export "memory") 1 1)
  (data (i32.const 0)
    "\\00\\04\\00\\00" "\\00\\04\\00\\00"   ;; in_ptr 1024, in_cap 1024
    "\\00\\10\\00\\00" "\\00\\04\\00\\00"   ;; out_ptr 4096, out_cap 1024
    "\\00\\00\\00\\00" "\\00\\00\\00\\00"   ;; no state slot
    "\\20\\00\\00\\00" "\\00\\00\\00\\00")  ;; res_ptr 32, flags 0
  (func (export "tcpmod_abi_v1"))
  (func (export "tcpmod_io_desc") (result i32) (i32.const 0))
  (func (export "tcpmod_on_open") (param $conn i32) (result i32)
    (drop (call $set_timer (local.get $conn) (i32.const ${intervalMs})))
    (i32.store (i32.const 36) (i32.const 0))
    (i32.const 0))
  (func (export "tcpmod_on_data") (param $conn i32) (param $len i32) (param $flags i32) (result i32)
    (i32.store (i32.const 32) (local.get $len))
    (i32.store (i32.const 36) (i32.const 0))
    ;; EOF: CLOSE (1); otherwise CONTINUE (0)
    (i32.and (local.get $flags) (i32.const 1)))
  (func (export "tcpmod_on_timer") (param $conn i32) (param $len i32) (result i32)
    (drop (call $set_timer (local.get $conn) (i32.const ${intervalMs})))
    (f64.store (i32.const 4096) (call $now_ms))
    (i32.store (i32.const 32) (local.get $len))
    (i32.store (i32.const 36) (i32.const 8))
    (i32.const 0)))
`;
}

/**
 * Part 3: n connections with a timer each. After a warm-up (every connection
 * has fired at least once, so each stamp in the window has a predecessor),
 * the server's CPU time and the client's stamps are taken over `seconds`.
 */
async function timerRun(ctx, n, seconds) {
  const dir = mkdtempSync(join(os.tmpdir(), 'tcpmod-bench-timer-'));
  let server = null;
  let client = null;
  try {
    const wasm = join(dir, 'timer.wasm');
    writeFileSync(wasm, await watToWasm('timer.wat', timerModuleWat()));
    const def = ctx.defs.tcpmod(wasm, { id: 'tcpmod-timers', label: `tcpmod ×${ctx.threads} timers` });
    server = await launch(def, ctx);
    await sleep(300);
    const rssBeforeKiB = groupRssKiB(server.pgid);
    client = holdingClient('timer-client', server, process.execPath, [join(ctx.benchDir, 'lib', 'timer-client.mjs'), '127.0.0.1', String(server.port), String(n)], n + 1024);
    const opened = await client.line(1, 120_000, 'connections');
    if (opened.connected === 0) throw new Error(`timer-client connected nothing: ${opened.firstError}`);
    await sleep(2 * TIMER_INTERVAL_MS + 500); // every connection has fired at least once
    const cpu0 = groupCpuSeconds(server.pgid);
    const t0 = performance.now();
    client.send('start\n');
    await sleep(seconds * 1000);
    client.send('stop\n');
    const cpu1 = groupCpuSeconds(server.pgid);
    const wallSeconds = (performance.now() - t0) / 1000;
    const seen = await client.line(2, 30_000, 'result');
    const rssAfterKiB = groupRssKiB(server.pgid);
    const c = await client.finish();
    const cpuSeconds = cpu1 - cpu0;
    return {
      connections: opened.connected,
      connectErrors: opened.errors,
      firstError: opened.firstError ?? undefined,
      connectSeconds: opened.connectSeconds,
      intervalMs: TIMER_INTERVAL_MS,
      seconds: seen.seconds,
      fired: seen.fired,
      firedPerSecond: seen.firedPerSecond,
      expectedPerSecond: opened.connected * (1000 / TIMER_INTERVAL_MS),
      closedEarly: seen.closedEarly,
      serverCpuSeconds: cpuSeconds,
      serverCpuPercent: (100 * cpuSeconds) / wallSeconds,
      cpuPerTimerUs: seen.fired > 0 ? (cpuSeconds * 1e6) / seen.fired : null,
      latenessMs: seen.latenessMs,
      arrivalLatenessMs: seen.arrivalLatenessMs,
      rssBeforeKiB,
      rssAfterKiB,
      module: 'timer.wat (bench/lib/workloads/scale.mjs timerModuleWat)',
      serverCommand: server.command,
      clientCommand: c.command,
    };
  } finally {
    await client?.finish();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
