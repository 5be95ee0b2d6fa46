// Upstreams (ABI v1.2): test/fixtures/upstream-proxy.wat, a byte proxy, in front
// of a real redis-server and of small scripted upstreams, over real sockets.
// redis-cli and redis-benchmark through it; refused and timed-out connects,
// addresses tried in order; an upstream that closes mid-stream; a client that
// closes (its upstream goes, no descriptor leaks over 1,000 cycles); ownership
// under load (the fixture traps when two callbacks of one connection overlap).
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createConnection, createServer as netServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type TcpmodServer } from '../dist/index.js';
import { metricsRegistry } from '../dist/metrics.js';
import { compileModule } from '../dist/module/load.js';
import { native } from '../host/sys.js';
import { compileAs } from './asc-source.js';
import { FRAME_PROXY_SOURCE } from './frame-proxy.js';
import { fixture, scratchFile, watToWasm } from './fixtures.js';
import { open, readBytes, untilClosed } from './net-client.js';
import { requireTool, run } from './server-process.js';
import { freePort, RedisServer } from './services.js';
import { sleep, until } from './wait.js';

const redis = new RedisServer();
const servers: TcpmodServer[] = [];
let proxyPath: string;

beforeAll(async () => {
  await requireTool('redis-server');
  await requireTool('redis-benchmark');
  await redis.start();
  proxyPath = await fixture('upstream-proxy');
}, 30_000);
afterAll(async () => {
  for (const s of servers) await s.close({ drainTimeout: 0 }).catch(() => undefined);
  await redis.kill();
});

async function proxy(upstream: string | string[], extra: Record<string, unknown> = {}): Promise<{ server: TcpmodServer; port: number }> {
  const server = createServer({ module: proxyPath, port: 0, threads: 2, logLevel: 'silent', upstream, ...extra });
  servers.push(server);
  return { server, port: (await server.listen()).port };
}

const faults = (s: TcpmodServer) => Object.values(s.stats().moduleFaults).reduce((a, b) => a + b, 0);
const fds = () => readdirSync('/proc/self/fd').length;

/** A scripted upstream: `onConn` gets each accepted socket. */
async function scripted(onConn: (s: Socket) => void): Promise<{ port: number; server: Server; closed: () => number }> {
  let closed = 0;
  const server = netServer((s) => {
    s.on('error', () => undefined);
    s.on('close', () => closed++);
    s.resume(); // reads (and so sees the proxy's FIN) even when the script does not listen for data
    onConn(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, server, closed: () => closed };
}

describe('a proxy module in front of redis-server', () => {
  it('redis-cli gets the same answers through it as directly', async () => {
    const { port } = await proxy(`redis=127.0.0.1:${redis.port}`);
    const script = 'SET k1 hello\nGET k1\nINCR n\nINCRBY n 41\nRPUSH l a b c\nLRANGE l 0 -1\nGET missing\nDEL k1 n l\nPING\n';
    const direct = await (async () => {
      await redis.cli('FLUSHALL');
      return run('redis-cli', ['-p', String(redis.port)], { input: script, timeoutMs: 10_000 });
    })();
    await redis.cli('FLUSHALL');
    const through = await run('redis-cli', ['-p', String(port)], { input: script, timeoutMs: 10_000 });
    expect(through.code).toBe(0);
    expect(through.stdout).toBe(direct.stdout);
    expect(through.stdout).toContain('hello');
    // A value larger than the module's regions (16 KiB) comes back whole, in many upstream events.
    const big = 'x'.repeat(300_000);
    expect((await run('redis-cli', ['-p', String(port), '-x', 'SET', 'big'], { input: big, timeoutMs: 10_000 })).stdout.trim()).toBe('OK');
    expect((await run('redis-cli', ['-p', String(port), 'STRLEN', 'big'], { timeoutMs: 10_000 })).stdout.trim()).toBe(String(big.length));
    const got = await run('redis-cli', ['-p', String(port), 'GET', 'big'], { timeoutMs: 10_000 });
    expect(got.stdout.trim()).toBe(big);
  }, 30_000);

  it('every request of redis-benchmark (-c 50, and -P 16) reaches redis exactly once, with --threads 2 --batch 1 and no overlap', async () => {
    const { server, port } = await proxy(`redis=127.0.0.1:${redis.port}`, { batch: 1 });
    await redis.cli('FLUSHALL');
    const bench = (extra: string[]) => run('redis-benchmark', ['-p', String(port), '-q', '-n', '5000', '-c', '50', '-t', 'set,get,incr', ...extra], { timeoutMs: 120_000 });
    let r = await bench([]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/INCR: [\d.]+ requests per second/);
    // redis-benchmark's INCR uses one key: 5,000 increments, each passed on exactly once.
    expect((await redis.cli('GET', 'counter:__rand_int__')).stdout.trim()).toBe('5000');
    r = await bench(['-P', '16']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/INCR: [\d.]+ requests per second/);
    // With -P, redis-benchmark finishes each client's last pipeline, so a few more than -n may go (it counts replies).
    const n = Number((await redis.cli('GET', 'counter:__rand_int__')).stdout.trim());
    expect(n).toBeGreaterThanOrEqual(10_000);
    expect(n).toBeLessThan(10_000 + 50 * 16);
    // The fixture traps (a fault) when a callback of a connection starts while another of it runs.
    expect(faults(server)).toBe(0);
    await until(() => native.upstreamStats().open === 0, 10_000, 'every upstream closed with its client');
  }, 180_000);

  it('input split at every byte reaches redis whole; a reply split at every byte reaches the client whole', async () => {
    const { port } = await proxy(`redis=127.0.0.1:${redis.port}`);
    const c = await open(port);
    const req = Buffer.from('*3\r\n$3\r\nSET\r\n$5\r\nsplit\r\n$3\r\nabc\r\n*2\r\n$3\r\nGET\r\n$5\r\nsplit\r\n');
    const reply = readBytes(c, 14);
    for (const b of req) {
      c.write(Buffer.from([b]));
      await sleep(1);
    }
    expect((await reply).toString()).toBe('+OK\r\n$3\r\nabc\r\n');
    c.destroy();

    const text = Buffer.from('a reply sent one byte at a time\n');
    const up = await scripted(async (s) => {
      for (const b of text) {
        s.write(Buffer.from([b]));
        await sleep(2);
      }
    });
    const p = await proxy(`redis=127.0.0.1:${up.port}`);
    const c2 = await open(p.port);
    c2.write('go');
    expect((await readBytes(c2, text.length)).equals(text)).toBe(true);
    c2.destroy();
    up.server.close();
  }, 30_000);
});

describe('upstream faults are the module\'s events, never the worker\'s', () => {
  it('a refused upstream: FAILED, and the module answers with an error', async () => {
    const dead = await freePort();
    const before = native.upstreamStats();
    const { server, port } = await proxy(`redis=127.0.0.1:${dead}`);
    const c = await open(port);
    c.write('PING\r\n');
    // The module heard why (conn_info key 4).
    expect((await untilClosed(c)).toString()).toBe(`-ERR upstream failed: refused: Connection refused (127.0.0.1)\r\n`);
    const after = native.upstreamStats();
    expect(after.refused - before.refused).toBe(1);
    expect(after.failed - before.failed).toBe(1);
    expect(faults(server)).toBe(0);
    const text = await metricsRegistry(server).scrape();
    expect(text).toMatch(new RegExp(`^tcpmod_upstream_connect_failures_total\\{reason="refused"\\} ${after.refused}$`, 'm'));
    expect(text).toMatch(new RegExp(`^tcpmod_upstream_failed_total ${after.failed}$`, 'm'));
    expect(text).toMatch(/^tcpmod_upstream_open \d+$/m);
  });

  it('several addresses are tried in order: a dead first one, then redis', async () => {
    const dead = await freePort();
    const before = native.upstreamStats();
    const { port } = await proxy(`redis=127.0.0.1:${dead},127.0.0.1:${redis.port}`);
    for (let i = 0; i < 3; i++) {
      const r = await run('redis-cli', ['-p', String(port), 'PING'], { timeoutMs: 10_000 });
      expect(r.stdout.trim()).toBe('PONG');
    }
    // In order, not round-robin: every connection tried the dead address first.
    expect(native.upstreamStats().refused - before.refused).toBe(3);
  });

  it('a connect that never completes: FAILED after the connect timeout', async () => {
    // A listener with a full accept queue that never accepts: further SYNs are dropped, the connect hangs.
    const py = spawn('python3', ['-c', [
      'import socket,sys,time',
      's=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(0)',
      'print(s.getsockname()[1]); sys.stdout.flush()',
      'time.sleep(60)',
    ].join('\n')], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const port = Number(await new Promise<string>((r) => py.stdout!.once('data', (d) => r(String(d).trim()))));
      // Fill the queue (a backlog of 0 holds one or two): these connect and stay unaccepted.
      const fillers: Socket[] = [];
      for (let i = 0; i < 4; i++) {
        const f = createConnection({ port, host: '127.0.0.1' });
        f.on('error', () => undefined);
        fillers.push(f);
      }
      await sleep(200);
      const before = native.upstreamStats();
      const p = await proxy(`redis=127.0.0.1:${port}`, { upstreamConnectTimeout: 300 });
      const c = await open(p.port);
      c.write('PING\r\n');
      const t0 = Date.now();
      expect((await untilClosed(c)).toString()).toBe('-ERR upstream failed: timeout: no connection within the connect timeout (127.0.0.1)\r\n');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(200); // not refused: it waited for the timeout
      expect(native.upstreamStats().timeouts - before.timeouts).toBe(1);
      for (const f of fillers) f.destroy();
    } finally {
      (py as ChildProcess).kill('SIGKILL');
    }
  }, 20_000);

  it('an upstream that never answers: CLOSED after --upstream-read-timeout (why timeout), the client is closed, the next one served', async () => {
    // The first connection to it reads and never answers; later ones answer each request.
    let n = 0;
    const up = await scripted((s) => { if (n++ > 0) s.on('data', () => s.write('+PONG\r\n')); });
    const before = native.upstreamStats();
    const { server, port } = await proxy(`redis=127.0.0.1:${up.port}`, { upstreamReadTimeout: 300 });
    const c = await open(port);
    c.write('PING\r\n');
    const t0 = Date.now();
    expect((await untilClosed(c, 5_000)).length).toBe(0);  // the fixture closes its client on CLOSED
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);   // it waited for the timeout
    const after = native.upstreamStats();
    expect(after.readTimeouts - before.readTimeouts).toBe(1);
    expect(after.closed - before.closed).toBe(1);
    await until(() => native.upstreamStats().open <= before.open, 5_000, 'the upstream gauge back to its baseline');  // per process: earlier tests' may close meanwhile
    await until(() => up.closed() === 1, 5_000, 'the socket to the upstream closed');  // the host closed the socket to it
    const text = await metricsRegistry(server).scrape();  // per process: the counter as upstreamStats has it
    expect(text).toMatch(new RegExp(`^tcpmod_upstream_read_timeouts_total ${after.readTimeouts}$`, 'm'));
    // The worker goes on: the next client is served by the same backend.
    const d = await open(port);
    d.write('PING\r\n');
    expect((await readBytes(d, 7)).toString()).toBe('+PONG\r\n');
    d.destroy();
    expect(faults(server)).toBe(0);
    up.server.close();
  }, 20_000);

  it('an upstream that answers slowly but within the read timeout is not cut, nor is an idle one', async () => {
    // Each answer 100 ms after its request, with a 300 ms timeout, for 1.5 s in all: a timer measured
    // from the first send rather than from the last answer would cut it.
    const up = await scripted((s) => s.on('data', () => setTimeout(() => s.write('+PONG\r\n'), 100)));
    const before = native.upstreamStats();
    const { server, port } = await proxy(`redis=127.0.0.1:${up.port}`, { upstreamReadTimeout: 300 });
    const c = await open(port);
    const t0 = Date.now();
    for (let i = 0; i < 15 || Date.now() - t0 < 1_200; i++) {
      c.write('PING\r\n');
      expect((await readBytes(c, 7)).toString()).toBe('+PONG\r\n');
    }
    // Idle (everything sent was answered): it stays open past the timeout.
    await sleep(1_000);
    c.write('PING\r\n');
    expect((await readBytes(c, 7)).toString()).toBe('+PONG\r\n');
    const after = native.upstreamStats();
    expect(after.readTimeouts - before.readTimeouts).toBe(0);
    expect(after.closed - before.closed).toBe(0);
    expect(up.closed()).toBe(0);
    c.destroy();
    await until(() => up.closed() === 1, 5_000, 'the upstream closed with its client');
    await until(() => native.upstreamStats().open <= before.open, 5_000, 'the upstream gauge back to its baseline');  // per process: earlier tests' may close meanwhile
    expect(faults(server)).toBe(0);
    up.server.close();
  }, 20_000);

  it('a short reply is read with one recv: no second read to EAGAIN, and a reply with its FIN still ends in CLOSED', async () => {
    const { server, port } = await proxy(`redis=127.0.0.1:${redis.port}`);
    const c = await open(port);
    c.write('PING\r\n');
    expect((await readBytes(c, 7)).toString()).toBe('+PONG\r\n');  // connected: later replies are plain DATA
    const rounds = 200;
    const before = native.upstreamStats().reads;
    for (let i = 0; i < rounds; i++) {
      c.write('PING\r\n');
      expect((await readBytes(c, 7)).toString()).toBe('+PONG\r\n');
    }
    const reads = native.upstreamStats().reads - before;
    // One recv per 7-byte reply (reading on to EAGAIN took two); the slack is for a wake that finds nothing.
    expect(reads).toBeGreaterThanOrEqual(rounds);
    expect(reads).toBeLessThan(rounds * 1.5);
    c.destroy();
    // A reply and the upstream's FIN that come together: the short read is not the end of that look (EPOLLRDHUP).
    const up = await scripted((s) => s.on('data', () => s.end('+bye\r\n')));
    const { port: p2 } = await proxy(`redis=127.0.0.1:${up.port}`);
    for (let i = 0; i < 50; i++) {
      const d = await open(p2);
      d.write('PING\r\n');
      expect((await untilClosed(d)).toString()).toBe('+bye\r\n');
    }
    expect(faults(server)).toBe(0);
    up.server.close();
  }, 30_000);

  it('an upstream that closes mid-stream: its last bytes, then CLOSED, and the module closes the client', async () => {
    const up = await scripted((s) => s.once('data', () => s.end('partial repl')));
    const { server, port } = await proxy(`redis=127.0.0.1:${up.port}`);
    const c = await open(port);
    c.write('GET x\r\n');
    expect((await untilClosed(c)).toString()).toBe('partial repl');
    expect(faults(server)).toBe(0);
    up.server.close();
  });

  it('a name the operator did not list: upstream_open says -1 and the module answers its error', async () => {
    const { port } = await proxy(`other=127.0.0.1:${redis.port}`);
    const c = await open(port);
    c.write('PING\r\n');
    expect((await untilClosed(c)).toString()).toBe('-ERR no upstream\r\n');
  });

  it('a client that closes closes its upstream: 1,000 cycles leave no descriptor behind', async () => {
    const up = await scripted(() => undefined);
    const { port } = await proxy(`redis=127.0.0.1:${up.port}`);
    // Warm up (workers, instances, pools), then count.
    for (let i = 0; i < 20; i++) (await open(port)).destroy();
    await until(() => native.upstreamStats().open === 0, 10_000, 'warm-up upstreams closed');
    const baseline = fds();
    for (let i = 0; i < 1000; i++) {
      const c = await open(port);
      c.write('x');
      if (i % 2) await sleep(0);
      c.destroy();
    }
    await until(() => native.upstreamStats().open === 0, 20_000, `every upstream closed (${JSON.stringify(native.upstreamStats())})`);
    await until(() => up.closed() >= 1000, 20_000, `the upstream saw every connection close (${up.closed()})`);
    await until(() => fds() <= baseline, 10_000, `descriptors back to ${baseline} (now ${fds()})`);
    up.server.close();
  }, 60_000);
});

describe('the AssemblyScript SDK', () => {
  // A proxy written against assembly/sdk: Conn.openUpstream / sendUpstream, setOnUpstream.
  const source = `
import { Action, Conn, configure, setOnOpen, setOnUpstream, UPSTREAM_DATA, UPSTREAM_CONNECTED } from "./sdk";
export * from "./sdk/exports";
function onData(c: Conn): Action {
  const up = load<i32>(c.state);
  if (up <= 0) { c.writeString("-ERR no upstream\\r\\n"); return Action.Close; }
  if (c.eof) return Action.Close;
  if (c.sendUpstream(up, c.input, c.inputLen) != 0) return Action.Continue;
  c.consume(c.inputLen);
  return Action.Continue;
}
configure(4096, 4096, 8, onData);
setOnOpen((c: Conn): Action => { store<i32>(c.state, c.openUpstream("redis")); return Action.Continue; });
setOnUpstream((c: Conn, up: i32, event: i32): Action => {
  if (event == UPSTREAM_CONNECTED) return Action.Continue;
  if (event != UPSTREAM_DATA) { c.writeString("-ERR upstream gone\\r\\n"); return Action.Close; }
  c.write(c.input, c.inputLen);
  c.consume(c.inputLen);
  return Action.Continue;
});
`;
  it('a proxy built on Conn.openUpstream / sendUpstream / setOnUpstream serves redis-cli', async () => {
    const file = scratchFile('sdk-proxy.wasm', await compileAs('sdk-proxy', source));
    const server = createServer({ module: file, port: 0, threads: 2, logLevel: 'silent', upstream: `redis=127.0.0.1:${redis.port}` });
    servers.push(server);
    const port = (await server.listen()).port;
    const r = await run('redis-cli', ['-p', String(port)], { input: 'SET sdk yes\nGET sdk\nPING\n', timeoutMs: 10_000 });
    expect(r.stdout).toBe('OK\nyes\nPONG\n');
    const bad = createServer({ module: file, port: 0, threads: 1, logLevel: 'silent' });
    servers.push(bad);
    const c = await open((await bad.listen()).port);
    c.write('PING\r\n');
    expect((await untilClosed(c)).toString()).toBe('-ERR no upstream\r\n');
  }, 60_000);
});

/** The line proxy of test/frame-proxy.ts, compiled once for the file. */
let lineProxyBuilt: Promise<string> | undefined;
const lineProxyFile = () => (lineProxyBuilt ??= compileAs('frame-proxy', FRAME_PROXY_SOURCE).then((wasm) => scratchFile('frame-proxy.wasm', wasm)));

describe('the read timeout\'s why', () => {
  // The line proxy of test/frame-proxy.ts: on CLOSED it answers with conn_info keys 3 and 4 (why
  // the host ended the upstream). Lines without a leading "2" go to upstream "a" alone.
  it('CLOSED after the read timeout says timeout (keys 3 and 4); a plain close says nothing', async () => {
    const file = await lineProxyFile();
    // The first connection reads and never answers; the second answers once and closes. "b" is never sent to.
    let n = 0;
    const up = await scripted((s) => { if (n++ > 0) s.on('data', () => s.end('+PONG\r\n')); });
    const idle = await scripted(() => undefined);
    const server = createServer({ module: file, port: 0, threads: 2, logLevel: 'silent', upstream: [`a=127.0.0.1:${up.port}`, `b=127.0.0.1:${idle.port}`], upstreamReadTimeout: '300ms' });
    servers.push(server);
    const port = (await server.listen()).port;
    const c = await open(port);
    c.write('PING\r\n');
    expect((await untilClosed(c, 5_000)).toString()).toBe('-ERR closed 2 timeout: no reply within the read timeout (127.0.0.1)\r\n');
    const d = await open(port);
    d.write('PING\r\n');
    expect((await untilClosed(d, 5_000)).toString()).toBe('+PONG\r\n-ERR closed 0 \r\n');
    expect(faults(server)).toBe(0);
    up.server.close();
    idle.server.close();
  }, 30_000);
});

describe('the frame timeout (--upstream-frame-timeout)', () => {
  // The line proxy of test/frame-proxy.ts (tcpmod/testing scripts the same timeouts: upstream-testing.unit).
  async function lineProxy(a: number, b: number, frame: string): Promise<{ server: TcpmodServer; port: number }> {
    const server = createServer({ module: await lineProxyFile(), port: 0, threads: 2, logLevel: 'silent', upstream: [`a=127.0.0.1:${a}`, `b=127.0.0.1:${b}`], upstreamReadTimeout: '10s', upstreamFrameTimeout: frame });
    servers.push(server);
    return { server, port: (await server.listen()).port };
  }
  const cut = '-ERR closed 2 timeout: frame incomplete within the frame timeout (127.0.0.1)\r\n';

  it('a reply that stops midway is ended after the frame timeout (why timeout, frame), counted, the gauge back', async () => {
    const a = await scripted((s) => s.on('data', () => s.write('+PO')));
    const b = await scripted(() => undefined);
    const before = native.upstreamStats();
    const { server, port } = await lineProxy(a.port, b.port, '300ms');
    const c = await open(port);
    const t0 = Date.now();
    c.write('PING\r\n');
    expect((await untilClosed(c, 5_000)).toString()).toBe(cut);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);  // it waited for the timeout
    const after = native.upstreamStats();
    expect(after.frameTimeouts - before.frameTimeouts).toBe(1);
    expect(after.readTimeouts - before.readTimeouts).toBe(0);
    await until(() => native.upstreamStats().open <= before.open, 5_000, 'the upstream gauge back to its baseline');
    await until(() => a.closed() === 1, 5_000, 'the socket to the upstream closed');
    const text = await metricsRegistry(server).scrape();
    expect(text).toMatch(new RegExp(`^tcpmod_upstream_frame_timeouts_total ${after.frameTimeouts}$`, 'm'));
    expect(faults(server)).toBe(0);
    a.server.close();
    b.server.close();
  }, 20_000);

  it('a backend trickling a byte every 100 ms, never ending its line, is cut: the timeout runs from the first byte, not the last', async () => {
    const timers: NodeJS.Timeout[] = [];
    const a = await scripted((s) => s.once('data', () => {
      const t = setInterval(() => { if (!s.destroyed) s.write('x'); }, 100);
      timers.push(t);
      s.on('close', () => clearInterval(t));
    }));
    const b = await scripted(() => undefined);
    const before = native.upstreamStats();
    const { server, port } = await lineProxy(a.port, b.port, '500ms');
    const c = await open(port);
    const t0 = Date.now();
    c.write('PING\r\n');
    expect((await untilClosed(c, 5_000)).toString()).toBe(cut);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
    expect(native.upstreamStats().frameTimeouts - before.frameTimeouts).toBe(1);
    timers.forEach(clearInterval);
    expect(faults(server)).toBe(0);
    a.server.close();
    b.server.close();
  }, 20_000);

  it('a complete reply the module holds while another upstream is awaited is not cut; complete lines are never cut', async () => {
    // "b" answers at once; "a" 900 ms later (within its read timeout): b's reply is held 900 ms, past
    // the 300 ms frame timeout, and then goes after a's.
    const a = await scripted((s) => s.on('data', () => setTimeout(() => s.write('+A\r\n'), 900)));
    const b = await scripted((s) => s.on('data', () => s.write('+B\r\n')));
    const before = native.upstreamStats();
    const { server, port } = await lineProxy(a.port, b.port, '300ms');
    const c = await open(port);
    c.write('2PING\r\n');
    expect((await readBytes(c, 8)).toString()).toBe('+A\r\n+B\r\n');
    await sleep(600);  // complete replies, consumed: idle past the timeout, nothing cut
    c.write('2PING\r\n');
    expect((await readBytes(c, 8)).toString()).toBe('+A\r\n+B\r\n');
    const after = native.upstreamStats();
    expect(after.frameTimeouts - before.frameTimeouts).toBe(0);
    expect(after.closed - before.closed).toBe(0);
    c.destroy();
    await until(() => native.upstreamStats().open <= before.open, 5_000, 'the upstream gauge back to its baseline');
    expect(faults(server)).toBe(0);
    a.server.close();
    b.server.close();
  }, 20_000);
});

describe('loading', () => {
  it('a module that imports upstream_open without exporting tcpmod_on_upstream is refused, with the fix', async () => {
    const wat = `(module (import "tcpmod" "upstream_open" (func (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1 1) (func (export "tcpmod_abi_v1"))
      (func (export "tcpmod_io_desc") (result i32) (i32.const 0))
      (func (export "tcpmod_on_data") (param i32 i32 i32) (result i32) (i32.const 0)))`;
    const file = scratchFile('no-on-upstream.wasm', await watToWasm('no-on-upstream.wat', wat));
    const e = await compileModule(file).then(() => null, (err: { problems?: string[] }) => err);
    expect(e?.problems?.join('\n')).toMatch(/import tcpmod\.upstream_open needs the export tcpmod_on_upstream \(i32, i32, i32, i32\) -> i32; fix: export it/);
  });
});
