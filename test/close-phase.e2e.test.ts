// The close phase (host/native/src/close_phase.h), observed from outside on
// `tcpmod serve` children over real sockets: a connection the module closed
// after its reply lingers -- its queued reply goes out, then writing is shut
// down and what the client still sends is discarded -- so a client still
// uploading reads its 413 instead of a reset; such a connection has no
// deadline but its send and linger deadlines, so it costs no CPU while it
// waits (issue 20, defect 2); and a send timeout in that phase counts as one
// (defect 8).
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { fixture } from './fixtures.js';
import { open, pattern, socketSet } from './net-client.js';
import { metricsPort, scrape } from './metrics.js';
import { serve, stopChild, type ServedProcess } from './server-process.js';
import { sleep, until } from './wait.js';

const MiB = 1 << 20;
const children: ServedProcess[] = [];
const { track, untrack, destroyAll } = socketSet();
afterEach(async () => {
  destroyAll();
  await Promise.all(children.splice(0).map((srv) => stopChild(srv, 8000)));
});

async function start(args: string[], module = 'build/http.wasm'): Promise<{ srv: ServedProcess; metrics: number }> {
  const srv = await serve(module, [...args, '--metrics', '127.0.0.1:0']);
  children.push(srv);
  return { srv, metrics: await metricsPort(srv, 5000) };
}

/** utime + stime of every thread of `pid`, in clock ticks (fields 14 and 15 of /proc/PID/stat). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]);
}
// USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK).
const TICKS_PER_S = 100;

/**
 * A client that writes a request head announcing `bodyBytes` and the whole body
 * before it reads anything, then reads to the end: what it read, and whether the
 * connection ended in a reset (an error) rather than an orderly end.
 */
function uploadThenRead(port: number, bodyBytes: number, body: Buffer): Promise<{ received: string; reset: boolean }> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    track(s); // its own 'error' listener below records the reset
    const chunks: Buffer[] = [];
    let reset = false;
    const timer = setTimeout(() => s.destroy(new Error('timed out')), 20_000);
    s.pause(); // nothing is read before the whole body is written
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => (reset = true));
    s.on('close', () => {
      clearTimeout(timer);
      untrack(s);
      resolve({ received: Buffer.concat(chunks).toString('latin1'), reset });
    });
    s.on('connect', () => {
      s.write(`PUT /kv/up HTTP/1.1\r\nHost: a\r\nContent-Length: ${bodyBytes}\r\n\r\n`);
      s.write(body, () => s.resume());
    });
  });
}

describe('a connection the module closed after its reply', () => {
  it('is read by a client still uploading as the 413 it was sent, not a reset, 100 times out of 100', async () => {
    const { srv } = await start(['--threads', '2']);
    const body = pattern(2 * MiB, 7);
    const results: { received: string; reset: boolean }[] = [];
    // A few at a time, so that the 100 exchanges interleave as a real server's would.
    for (let i = 0; i < 100; i += 4) results.push(...await Promise.all([0, 1, 2, 3].map(() => uploadThenRead(srv.port, body.length, body))));
    const bad = results.filter((r) => r.reset || !/^HTTP\/1\.1 413 /.test(r.received));
    expect(bad.map((r) => ({ reset: r.reset, head: r.received.slice(0, 40) }))).toEqual([]);
    expect(results.length).toBe(100);
  });

  it('costs no CPU while its reply waits on a slow reader during a drain (no spin on past deadlines)', async () => {
    // Queued mode: the 7 MiB reply does not fit the sockets, so the connection stays in its close phase
    // with output queued; SIGTERM starts a drain whose idle grace passes at once.
    const { srv } = await start(['--threads', '2', '--send-timeout', '60s', '--drain-timeout', '20s', '--drain-idle', '50ms'], await fixture('bigclose'));
    const pid = srv.proc.pid!;
    const reader = track(await open(srv.port));
    reader.pause(); // reads nothing for now
    reader.write('go');
    await sleep(500);
    srv.proc.kill('SIGTERM');
    await sleep(500); // past the drain's idle grace: the deadlines that must not apply have passed
    const t0 = cpuTicks(pid);
    const w0 = performance.now();
    await sleep(2000);
    const used = (cpuTicks(pid) - t0) / TICKS_PER_S;
    const share = used / ((performance.now() - w0) / 1000);
    expect(srv.proc.exitCode, 'the server is still draining, waiting on the reader').toBe(null);
    expect(share, `server CPU over 2 s: ${(share * 100).toFixed(1)} %`).toBeLessThan(0.05);
    // The reader then gets the whole reply.
    let got = 0;
    reader.on('data', (d: Buffer) => (got += d.length));
    reader.resume();
    await until(() => got >= 7 * MiB, 10_000, 'the whole reply');
  });

  it('counts a send timeout in its close phase as a send timeout', async () => {
    const { srv, metrics } = await start(['--threads', '2', '--send-timeout', '300ms'], await fixture('bigclose'));
    const reader = track(await open(srv.port));
    reader.pause(); // never reads: the queued reply makes no progress
    reader.write('go');
    const m = await until(async () => {
      const s = await scrape(metrics);
      return s.tcpmod_send_timeouts_total >= 1 && s.tcpmod_connections === 0 ? s : null;
    }, 10_000, 'the send timeout');
    expect(m.tcpmod_send_timeouts_total).toBe(1);
  });
});
