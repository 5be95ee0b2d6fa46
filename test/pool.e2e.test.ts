// The seed's server semantics, observed from outside: the pool grows when every
// worker is busy and shrinks back when idle, a blocked send times out, accepted
// sockets carry keepalive, connection events reach the TypeScript API.
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type TcpmodServer } from '../dist/index.js';
import { serveMetrics } from '../dist/metrics.js';
import { C, native } from '../host/sys.js';
import { open, pattern, readBytes } from './net-client.js';
import { scrape } from './metrics.js';
import { until } from './wait.js';

const servers: TcpmodServer[] = [];
function start(opts: Parameters<typeof createServer>[0]): TcpmodServer {
  const s = createServer({ logLevel: 'warn', ...opts });
  servers.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close({ drainTimeout: 0 })));
});

describe('dynamic pool', () => {
  it('grows while sends are blocked, still answers another client, and shrinks back to min when idle', async () => {
    const server = start({ module: 'build/echo.wasm', port: 0, minThreads: 1, maxThreads: 4, workerIdleTimeout: 300, sendTimeout: '30s', sendMode: 'blocking' });
    const { port } = await server.listen();
    const metrics = await serveMetrics(server, '127.0.0.1', 0);
    try {
      expect(server.stats().workers).toBe(1);
      // Three clients that send far more than they read: each pins a worker in a blocking send.
      const hogs = await Promise.all([0, 1, 2].map(() => open(port)));
      for (const h of hogs) {
        h.pause();
        h.write(pattern(8 << 20, 1));
      }
      await until(() => server.stats().workersBusy >= 3, 10_000, '3 busy workers');
      const s = server.stats();
      expect(s.workers).toBeGreaterThanOrEqual(3);
      expect(s.workers).toBeLessThanOrEqual(4);
      const m = await scrape(metrics.port);
      expect(m.tcpmod_workers).toBeGreaterThanOrEqual(3);
      expect(m.tcpmod_workers_busy).toBeGreaterThanOrEqual(3);
      expect(m.tcpmod_connections).toBe(3);
      expect(m.tcpmod_workers_started_total).toBeGreaterThanOrEqual(3);
      // A fourth client is still served.
      const c = await open(port);
      const back = readBytes(c, 11, 5000);
      c.write('still alive');
      expect((await back).toString()).toBe('still alive');
      c.destroy();
      for (const h of hogs) h.destroy();
      await until(() => server.stats().workersBusy === 0 && server.stats().connections === 0, 10_000, 'hogs to go');
      await until(() => server.stats().workers === 1, 10_000, 'the pool to shrink to 1');
      // The gauge drops when a worker decides to leave; the stopped total when its thread has exited.
      await until(() => server.stats().workersStopped === server.stats().workersStarted - 1, 5000, 'retired threads to exit');
      const after = await scrape(metrics.port);
      expect(after.tcpmod_workers).toBe(1);
      expect(after.tcpmod_workers_stopped_total).toBeGreaterThanOrEqual(2);
      expect(server.stats().workersStopped).toBeGreaterThanOrEqual(2);
    } finally {
      metrics.http.close();
    }
  });
});

describe('growth is for blocked workers', () => {
  it('does not fill the pool with threads under load that only needs CPU', async () => {
    // Every worker is busy most of the time here, but none is blocked: more threads would
    // only compete for the same cores. (Before the pool checked for stalls, this reached max.)
    const server = start({ module: 'build/echo.wasm', port: 0, minThreads: 1, maxThreads: 8 });
    const { port } = await server.listen();
    const clients = await Promise.all(Array.from({ length: 50 }, () => open(port)));
    const end = Date.now() + 1500;
    let rounds = 0;
    await Promise.all(clients.map(async (c, i) => {
      const msg = pattern(16, i);
      while (Date.now() < end) {
        const back = readBytes(c, 16);
        c.write(msg);
        expect((await back).equals(msg)).toBe(true);
        rounds++;
      }
      c.destroy();
    }));
    expect(rounds).toBeGreaterThan(1000);
    expect(server.stats().workersStarted).toBeLessThanOrEqual(2);
  });
});

describe('blocking sender', () => {
  it('disconnects a client that never reads after the send timeout, and counts it', async () => {
    const server = start({ module: 'build/echo.wasm', port: 0, threads: 2, sendTimeout: 400 });
    const { port } = await server.listen();
    const metrics = await serveMetrics(server, '127.0.0.1', 0);
    try {
      const c = await open(port);
      c.pause(); // never reads
      c.on('error', () => undefined);
      c.write(pattern(16 << 20, 2), () => undefined);
      await until(() => server.stats().sendTimeouts === 1, 10_000, 'a send timeout');
      expect(server.stats().connectionsClosed.send_timeout).toBe(1);
      const m = await scrape(metrics.port);
      expect(m.tcpmod_send_timeouts_total).toBe(1);
      expect(m['tcpmod_connections_closed_total{reason="send_timeout"}']).toBe(1);
      expect(server.stats().connections).toBe(0);
      c.destroy();
    } finally {
      metrics.http.close();
    }
  });

  it('never interleaves or reorders one connection\'s replies while the pool is busy', async () => {
    const server = start({ module: 'build/echo.wasm', port: 0, minThreads: 1, maxThreads: 3 });
    const { port } = await server.listen();
    const results = await Promise.all([1, 2, 3, 4].map(async (i) => {
      const c = await open(port);
      const data = pattern(3 << 20, i);
      const back = readBytes(c, data.length, 30_000);
      for (let o = 0; o < data.length; o += 100_000) c.write(data.subarray(o, o + 100_000));
      const got = await back;
      c.destroy();
      return got.equals(data);
    }));
    expect(results).toEqual([true, true, true, true]);
  });
});

describe('keepalive', () => {
  it('sets SO_KEEPALIVE, TCP_KEEPIDLE/INTVL/CNT and TCP_NODELAY on accepted sockets', async () => {
    const server = start({ module: 'build/echo.wasm', port: 0, threads: 1, keepalive: '600,7,4' });
    const { port } = await server.listen();
    const c = await open(port);
    await until(() => server.connections().length === 1, 5000, 'the connection');
    const { fd } = server.connections()[0];
    expect(native.getsockoptInt(fd, C.SOL_SOCKET, C.SO_KEEPALIVE)).toBe(1);
    expect(native.getsockoptInt(fd, C.IPPROTO_TCP, C.TCP_KEEPIDLE)).toBe(600);
    expect(native.getsockoptInt(fd, C.IPPROTO_TCP, C.TCP_KEEPINTVL)).toBe(7);
    expect(native.getsockoptInt(fd, C.IPPROTO_TCP, C.TCP_KEEPCNT)).toBe(4);
    expect(native.getsockoptInt(fd, C.IPPROTO_TCP, C.TCP_NODELAY)).toBe(1);
    c.destroy();
  });

  it('uses the seed\'s defaults, and none with keepalive off', async () => {
    const a = start({ module: 'build/echo.wasm', port: 0, threads: 1 });
    const b = start({ module: 'build/echo.wasm', port: 0, threads: 1, keepalive: 'off' });
    const pa = (await a.listen()).port;
    const pb = (await b.listen()).port;
    const ca = await open(pa);
    const cb = await open(pb);
    await until(() => a.connections().length === 1 && b.connections().length === 1, 5000, 'connections');
    const fa = a.connections()[0].fd;
    const fb = b.connections()[0].fd;
    expect([C.TCP_KEEPIDLE, C.TCP_KEEPINTVL, C.TCP_KEEPCNT].map((o) => native.getsockoptInt(fa, C.IPPROTO_TCP, o))).toEqual([1800, 5, 3]);
    expect(native.getsockoptInt(fa, C.SOL_SOCKET, C.SO_KEEPALIVE)).toBe(1);
    expect(native.getsockoptInt(fb, C.SOL_SOCKET, C.SO_KEEPALIVE)).toBe(0);
    ca.destroy();
    cb.destroy();
  });
});

describe('lifecycle', () => {
  it('goes created → starting → running → stopping → stopped, and emits connection/close events when asked', async () => {
    const server = start({ module: 'build/echo.wasm', port: 0, threads: 2 });
    const states: string[] = [server.state];
    const listening = server.listen();
    states.push(server.state);
    await listening;
    states.push(server.state);
    const events: [string, number, string?][] = [];
    server.on('connection', (conn) => events.push(['connection', conn]));
    server.on('close', (conn, reason) => events.push(['close', conn, reason]));
    const c = await open(server.address()!.port);
    const back = readBytes(c, 2);
    c.write('hi');
    await back;
    c.end();
    await until(() => events.length === 2, 5000, 'two events');
    expect(events[0][0]).toBe('connection');
    expect(events[1]).toEqual(['close', events[0][1], 'peer']); // echo closes on EOF: the peer closed it
    const closing = server.close();
    states.push(server.state);
    await closing;
    states.push(server.state);
    expect(states).toEqual(['created', 'starting', 'running', 'stopping', 'stopped']);
  });
});
