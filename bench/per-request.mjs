#!/usr/bin/env node
// Cost per request of one tcpmod build on a fixed number of requests, for
// before/after comparisons on a busy machine where wall time says little:
// syscalls (strace -c -f) or instructions (valgrind --tool=callgrind, counted
// only while the load runs: callgrind_control zeroes the counters before it and
// dumps after). Sequential requests (each connection waits for its answer), so
// every request is one event: the figure is per request, not per batch.
//
//   node bench/per-request.mjs echo|http|https|resp [--root DIR] [--requests N]
//        [--connections C] [--threads T] [--tool strace|callgrind] [--args "..."] [--keep DIR]
//        [--rate R]
//
// --rate R paces the counted requests at R per second in all (each connection
// sends its next request at its own fixed interval, or at once when the answer
// came later than that): the cost per request at a low, fixed rate, where what
// happens per unit of time (timer wake-ups) shows, unlike at full speed.
// --keep DIR keeps callgrind's output there (for callgrind_annotate --inclusive=yes).
// --root DIR runs another built checkout (e.g. a `git worktree add` of main):
// its bin/tcpmod.js and build/*.wasm. The client (this process) is not counted.
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { freePort, installCleanup, killAll, sleep, startServer } from './lib/proc.mjs';
import { parseCounts } from './lib/strace.mjs';
import { makeCertificate } from './lib/workloads/https.mjs';

/** Requests per connection before counting starts. */
const WARMUP = 300;
const root0 = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const WORKLOADS = {
  echo: { module: 'build/echo.wasm', request: Buffer.alloc(16, 'e'), done: (got) => got.length >= 16 },
  http: { module: 'build/http.wasm', request: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), done: (got) => got.toString('latin1').endsWith('Hello, World!') },
  https: { module: 'build/http.wasm', tls: true, request: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), done: (got) => got.toString('latin1').endsWith('Hello, World!') },
  resp: { module: 'build/resp.wasm', request: Buffer.from('*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n'), done: (got) => got.toString('latin1').endsWith('+OK\r\n') },
};

function parse(argv) {
  const o = { workload: argv[0], root: root0, requests: 20000, connections: 10, threads: 1, tool: 'strace', args: [], keep: null, rate: 0 };
  if (!WORKLOADS[o.workload]) throw new Error(`the first argument is one of ${Object.keys(WORKLOADS).join(', ')}`);
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (argv[i + 1] === undefined) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--root') o.root = resolve(next());
    else if (a === '--requests') o.requests = Number(next());
    else if (a === '--connections') o.connections = Number(next());
    else if (a === '--threads') o.threads = Number(next());
    else if (a === '--tool') o.tool = next();
    else if (a === '--args') o.args = next().split(/\s+/).filter(Boolean);
    else if (a === '--keep') o.keep = resolve(next());
    else if (a === '--rate') o.rate = Number(next());
    else throw new Error(`unknown argument ${a}`);
  }
  if (!['strace', 'callgrind'].includes(o.tool)) throw new Error('--tool is strace or callgrind');
  if (!(o.rate >= 0)) throw new Error('--rate must be a number of requests per second (0: as fast as answered)');
  for (const k of ['requests', 'connections', 'threads']) if (!Number.isInteger(o[k]) || o[k] < 1) throw new Error(`--${k} must be a positive integer`);
  return o;
}

/** A connection (connected, handshake done) and a function that makes `count` requests on it, one at a time. */
async function connection(port, w) {
  const s = w.tls
    ? tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false })
    : net.connect({ host: '127.0.0.1', port, noDelay: true });
  await new Promise((res, rej) => {
    s.once(w.tls ? 'secureConnect' : 'connect', res);
    s.once('error', rej);
  });
  s.setNoDelay?.(true);
  let got = Buffer.alloc(0);
  let wake = null;
  s.on('data', (d) => {
    got = Buffer.concat([got, d]);
    if (w.done(got)) wake?.();
  });
  /** `count` requests, the i-th sent no earlier than `intervalMs` × i after the first (0: each when the last is answered). */
  const requests = async (count, intervalMs = 0) => {
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      const wait = t0 + i * intervalMs - performance.now();
      if (wait > 0) await sleep(wait);
      got = Buffer.alloc(0);
      const answered = new Promise((res) => (wake = res));
      s.write(w.request);
      await answered;
    }
  };
  return { requests, close: () => s.destroy() };
}

/**
 * The connections open and warm (handshakes done, the JIT's tiers reached) before
 * counting starts, and stay open: the count is of requests alone, no accept or handshake.
 */
async function load(port, w, o, before) {
  const per = Math.ceil(o.requests / o.connections);
  const conns = await Promise.all(Array.from({ length: o.connections }, () => connection(port, w)));
  await Promise.all(conns.map((c) => c.requests(WARMUP)));
  await before();
  const t0 = performance.now();
  const interval = o.rate > 0 ? (1000 * o.connections) / o.rate : 0;
  // Paced connections start spread over one interval, so the requests come evenly, not in bursts.
  await Promise.all(conns.map(async (c, k) => {
    if (interval) await sleep((interval * k) / o.connections);
    await c.requests(per, interval);
  }));
  const ms = performance.now() - t0;
  for (const c of conns) c.close();
  return { requests: per * o.connections, ms, rate: o.rate || undefined };
}

async function main() {
  const o = parse(process.argv.slice(2));
  installCleanup();
  const w = WORKLOADS[o.workload];
  const dir = mkdtempSync(join(os.tmpdir(), 'tcpmod-per-request-'));
  if (o.keep) mkdirSync(o.keep, { recursive: true });
  try {
    const cert = w.tls ? makeCertificate(dir) : null;
    const port = await freePort();
    const serve = [join(o.root, 'bin/tcpmod.js'), 'serve', join(o.root, w.module), '--host', '127.0.0.1', '--port', String(port),
      '--threads', String(o.threads), '--log-level', 'warn', ...(cert ? ['--tls-cert', cert.cert, '--tls-key', cert.key] : []), ...o.args];
    const out = join(dir, 'callgrind.out');
    const cmd = o.tool === 'callgrind' ? 'valgrind' : process.execPath;
    const args = o.tool === 'callgrind'
      ? ['--tool=callgrind', `--callgrind-out-file=${out}.%p`, process.execPath, ...serve]
      : serve;
    const server = await startServer({ name: 'tcpmod', cmd, args, cwd: o.root, port, readyLine: /listening on \S+:\d+/, readyTimeoutMs: 300_000 });
    let result;
    if (o.tool === 'strace') {
      const counts = join(dir, 'strace.txt');
      let tracer = null;
      let exited = null;
      const r = await load(port, w, o, async () => {
        tracer = spawn('strace', ['-c', '-f', '-q', '-o', counts, '-p', String(server.pid)], { stdio: 'ignore' });
        exited = new Promise((res) => tracer.once('exit', res));
        await sleep(500); // attaching to every thread takes a moment; the idle server makes few calls meanwhile
      });
      tracer.kill('SIGINT');
      await exited;
      const { total, by } = parseCounts(readFileSync(counts, 'utf8'));
      result = { ...r, perRequest: total / r.requests, bySyscall: Object.fromEntries(Object.entries(by).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, +(v / r.requests).toFixed(3)])) };
      // The warm-up is not in the count: strace attaches after it.
    } else {
      const ctl = (flag) => execFileSync('callgrind_control', [flag, String(server.pid)], { stdio: 'ignore' });
      // Zeroed after the warm-up, dumped after the load: only the counted requests' instructions.
      const r = await load(port, w, o, async () => ctl('--zero'));
      ctl('--dump');
      await sleep(500);
      let ir = 0;
      for (const f of readdirSync(dir).filter((n) => n.startsWith('callgrind.out'))) {
        const m = /^summary: (\d+)/m.exec(readFileSync(join(dir, f), 'utf8')) ?? /^totals: (\d+)/m.exec(readFileSync(join(dir, f), 'utf8'));
        if (m) ir += Number(m[1]);
        if (o.keep) copyFileSync(join(dir, f), join(o.keep, f));
      }
      result = { ...r, instructions: ir, perRequest: Math.round(ir / r.requests) };
    }
    await server.stop();
    process.stdout.write(`${JSON.stringify({ workload: o.workload, root: o.root, tool: o.tool, threads: o.threads, connections: o.connections, ...result })}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    killAll();
  }
}

main().catch((e) => {
  process.stderr.write(`per-request: ${e.stack ?? e}\n`);
  killAll();
  process.exit(1);
});
