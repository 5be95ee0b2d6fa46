#!/usr/bin/env node
// `npm run bench`: tcpmod side by side with the servers users would pick
// instead, on loopback, interleaved in one run. Writes bench/results/latest.*
// (.json raw figures, .md tables, .svg chart); with --quick, quick.* instead.
//
//   npm run bench -- [--only echo,http,https,resp,hostile,scale,startup,workers,mqtt,fanout,pubsub,percore,redis-proxy,memcache,tcp-forward] [--rounds N]
//                    [--duration 3s] [--threads N] [--quick]
//
// Progress goes to stderr. Every server and client it starts runs in a process
// group of its own and is killed on every way out (see lib/proc.mjs).
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderChart } from './lib/chart.mjs';
import { log, parseDuration, parseFlags, positiveInteger, runScript } from './lib/cli.mjs';
import { evaluateGoals } from './lib/goals.mjs';
import { renderMarkdown, renderReadmeSection } from './lib/report.mjs';
import { serverDefs } from './lib/servers.mjs';
import { buildC, ensureCommand, hasCommand, machineInfo } from './lib/tools.mjs';
import * as echo from './lib/workloads/echo.mjs';
import * as fanout from './lib/workloads/fanout.mjs';
import * as hostile from './lib/workloads/hostile.mjs';
import * as memcache from './lib/workloads/memcache.mjs';
import * as http from './lib/workloads/http.mjs';
import * as mqtt from './lib/workloads/mqtt.mjs';
import * as https from './lib/workloads/https.mjs';
import * as percore from './lib/workloads/percore.mjs';
import * as pubsub from './lib/workloads/pubsub.mjs';
import * as resp from './lib/workloads/resp.mjs';
import * as redisProxy from './lib/workloads/redis-proxy.mjs';
import * as tcpForward from './lib/workloads/tcp-forward.mjs';
import * as scale from './lib/workloads/scale.mjs';
import * as startup from './lib/workloads/startup.mjs';
import * as workers from './lib/workloads/workers.mjs';

const benchDir = dirname(fileURLToPath(import.meta.url));
const root = resolve(benchDir, '..');
const WORKLOADS = { echo, http, https, resp, hostile, scale, startup, workers, mqtt, fanout, pubsub, percore, 'redis-proxy': redisProxy, memcache, 'tcp-forward': tcpForward };

const USAGE = `usage: npm run bench -- [options]
  --only LIST       workloads to run, comma-separated: ${Object.keys(WORKLOADS).join(',')} (default: all)
  --rounds N        interleaved rounds per case (default 3; --quick: 1)
  --duration D      seconds per run: 3, 3s, 1500ms (default 3s; --quick: 1s)
  --warmup D        warm-up per case and server before the rounds (default 1s; --quick: 0)
  --threads N       tcpmod workers, and the peers' worker processes (default: CPUs = ${os.cpus().length})
  --quick           smoke check in under a minute; writes bench/results/quick.* (never latest.*)
  --help`;

function parseArgs(argv) {
  const o = { only: null, rounds: null, seconds: null, warmupSeconds: null, threads: os.cpus().length, quick: false };
  parseFlags(argv, USAGE, {
    '--only': (value) => {
      o.only = value().split(',').map((s) => s.trim()).filter(Boolean);
      const bad = o.only.filter((n) => !WORKLOADS[n]);
      if (bad.length) throw new Error(`--only: unknown workload(s) ${bad.join(', ')} (have: ${Object.keys(WORKLOADS).join(', ')})`);
    },
    '--rounds': (value) => (o.rounds = positiveInteger(value(), '--rounds')),
    '--duration': (value) => {
      o.seconds = parseDuration(value(), '--duration');
      if (!(o.seconds > 0)) throw new Error('--duration must be > 0');
    },
    '--warmup': (value) => (o.warmupSeconds = parseDuration(value(), '--warmup')),
    '--threads': (value) => (o.threads = positiveInteger(value(), '--threads')),
    '--quick': () => (o.quick = true),
  });
  o.rounds ??= o.quick ? 1 : 3;
  o.seconds ??= o.quick ? 1 : 3;
  o.warmupSeconds ??= o.quick ? 0 : 1;
  o.only ??= Object.keys(WORKLOADS);
  return o;
}

/** Tools the selected workloads need; apt-installs what is missing. */
function prepareTools(only) {
  ensureCommand('gcc', 'gcc', log);
  if (only.includes('http') || only.includes('https') || only.includes('hostile') || only.includes('percore') || only.includes('tcp-forward')) {
    ensureCommand('wrk', 'wrk', log);
    if (!hasCommand('nginx') && !hasCommand('/usr/sbin/nginx')) ensureCommand('/usr/sbin/nginx', 'nginx', log);
  }
  if (only.includes('https')) ensureCommand('openssl', 'openssl', log);
  if (only.includes('tcp-forward')) ensureCommand('haproxy', 'haproxy', log);
  if (only.includes('mqtt')) ensureCommand('mosquitto', 'mosquitto', log);
  if (only.includes('memcache')) {
    ensureCommand('memcached', 'memcached', log);
    ensureCommand('memcslap', 'libmemcached-tools', log);
  }
  if (only.includes('resp') || only.includes('hostile') || only.includes('fanout') || only.includes('pubsub') || only.includes('percore') || only.includes('memcache')) {
    ensureCommand('redis-benchmark', 'redis-tools', log);
    ensureCommand('redis-server', 'redis-server', log);
  }
  return Object.fromEntries(['echo-load', 'c-echo-server', 'idle-conns', 'fanout-load', 'mqtt-load'].map((n) => [n, buildC(benchDir, n, log)]));
}

/** The run; resolves the exit status: 1 when a workload failed. */
async function main(opts, command) {
  const outBase = join(benchDir, 'results', opts.quick ? 'quick' : 'latest');
  mkdirSync(dirname(outBase), { recursive: true });
  const bins = prepareTools(opts.only);
  const results = {
    schema: 'tcpmod-bench/1',
    command,
    startedAt: new Date().toISOString(),
    finishedAt: null,
    options: opts,
    machine: machineInfo(),
    commands: {},
    workloads: {},
    goals: [],
  };
  const ctx = {
    root,
    benchDir,
    bins,
    quick: opts.quick,
    rounds: opts.rounds,
    seconds: opts.seconds,
    warmupSeconds: opts.warmupSeconds,
    threads: opts.threads,
    defs: serverDefs({ root, bins, threads: opts.threads }),
    log,
  };
  log(`bench: ${opts.only.join(', ')}; ${opts.rounds} round(s) × ${opts.seconds} s; ${opts.threads} workers; writing ${outBase}.{json,md,svg}`);
  let failed = 0;
  for (const name of Object.keys(WORKLOADS)) {
    if (!opts.only.includes(name)) continue;
    const t0 = performance.now();
    log(`\n== ${name} ==`);
    let w;
    try {
      w = await WORKLOADS[name].run(ctx);
    } catch (e) {
      failed++;
      log(`[${name}] failed: ${e.stack ?? e}`);
      w = { status: 'error', error: String(e.message ?? e) };
    }
    w.elapsedSeconds = Math.round((performance.now() - t0) / 100) / 10;
    if (w.status === 'skipped') log(`[${name}] skipped: ${w.reason}`);
    results.workloads[name] = w;
    // Partial results survive an interrupted run (git-ignored .tmp).
    writeFileSync(`${outBase}.json.tmp`, JSON.stringify(results, null, 2));
  }
  results.commands = collectCommands(results.workloads);
  results.goals = evaluateGoals(results.workloads);
  results.finishedAt = new Date().toISOString();
  writeFileSync(`${outBase}.json.tmp`, `${JSON.stringify(results, null, 2)}\n`);
  renameSync(`${outBase}.json.tmp`, `${outBase}.json`);
  writeFileSync(`${outBase}.md`, renderMarkdown(results));
  writeFileSync(`${outBase}.svg`, await renderChart(results));
  const written = [`${outBase}.json`, `${outBase}.md`, `${outBase}.svg`];
  // Only a complete full run speaks for the README.
  if (!opts.quick && Object.keys(WORKLOADS).every((n) => opts.only.includes(n))) {
    const section = join(benchDir, 'results', 'README-section.md');
    writeFileSync(section, renderReadmeSection(results));
    written.push(section);
  }
  log(`\nbench: wrote ${written.join(', ')}`);
  for (const g of results.goals) log(`  ${g.met === true ? 'met    ' : g.met === false ? 'NOT met' : 'n/a    '}  ${g.goal}: ${g.seen}`);
  return failed ? 1 : 0;
}

/** Every server and client command line of the run, by workload. */
function collectCommands(workloads) {
  const out = {};
  for (const [name, w] of Object.entries(workloads)) {
    if (w.status !== 'ok') continue;
    const servers = {};
    const clients = new Set();
    if (w.servers) for (const [id, s] of Object.entries(w.servers)) servers[id] = s.command ?? null;
    for (const c of w.cases ?? []) for (const r of Object.values(c.results)) for (const run of r.runs) if (run.command) clients.add(run.command);
    for (const r of Object.values(w.results ?? {})) {
      for (const run of r.runs) {
        if (run.serverCommand) servers[r.label] = run.serverCommand;
        if (run.command) servers[r.label] = run.command;
        if (run.clientCommand) clients.add(run.clientCommand);
      }
    }
    out[name] = { servers, clients: [...clients] };
  }
  return out;
}

runScript('bench', parseArgs, main);
