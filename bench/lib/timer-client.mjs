// Client for the scale workload's timer case: opens N connections to a server
// whose module sends, every second per connection, 8 bytes: its tcpmod.now_ms()
// as a little-endian f64 (see timerModuleWat in workloads/scale.mjs). From two
// consecutive stamps of one connection it computes the lateness of the timer:
// interval − 1000 ms, on the server's own clock.
//
//   node bench/lib/timer-client.mjs HOST PORT N
//
// Prints one JSON line once the connections are open ({ connected, errors,
// connectSeconds }), then follows commands on stdin, one per line:
//   start   forget what was seen so far and begin recording
//   stop    print one JSON line: the stamps received since `start` (fired),
//           and the lateness (server clock, and client arrival) p50/p99/max
// Stdin reaching EOF closes every connection and exits.
import net from 'node:net';
import { createInterface } from 'node:readline';

const [host, portArg, nArg] = process.argv.slice(2);
const port = Number(portArg);
const n = Number(nArg);
if (!host || !(port > 0) || !(n > 0)) {
  process.stderr.write('usage: node bench/lib/timer-client.mjs HOST PORT N\n');
  process.exit(2);
}

const INTERVAL_MS = 1000;
const PARALLEL_CONNECTS = 256;

let recording = false;
let fired = 0;
let closedEarly = 0;
let late = new Float64Array(1 << 16); // server-clock lateness, ms
let lateN = 0;
let arrival = new Float64Array(1 << 16); // client-arrival lateness, ms
let arrivalN = 0;
const sockets = [];

function push(arr, len, v) {
  if (len === arr.length) {
    const bigger = new Float64Array(arr.length * 2);
    bigger.set(arr);
    arr = bigger;
  }
  arr[len] = v;
  return arr;
}

function onStamp(state, stamp, now) {
  if (recording) {
    fired++;
    if (state.prevStamp !== null) {
      late = push(late, lateN++, stamp - state.prevStamp - INTERVAL_MS);
      arrival = push(arrival, arrivalN++, now - state.prevArrival - INTERVAL_MS);
    }
  }
  state.prevStamp = stamp;
  state.prevArrival = now;
}

function open() {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const state = { prevStamp: null, prevArrival: 0, rest: null, open: false };
    s.setNoDelay(true);
    s.on('data', (chunk) => {
      const now = performance.now();
      let buf = state.rest ? Buffer.concat([state.rest, chunk]) : chunk;
      let off = 0;
      for (; off + 8 <= buf.length; off += 8) onStamp(state, buf.readDoubleLE(off), now);
      state.rest = off < buf.length ? Buffer.from(buf.subarray(off)) : null;
    });
    s.once('connect', () => {
      state.open = true;
      sockets.push(s);
      resolve(null);
    });
    s.on('error', (e) => {
      if (!state.open) resolve(e.code ?? e.message);
    });
    s.on('close', () => {
      if (state.open && !shuttingDown) closedEarly++;
    });
  });
}

function quantile(sorted, q) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function describe(arr, len) {
  const v = arr.slice(0, len).sort();
  const r3 = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
  let sum = 0;
  for (const x of v) sum += x;
  return {
    n: len,
    min: r3(len ? v[0] : null),
    p50: r3(quantile(v, 0.5)),
    p99: r3(quantile(v, 0.99)),
    max: r3(len ? v[len - 1] : null),
    mean: r3(len ? sum / len : null),
  };
}

let shuttingDown = false;

async function main() {
  const t0 = performance.now();
  let errors = 0;
  let firstError = null;
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      const e = await open();
      if (e) {
        errors++;
        firstError ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL_CONNECTS, n) }, worker));
  const connectSeconds = (performance.now() - t0) / 1000;
  process.stdout.write(`${JSON.stringify({ requested: n, connected: sockets.length, errors, firstError, connectSeconds })}\n`);
  let startedAt = 0;
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const cmd = line.trim();
    if (cmd === 'start') {
      recording = true;
      fired = 0;
      lateN = 0;
      arrivalN = 0;
      closedEarly = 0;
      startedAt = performance.now();
    } else if (cmd === 'stop') {
      recording = false;
      const seconds = (performance.now() - startedAt) / 1000;
      process.stdout.write(
        `${JSON.stringify({
          seconds,
          connections: sockets.length,
          fired,
          firedPerSecond: fired / seconds,
          closedEarly,
          latenessMs: describe(late, lateN),
          arrivalLatenessMs: describe(arrival, arrivalN),
        })}\n`,
      );
    }
  });
  rl.on('close', () => {
    shuttingDown = true;
    for (const s of sockets) s.destroy();
    process.exit(0);
  });
}

main().catch((e) => {
  process.stderr.write(`timer-client: ${e.stack ?? e}\n`);
  process.exit(1);
});
