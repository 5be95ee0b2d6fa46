// Hostile clients, observed from outside: a slowloris trickle is cut off by the
// frame timeout while a well-behaved client goes on being served; an idle
// connection is cut off by the read timeout while a slow but steady one is not;
// the connection limit refuses (accepts and closes) the one over it and admits
// again once there is room; running out of descriptors closes the waiting
// connections instead of leaving them hanging, without spinning; and a graceful
// drain ends as soon as the clients are done, not at the drain timeout.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createServer, type TcpmodServer } from '../dist/index.js';
import { open, readBytes, socketSet, untilClosed } from './net-client.js';
import { takeResponses, type HttpResponse } from './http-responses.js';
import { requireTool, run, serve } from './server-process.js';
import { makeTestCerts } from './tls-certs.js';
import { scrape } from './metrics.js';
import { sleep, until } from './wait.js';

const servers: TcpmodServer[] = [];
function start(opts: Parameters<typeof createServer>[0]): TcpmodServer {
  const s = createServer({ port: 0, threads: 2, logLevel: 'warn', ...opts });
  servers.push(s);
  return s;
}
const { track, destroyAll } = socketSet();
afterEach(async () => {
  destroyAll();
  await Promise.all(servers.splice(0).map((s) => s.close({ drainTimeout: 0 })));
});

const debug = (...a: unknown[]) => process.env.LIMITS_DEBUG && console.log(...a);
/** Opens a connection and proves it is served: one byte out, the same byte back. */
async function openEcho(port: number, byte = 'e', timeoutMs = 2000): Promise<Socket> {
  const s = track(await open(port));
  await echoes(s, byte, timeoutMs);
  return s;
}

async function echoes(s: Socket, byte: string, timeoutMs = 2000): Promise<void> {
  const back = readBytes(s, 1, timeoutMs);
  s.write(byte);
  expect((await back).toString()).toBe(byte);
}

/** When the peer ended or reset the connection (performance.now()), and the bytes that came before. */
interface Watched { sock: Socket; closedAt: number | null; data: number; closed: Promise<void> }
function watch(sock: Socket): Watched {
  const w: Watched = { sock, closedAt: null, data: 0, closed: Promise.resolve() };
  w.closed = new Promise<void>((resolve) => {
    const done = () => {
      w.closedAt ??= performance.now();
      resolve();
    };
    sock.on('data', (d: Buffer) => (w.data += d.length));
    sock.once('end', done);
    sock.once('error', done);
    sock.once('close', done);
  });
  return w;
}

type Response = HttpResponse<string>;

const GET = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n';

describe('frame timeout', () => {
  it('closes 20 slowloris connections 1 to 2.5 s after their first byte while a keep-alive client is answered every time', async () => {
    const server = start({ module: 'build/http.wasm', frameTimeout: '1s' });
    const { port } = await server.listen();

    // The well-behaved client: GET / every 100 ms on one connection.
    const good = track(await open(port));
    const goodState = { buf: '' };
    const answers: Response[] = [];
    let goodClosed = false;
    let sent = 0;
    good.setEncoding('latin1');
    good.on('data', (d: string) => {
      goodState.buf += d;
      answers.push(...takeResponses(goodState));
    });
    good.on('close', () => (goodClosed = true));
    const send = () => {
      good.write(GET);
      sent++;
    };
    send();
    const ticker = setInterval(send, 100);

    try {
      const slow = await Promise.all(Array.from({ length: 20 }, async () => watch(track(await open(port)))));
      const timers: NodeJS.Timeout[] = [];
      const firstByte = slow.map((w) => {
        const t0 = performance.now();
        w.sock.write('GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ');
        timers.push(setInterval(() => {
          if (w.closedAt === null) w.sock.write('a');
        }, 200));
        return t0;
      });
      try {
        await Promise.race([Promise.all(slow.map((w) => w.closed)), sleep(4000)]);
      } finally {
        timers.forEach(clearInterval);
      }
      const after = slow.map((w, i) => (w.closedAt === null ? null : Math.round(w.closedAt - firstByte[i])));
      // The frame timer starts when the server first holds an incomplete frame, after the client's
      // first write; 5 ms allow for the server's millisecond clock.
      for (const ms of after) {
        expect(ms, `close times after the first byte (ms): ${after.join(', ')}`).not.toBeNull();
        expect(ms!, `close times after the first byte (ms): ${after.join(', ')}`).toBeGreaterThanOrEqual(995);
        expect(ms!, `close times after the first byte (ms): ${after.join(', ')}`).toBeLessThanOrEqual(2500);
      }
      await until(() => server.stats().connectionsClosed.timeout >= 20, 5000, '20 timeout closes counted');
      expect(server.stats().connectionsClosed.timeout).toBeGreaterThanOrEqual(20);
      debug('slowloris close times (ms after first byte):', after.join(' '));
      // The good client goes on for 2.5 s in all, past every slowloris close.
      await sleep(Math.max(0, 2500 - (performance.now() - firstByte[0])));
    } finally {
      clearInterval(ticker);
    }
    // Every request the good client sent is answered, all 200, and it is still open.
    await until(() => answers.length >= sent, 5000, `${sent} answers (have ${answers.length})`);
    expect(sent).toBeGreaterThanOrEqual(20);
    expect(answers.length).toBe(sent);
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
    expect(answers.every((a) => a.body === 'Hello, World!')).toBe(true);
    expect(goodClosed).toBe(false);
    expect(server.stats().connectionsClosed.timeout).toBeLessThanOrEqual(20);
  });
});

describe('frame timeout on a TLS handshake', () => {
  it('closes a client that stalls mid-handshake (reason timeout, no TLS failure), while a full handshake is served', async () => {
    const certs = makeTestCerts();
    try {
      const server = start({ module: 'build/echo.wasm', threads: 2, frameTimeout: 1000, tlsCert: certs.serverChain, tlsKey: certs.serverKey });
      const { port } = await server.listen();
      const stall = track(await open(port));
      const closed = untilClosed(stall, 5000);
      const t0 = Date.now();
      stall.write(Buffer.from([0x16, 0x03, 0x01, 0x02])); // the start of a ClientHello record, then nothing
      await closed;
      const took = Date.now() - t0;
      expect(took).toBeGreaterThanOrEqual(950);
      expect(took).toBeLessThan(2500);
      // The client sees the close before the main thread has counted it: wait for the count.
      await until(() => server.stats().connectionsClosed.timeout >= 1, 5000, 'the timeout close to be counted');
      const st = server.stats();
      expect(st.connectionsClosed.timeout).toBe(1);
      expect(st.connectionsClosed.tls).toBe(0);
      // A client that completes its handshake is served as usual.
      const s = tlsConnect({ port, host: '127.0.0.1', servername: 'localhost', ca: readFileSync(certs.caCert) });
      s.on('error', () => undefined);
      await new Promise((r) => s.once('secureConnect', r));
      s.write('hi');
      const [echo] = await Promise.all([new Promise<Buffer>((r) => s.once('data', r))]);
      expect(String(echo)).toBe('hi');
      s.destroy();
    } finally {
      certs.remove();
    }
  });
});

describe('read timeout', () => {
  it('closes an idle connection after it (reason timeout); one that sends a byte every 150 ms stays open and is echoed', async () => {
    const server = start({ module: 'build/echo.wasm', readTimeout: '500ms' });
    const { port } = await server.listen();
    const [idleSock, busySock] = await Promise.all([open(port), open(port)]);
    const t0 = performance.now();
    const idle = watch(track(idleSock));
    const busy = watch(track(busySock));

    let written = 0;
    const ticker = setInterval(() => {
      if (busy.closedAt === null) {
        busy.sock.write('b');
        written++;
      }
    }, 150);
    try {
      await Promise.race([idle.closed, sleep(2500)]);
      const idleAfter = idle.closedAt === null ? null : Math.round(idle.closedAt - t0);
      debug('idle connection closed after (ms):', idleAfter);
      expect(idleAfter, 'the idle connection was not closed within 2.5 s').not.toBeNull();
      expect(idleAfter!).toBeGreaterThanOrEqual(450);
      expect(idleAfter!).toBeLessThanOrEqual(2000);
      expect(idle.data).toBe(0);
      await until(() => server.stats().connectionsClosed.timeout === 1, 5000, 'the timeout close to be counted');
      // The busy one goes on for 2 s in all.
      await sleep(Math.max(0, 2000 - (performance.now() - t0)));
    } finally {
      clearInterval(ticker);
    }
    expect(busy.closedAt, 'the connection sending every 150 ms was closed').toBeNull();
    expect(written).toBeGreaterThanOrEqual(10);
    await until(() => busy.data >= written, 5000, `${written} echoes (have ${busy.data})`);
    expect(busy.data).toBe(written);
    expect(busy.closedAt).toBeNull();
    const closed = server.stats().connectionsClosed;
    expect(closed.timeout).toBe(1);
    expect(closed.peer).toBe(0);
  });
});

describe('connection limit', () => {
  it('refuses the 101st of maxConnections 100 at once, and admits again once there is room', async () => {
    // logLevel error: the refusal's warning is expected here.
    const server = start({ module: 'build/echo.wasm', maxConnections: 100, logLevel: 'error' });
    const { port } = await server.listen();
    expect(server.stats().maxConnections).toBe(100);
    const held: Socket[] = [];
    // In batches, so a 2-core box is not asked for 100 handshakes at once.
    for (let i = 0; i < 100; i += 20) held.push(...(await Promise.all(Array.from({ length: 20 }, () => openEcho(port)))));
    await until(() => server.stats().connections === 100, 5000, '100 connections in the table');

    const over = track(await open(port));
    const t0 = performance.now();
    const got = await untilClosed(over, 1000);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(got.length).toBe(0);
    await until(() => server.stats().connectionsRefused.limit >= 1, 5000, 'the refusal to be counted');
    expect(server.stats().connectionsRefused).toMatchObject({ limit: 1, fd: 0 });
    expect(server.stats().connections).toBe(100);

    for (const s of held.splice(0, 10)) s.destroy();
    await until(() => server.stats().connections === 90, 5000, '90 connections');
    const again = await openEcho(port, 'z');
    expect(again.destroyed).toBe(false);
    // The 90 left are still served too.
    await echoes(held[0], 'y');
    await echoes(held[89], 'x');
    expect(server.stats().connectionsRefused.limit).toBe(1);
    expect(server.stats().connections).toBe(91);
  });
});

/** A `tcpmod serve` child under `prlimit --nofile=64:64`, with metrics. */
interface Limited { proc: ChildProcess; port: number; metricsPort: number; stderr: () => string }
const children = new Set<ChildProcess>();
afterAll(() => {
  for (const p of children) p.kill('SIGKILL');
});

function serveLimited(nofile: number): Promise<Limited> {
  const proc = spawn('prlimit', [`--nofile=${nofile}:${nofile}`, process.execPath, 'bin/tcpmod.js', 'serve', 'build/echo.wasm',
    '--port', '0', '--threads', '2', '--max-connections', '10000', '--metrics', '127.0.0.1:0', '--log-level', 'warn'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  let out = '';
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 15_000);
    const check = () => {
      const l = /listening on 127\.0\.0\.1:(\d+)\n/.exec(out);
      const m = /metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics\n/.exec(err);
      if (!l || !m) return;
      clearTimeout(timer);
      resolve({ proc, port: Number(l[1]), metricsPort: Number(m[1]), stderr: () => err });
    };
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      check();
    });
    proc.stderr!.on('data', check);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening: ${err}`));
    });
  });
}

/** utime + stime of every thread of `pid`, in seconds. */
function cpuSeconds(pid: number, tck: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / tck; // fields 14 and 15; rest[0] is field 3
}

describe('out of file descriptors', () => {
  it('closes the connections it cannot take instead of leaving them hanging, without spinning, and serves again after', async () => {
    await requireTool('prlimit');
    const tck = Number((await run('getconf', ['CLK_TCK'])).stdout.trim()) || 100;
    const srv = await serveLimited(64);
    const pid = srv.proc.pid!;
    try {
      // prlimit execs node: the pid is the server's, and its limit is 64.
      expect(readFileSync(`/proc/${pid}/limits`, 'utf8')).toMatch(/Max open files\s+64\s+64/);
      const early = await Promise.all(Array.from({ length: 5 }, () => openEcho(srv.port)));

      // The flood: 150 connections held open, sending nothing.
      const floodStart = Date.now();
      const flood = await Promise.all(Array.from({ length: 150 }, async () => {
        const s = track(connect({ port: srv.port, host: '127.0.0.1', noDelay: true }));
        const w = watch(s);
        const connected = await new Promise<number | null>((resolve) => {
          s.once('connect', () => resolve(performance.now()));
          s.once('error', () => resolve(null));
        });
        return { w, connected };
      }));
      await sleep(2000);
      const closedLate: number[] = [];
      let closedInTime = 0;
      for (const { w, connected } of flood) {
        if (w.closedAt === null) continue;
        const after = connected === null ? 0 : w.closedAt - connected;
        if (after <= 2000) closedInTime++;
        else closedLate.push(Math.round(after));
      }
      expect(closedLate, 'flood connections closed more than 2 s after connecting (ms)').toEqual([]);
      // Those still open must be served: each echoes within 2 s.
      const stillOpen = flood.filter(({ w }) => w.closedAt === null);
      const results = await Promise.all(stillOpen.map(({ w }) => echoes(w.sock, 'f', 2000).then(() => true, () => false)));
      debug(`flood: ${closedInTime} closed in time, ${stillOpen.length} open`);
      const hanging = results.filter((ok) => !ok).length;
      expect(hanging, `${hanging} of ${stillOpen.length} open flood connections neither closed nor echoed (${closedInTime} were closed)`).toBe(0);
      // The limit was really reached: most of the flood could not be taken.
      expect(closedInTime).toBeGreaterThanOrEqual(1);
      expect(closedInTime + stillOpen.length).toBe(150);

      // The early connections are still served.
      for (const [i, s] of early.entries()) await echoes(s, String(i));

      // Flood held open, nothing sent: the server is not busy.
      await sleep(200);
      const c0 = cpuSeconds(pid, tck);
      const w0 = performance.now();
      await sleep(2000);
      const cpu = (cpuSeconds(pid, tck) - c0) / ((performance.now() - w0) / 1000);
      debug(`server CPU holding the flood: ${(cpu * 100).toFixed(1)}%`);
      expect(cpu, `server CPU while holding the flood: ${(cpu * 100).toFixed(1)}% of a core`).toBeLessThan(0.2);

      // The metrics server needs a descriptor too: it may not answer under exhaustion.
      let metrics = await scrape(srv.metricsPort, 2000).catch(() => null);
      debug('metrics under exhaustion:', metrics ? metrics['tcpmod_connections_refused_total{reason="fd"}'] : 'no answer');
      const floodSeconds = (Date.now() - floodStart) / 1000;

      for (const { w } of flood) w.sock.destroy();
      // The server sees the flood's connections go and has descriptors again.
      await until(async () => {
        metrics = await scrape(srv.metricsPort, 1000).catch(() => null);
        return metrics?.tcpmod_connections === 5;
      }, 5000, 'the server to be back to the 5 early connections');
      expect(metrics!['tcpmod_connections_refused_total{reason="fd"}']).toBeGreaterThanOrEqual(1);
      expect(metrics!['tcpmod_connections_refused_total{reason="limit"}']).toBe(0);
      // Warned at most once a second.
      debug('metrics after:', metrics!['tcpmod_connections_refused_total{reason="fd"}'], metrics!.tcpmod_connections_accepted_total);
      const warnings = srv.stderr().split('\n').filter((l) => l.includes('out of file descriptors')).length;
      expect(warnings).toBeGreaterThanOrEqual(1);
      expect(warnings).toBeLessThanOrEqual(Math.ceil(floodSeconds) + 1);

      const fresh = await Promise.all(Array.from({ length: 5 }, () => openEcho(srv.port, 'n')));
      for (const s of [...fresh, ...early]) s.destroy();
    } finally {
      srv.proc.kill('SIGTERM');
      const exited = await Promise.race([
        new Promise<boolean>((r) => (srv.proc.exitCode !== null || srv.proc.signalCode !== null ? r(true) : srv.proc.once('exit', () => r(true)))),
        sleep(8000).then(() => false),
      ]);
      if (!exited) srv.proc.kill('SIGKILL');
    }
  });
});

describe('graceful drain', () => {
  it('ends as soon as busy keep-alive clients got Connection: close and an idle one passed --drain-idle', async () => {
    const srv = await serve('build/http.wasm', ['--threads', '2', '--drain-timeout', '10s']);

    // The idle keep-alive connection: one request, then silent.
    const idleSock = track(await open(srv.port));
    const idleState = { buf: '' };
    let idleAnswers: Response[] = [];
    let idleLate = 0; // bytes after its one answer
    idleSock.setEncoding('latin1');
    idleSock.on('data', (d: string) => {
      if (idleAnswers.length) idleLate += d.length;
      idleState.buf += d;
      idleAnswers = idleAnswers.concat(takeResponses(idleState));
    });
    const idle = watch(idleSock);
    idleSock.write(GET);
    await until(() => idleAnswers.length === 1, 5000, 'the idle connection\'s answer');

    // 50 clients, never idle: the next request goes out as soon as a response is complete.
    interface Client { answers: Response[]; leftover: string; closed: boolean; error: string | null }
    const clients: Client[] = [];
    const socks = await Promise.all(Array.from({ length: 50 }, () => open(srv.port)));
    const closedAll = Promise.all(socks.map((s) => {
      track(s);
      const c: Client = { answers: [], leftover: '', closed: false, error: null };
      clients.push(c);
      const state = { buf: '' };
      s.setEncoding('latin1');
      s.on('data', (d: string) => {
        state.buf += d;
        for (const r of takeResponses(state)) {
          c.answers.push(r);
          if (r.headers.get('connection') !== 'close') s.write(GET);
        }
      });
      s.on('error', (e) => (c.error ??= String(e)));
      s.write(GET);
      return new Promise<void>((resolve) => s.once('close', () => {
        c.closed = true;
        c.leftover = state.buf;
        resolve();
      }));
    }));

    await sleep(1000);
    const answeredBefore = clients.reduce((n, c) => n + c.answers.length, 0);
    const sigAt = performance.now();
    const code = await Promise.race([srv.stop('SIGTERM'), sleep(9000).then(() => 'still running' as const)]);
    const exitMs = performance.now() - sigAt;
    debug(`exit ${String(code)} after ${Math.round(exitMs)} ms; answers before SIGTERM ${answeredBefore}`);
    expect(code).toBe(0);
    expect(exitMs).toBeLessThan(5000);

    await Promise.race([closedAll, sleep(2000)]);
    const bad = clients.flatMap((c, i) => {
      const last = c.answers[c.answers.length - 1];
      const problems = [];
      if (!c.closed) problems.push('not closed');
      if (c.answers.length === 0) problems.push('no response');
      if (c.leftover !== '') problems.push(`partial response at close: ${JSON.stringify(c.leftover.slice(0, 80))}`);
      if (last && last.headers.get('connection') !== 'close') problems.push('last response without Connection: close');
      if (c.answers.some((a) => a.status !== 200)) problems.push('a status other than 200');
      if (c.error) problems.push(c.error);
      return problems.length ? [`client ${i} (${c.answers.length} responses): ${problems.join('; ')}`] : [];
    });
    expect(bad).toEqual([]);
    expect(answeredBefore).toBeGreaterThanOrEqual(50);

    // The idle one was closed about --drain-idle (1 s) after the signal, without another byte.
    expect(idle.closedAt, 'the idle connection was not closed').not.toBeNull();
    const idleMs = idle.closedAt! - sigAt;
    debug(`idle closed ${Math.round(idleMs)} ms after SIGTERM`);
    expect(idleMs, `idle connection closed ${Math.round(idleMs)} ms after SIGTERM`).toBeGreaterThanOrEqual(950);
    expect(idleMs, `idle connection closed ${Math.round(idleMs)} ms after SIGTERM`).toBeLessThan(3000);
    expect(idleLate).toBe(0);
  });
});
