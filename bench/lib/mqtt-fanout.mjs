// The mqtt workload's load client (one process, on the npm `mqtt` package):
// N subscribers of one topic, one publisher of small QoS 0 messages.
//
//   node bench/lib/mqtt-fanout.mjs PORT SUBSCRIBERS SECONDS [WINDOW] [PAYLOAD_BYTES]
//
// Two phases on the same connections:
// 1. Throughput, SECONDS long: the publisher keeps at most WINDOW messages
//    (default 25,600 ÷ SUBSCRIBERS, 4 to 256: about 25,600 deliveries) not yet
//    received by every subscriber, so the broker is kept busy without an
//    unbounded backlog building up in it or in the client; deliveries per
//    second over the phase. What is in flight then drains (up to 30 s).
// 2. Latency, 1 s: one message at a time (the next once every subscriber has
//    the last): each delivery's latency, publish → received by one subscriber,
//    so p50/p99 are the spread of one message's fan-out, without queueing.
// A message carries its sequence number and its send time is kept here, so
// latency is read from one clock. When nothing is delivered for 3 s (a broker
// that dropped QoS 0 messages) the window is reset (counted in `resets`);
// `lost` is what never arrived: published × subscribers − deliveries, after a
// last drain.
// Prints one JSON line: { requests (deliveries in phase 1), seconds, rps,
// p50Ms, p99Ms (phase 2), published, lost, resets, subscribers, connectSeconds, clientCpuSeconds
// (this process's CPU over phase 1: near `seconds` means the client was the limit) }.
import { performance } from 'node:perf_hooks';
import mqtt from 'mqtt';

const [port, subscribers, seconds, windowArg = 0, payloadBytes = 16] = process.argv.slice(2).map(Number);
if (!port || !subscribers || !seconds) {
  console.error('usage: mqtt-fanout.mjs PORT SUBSCRIBERS SECONDS [WINDOW] [PAYLOAD_BYTES]');
  process.exit(2);
}
const TOPIC = 'bench/fan';
const url = `mqtt://127.0.0.1:${port}`;
const options = { reconnectPeriod: 0, protocolVersion: 4, clean: true, keepalive: 60, connectTimeout: 30_000 };

function connectOne(id) {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { ...options, clientId: `fan-${process.pid}-${id}` });
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

// Delivery bookkeeping, by sequence number (ring of 65536: far more than WINDOW in flight).
const RING = 65536;
const sentAt = new Float64Array(RING);
const received = new Uint32Array(RING);
const LAT_CAP = 2_000_000;
const latencies = new Float64Array(LAT_CAP);
let latN = 0;
let measuring = false;
let delivered = 0; // in the measured window
let total = 0; // every delivery
let published = 0;
let completed = 0; // messages every subscriber received
let lastDelivery = 0;
const throughputWindow = windowArg || Math.min(256, Math.max(4, Math.ceil(25_600 / subscribers)));
let window = throughputWindow;
let timing = false;

function onMessage(_topic, payload) {
  const now = performance.now();
  const seq = payload.readUInt32BE(0);
  const slot = seq % RING;
  total++;
  lastDelivery = now;
  if (measuring) delivered++;
  if (timing && latN < LAT_CAP) latencies[latN++] = now - sentAt[slot];
  if (++received[slot] === subscribers) {
    completed++;
    pump();
  }
}

let pub;
let publishing = false;
const payload = Buffer.alloc(Math.max(4, payloadBytes));
function pump() {
  while (publishing && published - completed < window) {
    const seq = published++;
    const slot = seq % RING;
    received[slot] = 0;
    payload.writeUInt32BE(seq >>> 0, 0);
    sentAt[slot] = performance.now();
    pub.publish(TOPIC, payload, { qos: 0 });
  }
}

const t0 = performance.now();
const subs = [];
for (let i = 0; i < subscribers; i += 50) {
  const batch = await Promise.all(Array.from({ length: Math.min(50, subscribers - i) }, (_, k) => connectOne(i + k)));
  await Promise.all(batch.map((c) => c.subscribeAsync(TOPIC, { qos: 0 })));
  for (const c of batch) c.on('message', onMessage);
  subs.push(...batch);
}
pub = await connectOne('pub');
const connectSeconds = (performance.now() - t0) / 1000;

// A stalled window (deliveries lost) is reset rather than waited for.
let resets = 0;
const guard = setInterval(() => {
  const now = performance.now();
  if (publishing && published > completed && now - lastDelivery > 3000) {
    resets++;
    completed = published;
    lastDelivery = now;
    pump();
  }
}, 100);

publishing = true;
lastDelivery = performance.now();
pump();
await new Promise((r) => setTimeout(r, 300)); // settle: first deliveries, buffers grown
measuring = true;
const m0 = performance.now();
const cpu0 = process.cpuUsage();
await new Promise((r) => setTimeout(r, seconds * 1000));
measuring = false;
const measured = (performance.now() - m0) / 1000;
const cpu = process.cpuUsage(cpu0);
// Drain what is in flight (bounded), then one message at a time.
publishing = false;
for (let i = 0; i < 1500 && published > completed; i++) await new Promise((r) => setTimeout(r, 20));
completed = published;
window = 1;
timing = true;
publishing = true;
pump();
await new Promise((r) => setTimeout(r, 1000));
publishing = false;
timing = false;
clearInterval(guard);
for (let i = 0; i < 100 && published > completed; i++) await new Promise((r) => setTimeout(r, 20));
const lost = Math.max(0, published * subscribers - total);

const lat = latencies.subarray(0, latN).sort();
const pct = (q) => (latN ? lat[Math.min(latN - 1, Math.floor(q * latN))] : null);
console.log(JSON.stringify({
  requests: delivered,
  seconds: measured,
  rps: delivered / measured,
  p50Ms: pct(0.5),
  p99Ms: pct(0.99),
  published,
  lost,
  resets,
  window: throughputWindow,
  subscribers,
  connectSeconds,
  clientCpuSeconds: (cpu.user + cpu.system) / 1e6,
}));
await Promise.allSettled([...subs, pub].map((c) => c.endAsync(true)));
process.exit(0);
