// The soak's own Node clients (bench/soak.mjs starts this in a process group
// of its own), all on 127.0.0.1, each population kept at its size for the
// whole run:
//
//   slowloris  connections to the HTTP server that send a partial request head,
//              one byte every `slowlorisByteMs`, never finishing it; the server
//              must shed them (its --frame-timeout) and each one shed is
//              replaced by a new one at once
//   idle       connections spread round-robin over the three servers that
//              send nothing; the server closes them (its --read-timeout) and
//              each is reopened at once
//   churn      new HTTP connections at a bounded rate: open, one GET with
//              "Connection: close", read the reply to the end, close
//
//   node bench/lib/soak-clients.mjs '<JSON config>'
//   config: { httpPort, idlePorts: [..], slowloris, slowlorisByteMs, idle,
//             churnPerSecond, churnInFlight, rampMs, idleRampMs }
//
// Prints one JSON line of counters every 2 s, and a last one on SIGTERM or
// SIGINT, then closes everything and exits.
import net from 'node:net';

const cfg = JSON.parse(process.argv[2] ?? '{}');
const HOST = '127.0.0.1';
const RETRY_MS = 1000; // after a failed connect, before trying again

/** A growing list of numbers with its summary. */
class Series {
  constructor() {
    this.v = new Float64Array(1024);
    this.n = 0;
  }
  add(x) {
    if (this.n === this.v.length) {
      const b = new Float64Array(this.v.length * 2);
      b.set(this.v);
      this.v = b;
    }
    this.v[this.n++] = x;
  }
  summary() {
    const s = this.v.slice(0, this.n).sort();
    const q = (p) => (this.n ? Math.round(s[Math.min(this.n - 1, Math.max(0, Math.ceil(p * this.n) - 1))] * 10) / 10 : null);
    return { n: this.n, min: q(0), p50: q(0.5), p99: q(0.99), max: this.n ? Math.round(s[this.n - 1] * 10) / 10 : null };
  }
}

let stopping = false;
const open = new Set();

const slow = { open: 0, opened: 0, shed: 0, connectErrors: 0, bytesSent: 0, replies: 0, lifetimeMs: new Series(), firstError: null };
const idle = { open: 0, opened: 0, closedByServer: 0, connectErrors: 0, lifetimeMs: new Series(), byPort: {}, firstError: null };
const churn = { started: 0, skipped: 0, ok: 0, bad: 0, errors: 0, inFlight: 0, firstError: null };

// ---- slowloris -------------------------------------------------------------
const HEAD = Buffer.from(`GET / HTTP/1.1\r\nHost: ${HOST}\r\nUser-Agent: tcpmod-soak-slowloris\r\nX-Trickle: `);

function slowConnection() {
  if (stopping) return;
  const s = net.connect({ host: HOST, port: cfg.httpPort });
  open.add(s);
  let connectedAt = 0;
  let timer = null;
  let sent = 0;
  const sendByte = () => {
    // the head's bytes first, then a header value that never ends
    const b = sent < HEAD.length ? HEAD.subarray(sent, sent + 1) : Buffer.from('a');
    sent++;
    slow.bytesSent++;
    s.write(b);
  };
  s.once('connect', () => {
    connectedAt = performance.now();
    slow.opened++;
    slow.open++;
    sendByte();
    timer = setInterval(sendByte, cfg.slowlorisByteMs);
  });
  s.on('data', () => slow.replies++); // a "408"-style answer would be counted here
  s.on('error', (e) => {
    if (!connectedAt) {
      slow.connectErrors++;
      slow.firstError ??= e.code ?? e.message;
    }
  });
  s.once('close', () => {
    open.delete(s);
    clearInterval(timer);
    if (connectedAt) {
      slow.open--;
      if (!stopping) {
        slow.shed++;
        slow.lifetimeMs.add(performance.now() - connectedAt);
      }
      setImmediate(slowConnection);
    } else {
      setTimeout(slowConnection, RETRY_MS);
    }
  });
}

// ---- idle ------------------------------------------------------------------
function idleConnection(port) {
  if (stopping) return;
  const s = net.connect({ host: HOST, port });
  open.add(s);
  let connectedAt = 0;
  idle.byPort[port] ??= { opened: 0, closedByServer: 0 };
  s.once('connect', () => {
    connectedAt = performance.now();
    idle.opened++;
    idle.open++;
    idle.byPort[port].opened++;
  });
  s.on('data', () => {});
  s.on('error', (e) => {
    if (!connectedAt) {
      idle.connectErrors++;
      idle.firstError ??= e.code ?? e.message;
    }
  });
  s.once('close', () => {
    open.delete(s);
    if (connectedAt) {
      idle.open--;
      if (!stopping) {
        idle.closedByServer++;
        idle.byPort[port].closedByServer++;
        idle.lifetimeMs.add(performance.now() - connectedAt);
      }
      setImmediate(() => idleConnection(port));
    } else {
      setTimeout(() => idleConnection(port), RETRY_MS);
    }
  });
}

// ---- churn -----------------------------------------------------------------
const REQUEST = Buffer.from(`GET / HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`);

function churnOnce() {
  churn.started++;
  churn.inFlight++;
  const s = net.connect({ host: HOST, port: cfg.httpPort });
  open.add(s);
  const chunks = [];
  let failed = null;
  s.setTimeout(10_000, () => {
    failed = 'timeout';
    s.destroy();
  });
  s.once('connect', () => s.write(REQUEST)); // the server answers, then closes (Connection: close)
  s.on('data', (d) => chunks.push(d));
  s.on('error', (e) => (failed ??= e.code ?? e.message));
  s.once('close', () => {
    open.delete(s);
    churn.inFlight--;
    if (stopping) return;
    const reply = Buffer.concat(chunks).toString('latin1');
    if (failed) {
      churn.errors++;
      churn.firstError ??= failed;
    } else if (/^HTTP\/1\.1 200 /.test(reply)) churn.ok++;
    else {
      churn.bad++;
      churn.firstError ??= `unexpected reply: ${JSON.stringify(reply.slice(0, 80))}`;
    }
  });
}

/** Starts new churn connections at cfg.churnPerSecond; a slot that finds cfg.churnInFlight still in flight is skipped. */
function churnPacer() {
  const t0 = performance.now();
  let slots = 0;
  const tick = () => {
    if (stopping) return;
    const due = Math.floor(((performance.now() - t0) / 1000) * cfg.churnPerSecond);
    while (slots < due) {
      slots++;
      if (churn.inFlight < cfg.churnInFlight) churnOnce();
      else churn.skipped++;
    }
    setTimeout(tick, 10);
  };
  tick();
}

// ---- report ----------------------------------------------------------------
function counters() {
  return {
    t: Date.now(),
    slowloris: { ...slow, lifetimeMs: slow.lifetimeMs.summary() },
    idle: { ...idle, lifetimeMs: idle.lifetimeMs.summary() },
    churn: { ...churn, requests: churn.ok + churn.bad + churn.errors },
  };
}

function report() {
  process.stdout.write(`${JSON.stringify(counters())}\n`);
}

// ---- start -------------------------------------------------------------------
// Spread the first connections over a ramp, so that the server's timeouts do
// not close them all in the same instant (they would stay in step for the run).
for (let i = 0; i < cfg.slowloris; i++) setTimeout(slowConnection, (i * cfg.rampMs) / cfg.slowloris);
for (let i = 0; i < cfg.idle; i++) {
  const port = cfg.idlePorts[i % cfg.idlePorts.length];
  setTimeout(() => idleConnection(port), (i * cfg.idleRampMs) / cfg.idle);
}
if (cfg.churnPerSecond > 0) churnPacer();
const reporter = setInterval(report, 2000);

// SIGTERM (bench/soak.mjs's stop()) or SIGINT: last counters, close everything, exit.
function finish() {
  if (stopping) return;
  stopping = true;
  clearInterval(reporter);
  report();
  for (const s of open) s.destroy();
  setTimeout(() => process.exit(0), 100);
}
process.on('SIGTERM', finish);
process.on('SIGINT', finish);
