// The load clients and how to read their output. Each returns the figures the
// rounds need: { requests, seconds, rps, errors, command, ... }.
import { join } from 'node:path';
import { runClient } from './proc.mjs';

/** bench/bin/echo-load: closed-loop echo, CONNECTIONS × SIZE bytes for SECONDS. */
export async function echoLoad(bins, { port, connections, size, seconds }) {
  const args = ['127.0.0.1', String(port), String(connections), String(size), String(seconds)];
  const r = await runClient(bins['echo-load'], args, { timeoutMs: (seconds + 60) * 1000, nofile: 65536 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  let j;
  try {
    j = JSON.parse(line);
  } catch {
    throw new Error(`echo-load failed (exit ${r.code ?? r.signal}): ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return { requests: j.roundtrips, seconds: j.seconds, rps: j.rps, errors: j.errors, command: r.command };
}

/**
 * bench/fanout-load.c: `subscribers` SUBSCRIBE one channel, one connection PUBLISHes with at most
 * `window` messages not yet received by every subscriber. requests = messages delivered (all
 * subscribers together), so CPU per request is CPU per delivered message.
 */
export async function fanoutLoad(bins, { port, subscribers, seconds, window }) {
  const args = ['127.0.0.1', String(port), String(subscribers), String(seconds), String(window)];
  const r = await runClient(bins['fanout-load'], args, { timeoutMs: (seconds + 60) * 1000, nofile: 65536 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  let j;
  try {
    j = JSON.parse(line);
  } catch {
    throw new Error(`fanout-load failed (exit ${r.code ?? r.signal}): ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return { requests: j.delivered, published: j.published, seconds: j.seconds, rps: j.rps, p50Us: j.p50Us, p99Us: j.p99Us, errors: j.errors, command: r.command };
}

/**
 * bench/mqtt-load.c: `subscribers` MQTT 3.1.1 connections SUBSCRIBE to one topic (QoS 0), one more
 * PUBLISHes 16-byte messages with at most `window` not yet received by the slowest subscriber for
 * `seconds`, then `latencySeconds` one message at a time. requests = every delivery of the run (all
 * phases: the server's CPU over the run is spent on all of them), rps = deliveries per second while
 * the window was full; p50Ms/p99Ms one message at a time (every subscriber), loadedP50Ms/loadedP99Ms
 * under load (8 sampled subscribers). lost and out-of-order deliveries count as errors.
 */
export async function mqttLoad(bins, { port, subscribers, seconds, window, latencySeconds = 1 }) {
  const args = ['127.0.0.1', String(port), String(subscribers), String(seconds), String(window), String(latencySeconds)];
  const r = await runClient(bins['mqtt-load'], args, { timeoutMs: (seconds + latencySeconds + 90) * 1000, nofile: 65536 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  let j;
  try {
    j = JSON.parse(line);
  } catch {
    throw new Error(`mqtt-load failed (exit ${r.code ?? r.signal}): ${r.stderr.trim() || r.stdout.trim()}`);
  }
  const ms = (us) => (us >= 0 ? us / 1000 : null);
  return {
    requests: j.total,
    delivered: j.delivered,
    seconds: j.seconds,
    rps: j.rps,
    p50Ms: ms(j.idleP50Us),
    p99Ms: ms(j.idleP99Us),
    loadedP50Ms: ms(j.p50Us),
    loadedP99Ms: ms(j.p99Us),
    published: j.published,
    lost: j.lost,
    errors: j.errors + Math.abs(j.lost), // a negative loss is deliveries repeated
    window: j.window,
    connectSeconds: j.connectSeconds,
    clientCpuSeconds: j.clientCpuSeconds,
    command: r.command,
  };
}

const UNIT_S = { us: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };

/**
 * wrk on GET /, optionally with bench/pipeline.lua at DEPTH; scheme 'https'
 * for TLS (wrk verifies no certificate); headers: extra -H lines, e.g.
 * 'Connection: close' (wrk then reconnects after every response).
 */
export async function wrk(benchDir, { port, connections, threads, seconds, pipeline, scheme = 'http', headers = [] }) {
  const args = ['-t', String(threads), '-c', String(connections), '-d', `${seconds}s`, '--timeout', '5s'];
  for (const h of headers) args.push('-H', h);
  if (pipeline > 1) args.push('-s', join(benchDir, 'pipeline.lua'));
  args.push(`${scheme}://127.0.0.1:${port}/`);
  if (pipeline > 1) args.push('--', String(pipeline));
  const r = await runClient('wrk', args, { timeoutMs: (seconds + 60) * 1000, nofile: 65536 });
  const m = /(\d+) requests in ([\d.]+)(us|ms|s|m|h)/.exec(r.stdout);
  if (r.code !== 0 || !m) throw new Error(`wrk failed (exit ${r.code ?? r.signal}): ${r.stderr.trim() || r.stdout.trim()}`);
  const requests = Number(m[1]);
  const secs = Number(m[2]) * UNIT_S[m[3]];
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(r.stdout);
  const lat = /Latency\s+([\d.]+)(us|ms|s|m)/.exec(r.stdout);
  const errors = (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0) + (non2xx ? Number(non2xx[1]) : 0);
  return {
    requests,
    seconds: secs,
    rps: requests / secs,
    errors,
    latencyAvgMs: lat ? Number(lat[1]) * UNIT_S[lat[2]] * 1000 : null,
    command: r.command,
  };
}

/**
 * redis-benchmark for one test (ping_inline, ping_mbulk, set, get), or one
 * command given as its words (`command`, e.g. ['PUBLISH', 'ch', 'x']): N
 * requests from CLIENTS clients.
 */
export async function redisBenchmark({ port, test, command, clients, pipeline, requests }) {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-c', String(clients), '-n', String(requests), '--csv', ...(command ? [] : ['-t', test])];
  if (pipeline > 1) args.push('-P', String(pipeline));
  if (command) args.push(...command);
  const r = await runClient('redis-benchmark', args, { timeoutMs: 300_000 });
  const rows = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('"') && !l.startsWith('"test"'))
    .map((l) => l.split(',').map((c) => c.replace(/^"|"$/g, '')));
  if (r.code !== 0 || rows.length !== 1) {
    throw new Error(`redis-benchmark failed (exit ${r.code ?? r.signal}): ${(r.stderr.trim() || r.stdout.trim()).slice(-1500)}`);
  }
  const rps = Number(rows[0][1]);
  const errorLines = (r.stdout + r.stderr).split('\n').filter((l) => /error/i.test(l) && !/CONFIG/.test(l));
  return {
    requests,
    seconds: requests / rps,
    rps,
    errors: errorLines.length,
    latencyAvgMs: Number(rows[0][2]),
    latencyP99Ms: Number(rows[0][6]),
    wallSeconds: r.seconds,
    command: r.command,
  };
}
