#!/usr/bin/env node
// N-API calls a connection's life costs, by export: the server runs with a
// preload that wraps every function of the native addon in each of its
// threads and counts the calls, then N connections each make one request and
// close (the client closes after the reply, as `Connection: close` does, or
// with --server-close the module closes after its reply and lingers). The
// counts are per connection, the warm-up connections subtracted. A count, not
// a time: exact on a busy machine.
//
//   node bench/napi-calls.mjs [http|https] [--root DIR] [--connections N] [--server-close]
//
// --root DIR runs another built checkout (e.g. a `git worktree add` of main).
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { freePort, installCleanup, sleep, startServer } from './lib/proc.mjs';
import { makeCertificate } from './lib/workloads/https.mjs';

const root0 = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const WARMUP = 50;

function parse(argv) {
  const o = { tls: true, root: root0, connections: 300, serverClose: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === 'http' || a === 'https') o.tls = a === 'https';
    else if (a === '--root') o.root = resolve(argv[++i]);
    else if (a === '--connections') o.connections = Number(argv[++i]);
    else if (a === '--server-close') o.serverClose = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isInteger(o.connections) || o.connections < 1) throw new Error('--connections must be a positive integer');
  return o;
}

// Each thread (the main one and every worker) wraps its own copy of the addon
// before host/sys.ts loads it (the same module cache entry), and rewrites its
// counts file after every counted call (a worker blocked in epollWait runs no
// timers). Workers do not run --import preloads: the main thread's Worker is
// wrapped so that a worker's script imports this preload first.
const PRELOAD = `
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { writeFileSync } from 'node:fs';
import wt from 'node:worker_threads';
import { fileURLToPath, pathToFileURL } from 'node:url';
const require = createRequire(import.meta.url);
const addon = require(process.env.NAPI_COUNT_ADDON);
const counts = {};
const file = process.env.NAPI_COUNT_DIR + '/' + process.pid + '-' + wt.threadId + '.json';
for (const [name, fn] of Object.entries(addon)) {
  if (typeof fn !== 'function') continue;
  addon[name] = function (...args) {
    counts[name] = (counts[name] ?? 0) + 1;
    const r = fn.apply(this, args);
    if (name !== 'epollWait' || r !== 0) writeFileSync(file, JSON.stringify(counts));
    return r;
  };
}
if (wt.isMainThread) {
  const Original = wt.Worker;
  let n = 0;
  wt.Worker = class extends Original {
    constructor(script, options) {
      const url = script instanceof URL ? script.href : pathToFileURL(String(script)).href;
      const wrap = process.env.NAPI_COUNT_DIR + '/wrap-' + (n++) + '.mjs';
      writeFileSync(wrap, ['import ' + JSON.stringify(import.meta.url) + ';', 'import ' + JSON.stringify(url) + ';'].join(String.fromCharCode(10)));
      super(wrap, options);
    }
  };
  syncBuiltinESMExports();
}
`;

function total(dir) {
  const sum = {};
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.json')) continue; // not the worker wrappers
    for (const [k, v] of Object.entries(JSON.parse(readFileSync(join(dir, f), 'utf8')))) sum[k] = (sum[k] ?? 0) + v;
  }
  return sum;
}

/** One connection: connect (and handshake), one request, read the reply to its end, close; waits for the server's close too. */
async function once(port, o) {
  const s = o.tls ? tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }) : net.connect({ host: '127.0.0.1', port });
  await new Promise((res, rej) => {
    s.once(o.tls ? 'secureConnect' : 'connect', res);
    s.once('error', rej);
  });
  const closed = new Promise((res) => s.once('close', res));
  let got = '';
  await new Promise((res) => {
    s.on('data', (d) => {
      got += d.toString('latin1');
      if (got.endsWith('Hello, World!')) res();
    });
    s.write(`GET / HTTP/1.1\r\nHost: x\r\n${o.serverClose ? 'Connection: close\r\n' : ''}\r\n`);
  });
  if (!o.serverClose) s.end();
  await closed;
}

async function main() {
  const o = parse(process.argv.slice(2));
  installCleanup();
  const dir = mkdtempSync(join(os.tmpdir(), 'tcpmod-napi-calls-'));
  const counts = join(dir, 'counts');
  try {
    readdirSync(dir);
    writeFileSync(join(dir, 'preload.mjs'), PRELOAD);
    rmSync(counts, { recursive: true, force: true });
    (await import('node:fs')).mkdirSync(counts);
    const cert = o.tls ? makeCertificate(dir) : null;
    const port = await freePort();
    const args = ['--import', pathToFileURL(join(dir, 'preload.mjs')).href, join(o.root, 'bin/tcpmod.js'), 'serve', join(o.root, 'build/http.wasm'),
      '--host', '127.0.0.1', '--port', String(port), '--threads', '1', '--log-level', 'warn',
      ...(cert ? ['--tls-cert', cert.cert, '--tls-key', cert.key] : [])];
    const env = { ...process.env, NAPI_COUNT_ADDON: join(o.root, 'host/native/build/Release/tcpmod_native.node'), NAPI_COUNT_DIR: counts };
    const server = await startServer({ name: 'tcpmod', cmd: process.execPath, args, cwd: o.root, port, env, readyLine: /listening on \S+:\d+/, readyTimeoutMs: 120_000 });
    for (let i = 0; i < WARMUP; i++) await once(port, o);
    await sleep(300);
    const before = total(counts);
    for (let i = 0; i < o.connections; i++) await once(port, o);
    await sleep(300);
    const after = total(counts);
    server.kill?.('SIGTERM');
    const per = {};
    let all = 0;
    for (const [k, v] of Object.entries(after)) {
      const d = (v - (before[k] ?? 0)) / o.connections;
      if (d > 0) per[k] = +d.toFixed(3);
      all += d;
    }
    console.log(JSON.stringify({ root: o.root, tls: o.tls, serverClose: o.serverClose, connections: o.connections, perConnection: +all.toFixed(3), byExport: per }, null, 1));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
