// Hostile clients beside a well-behaved one. Per server, on a fresh server
// process, one after another (one round: each server's phases take ~50 s):
//
// 1. setup: one connection stores the big value and reads it back (HTTP: PUT
//    /kv/big of 1 MiB, GET /kv/big; nginx serves a 1 MiB static file at that
//    path instead; RESP: SET big of 1 MiB − 1 KiB, what fits resp.wasm's 1 MiB
//    input region with the command, then GET big).
// 2. baseline: the fresh client (bench/lib/hostile-clients.mjs fresh) alone for
//    BASELINE seconds: one request every 10 ms, open loop, each on a NEW
//    connection (connect, GET / or PING, read the whole reply, close); latency
//    from connect() to the reply's last byte. Server CPU (user + system of its
//    process group, /proc) over the phase ÷ the fresh requests answered.
// 3. attack: the attackers (hostile-clients.mjs attack) are opened and kept
//    for ATTACK seconds, never replaced: 20 non-readers (32 pipelined requests
//    for the big value in one write, then never read), 1,000 slowloris (a
//    partial request, then one byte every 2 s), 50 trickle (a 1 MiB body /
//    bulk string announced, then sent one byte every 10 ms). The fresh client
//    runs through the whole window as in 2; same CPU figure, which now carries
//    what the attackers cost the server. ATTACK (35 s) is longer than the
//    send timeouts (20 s) and the header/frame timeouts (30 s), so a server
//    that sheds attackers by its timeouts does so inside the window. At the
//    end the attack client reports how many of its connections the server
//    closed (non-readers: found by reading them at the end, see
//    hostile-clients.mjs).
//
// Servers: tcpmod http.wasm (default options) vs nginx (same worker count,
// timeouts below); tcpmod resp.wasm (default options) vs redis-server
// (its defaults: no timeouts, no output limit for normal clients).
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { runClient, withTimeout } from '../proc.mjs';
import { groupCpuSeconds, groupRssKiB } from '../procfs.mjs';
import { launch, moduleExists, nginxBin, nginxConfig } from '../servers.mjs';

export const title = 'hostile';
export const HTTP_MODULE = 'build/http.wasm';
export const RESP_MODULE = 'build/resp.wasm';

export const INTERVAL_MS = 10;
export const FRESH_TIMEOUT_MS = 5000;
export const NON_READERS = 20;
export const PIPELINE = 32;
export const SLOWLORIS = 1000;
export const SLOW_BYTE_MS = 2000;
export const TRICKLE = 50;
export const TRICKLE_BYTE_MS = 10;
const MiB = 1 << 20;
const HTTP_BIG = MiB;
const RESP_BIG = MiB - 1024;
/** How long the attack client reads its non-readers at the end to see which were closed. */
const PROBE_MS = 1500;
/** nginx's timeouts in this workload (its defaults are 60 s for all three). */
export const NGINX_TIMEOUTS = { client_header_timeout: '30s', client_body_timeout: '30s', send_timeout: '20s', keepalive_timeout: '75s' };

const CLIENTS = 'bench/lib/hostile-clients.mjs';

export function phases(quick) {
  return quick ? { baselineSeconds: 3, attackSeconds: 10 } : { baselineSeconds: 10, attackSeconds: 35 };
}

export async function run(ctx) {
  const { baselineSeconds, attackSeconds } = phases(ctx.quick);
  const d = ctx.defs;
  const servers = [
    { proto: 'http', module: HTTP_MODULE, def: d.tcpmod(HTTP_MODULE, { id: 'tcpmod-http', label: `tcpmod ×${ctx.threads} http.wasm` }) },
    { proto: 'http', def: nginxDef(ctx.threads) },
    { proto: 'resp', module: RESP_MODULE, def: d.tcpmod(RESP_MODULE, { id: 'tcpmod-resp', label: `tcpmod ×${ctx.threads} resp.wasm` }) },
    { proto: 'resp', def: d.redis() },
  ];
  const results = {};
  for (const srv of servers) {
    const { def } = srv;
    const res = (results[def.id] = { label: def.label, protocol: srv.proto === 'http' ? 'HTTP' : 'RESP', runs: [] });
    if (srv.module && !moduleExists(ctx.root, srv.module)) {
      res.runs.push({ round: 1, error: `skipped: module missing: ${srv.module}` });
      continue;
    }
    try {
      const r = await runServer(ctx, srv, { baselineSeconds, attackSeconds });
      res.runs.push({ round: 1, ...r });
    } catch (e) {
      res.runs.push({ round: 1, error: e.message });
      ctx.log(`[hostile] ${def.label}: error: ${e.message}`);
    }
  }
  return {
    status: 'ok',
    phases: { baselineSeconds, attackSeconds, intervalMs: INTERVAL_MS, freshTimeoutMs: FRESH_TIMEOUT_MS },
    attack: {
      nonReaders: NON_READERS,
      pipeline: PIPELINE,
      bigBytes: { http: HTTP_BIG, resp: RESP_BIG },
      slowloris: SLOWLORIS,
      slowByteMs: SLOW_BYTE_MS,
      trickle: TRICKLE,
      trickleByteMs: TRICKLE_BYTE_MS,
      trickleBytes: { http: HTTP_BIG, resp: RESP_BIG },
    },
    nginxTimeouts: NGINX_TIMEOUTS,
    client: `node ${CLIENTS} fresh|attack '<JSON config>'`,
    results,
    notes: notes({ baselineSeconds, attackSeconds }),
  };
}

function notes({ baselineSeconds, attackSeconds }) {
  const nginx = Object.entries(NGINX_TIMEOUTS).map(([k, v]) => `\`${k} ${v}\``).join(', ');
  return [
    `Fresh client: one request every ${INTERVAL_MS} ms, open loop, each on a new connection (connect, \`GET /\` or \`PING\`, the whole reply, close), ` +
      `latency from connect() to the reply's last byte; ${baselineSeconds} s without the attack, then ${attackSeconds} s with it. ` +
      `Attack, opened once and never replaced: ${NON_READERS} non-readers (${PIPELINE} pipelined \`GET /kv/big\` of a 1 MiB value, or RESP \`GET big\` of 1 MiB − 1 KiB, then never read), ` +
      `${SLOWLORIS.toLocaleString('en-US')} slowloris (a partial request head or RESP array, then one byte every ${SLOW_BYTE_MS / 1000} s) and ` +
      `${TRICKLE} trickle (a 1 MiB body or bulk string sent one byte every ${TRICKLE_BYTE_MS} ms). ` +
      `Failures: connect errors, timeouts (${FRESH_TIMEOUT_MS / 1000} s) and wrong replies of the fresh client. ` +
      `CPU µs/fresh request: the server's user + system CPU over the phase (attackers included) ÷ fresh requests answered. ` +
      `Closed: attacker connections the server had closed by the end of the window` +
      (attackSeconds < 30 ? ` (this window is shorter than the 20 s send and 30 s header/frame timeouts, so expect none)` : '') +
      `. One run per server, each on a fresh server process.`,
    `tcpmod runs with its default options (send timeout 20 s, frame timeout 30 s). nginx: ${nginx}, sendfile on, \`/kv/big\` a static file, ` +
      `\`PUT /kv/…\` through the DAV module; redis-server with its defaults (no client timeout, no output-buffer limit for normal clients).`,
  ];
}

/** nginx for this workload: `GET /` answers Hello, World!, /kv/big is a 1 MiB static file, PUT /kv/… is accepted (dav). */
export function nginxDef(threads) {
  return {
    id: 'nginx',
    label: `nginx ×${threads}`,
    start: (port) => {
      const dir = mkdtempSync(join(os.tmpdir(), 'tcpmod-bench-hostile-nginx-'));
      // Workers run as an unprivileged user when nginx starts as root: they must reach the files.
      chmodSync(dir, 0o755);
      mkdirSync(join(dir, 'www', 'kv'), { recursive: true, mode: 0o777 });
      chmodSync(join(dir, 'www', 'kv'), 0o777);
      writeFileSync(join(dir, 'www', 'kv', 'big'), Buffer.alloc(HTTP_BIG, 'x'), { mode: 0o644 });
      const conf = join(dir, 'nginx.conf');
      writeFileSync(conf, nginxConfig(dir, port, threads, { timeouts: NGINX_TIMEOUTS, maxBody: '2m', kv: true }));
      return { cmd: nginxBin(), args: ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')], cleanup: () => rmSync(dir, { recursive: true, force: true }) };
    },
  };
}

// ---- one server -------------------------------------------------------------------

const fmt = (v, d = 1) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(d));
const lat = (f) => `p50 ${fmt(f.latencyMs.p50, 2)} / p99 ${fmt(f.latencyMs.p99, 2)} / max ${fmt(f.latencyMs.max, 2)} ms`;

async function runServer(ctx, srv, { baselineSeconds, attackSeconds }) {
  const { def, proto } = srv;
  ctx.log(`[hostile] starting ${def.label}`);
  const s = await launch(def, ctx);
  let attacker = null;
  try {
    const setup = proto === 'http' ? await httpSetup(s.port, def.id === 'nginx') : await respSetup(s.port);
    ctx.log(`[hostile] ${def.label}: big value ready (${setup.bigBytes.toLocaleString('en-US')} bytes)`);

    const baseline = await measure(ctx, s, proto, baselineSeconds);
    ctx.log(`[hostile] ${def.label} · no attack: ${lat(baseline)}, ${fmt(baseline.cpuPerRequestUs)} µs CPU/fresh req, ${baseline.failures} failures`);

    attacker = startAttack(ctx, s.port, proto);
    const ready = await withTimeout(attacker.ready, 60_000, 'the attack client did not open its connections within 60 s');
    ctx.log(
      `[hostile] ${def.label} · attackers open in ${fmt(ready.openSeconds, 2)} s: ` +
        ['nonReaders', 'slowloris', 'trickle'].map((k) => `${k} ${ready[k].opened}${ready[k].connectErrors ? ` (${ready[k].connectErrors} failed: ${ready[k].firstError})` : ''}`).join(', '),
    );
    const rssBeforeKiB = groupRssKiB(s.pgid);
    const attackCpu0 = groupCpuSeconds(attacker.pgid());
    const attack = await measure(ctx, s, proto, attackSeconds);
    const attackClientCpuSeconds = groupCpuSeconds(attacker.pgid()) - attackCpu0;
    const rssEndKiB = groupRssKiB(s.pgid);
    const attackers = await attacker.stop();
    attacker = null;
    const closed = closedCounts(attackers);
    ctx.log(
      `[hostile] ${def.label} · under attack: ${lat(attack)}, ${fmt(attack.cpuPerRequestUs)} µs CPU/fresh req, ${attack.failures} failures; ` +
        `closed by the server: non-readers ${closed.nonReaders}, slowloris ${closed.slowloris}, trickle ${closed.trickle}; RSS ${fmt(rssEndKiB / 1024, 0)} MiB`,
    );
    if (!s.alive()) throw new Error(`server exited (${s.exitInfo().signal ?? s.exitInfo().code}): ${s.stderr().trim().slice(-500)}`);
    return {
      serverCommand: s.command,
      clientCommand: baseline.command,
      attackCommand: attackers.command,
      setup,
      baseline,
      attack,
      attackers,
      closed,
      attackClientCpuSeconds,
      rssBeforeAttackKiB: rssBeforeKiB,
      rssEndOfAttackKiB: rssEndKiB,
    };
  } finally {
    if (attacker) attacker.kill();
    ctx.log(`[hostile] stopping ${def.label}`);
    await s.stop();
  }
}

/** The fresh client for `seconds`, with the server's CPU over the same time. */
async function measure(ctx, s, proto, seconds) {
  const config = { proto, port: s.port, intervalMs: INTERVAL_MS, seconds, timeoutMs: FRESH_TIMEOUT_MS };
  const cpu0 = groupCpuSeconds(s.pgid);
  const r = await runClient(process.execPath, [CLIENTS, 'fresh', JSON.stringify(config)], {
    cwd: ctx.root,
    nofile: 8192,
    timeoutMs: (seconds + 60) * 1000,
  });
  const cpuSeconds = groupCpuSeconds(s.pgid) - cpu0;
  let j;
  try {
    j = JSON.parse(r.stdout.trim().split('\n').pop() ?? '');
  } catch {
    throw new Error(`fresh client failed (exit ${r.code ?? r.signal}): ${(r.stderr.trim() || r.stdout.trim()).slice(-1500)}`);
  }
  const failures = j.errors + j.bad + j.timeouts;
  return { ...j, failures, cpuSeconds, cpuPerRequestUs: j.ok > 0 ? (cpuSeconds / j.ok) * 1e6 : null, command: r.command };
}

/** Starts the attack client; ready resolves with its first line, stop() asks for its counters and waits for it to exit. */
function startAttack(ctx, port, proto) {
  const config = {
    proto,
    port,
    nonReaders: NON_READERS,
    pipeline: PIPELINE,
    bigPath: '/kv/big',
    bigKey: 'big',
    slowloris: SLOWLORIS,
    slowByteMs: SLOW_BYTE_MS,
    trickle: TRICKLE,
    trickleByteMs: TRICKLE_BYTE_MS,
    trickleBytes: proto === 'http' ? HTTP_BIG : RESP_BIG,
    probeMs: PROBE_MS,
  };
  let child = null;
  let resolveReady;
  let rejectReady;
  const ready = new Promise((res, rej) => {
    resolveReady = res;
    rejectReady = rej;
  });
  ready.catch(() => {}); // observed through withTimeout; do not let an early exit go unhandled
  const done = runClient(process.execPath, [CLIENTS, 'attack', JSON.stringify(config)], {
    cwd: ctx.root,
    nofile: 8192,
    stdin: true,
    timeoutMs: 600_000,
    started: (c) => {
      child = c;
      c.stdin.on('error', () => {}); // EPIPE when it already exited: its exit is reported through `done`
    },
    onStdout: (all) => {
      const first = all.split('\n')[0];
      if (all.includes('\n') && first.includes('"ready":true')) resolveReady(JSON.parse(first));
    },
  });
  done.then(
    (r) => rejectReady(new Error(`attack client exited before it was ready (${r.code ?? r.signal}): ${(r.stderr.trim() || r.stdout.trim()).slice(-1500)}`)),
    (e) => rejectReady(e),
  );
  return {
    ready,
    pgid: () => child?.pid ?? 0,
    async stop() {
      child.stdin.end('stop\n');
      const r = await withTimeout(done, PROBE_MS + 30_000, 'the attack client did not report within 30 s of stop');
      const lines = r.stdout.trim().split('\n');
      let j;
      try {
        j = JSON.parse(lines[lines.length - 1]);
      } catch {
        throw new Error(`attack client failed (exit ${r.code ?? r.signal}): ${(r.stderr.trim() || r.stdout.trim()).slice(-1500)}`);
      }
      if (j.ready) throw new Error(`attack client ended without its counters (exit ${r.code ?? r.signal}): ${r.stderr.trim().slice(-1500)}`);
      return { ...j, command: r.command };
    },
    kill() {
      if (!child) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone
      }
    },
  };
}

function closedCounts(a) {
  return Object.fromEntries(['nonReaders', 'slowloris', 'trickle'].map((k) => [k, a[k]?.closedByServer ?? null]));
}

// ---- setup: the big value ---------------------------------------------------------

/** Sends `data` on a new connection and collects the reply until complete(buf) returns a value (or timeoutMs). */
function exchange(port, data, complete, timeoutMs = 15_000) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (err, v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      if (err) reject(err);
      else resolve(v);
    };
    const timer = setTimeout(() => finish(new Error(`no complete reply within ${timeoutMs} ms (${buf.length} bytes)`)), timeoutMs);
    s.once('connect', () => s.write(data));
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const v = complete(buf);
      if (v !== undefined) finish(null, v);
    });
    s.on('error', (e) => finish(e));
    s.once('close', () => finish(new Error(`closed before a complete reply (${buf.length} bytes): ${JSON.stringify(buf.subarray(0, 80).toString('latin1'))}`)));
  });
}

/** HTTP replies in buf: [{ status, bodyLength }] once `count` are complete, else undefined. */
function httpReplies(count) {
  return (buf) => {
    const out = [];
    let at = 0;
    while (out.length < count) {
      const end = buf.indexOf('\r\n\r\n', at);
      if (end < 0) return undefined;
      const head = buf.subarray(at, end).toString('latin1');
      const len = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length < end + 4 + len) return undefined;
      out.push({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0), bodyLength: len });
      at = end + 4 + len;
    }
    return out;
  };
}

async function httpSetup(port, isNginx) {
  const put = Buffer.concat([
    Buffer.from(`PUT /kv/big HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: ${HTTP_BIG}\r\n\r\n`),
    Buffer.alloc(HTTP_BIG, 'x'),
  ]);
  if (!isNginx) {
    const [r] = await exchange(port, put, httpReplies(1));
    if (r.status < 200 || r.status > 299) throw new Error(`PUT /kv/big of ${HTTP_BIG} bytes answered ${r.status}`);
  }
  const [g] = await exchange(port, Buffer.from('GET /kv/big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'), httpReplies(1));
  if (g.status !== 200 || g.bodyLength !== HTTP_BIG) throw new Error(`GET /kv/big answered ${g.status} with ${g.bodyLength} bytes, not 200 with ${HTTP_BIG}`);
  return { bigBytes: g.bodyLength, how: isNginx ? 'static file' : 'PUT /kv/big' };
}

/** The first RESP reply in buf: a simple/error line as a string, a bulk string as its length; undefined until complete. */
function respReply(buf) {
  const nl = buf.indexOf('\r\n');
  if (nl < 0) return undefined;
  const line = buf.subarray(0, nl).toString('latin1');
  if (line[0] !== '$') return line;
  const n = Number(line.slice(1));
  if (n < 0) return -1;
  return buf.length >= nl + 2 + n + 2 ? n : undefined;
}

async function respSetup(port) {
  const set = Buffer.concat([Buffer.from(`*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$${RESP_BIG}\r\n`), Buffer.alloc(RESP_BIG, 'x'), Buffer.from('\r\n')]);
  const r = await exchange(port, set, respReply);
  if (r !== '+OK') throw new Error(`SET big of ${RESP_BIG} bytes answered ${JSON.stringify(r)}`);
  const n = await exchange(port, Buffer.from('*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n'), respReply);
  if (n !== RESP_BIG) throw new Error(`GET big answered ${JSON.stringify(n)}, not ${RESP_BIG} bytes`);
  return { bigBytes: n, how: 'SET big' };
}
