// --proxy-protocol end to end, over real sockets: raw clients that send a PROXY
// header (v1 text, v2 binary) and then data, whole or one byte at a time; the
// module (test/fixtures/proxied.wat) answers each line with what
// tcpmod.peer_addr says, so the test sees whom the server believes it talks to.
// Then HAProxy itself (mode tcp, send-proxy-v2 and send-proxy), running
// deploy/haproxy.cfg with its ports replaced, in front of two `tcpmod serve`
// processes sharing one port (--reuse-port). The reuse-port drain test (one of
// two processes stopped with SIGTERM mid-traffic) is in test/reuse-port.e2e.test.ts.
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from '../dist/index.js';
import { native } from '../host/sys.js';
import { fixture } from './fixtures.js';
import { requireTool, serve, type ServedProcess } from './server-process.js';
import { runHaproxyRecipe, type Haproxy } from './services.js';
import { makeTestCerts, type TestCerts } from './tls-certs.js';
import { metricsPort, scrape } from './metrics.js';
import { sleep, until } from './wait.js';

type Server = ReturnType<typeof createServer>;

// ---- headers, built from HAProxy's proxy-protocol.txt ----

const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const u16 = (n: number) => [n >> 8, n & 0xff];

function v1(src: string, sport: number, dst = src.includes(':') ? '2001:db8::1' : '192.0.2.1', dport = 7000): Buffer {
  return Buffer.from(`PROXY ${src.includes(':') ? 'TCP6' : 'TCP4'} ${src} ${dst} ${sport} ${dport}\r\n`);
}

/** A v2 PROXY header for TCP over IPv4 (a dotted address) or IPv6 (16 bytes given), with optional TLV bytes. */
function v2(src: string | number[], sport: number, tlvs: number[] = []): Buffer {
  const six = Array.isArray(src);
  const s = six ? src : src.split('.').map(Number);
  const d = six ? new Array(16).fill(0).map((_, i) => (i === 15 ? 1 : 0)) : [192, 0, 2, 1];
  const body = [...s, ...d, ...u16(sport), ...u16(7000), ...tlvs];
  return Buffer.from([...SIG, 0x21, six ? 0x21 : 0x11, ...u16(body.length), ...body]);
}

const V2_LOCAL = Buffer.from([...SIG, 0x20, 0x00, 0, 0]);

// ---- clients ----

interface Reply { text: string; localPort: number; closed: boolean }

function open(port: number, localAddress?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress, noDelay: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Collects what the socket receives until `lines` newlines have arrived or it closes. */
function readLines(s: Socket, lines: number, timeoutMs = 15_000): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`timed out with ${JSON.stringify(text)}`)), timeoutMs);
    const done = (closed: boolean) => {
      clearTimeout(timer);
      s.off('data', onData);
      resolve({ text, closed });
    };
    const onData = (d: Buffer) => {
      text += d.toString('latin1');
      if (text.split('\n').length - 1 >= lines) done(false);
    };
    s.on('data', onData);
    s.once('close', () => done(true));
    s.on('error', () => undefined);
  });
}

/** Connects, writes `bytes` at once, and reads `lines` lines (or until the server closes). */
async function talk(port: number, bytes: Buffer, lines = 1, localAddress?: string): Promise<Reply> {
  const s = await open(port, localAddress);
  try {
    const reply = readLines(s, lines);
    s.write(bytes);
    return { ...(await reply), localPort: s.localPort! };
  } finally {
    s.destroy();
  }
}

/**
 * Writes one byte at a time, each after the server has handled the one before
 * (its event count has moved on: with one worker and this one connection, an
 * event is this connection's), so the header really reaches the server in
 * pieces, however busy the machine is.
 */
async function writeBytewise(s: Socket, server: Server, bytes: Buffer): Promise<void> {
  for (const b of bytes) {
    const before = server.stats().events;
    s.write(Buffer.from([b]));
    await until(() => server.stats().events > before, 10_000, 'the server to take the byte');
  }
}

/** The module's on_open and on_close counts (proxied.wat keeps them in the process's key-value store). */
function moduleCount(key: 'opens' | 'closes'): number {
  const out = Buffer.alloc(32);
  const n = native.kvGet(Buffer.from(key), 0, key.length, out, 0, out.length);
  return n < 0 ? 0 : Number(out.subarray(0, n).toString());
}

// ---- in-process servers ----

let proxied: string;
let certs: TestCerts;
const servers: Server[] = [];
beforeAll(async () => {
  proxied = await fixture('proxied');
  await requireTool('openssl');
  certs = makeTestCerts();
});
afterAll(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close({ drainTimeout: 0 })));
  certs?.remove();
});

async function start(opts: Partial<Parameters<typeof createServer>[0]> = {}): Promise<{ server: Server; port: number }> {
  const server = createServer({ module: proxied, port: 0, threads: 1, logLevel: 'silent', proxyProtocol: 'any', ...opts });
  servers.push(server);
  const { port } = await server.listen();
  return { server, port };
}

describe('--proxy-protocol: the header names the client', () => {
  let server: Server;
  let port: number;
  beforeAll(async () => ({ server, port } = await start()));

  it('takes a v1 header (TCP4, TCP6) and a v2 header (TCP4, TCP6, with TLVs) sent at once with the data', async () => {
    expect(await talk(port, Buffer.concat([v1('203.0.113.9', 4242), Buffer.from('hello\n')]))).toMatchObject({ text: '203.0.113.9:4242 hello\n' });
    expect(await talk(port, Buffer.concat([v1('2001:db8::9', 65535), Buffer.from('six\n')]))).toMatchObject({ text: '[2001:db8::9]:65535 six\n' });
    expect(await talk(port, Buffer.concat([v2('198.51.100.7', 5555), Buffer.from('bin\n')]))).toMatchObject({ text: '198.51.100.7:5555 bin\n' });
    const six = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07];
    expect(await talk(port, Buffer.concat([v2(six, 4000), Buffer.from('bin6\n')]))).toMatchObject({ text: '[2001:db8::7]:4000 bin6\n' });
    const tlvs = [0x01, ...u16(2), 0x68, 0x32, 0x04, ...u16(300), ...new Array(300).fill(0), 0x05, ...u16(8), ...Buffer.from('req-0001')];
    expect(await talk(port, Buffer.concat([v2('10.1.2.3', 1, tlvs), Buffer.from('tlv\n')]))).toMatchObject({ text: '10.1.2.3:1 tlv\n' });
  });

  it('hands what follows the header in the same read to the module intact', async () => {
    // Several lines and a partial one behind the header in one segment; the partial one is finished later.
    const s = await open(port);
    try {
      const first = readLines(s, 3);
      s.write(Buffer.concat([v1('203.0.113.1', 1000), Buffer.from('one\ntwo\nthr')]));
      await sleep(50);
      s.write('ee\n');
      expect((await first).text).toBe('203.0.113.1:1000 one\n203.0.113.1:1000 two\n203.0.113.1:1000 three\n');
    } finally {
      s.destroy();
    }
    // Binary data right behind a v2 header: a second v2 signature (CR LF, a NUL) is the module's, not the host's.
    const sig = Buffer.from(SIG);
    const r = await talk(port, Buffer.concat([v2('198.51.100.2', 2), sig]), 4);
    const who = '198.51.100.2:2 ';
    expect(r.text).toBe(`${who}\r\n${who}\r\n${who}\0\r\n${who}QUIT\n`);
  });

  it('takes a v1 and a v2 header split at every byte through the socket', async () => {
    for (const [header, want] of [[v1('203.0.113.77', 31337), '203.0.113.77:31337'], [v2('198.51.100.77', 31338), '198.51.100.77:31338']] as const) {
      const s = await open(port);
      try {
        const reply = readLines(s, 1);
        await writeBytewise(s, server, Buffer.concat([header, Buffer.from('split\n')]));
        expect((await reply).text).toBe(`${want} split\n`);
      } finally {
        s.destroy();
      }
    }
  });

  it('keeps the socket\'s own address for PROXY UNKNOWN and a v2 LOCAL header', async () => {
    const a = await talk(port, Buffer.from('PROXY UNKNOWN\r\nu\n'));
    expect(a.text).toBe(`127.0.0.1:${a.localPort} u\n`);
    const b = await talk(port, Buffer.concat([V2_LOCAL, Buffer.from('l\n')]));
    expect(b.text).toBe(`127.0.0.1:${b.localPort} l\n`);
  });

  it('never holds a worker for a slow header, and does not spin on one', async () => {
    // One worker: a connection stuck halfway through its header must leave it free for the next.
    const slow = await open(port);
    try {
      const header = v1('203.0.113.5', 5);
      const reply = readLines(slow, 1);
      slow.write(header.subarray(0, 20));
      await sleep(100);
      const quiet = server.stats().events;
      expect(await talk(port, Buffer.concat([v1('203.0.113.6', 6), Buffer.from('fast\n')]))).toMatchObject({ text: '203.0.113.6:6 fast\n' });
      // Waiting costs no events: the partial header is taken off the socket, not seen again and again.
      await sleep(300);
      expect(server.stats().events - quiet).toBeLessThan(10);
      slow.write(Buffer.concat([header.subarray(20), Buffer.from('slow\n')]));
      expect((await reply).text).toBe('203.0.113.5:5 slow\n');
    } finally {
      slow.destroy();
    }
  });
});

describe('--proxy-protocol: connections without a valid header', () => {
  const refusedProxy = (s: Server) => s.stats().connectionsRefused.proxy;

  it('closes a connection without a header unseen by the module, and counts it (refused, reason proxy)', async () => {
    const { server, port } = await start();
    // The module counts are the process's: let earlier tests' connections finish closing first.
    await until(() => servers.every((s) => s.stats().connections === 0), 10_000, 'earlier connections to close');
    const opens = moduleCount('opens');
    const closes = moduleCount('closes');
    for (const bytes of [Buffer.from('hello\n'), Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'), Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05])]) {
      const r = await talk(port, bytes);
      expect(r).toMatchObject({ text: '', closed: true });
    }
    // Counted as the socket closes: a client can see the close a moment before the count.
    await until(() => refusedProxy(server) === 4 && server.stats().connectionsClosed.socket_error === 4, 5000, 'four refusals, closed');
    // A probe that connects and closes without a byte (a balancer's health check) is no refusal.
    const probe = await open(port);
    probe.destroy();
    await until(() => server.stats().connectionsClosed.peer === 1, 5000, 'the probe to be closed');
    expect(refusedProxy(server)).toBe(4);
    expect(moduleCount('opens')).toBe(opens);
    expect(moduleCount('closes')).toBe(closes);
    // A header then garbage is the module's business: it met that one.
    expect(await talk(port, Buffer.concat([v1('203.0.113.3', 3), Buffer.from('ok\n')]))).toMatchObject({ text: '203.0.113.3:3 ok\n' });
    expect(moduleCount('opens')).toBe(opens + 1);
  });

  it('refuses the version not allowed: v1 refuses a v2 header, v2 a v1 header; any takes both', async () => {
    const only1 = await start({ proxyProtocol: 'v1' });
    const only2 = await start({ proxyProtocol: 'v2' });
    expect(await talk(only1.port, Buffer.concat([v2('198.51.100.1', 1), Buffer.from('x\n')]))).toMatchObject({ text: '', closed: true });
    expect(await talk(only2.port, Buffer.concat([v1('198.51.100.1', 1), Buffer.from('x\n')]))).toMatchObject({ text: '', closed: true });
    expect(await talk(only1.port, Buffer.concat([v1('198.51.100.1', 1), Buffer.from('x\n')]))).toMatchObject({ text: '198.51.100.1:1 x\n' });
    expect(await talk(only2.port, Buffer.concat([v2('198.51.100.1', 2), Buffer.from('x\n')]))).toMatchObject({ text: '198.51.100.1:2 x\n' });
    await until(() => refusedProxy(only1.server) === 1 && refusedProxy(only2.server) === 1, 5000, 'one refusal each');
  });

  it('closes a header that does not complete within --frame-timeout (reason timeout), and counts it', async () => {
    const { server, port } = await start({ frameTimeout: '300ms' });
    const s = await open(port);
    const r = readLines(s, 1);
    s.write(v1('203.0.113.8', 8).subarray(0, 12));
    expect(await r).toEqual({ text: '', closed: true });
    await until(() => refusedProxy(server) === 1 && server.stats().connectionsClosed.timeout === 1, 5000, 'the refusal, closed for the timeout');
  });

  it('is off by default: the header is then the module\'s input like any other bytes', async () => {
    const { port } = await start({ proxyProtocol: 'off' });
    const r = await talk(port, Buffer.concat([v1('203.0.113.4', 4), Buffer.from('x\n')]), 2);
    expect(r.text).toBe(`127.0.0.1:${r.localPort} PROXY TCP4 203.0.113.4 192.0.2.1 4 7000\r\n127.0.0.1:${r.localPort} x\n`);
  });
});

describe('--proxy-protocol with --tls-cert', () => {
  it('reads the header before the TLS handshake, which then goes on as usual', async () => {
    const { port } = await start({ proxyProtocol: 'v2', tlsCert: certs.serverChain, tlsKey: certs.serverKey });
    for (const header of [v2('198.51.100.44', 4444), v1('203.0.113.44', 4445)]) {
      const raw = await open(port);
      try {
        raw.write(header);
        const t = tlsConnect({ socket: raw, servername: 'localhost', ca: readFileSync(certs.caCert) });
        t.on('error', () => undefined);
        const ok = await Promise.race([once(t, 'secureConnect').then(() => true, () => false), once(raw, 'close').then(() => false)]);
        if (header[0] === 0x50) {
          // v1 where only v2 is allowed: refused before any TLS byte is answered.
          expect(ok).toBe(false);
          continue;
        }
        expect(ok).toBe(true);
        const reply = new Promise<string>((resolve) => {
          let text = '';
          t.on('data', (d) => (text += d) && text.endsWith('\n') && resolve(text));
        });
        t.write('secure\n');
        expect(await reply).toBe('198.51.100.44:4444 secure\n');
        t.destroy();
      } finally {
        raw.destroy();
      }
    }
  });
});

// ---- HAProxy in front of two tcpmod processes ----

interface Tcpmod extends ServedProcess { metricsPort: number }

async function serveWithMetrics(module: string, args: string[]): Promise<Tcpmod> {
  const p = await serve(module, ['--threads', '1', '--drain-timeout', '1s', '--metrics', '127.0.0.1:0', ...args]);
  return Object.assign(p, { metricsPort: await metricsPort(p, 10_000) });
}

describe('HAProxy (deploy/haproxy.cfg) in front of two tcpmod processes on one port', () => {
  const haproxies: Haproxy[] = [];
  let tcpmods: Tcpmod[] = [];
  let backendPort = 0;

  /** deploy/haproxy.cfg in front of the two processes, sending `send`; resolves with its port. */
  async function haproxy(send: 'send-proxy-v2' | 'send-proxy'): Promise<number> {
    const h = await runHaproxyRecipe(backendPort, send);
    haproxies.push(h);
    return h.port;
  }

  beforeAll(async () => {
    await requireTool('haproxy');
    const a = await serveWithMetrics(proxied, ['--reuse-port', '--proxy-protocol', 'any']);
    backendPort = a.port;
    const b = await serveWithMetrics(proxied, ['--reuse-port', '--proxy-protocol', 'any', '--port', String(backendPort)]);
    tcpmods = [a, b];
  });
  afterAll(async () => {
    await Promise.all(haproxies.map((h) => h.stop()));
    await Promise.all(tcpmods.map((p) => p.stop()));
  });

  it('send-proxy-v2: the module reports the client (bound to 127.0.0.2), not HAProxy; both processes take connections', async () => {
    const front = await haproxy('send-proxy-v2');
    const before = await Promise.all(tcpmods.map((p) => scrape(p.metricsPort)));
    for (let i = 0; i < 40; i++) {
      const r = await talk(front, Buffer.from(`v2 ${i}\n`), 1, '127.0.0.2');
      expect(r.text).toBe(`127.0.0.2:${r.localPort} v2 ${i}\n`);
    }
    const after = await Promise.all(tcpmods.map((p) => scrape(p.metricsPort)));
    const took = after.map((m, i) => m.tcpmod_connections_accepted_total - before[i].tcpmod_connections_accepted_total);
    // HAProxy's own health checks count as accepted too: at least the 40 clients, spread over both.
    expect(took[0] + took[1]).toBeGreaterThanOrEqual(40);
    expect(took[0]).toBeGreaterThan(0);
    expect(took[1]).toBeGreaterThan(0);
  });

  it('send-proxy (v1) parses the same way', async () => {
    const front = await haproxy('send-proxy');
    for (let i = 0; i < 5; i++) {
      const r = await talk(front, Buffer.from(`v1 ${i}\n`), 1, '127.0.0.2');
      expect(r.text).toBe(`127.0.0.2:${r.localPort} v1 ${i}\n`);
    }
  });

  it('a client that goes around HAProxy gets no answer, and is counted (tcpmod_connections_refused_total{reason="proxy"})', async () => {
    const refused = async () => (await Promise.all(tcpmods.map((p) => scrape(p.metricsPort)))).reduce((n, m) => n + m['tcpmod_connections_refused_total{reason="proxy"}'], 0);
    // HAProxy's health checks (a connect, no header, a close) were never counted as refusals.
    expect(await refused()).toBe(0);
    expect(await talk(backendPort, Buffer.from('direct\n'), 1, '127.0.0.2')).toMatchObject({ text: '', closed: true });
    await until(async () => (await refused()) === 1, 5000, 'the refusal to be counted');
  });
});
