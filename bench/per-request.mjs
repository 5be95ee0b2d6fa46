#!/usr/bin/env node
// Cost per request of one tcpmod build on a fixed number of requests, for
// before/after comparisons on a busy machine where wall time says little:
// syscalls (strace -c -f) or instructions (valgrind --tool=callgrind, counted
// only while the load runs: callgrind_control zeroes the counters before it and
// dumps after). Sequential requests (each connection waits for its answer), so
// every request is one event: the figure is per request, not per batch.
//
//   node bench/per-request.mjs echo|http|https|resp|resp-get|memcache-set|memcache-get [--peer] [--root DIR] [--requests N]
//        [--connections C] [--threads T] [--tool strace|callgrind] [--args "..."] [--keep DIR]
//        [--rate R] [--warmup N]
//
// --warmup N: requests per connection before counting starts (default 300);
// under callgrind V8 compiles slowly in the background, so give it thousands.
//
// --rate R paces the counted requests at R per second in all (each connection
// sends its next request at its own fixed interval, or at once when the answer
// came later than that): the cost per request at a low, fixed rate, where what
// happens per unit of time (timer wake-ups) shows, unlike at full speed.
// --peer counts the workload's strongest peer instead of tcpmod, the same way:
// echo the bench's C epoll server (bench/c-echo-server.c, one thread), http and
// https nginx (--threads workers, keep-alive, the bench's configuration),
// resp and resp-get redis-server. Every process of its group is counted
// (nginx's master and workers).
// --keep DIR keeps callgrind's output there (for callgrind_annotate --inclusive=yes).
// With callgrind the result also has `groups` (self instructions per request by
// what runs them: syscall wrappers, locks, malloc, the native shim, N-API, V8's
// GC, compiler and runtime, JIT code, OpenSSL) and `top` (the top functions).
// --root DIR runs another built checkout (e.g. a `git worktree add` of main):
// its bin/tcpmod.js and build/*.wasm. The client (this process) is not counted.
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { freePort, installCleanup, killAll, sleep, startServer } from './lib/proc.mjs';
import { groupPids } from './lib/procfs.mjs';
import { nginxBin, nginxConfig } from './lib/servers.mjs';
import { buildC } from './lib/tools.mjs';
import { parseCounts } from './lib/strace.mjs';
import { makeCertificate } from './lib/workloads/https.mjs';

/** Requests per connection before counting starts (--warmup). */
const WARMUP = 300;
const root0 = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const WORKLOADS = {
  echo: { module: 'build/echo.wasm', request: Buffer.alloc(16, 'e'), done: (got) => got.length >= 16 },
  http: { module: 'build/http.wasm', request: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), done: (got) => got.toString('latin1').endsWith('Hello, World!') },
  https: { module: 'build/http.wasm', tls: true, request: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), done: (got) => got.toString('latin1').endsWith('Hello, World!') },
  resp: { module: 'build/resp.wasm', request: Buffer.from('*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n'), done: (got) => got.toString('latin1').endsWith('+OK\r\n') },
  // GET of the key each connection SETs first (in its warm-up).
  'resp-get': { module: 'build/resp.wasm', setup: 'resp', request: Buffer.from('*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n'), done: (got) => got.toString('latin1').endsWith('$5\r\nvalue\r\n') },
  // memcache.wasm (issue 21): a set of a 100 B value, and a get of the key each connection sets first.
  'memcache-set': { module: 'build/memcache.wasm', request: Buffer.from(`set key 0 0 100\r\n${'v'.repeat(100)}\r\n`), done: (got) => got.toString('latin1').endsWith('STORED\r\n') },
  'memcache-get': { module: 'build/memcache.wasm', setup: 'memcache-set', request: Buffer.from('get key\r\n'), done: (got) => got.toString('latin1').endsWith('END\r\n') },
};

function parse(argv) {
  const o = { workload: argv[0], root: root0, requests: 20000, connections: 10, threads: 1, tool: 'strace', args: [], keep: null, rate: 0, peer: false, warmup: WARMUP };
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
    else if (a === '--peer') o.peer = true;
    else if (a === '--warmup') o.warmup = Number(next());
    else throw new Error(`unknown argument ${a}`);
  }
  if (!['strace', 'callgrind'].includes(o.tool)) throw new Error('--tool is strace or callgrind');
  if (!(o.rate >= 0)) throw new Error('--rate must be a number of requests per second (0: as fast as answered)');
  for (const k of ['requests', 'connections', 'threads', 'warmup']) if (!Number.isInteger(o[k]) || o[k] < 1) throw new Error(`--${k} must be a positive integer`);
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
  if (w.setup) {
    const set = await Promise.all(Array.from({ length: o.connections }, () => connection(port, WORKLOADS[w.setup])));
    await Promise.all(set.map((c) => c.requests(1)));
    for (const c of set) c.close();
  }
  await Promise.all(conns.map((c) => c.requests(o.warmup)));
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

/**
 * Self instructions by function from a callgrind output file's text: Map of "object\tfunction" → Ir
 * (a call's line, which holds the callee's inclusive cost, is not the caller's own).
 */
function selfCosts(text, into = new Map()) {
  const names = { ob: new Map(), fn: new Map() };
  const named = (kind, v) => {
    const m = /^\((\d+)\)(?: (.*))?$/.exec(v);
    if (!m) return v;
    if (m[2] !== undefined) names[kind].set(m[1], m[2]);
    return names[kind].get(m[1]) ?? v;
  };
  let ob = '?';
  let fn = '?';
  let skip = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('ob=')) ob = named('ob', line.slice(3));
    else if (line.startsWith('fn=')) fn = named('fn', line.slice(3));
    else if (line.startsWith('cob=')) named('ob', line.slice(4));
    else if (line.startsWith('cfn=')) named('fn', line.slice(4));
    else if (line.startsWith('calls=')) skip = true;
    else if (/^[+\-*\d]/.test(line)) {
      if (skip) skip = false;
      else {
        const ir = Number(line.split(' ')[1] ?? 0);
        if (ir) into.set(`${ob}\t${fn}`, (into.get(`${ob}\t${fn}`) ?? 0) + ir);
      }
    }
  }
  return into;
}

/** The groups the profile documents name, by object and function (first match wins). */
const GROUPS = [
  ['JIT code: the module\'s wasm (and its JS↔wasm stubs)', (ob) => ob === 'wasm'],
  ['JIT code: JavaScript (the loop, the ABI driver, the module\'s imports)', (ob) => ob === 'js'],
  // Node links OpenSSL into its own binary.
  ['OpenSSL', (ob, fn) => /libssl|libcrypto/.test(ob) ||
    (/\/node$/.test(ob) && /^(SSL_|ssl3?_|tls1?3?_|dtls|EVP_|evp_|OSSL_|ossl_|BIO_|bio_|ERR_|err_|CRYPTO_|OPENSSL_|aesni_|aes_|gcm_|ghash|sha\d|SHA\d|RAND_|rand_|WPACKET|PACKET_|BN_|bn_|EC_|ec_|X509|x509|ASN1|asn1|do_ssl3|ssl_|CRYPTO|OBJ_|HMAC|hmac|ChaCha|Poly1305|KDF|kdf_|md_|cipher_|provider|ossl|lh_|OPENSSL)/.test(fn))],
  ['kernel entry (syscall wrappers)', (ob, fn) => /libc\.so/.test(ob) && /^(epoll_|__?recv|__?send|recvfrom|sendto|read|write|__libc_(read|write|recv|send)|writev|readv|__GI___(recv|send|read|write|epoll)|timerfd|eventfd|syscall|__internal_syscall|accept)/.test(fn)],
  ['locks (pthread mutex, futex)', (ob, fn) => /libc\.so|libpthread/.test(ob) && /mutex|futex|lll_|pthread_cond|pthread_rwlock/.test(fn)],
  ['malloc/free, memcpy (libc)', (ob, fn) => /libc\.so|libstdc\+\+/.test(ob) && /malloc|free|realloc|calloc|memcpy|memmove|memset|memcmp|operator new|operator delete|_int_|tcache/.test(fn)],
  ['the native shim (tcpmod_native.node)', (ob) => /tcpmod_native\.node/.test(ob)],
  ['N-API and node (napi_*, node::)', (ob, fn) => /\/node$/.test(ob) && /^(napi_|node::|v8impl|Napi::)/.test(fn)],
  ['V8 GC', (ob, fn) => /\/node$/.test(ob) && /Heap|Scaveng|Mark|Sweep|Evacuat|Concurrent|Marking|GC|Compactor|Remembered|Slot/.test(fn)],
  ['V8 compiler (JIT, background)', (ob, fn) => /\/node$/.test(ob) && /compiler::|Compil|Turbo|Maglev|wasm::|Liftoff|Assembler|Pipeline/.test(fn)],
  ['V8 builtins (call sequences, inline caches, the interpreter, JS↔C++ and JS↔wasm entry)', (ob, fn) => /\/node$/.test(ob) && /^Builtins_/.test(fn)],
  ['V8 runtime and API (C++: Function::Call, handles, typed arrays)', (ob) => /\/node$/.test(ob)],
  ['JIT code not named (no perf map entry)', (ob) => ob === '???' || ob === '?' || ob.startsWith('0x')],
  ['libuv/libc other', (ob) => /libc\.so|libuv|libstdc|libgcc|libm\.so|ld-linux/.test(ob)],
];

/** V8's perf map text ("start size name" in hex) as a lookup: address → the JIT code's name, or null. */
function jitNames(text) {
  const rows = text.split('\n').filter(Boolean).map((l) => {
    const [a, n, ...name] = l.split(' ');
    return [parseInt(a, 16), parseInt(n, 16), name.join(' ')];
  }).sort((x, y) => x[0] - y[0]);
  // V8 logs a wasm function's first (Liftoff) code, not what it tiers up to, which it writes in the same
  // code space: unnamed code within a MB of a logged wasm function is taken to be the module's.
  const wasm = rows.filter((r) => /wasm-function/.test(r[2])).map((r) => r[0]);
  return (addr) => {
    let lo = 0;
    let hi = rows.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (rows[mid][0] > addr) hi = mid - 1;
      else if (addr >= rows[mid][0] + rows[mid][1]) lo = mid + 1;
      else return rows[mid][2];
    }
    return wasm.some((w) => Math.abs(w - addr) < 0x100000) ? 'wasm code, unnamed (tiered up)' : null;
  };
}

/**
 * Per-request instructions of each group, and the top functions, from the kept callgrind files' texts;
 * `jit`, V8's perf map, names JIT code (callgrind sees addresses): wasm functions apart from JS.
 */
function groupCosts(texts, requests, jit = '') {
  const raw = new Map();
  for (const t of texts) selfCosts(t, raw);
  const name = jitNames(jit);
  const by = new Map();
  for (const [k, ir] of raw) {
    const [ob, fn] = k.split('\t');
    const n = /^0x[0-9a-f]+$/i.test(fn) ? name(parseInt(fn, 16)) : null;
    const key = n ? `${/wasm|Wasm/.test(n) ? 'wasm' : 'js'}\t${n}` : k;
    by.set(key, (by.get(key) ?? 0) + ir);
  }
  const groups = new Map(GROUPS.map(([g]) => [g, 0]));
  groups.set('other (a peer: its own code)', 0);
  for (const [k, ir] of by) {
    const [ob, fn] = k.split('\t');
    const g = GROUPS.find(([, test]) => test(ob, fn))?.[0] ?? 'other (a peer: its own code)';
    groups.set(g, groups.get(g) + ir);
  }
  const per = (ir) => Math.round(ir / requests);
  const top = [...by].sort((a, b) => b[1] - a[1]).slice(0, 25).map(([k, ir]) => `${per(ir)}\t${k.split('\t')[1]}\t${k.split('\t')[0].split('/').pop()}`);
  return { groups: Object.fromEntries([...groups].filter(([, ir]) => ir > 0).map(([g, ir]) => [g, per(ir)])), top };
}

/** How to start the workload's peer on `port` (see --peer). */
function peerCommand(o, w, port, dir, cert) {
  if (o.workload === 'echo') {
    const bin = buildC(join(root0, 'bench'), 'c-echo-server', (m) => process.stderr.write(`${m}\n`));
    return { name: 'c-epoll', cmd: bin, args: [String(port)], readyLine: /listening on \S+:\d+/ };
  }
  if (o.workload === 'http' || o.workload === 'https') {
    const conf = join(dir, 'nginx.conf');
    let text = nginxConfig(dir, port, o.threads, { tls: cert, keepaliveRequests: 1_000_000 });
    // Under callgrind one process, the master itself (as root: a worker switched to nobody could not write
    // callgrind's output), which serves as one worker does.
    if (o.tool === 'callgrind') text = text.replace('master_process on;', 'master_process off;');
    writeFileSync(conf, text);
    return { name: 'nginx', cmd: nginxBin(), args: ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')] };
  }
  return {
    name: 'redis-server',
    cmd: 'redis-server',
    args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--logfile', ''],
  };
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
    const run = o.peer ? peerCommand(o, w, port, dir, cert) : {
      name: 'tcpmod',
      cmd: process.execPath,
      // Under callgrind, V8 names its JIT code in /tmp/perf-PID.map, for the grouping (JS or wasm).
      // Its builtins run from node's own text, where they have names, not from a copy in the code range.
      args: [...(o.tool === 'callgrind' ? ['--perf-basic-prof', '--no-short-builtin-calls'] : []), join(o.root, 'bin/tcpmod.js'), 'serve', join(o.root, w.module), '--host', '127.0.0.1', '--port', String(port),
        '--threads', String(o.threads), '--log-level', 'warn', ...(cert ? ['--tls-cert', cert.cert, '--tls-key', cert.key] : []), ...o.args],
      readyLine: /listening on \S+:\d+/,
    };
    const out = join(dir, 'callgrind.out');
    const cmd = o.tool === 'callgrind' ? 'valgrind' : run.cmd;
    const args = o.tool === 'callgrind'
      ? ['--tool=callgrind', '--trace-children=yes', `--callgrind-out-file=${out}.%p`, run.cmd, ...run.args]
      : run.args;
    const server = await startServer({ name: run.name, cmd, args, cwd: o.root, port, readyLine: run.readyLine, readyTimeoutMs: 300_000 });
    // Every process of the server's group: nginx's workers are its master's children.
    const pids = () => groupPids(server.pgid).map(String);
    let result;
    if (o.tool === 'strace') {
      const counts = join(dir, 'strace.txt');
      let tracer = null;
      let exited = null;
      const r = await load(port, w, o, async () => {
        tracer = spawn('strace', ['-c', '-f', '-q', '-o', counts, ...pids().flatMap((p) => ['-p', p])], { stdio: 'ignore' });
        exited = new Promise((res) => tracer.once('exit', res));
        await sleep(500); // attaching to every thread takes a moment; the idle server makes few calls meanwhile
      });
      tracer.kill('SIGINT');
      await exited;
      const { total, by } = parseCounts(readFileSync(counts, 'utf8'));
      result = { ...r, perRequest: total / r.requests, bySyscall: Object.fromEntries(Object.entries(by).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, +(v / r.requests).toFixed(3)])) };
      // The warm-up is not in the count: strace attaches after it.
    } else {
      // Each process by its pid (callgrind_control alone would reach every callgrind run on the machine).
      const ctl = (flag) => {
        for (const p of pids()) execFileSync('callgrind_control', [flag, p], { stdio: 'ignore' });
      };
      // Zeroed after the warm-up, dumped after the load: only the counted requests' instructions.
      const r = await load(port, w, o, async () => ctl('--zero'));
      ctl('--dump');
      await sleep(500);
      let ir = 0;
      const texts = [];
      for (const f of readdirSync(dir).filter((n) => n.startsWith('callgrind.out'))) {
        const text = readFileSync(join(dir, f), 'utf8');
        const m = /^summary: (\d+)/m.exec(text) ?? /^totals: (\d+)/m.exec(text);
        if (m) {
          ir += Number(m[1]);
          texts.push(text);
        }
        if (o.keep) copyFileSync(join(dir, f), join(o.keep, f));
      }
      const map = `/tmp/perf-${server.pid}.map`;
      const jit = existsSync(map) ? readFileSync(map, 'utf8') : '';
      if (o.keep && jit) copyFileSync(map, join(o.keep, 'perf.map'));
      rmSync(map, { force: true });
      result = { ...r, instructions: ir, perRequest: Math.round(ir / r.requests), ...groupCosts(texts, r.requests, jit) };
    }
    await server.stop();
    process.stdout.write(`${JSON.stringify({ workload: o.workload, server: run.name, root: o.root, tool: o.tool, threads: o.threads, connections: o.connections, ...result })}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    killAll();
  }
}

if (process.argv[2] === '--groups') {
  // node bench/per-request.mjs --groups REQUESTS FILE...: the grouping of kept callgrind files.
  // A file named perf.map among them is V8's (kept by --keep).
  const [requests, ...files] = process.argv.slice(3);
  const jit = files.filter((f) => f.endsWith('perf.map')).map((f) => readFileSync(f, 'utf8')).join('\n');
  const outs = files.filter((f) => !f.endsWith('perf.map')).map((f) => readFileSync(f, 'utf8'));
  process.stdout.write(`${JSON.stringify(groupCosts(outs, Number(requests), jit), null, 1)}\n`);
} else main().catch((e) => {
  process.stderr.write(`per-request: ${e.stack ?? e}\n`);
  killAll();
  process.exit(1);
});
