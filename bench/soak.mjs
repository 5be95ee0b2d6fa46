#!/usr/bin/env node
// `npm run soak`: three tcpmod servers (echo, HTTP, RESP) under load and
// hostile clients at once, for a long time, watching whether anything they
// hold keeps growing. Writes bench/results/soak.json (every sample, the
// settings, the machine, the commands) and bench/results/soak.svg.
//
//   npm run soak -- [--duration 10m] [--sample 10s] [--threads 2]
//
// What runs, all on 127.0.0.1, all bounded (fixed connection counts, fixed
// rates or closed loops with few connections, every client run time-limited):
//   servers   node bin/tcpmod.js serve build/{echo,http,resp}.wasm --port P (a free port)
//             --threads 2 --log-level warn --frame-timeout 5s --read-timeout 20s
//   echo      bench/bin/echo-load, 10 connections × 64 B, closed loop, runs of 30 s back to back
//   HTTP      wrk -t 1 -c 10 (keep-alive), runs of 30 s back to back; and a churn of
//             new connections (open, GET with Connection: close, read the reply,
//             close) at 200 per second, at most 4 in flight (bench/lib/soak-clients.mjs)
//   RESP      redis-benchmark -c 10 -n 20000, PING_INLINE / SET / GET in turn, back to back
//   hostile   200 slowloris connections to the HTTP server (a partial request head,
//             one byte every 2 s; shed by the frame timeout, each replaced at once)
//             and 500 idle connections spread over the three servers (closed by
//             the read timeout, each reopened at once) (bench/lib/soak-clients.mjs)
// Every `--sample` (10 s), per server: VmRSS and Threads (/proc/PID/status),
// open descriptors (/proc/PID/fd), CPU time (/proc/PID/stat, user + system).
//
// Verdict per server and quantity: the median of the samples in the last third
// of the run against the median of those in the middle third (the first third
// is warm-up); "growing" when the difference is above the quantity's tolerance
// (TOLERANCE below), else "flat".
//
// Exit status 0 when every verdict is "flat", 1 otherwise (or on an error).
// Every process it starts runs in a process group of its own and is killed on
// every way out (bench/lib/proc.mjs).
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { echoLoad, redisBenchmark, wrk } from './lib/clients.mjs';
import { log, parseDuration, parseFlags, positiveInteger, runScript } from './lib/cli.mjs';
import { sleep, spawnTracked } from './lib/proc.mjs';
import { groupCpuSeconds, rssKiB } from './lib/procfs.mjs';
import { launch, serverDefs } from './lib/servers.mjs';
import { renderSoakChart } from './lib/soak-chart.mjs';
import { median } from './lib/stats.mjs';
import { buildC, ensureCommand, machineInfo } from './lib/tools.mjs';

const benchDir = dirname(fileURLToPath(import.meta.url));
const root = resolve(benchDir, '..');

const SERVERS = [
  { id: 'echo', module: 'build/echo.wasm' },
  { id: 'http', module: 'build/http.wasm' },
  { id: 'resp', module: 'build/resp.wasm' },
];

const LOAD = {
  frameTimeout: '5s',
  readTimeout: '20s',
  echo: { connections: 10, size: 64, runSeconds: 30 },
  httpKeepAlive: { connections: 10, threads: 1, runSeconds: 30 },
  httpChurn: { perSecond: 200, inFlight: 4 },
  resp: { clients: 10, requests: 20_000, tests: ['ping_inline', 'set', 'get'] },
  slowloris: { connections: 200, byteEveryMs: 2000, rampMs: 5000 },
  idle: { connections: 500, rampMs: 20_000 },
};

/** Tolerances of the verdict: growing when median(last third) − median(middle third) > max(rel × middle, abs). */
const TOLERANCE = {
  rssKiB: { rel: 0.05, abs: 2048, unit: 'KiB', what: 'RSS' },
  fds: { rel: 0.1, abs: 20, unit: '', what: 'open descriptors' },
  threads: { rel: 0, abs: 0, unit: '', what: 'threads' },
};

const USAGE = `usage: npm run soak -- [options]
  --duration D   how long the load runs: 90s, 10m, 1h, 1500ms (default 10m)
  --sample D     time between samples (default 10s)
  --threads N    worker threads of each tcpmod server (default 2)
  --help`;

function parseArgs(argv) {
  const o = { durationSeconds: 600, sampleSeconds: 10, threads: 2 };
  parseFlags(argv, USAGE, {
    '--duration': (value) => (o.durationSeconds = parseDuration(value(), '--duration')),
    '--sample': (value) => (o.sampleSeconds = parseDuration(value(), '--sample')),
    '--threads': (value) => (o.threads = positiveInteger(value(), '--threads')),
  });
  if (!(o.sampleSeconds >= 1)) throw new Error('--sample must be at least 1s');
  if (!(o.durationSeconds >= 3 * o.sampleSeconds)) throw new Error('--duration must be at least three samples long');
  return o;
}

// ---- /proc ------------------------------------------------------------------

function threadCount(pid) {
  try {
    const m = /^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function fdCount(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

// ---- processes --------------------------------------------------------------

/**
 * Starts one tcpmod server with the soak's timeouts, as the bench starts its
 * servers (servers.mjs launch: a free port, its own process group, ready once
 * it printed "listening on" and accepts connections).
 */
async function startTcpmod(defs, spec) {
  const timeouts = ['--frame-timeout', LOAD.frameTimeout, '--read-timeout', LOAD.readTimeout];
  const s = await launch(defs.tcpmod(spec.module, { id: spec.id, label: `tcpmod ${spec.id}`, args: timeouts }), { root });
  return Object.assign(s, {
    module: spec.module,
    /** What it printed after its "listening on" line (warnings and errors). */
    logTail: () => `${s.stdout().replace(/^[\s\S]*?listening on \S+:\d+[^\n]*\n?/, '')}${s.stderr()}`.trim().slice(-4000),
  });
}

/** The soak's own Node clients (slowloris, idle, churn); stop() ends them and resolves their last counters. */
function startSoakClients(cfg) {
  const h = spawnTracked('soak-clients', process.execPath, [join(benchDir, 'lib', 'soak-clients.mjs'), JSON.stringify(cfg)], { cwd: root, nofile: 65536 });
  let buf = '';
  let latest = null;
  let err = '';
  h.child.stdout.on('data', (d) => {
    buf += d;
    const lines = buf.split('\n');
    buf = lines.pop();
    for (const l of lines) if (l.trim()) latest = JSON.parse(l);
  });
  h.child.stderr.on('data', (d) => (err = (err + d).slice(-8192)));
  const closed = new Promise((r) => h.child.once('close', r));
  return {
    command: h.command,
    latest: () => latest,
    stderr: () => err,
    stop: async () => {
      await h.stop(); // SIGTERM: it prints its last counters and exits
      await closed;
      return latest;
    },
  };
}

/** Runs `once(seconds)` back to back until `until` (ms since epoch); totals what it returns. */
async function loadLoop(name, until, minSeconds, once) {
  const t = { name, runs: 0, requests: 0, errors: 0, failedRuns: 0, firstFailure: null, command: null, rps: [] };
  while (true) {
    const remaining = (until - Date.now()) / 1000;
    if (remaining < minSeconds) break;
    try {
      const r = await once(remaining);
      t.runs++;
      t.requests += r.requests;
      t.errors += r.errors ?? 0;
      t.rps.push(Math.round(r.rps));
      t.command = r.command;
    } catch (e) {
      t.failedRuns++;
      t.firstFailure ??= String(e.message ?? e).slice(0, 500);
      await sleep(1000);
    }
  }
  t.rpsMedian = median(t.rps);
  return t;
}

// ---- verdicts ---------------------------------------------------------------

function verdicts(samples, servers, durationSeconds) {
  const out = [];
  const third = durationSeconds / 3;
  for (const s of servers) {
    for (const [metric, tol] of Object.entries(TOLERANCE)) {
      const series = samples.map((x) => ({ t: x.t, v: x.servers[s.id]?.[metric] ?? null })).filter((x) => x.v !== null);
      const middle = median(series.filter((x) => x.t >= third && x.t < 2 * third).map((x) => x.v));
      const last = median(series.filter((x) => x.t >= 2 * third).map((x) => x.v));
      const start = series[0]?.v ?? null;
      const end = series.at(-1)?.v ?? null;
      let verdict;
      let allowed = null;
      if (!s.alive()) verdict = 'server exited';
      else if (middle === null || last === null) verdict = 'no data';
      else {
        allowed = Math.max(tol.rel * middle, tol.abs);
        verdict = last - middle > allowed ? 'growing' : 'flat';
      }
      out.push({ server: s.id, metric, verdict, start, middleMedian: middle, lastMedian: last, end, allowedGrowth: allowed, peak: series.length ? Math.max(...series.map((x) => x.v)) : null });
    }
  }
  return out;
}

const fmt = (metric, v) => {
  if (v === null || v === undefined) return '–';
  if (metric === 'rssKiB') return `${(v / 1024).toFixed(1)} MiB`;
  return v.toLocaleString('en-US', { maximumFractionDigits: 1 });
};

function ruleText() {
  const parts = Object.values(TOLERANCE).map((t) =>
    t.rel === 0 && t.abs === 0 ? `${t.what}: any rise` : `${t.what}: more than max(${t.rel * 100}% of the middle median, ${t.abs}${t.unit ? ` ${t.unit}` : ''})`,
  );
  return `growing when the median of the samples in the last third of the run exceeds the median of those in the middle third by ${parts.join('; ')}; else flat`;
}

// ---- main -------------------------------------------------------------------

/** The soak; resolves the exit status: 0 when every verdict is flat, else 1. */
async function main(opts, command) {
  const outBase = join(benchDir, 'results', 'soak');
  mkdirSync(dirname(outBase), { recursive: true });
  ensureCommand('gcc', 'gcc', log);
  ensureCommand('wrk', 'wrk', log);
  ensureCommand('redis-benchmark', 'redis-tools', log);
  const bins = { 'echo-load': buildC(benchDir, 'echo-load', log) };

  const soak = {
    schema: 'tcpmod-soak/1',
    command,
    startedAt: new Date().toISOString(),
    finishedAt: null,
    settings: { ...opts, load: LOAD, tolerance: TOLERANCE },
    rule: ruleText(),
    machine: machineInfo(),
    servers: {},
    clients: {},
    samples: [],
    verdicts: [],
  };
  const defs = serverDefs({ root, bins, threads: opts.threads });
  const servers = [];
  for (const spec of SERVERS) {
    const s = await startTcpmod(defs, spec);
    servers.push(s);
    soak.servers[s.id] = { module: s.module, port: s.port, pid: s.pid, command: s.command };
    log(`soak: ${s.id} (${s.module}) listening on 127.0.0.1:${s.port}, pid ${s.pid}`);
  }
  const byId = Object.fromEntries(servers.map((s) => [s.id, s]));
  await sleep(1000); // start-up settles before the first sample

  const t0 = Date.now();
  const until = t0 + opts.durationSeconds * 1000;
  let lastCpu = null;
  const sample = () => {
    const now = Date.now();
    const row = { t: Math.round((now - t0) / 100) / 10, at: new Date(now).toISOString(), servers: {}, clients: null };
    for (const s of servers) {
      if (!s.alive()) {
        row.servers[s.id] = null;
        continue;
      }
      const cpuSeconds = groupCpuSeconds(s.pgid);
      const prev = lastCpu?.[s.id];
      row.servers[s.id] = {
        rssKiB: rssKiB(s.pid),
        fds: fdCount(s.pid),
        threads: threadCount(s.pid),
        cpuSeconds,
        cpuPercent: prev ? Math.round((1000 * (cpuSeconds - prev.cpu)) / ((now - prev.at) / 1000)) / 10 : null,
      };
    }
    lastCpu = Object.fromEntries(servers.map((s) => [s.id, { cpu: row.servers[s.id]?.cpuSeconds ?? 0, at: now }]));
    const c = hostile?.latest();
    if (c) {
      row.clients = {
        slowlorisOpen: c.slowloris.open,
        slowlorisShed: c.slowloris.shed,
        idleOpen: c.idle.open,
        idleClosedByServer: c.idle.closedByServer,
        churnRequests: c.churn.requests,
        churnFailures: c.churn.bad + c.churn.errors,
      };
    }
    soak.samples.push(row);
    writeFileSync(`${outBase}.json.tmp`, JSON.stringify(soak, null, 2)); // what an interrupted run leaves
    const f = servers
      .map((s) => {
        const v = row.servers[s.id];
        return v ? `${s.id} ${fmt('rssKiB', v.rssKiB)} ${v.fds} fds ${v.threads} thr ${v.cpuPercent ?? '–'}% CPU` : `${s.id} GONE`;
      })
      .join(' · ');
    log(`soak: t=${row.t.toFixed(0)} s · ${f}${row.clients ? ` · slowloris shed ${row.clients.slowlorisShed}, idle closed ${row.clients.idleClosedByServer}, churn ${row.clients.churnRequests}` : ''}`);
  };

  let hostile = null;
  sample(); // t = 0: before any load
  log(`soak: ${opts.durationSeconds} s of load, a sample every ${opts.sampleSeconds} s; ${soak.rule}`);
  hostile = startSoakClients({
    httpPort: byId.http.port,
    idlePorts: servers.map((s) => s.port),
    slowloris: LOAD.slowloris.connections,
    slowlorisByteMs: LOAD.slowloris.byteEveryMs,
    rampMs: LOAD.slowloris.rampMs,
    idle: LOAD.idle.connections,
    idleRampMs: LOAD.idle.rampMs,
    churnPerSecond: LOAD.httpChurn.perSecond,
    churnInFlight: LOAD.httpChurn.inFlight,
  });
  const loops = [
    loadLoop('echo', until, 1, (rem) =>
      echoLoad(bins, { port: byId.echo.port, connections: LOAD.echo.connections, size: LOAD.echo.size, seconds: Math.min(LOAD.echo.runSeconds, Math.floor(rem)) }),
    ),
    loadLoop('httpKeepAlive', until, 1, (rem) =>
      wrk(benchDir, {
        port: byId.http.port,
        connections: LOAD.httpKeepAlive.connections,
        threads: LOAD.httpKeepAlive.threads,
        seconds: Math.min(LOAD.httpKeepAlive.runSeconds, Math.floor(rem)),
        pipeline: 1,
      }),
    ),
    (async () => {
      let i = 0;
      return loadLoop('resp', until, 3, () =>
        redisBenchmark({ port: byId.resp.port, test: LOAD.resp.tests[i++ % LOAD.resp.tests.length], clients: LOAD.resp.clients, pipeline: 1, requests: LOAD.resp.requests }),
      );
    })(),
  ];

  // Samples on a fixed grid from t0, the last one at the end of the load.
  for (let k = 1; ; k++) {
    const due = t0 + Math.min(k * opts.sampleSeconds * 1000, until - t0);
    await sleep(Math.max(0, due - Date.now()));
    sample();
    if (due >= until) break;
  }
  const [echo, httpKeepAlive, resp] = await Promise.all(loops);
  const h = await hostile.stop();
  soak.clients = {
    echo,
    httpKeepAlive,
    resp,
    httpChurn: h && { ...h.churn, settings: LOAD.httpChurn },
    slowloris: h && { ...h.slowloris, settings: LOAD.slowloris },
    idle: h && { ...h.idle, settings: LOAD.idle },
    soakClientsCommand: hostile.command,
    soakClientsStderr: hostile.stderr() || undefined,
  };
  soak.verdicts = verdicts(soak.samples, servers, opts.durationSeconds);
  for (const s of servers) {
    soak.servers[s.id].exitedDuringRun = s.alive() ? null : s.exitInfo();
    soak.servers[s.id].log = s.logTail() || undefined;
  }
  for (const s of servers) {
    const code = await s.stop();
    soak.servers[s.id].stopExit = code;
  }
  soak.finishedAt = new Date().toISOString();
  writeFileSync(`${outBase}.json.tmp`, `${JSON.stringify(soak, null, 2)}\n`);
  renameSync(`${outBase}.json.tmp`, `${outBase}.json`);
  writeFileSync(`${outBase}.svg`, await renderSoakChart(soak));

  // Report.
  log(`\nsoak: wrote ${outBase}.json, ${outBase}.svg`);
  const c = soak.clients;
  const tot = (x) => `${x.requests.toLocaleString('en-US')} requests in ${x.runs} runs (median ${x.rpsMedian?.toLocaleString('en-US') ?? '–'} req/s), ${x.errors} client errors, ${x.failedRuns} failed runs${x.firstFailure ? ` (${x.firstFailure})` : ''}`;
  log(`load: echo ${tot(c.echo)}`);
  log(`      HTTP keep-alive ${tot(c.httpKeepAlive)}`);
  log(`      RESP ${tot(c.resp)}`);
  if (h) {
    log(`      HTTP churn ${h.churn.ok.toLocaleString('en-US')} ok, ${h.churn.bad} bad replies, ${h.churn.errors} errors, ${h.churn.skipped} slots skipped${h.churn.firstError ? ` (${h.churn.firstError})` : ''}`);
    const lt = (x) => `lifetime p50 ${(x.p50 / 1000).toFixed(1)} s, min ${(x.min / 1000).toFixed(1)} s, max ${(x.max / 1000).toFixed(1)} s`;
    log(`hostile: slowloris ${h.slowloris.shed.toLocaleString('en-US')} shed by the server (${lt(h.slowloris.lifetimeMs)}), ${h.slowloris.replies} replies, ${h.slowloris.connectErrors} connect errors`);
    log(`         idle ${h.idle.closedByServer.toLocaleString('en-US')} closed by the server and reopened (${lt(h.idle.lifetimeMs)}), ${h.idle.connectErrors} connect errors`);
  }
  log(`verdicts (${soak.rule}):`);
  for (const v of soak.verdicts) {
    log(
      `  ${v.server.padEnd(5)} ${TOLERANCE[v.metric].what.padEnd(17)} ${v.verdict.padEnd(8)} start ${fmt(v.metric, v.start)}, ` +
        `middle third ${fmt(v.metric, v.middleMedian)}, last third ${fmt(v.metric, v.lastMedian)}, end ${fmt(v.metric, v.end)}, peak ${fmt(v.metric, v.peak)}`,
    );
  }
  for (const s of servers) if (soak.servers[s.id].exitedDuringRun) log(`soak: ${s.id} EXITED during the run: ${JSON.stringify(soak.servers[s.id].exitedDuringRun)}`);
  return soak.verdicts.some((v) => v.verdict !== 'flat') ? 1 : 0;
}

runScript('soak', parseArgs, main);
