// The hostile workload's own clients (bench/lib/workloads/hostile.mjs starts
// each in a process group of its own), all on 127.0.0.1, for an HTTP or a
// RESP server:
//
//   node bench/lib/hostile-clients.mjs fresh '<JSON config>'
//     The well-behaved client: one request every `intervalMs` for `seconds`,
//     open loop (a slow reply does not delay the next start), each on a new
//     connection: connect, send, read the whole reply, close. HTTP sends
//     `GET /` and wants `200` with `Hello, World!`; RESP sends PING and wants
//     `+PONG`. Latency runs from connect() to the reply's last byte. A
//     request that has no reply after `timeoutMs` counts as a timeout.
//     Prints one JSON line at the end: counts and latency n/p50/p99/max.
//     config: { proto, port, intervalMs, seconds, timeoutMs }
//
//   node bench/lib/hostile-clients.mjs attack '<JSON config>'
//     The attackers, opened once and never replaced:
//       non-readers  send `pipeline` requests for the big reply (HTTP
//                    `GET bigPath`, RESP `GET bigKey`) in one write, then
//                    never read (the socket is paused before it connects)
//       slowloris    send a partial request (HTTP: a head without its end;
//                    RESP: an array whose last bulk string is announced but
//                    not sent), then one more byte every `slowByteMs`,
//                    never completing it
//       trickle      announce a body of `trickleBytes` (HTTP `PUT
//                    /kv/trickle-N` with Content-Length; RESP `SET` whose
//                    value is a bulk string of that length), then send it
//                    one byte every `trickleByteMs`
//     Prints {"ready":true,...} once every connection is open (or failed).
//     On the line `stop` on stdin (or stdin's end) it stops sending, finds out
//     which non-readers the server closed (it resumes reading them for
//     `probeMs`: a closed one reaches its end or a reset, an open one does
//     not), prints one JSON line of counters per kind, closes everything and
//     exits.
//     config: { proto, port, nonReaders, pipeline, bigPath, bigKey, slowloris,
//               slowByteMs, trickle, trickleByteMs, trickleBytes, probeMs }
import net from 'node:net';
import { createInterface } from 'node:readline';

const HOST = '127.0.0.1';
const [mode, json] = process.argv.slice(2);
const cfg = JSON.parse(json ?? '{}');
if ((mode !== 'fresh' && mode !== 'attack') || !(cfg.port > 0) || (cfg.proto !== 'http' && cfg.proto !== 'resp')) {
  process.stderr.write(`usage: node bench/lib/hostile-clients.mjs fresh|attack '{"proto":"http"|"resp","port":N,...}'\n`);
  process.exit(2);
}

/** n/p50/p99/max/mean of a list of milliseconds, to 0.001 ms. */
function describe(values) {
  const v = Float64Array.from(values).sort();
  const n = v.length;
  const r = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
  const q = (p) => (n ? v[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))] : null);
  let sum = 0;
  for (const x of v) sum += x;
  return { n, min: r(n ? v[0] : null), p50: r(q(0.5)), p99: r(q(0.99)), max: r(n ? v[n - 1] : null), mean: r(n ? sum / n : null) };
}

const print = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

// ---- the fresh client ---------------------------------------------------------
const HTTP_GET = Buffer.from(`GET / HTTP/1.1\r\nHost: ${HOST}\r\nUser-Agent: tcpmod-bench-fresh\r\n\r\n`);
const RESP_PING = Buffer.from('*1\r\n$4\r\nPING\r\n');

/**
 * Whether buf holds one whole reply: 'ok', 'bad' (complete but not the expected
 * one, or malformed) or null (not yet complete).
 */
function replyState(proto, buf) {
  if (proto === 'resp') {
    const nl = buf.indexOf('\r\n');
    if (nl < 0) return buf.length > 4096 ? 'bad' : null;
    return buf.subarray(0, nl).toString('latin1') === '+PONG' ? 'ok' : 'bad';
  }
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return buf.length > 65536 ? 'bad' : null;
  const head = buf.subarray(0, end).toString('latin1');
  const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (!m) return 'bad'; // both servers answer GET / with a Content-Length
  const total = end + 4 + Number(m[1]);
  if (buf.length < total) return null;
  const ok = /^HTTP\/1\.1 200 /.test(head) && buf.subarray(end + 4, total).toString('latin1') === 'Hello, World!';
  return ok ? 'ok' : 'bad';
}

function freshRequest(stats) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = net.connect({ host: HOST, port: cfg.port });
    s.setNoDelay(true);
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (outcome, detail) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      if (outcome === 'ok') stats.latencies.push(performance.now() - t0);
      else {
        stats[outcome]++;
        stats.firstError ??= detail;
      }
      resolve();
    };
    const timer = setTimeout(() => finish('timeouts', `no reply within ${cfg.timeoutMs} ms`), cfg.timeoutMs);
    s.once('connect', () => s.write(cfg.proto === 'http' ? HTTP_GET : RESP_PING));
    s.on('data', (d) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      const st = replyState(cfg.proto, buf);
      if (st === 'ok') finish('ok');
      else if (st === 'bad') finish('bad', `unexpected reply: ${JSON.stringify(buf.subarray(0, 80).toString('latin1'))}`);
    });
    s.on('error', (e) => finish('errors', e.code ?? e.message));
    s.once('close', () => finish('errors', `closed before a whole reply (${buf.length} bytes)`));
  });
}

async function fresh() {
  const stats = { latencies: [], errors: 0, bad: 0, timeouts: 0, firstError: null };
  const total = Math.max(1, Math.round((cfg.seconds * 1000) / cfg.intervalMs));
  const pending = [];
  const t0 = performance.now();
  let started = 0;
  let lateStarts = 0; // starts more than one interval behind their schedule (the client itself was slow)
  await new Promise((resolve) => {
    const tick = () => {
      const now = performance.now();
      const due = Math.min(total, Math.floor((now - t0) / cfg.intervalMs) + 1);
      while (started < due) {
        if (now - (t0 + started * cfg.intervalMs) > cfg.intervalMs) lateStarts++;
        started++;
        pending.push(freshRequest(stats));
      }
      if (started >= total) return resolve();
      setTimeout(tick, Math.max(0, t0 + started * cfg.intervalMs - performance.now()));
    };
    tick();
  });
  await Promise.all(pending);
  print({
    seconds: (performance.now() - t0) / 1000,
    requests: started,
    ok: stats.latencies.length,
    errors: stats.errors,
    bad: stats.bad,
    timeouts: stats.timeouts,
    lateStarts,
    firstError: stats.firstError,
    latencyMs: describe(stats.latencies),
  });
  process.exit(0);
}

// ---- the attackers --------------------------------------------------------------
let stopping = false;
const sockets = new Set();
const kinds = {};
for (const k of ['nonReaders', 'slowloris', 'trickle']) {
  kinds[k] = { planned: cfg[k] ?? 0, opened: 0, connectErrors: 0, closedByServer: 0, closedWithReset: 0, repliesBytes: 0, firstReply: null, lifetimeMs: [], firstError: null, bytesSent: 0 };
}

function bulk(s) {
  return `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
}

/** The bytes each kind sends first. */
function opening(kind, i) {
  if (cfg.proto === 'http') {
    if (kind === 'nonReaders') return Buffer.from(`GET ${cfg.bigPath} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`.repeat(cfg.pipeline));
    if (kind === 'slowloris') return Buffer.from(`GET / HTTP/1.1\r\nHost: ${HOST}\r\nUser-Agent: tcpmod-bench-slowloris\r\nX-Slow: `);
    return Buffer.from(`PUT /kv/trickle-${i} HTTP/1.1\r\nHost: ${HOST}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${cfg.trickleBytes}\r\n\r\n`);
  }
  if (kind === 'nonReaders') return Buffer.from(`*2\r\n${bulk('GET')}${bulk(cfg.bigKey)}`.repeat(cfg.pipeline));
  if (kind === 'slowloris') return Buffer.from(`*3\r\n${bulk('SET')}${bulk(`slowloris-${i}`)}$1024\r\n`);
  return Buffer.from(`*3\r\n${bulk('SET')}${bulk(`trickle-${i}`)}$${cfg.trickleBytes}\r\n`);
}

const ONE = Buffer.from('a');

function openAttacker(kind, i) {
  return new Promise((resolve) => {
    const st = kinds[kind];
    const s = net.connect({ host: HOST, port: cfg.port });
    if (kind === 'nonReaders') s.pause(); // before it connects: no read is ever started
    let connectedAt = 0;
    const conn = { s, kind, connectedAt: 0, closed: false, sent: 0 };
    s.once('connect', () => {
      connectedAt = performance.now();
      conn.connectedAt = connectedAt;
      st.opened++;
      sockets.add(conn);
      const first = opening(kind, i);
      st.bytesSent += first.length;
      s.write(first);
      resolve();
    });
    if (kind !== 'nonReaders') {
      s.on('data', (d) => {
        st.repliesBytes += d.length;
        st.firstReply ??= d.subarray(0, 60).toString('latin1');
      });
    }
    s.on('error', (e) => {
      if (!connectedAt) {
        st.connectErrors++;
        st.firstError ??= e.code ?? e.message;
        resolve();
      } else if (!stopping && e.code === 'ECONNRESET') conn.reset = true;
    });
    s.once('close', () => {
      if (!connectedAt || conn.closed || conn.probing) return; // a probed non-reader is the probe's to count
      conn.closed = true;
      if (!stopping) {
        st.closedByServer++;
        if (conn.reset) st.closedWithReset++;
        st.lifetimeMs.push(performance.now() - connectedAt);
      }
    });
  });
}

/** Opens count connections of a kind, at most `parallel` connects at a time. */
async function openMany(kind, count, parallel = 64) {
  let next = 0;
  const worker = async () => {
    while (next < count) await openAttacker(kind, next++);
  };
  await Promise.all(Array.from({ length: Math.min(parallel, count) }, worker));
}

function send(conn) {
  if (conn.closed || stopping) return;
  kinds[conn.kind].bytesSent++;
  conn.sent++;
  conn.s.write(ONE);
}

/** Non-readers still open: read them now; the ones the server closed reach their end (or a reset) within probeMs. */
function probeNonReaders() {
  const open = [...sockets].filter((c) => c.kind === 'nonReaders' && !c.closed);
  const st = kinds.nonReaders;
  st.probedOpen = open.length;
  st.probeBytes = 0;
  return Promise.all(
    open.map(
      (c) =>
        new Promise((resolve) => {
          c.probing = true;
          const timer = setTimeout(resolve, cfg.probeMs);
          const closedByServer = (reset) => {
            if (c.closed) return;
            c.closed = true;
            st.closedByServer++;
            if (reset) st.closedWithReset++;
            clearTimeout(timer);
            resolve();
          };
          c.s.on('data', (d) => (st.probeBytes += d.length));
          c.s.once('end', () => closedByServer(false));
          c.s.on('error', (e) => closedByServer(e.code === 'ECONNRESET'));
          c.s.once('close', () => closedByServer(false));
          c.s.resume();
        }),
    ),
  );
}

async function attack() {
  const t0 = performance.now();
  // Non-readers first, so that their replies are being held back before the rest arrives.
  await openMany('nonReaders', cfg.nonReaders);
  await openMany('trickle', cfg.trickle);
  await openMany('slowloris', cfg.slowloris);
  const timers = [];
  // Slowloris: each connection one byte every slowByteMs, their phases spread over the interval.
  const slow = [...sockets].filter((c) => c.kind === 'slowloris');
  slow.forEach((c, i) => {
    timers.push(
      setTimeout(() => {
        send(c);
        timers.push(setInterval(() => send(c), cfg.slowByteMs));
      }, (i * cfg.slowByteMs) / slow.length),
    );
  });
  // Trickle: every trickleByteMs one byte on each connection, until the announced length is reached.
  const trick = [...sockets].filter((c) => c.kind === 'trickle');
  timers.push(
    setInterval(() => {
      for (const c of trick) if (c.sent < cfg.trickleBytes) send(c);
    }, cfg.trickleByteMs),
  );
  const counts = Object.fromEntries(Object.entries(kinds).map(([k, v]) => [k, { opened: v.opened, connectErrors: v.connectErrors, firstError: v.firstError }]));
  print({ ready: true, openSeconds: (performance.now() - t0) / 1000, ...counts });

  let finished = false;
  const finish = async () => {
    if (finished) return;
    finished = true;
    for (const t of timers) clearTimeout(t); // clearTimeout also clears intervals
    const sending = (performance.now() - t0) / 1000;
    await probeNonReaders();
    stopping = true;
    const out = { seconds: sending };
    for (const [k, v] of Object.entries(kinds)) out[k] = { ...v, lifetimeMs: describe(v.lifetimeMs) };
    print(out);
    for (const c of sockets) c.s.destroy();
    setTimeout(() => process.exit(0), 100);
  };
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (line.trim() === 'stop') finish();
  });
  rl.on('close', finish);
  process.on('SIGTERM', finish);
}

(mode === 'fresh' ? fresh() : attack()).catch((e) => {
  process.stderr.write(`hostile-clients: ${e.stack ?? e}\n`);
  process.exit(1);
});
