// TLS termination end to end: the real server binary (`tcpmod serve … --tls-cert
// --tls-key`) over real sockets, driven by real TLS clients — curl, redis-cli,
// redis-benchmark, openssl s_client — and Node's own tls client where the test
// needs byte-level control (pipelining, 5 MiB echo, a client that stops reading,
// the certificate each handshake presents). Server-side effects are read from
// /metrics (--metrics 127.0.0.1:0). Certificates come from test/tls-certs.ts: the
// server always sends the chain file (leaf + intermediate) and clients trust only
// the root, so every success here also proves the chain is sent.
// A missing client fails the test: .ci/run installs openssl, curl and redis-tools.
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from '../dist/index.js';
import { open, pattern, readBytes, untilClosed } from './net-client.js';
import type { Socket } from 'node:net';
import { requireTool, run, serve, type ServedProcess } from './server-process.js';
import { issueServerCert, makeTestCerts, type TestCerts } from './tls-certs.js';
import { metricsPort, scrape } from './metrics.js';
import { sleep, until } from './wait.js';

let certs: TestCerts;
/** A second, unrelated PKI: its root trusts nothing of ours, its client certificate is a stranger's. */
let stranger: TestCerts;
beforeAll(async () => {
  await requireTool('openssl');
  certs = makeTestCerts();
  stranger = makeTestCerts();
});
afterAll(() => {
  certs?.remove();
  stranger?.remove();
});

// ---- servers, sockets, metrics ----

interface TlsServer extends ServedProcess { metricsPort: number }

/** Servers started by one test; stopped (SIGTERM) after it, pass or fail. */
const started: ServedProcess[] = [];
/** Client sockets opened by one test; destroyed after it. */
const sockets: TLSSocket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(started.splice(0).map((s) => s.stop()));
});

/**
 * `tcpmod serve MODULE` with the chain and key (or `files`), 2 threads, metrics on an
 * ephemeral port, a short drain. Not registered for afterEach: see `serveTlsForTest`.
 */
async function serveTls(module: string, extra: string[] = [], files = { cert: '', key: '' }): Promise<TlsServer> {
  const srv = await serve(module, [
    '--threads', '2', '--drain-timeout', '500ms', '--metrics', '127.0.0.1:0',
    '--tls-cert', files.cert || certs.serverChain, '--tls-key', files.key || certs.serverKey, ...extra,
  ]);
  try {
    return Object.assign(srv, { metricsPort: await metricsPort(srv, 5000) });
  } catch (e) {
    await srv.stop();
    throw e;
  }
}

async function serveTlsForTest(module: string, extra: string[] = [], files?: { cert: string; key: string }): Promise<TlsServer> {
  const srv = await serveTls(module, extra, files);
  started.push(srv);
  return srv;
}

const CLOSED = (reason: string) => `tcpmod_connections_closed_total{reason="${reason}"}`;
const FAILED = (reason: string) => `tcpmod_tls_handshake_failures_total{reason="${reason}"}`;
const HANDSHAKES = 'tcpmod_tls_handshakes_total';
const ACCEPTED = 'tcpmod_connections_accepted_total';

/** Waits until the scraped counter `name` has grown by at least `by` since `before`; returns the scrape. */
function untilCounted(srv: TlsServer, before: Record<string, number>, name: string, by = 1, ms = 5000): Promise<Record<string, number>> {
  return until(async () => {
    const m = await scrape(srv.metricsPort);
    return (m[name] ?? 0) - (before[name] ?? 0) >= by ? m : null;
  }, ms, `${name} to grow by ${by}`);
}

/** A Node TLS client that trusts only our root; resolves once the handshake is done. */
function tlsOpen(port: number, opts: ConnectionOptions = {}): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: readFileSync(certs.caCert), ...opts });
    sockets.push(s);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('TLS handshake timed out'));
    }, 10_000);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.off('error', fail);
      s.on('error', () => undefined); // a reset after the test is done with it is not a failure
      resolve(s);
    });
    function fail(e: Error) {
      clearTimeout(timer);
      reject(e);
    }
    s.once('error', fail);
  });
}

/**
 * The serial number (hex, as Node prints it) and CN of the certificate a fresh handshake
 * presents (against echo.wasm). The client ends politely and waits for the server's close:
 * destroy() right after 'secureConnect' can lose the client's Finished, and the server would
 * rightly count a failed handshake.
 */
async function presented(port: number): Promise<{ serial: string; cn: string }> {
  const s = await tlsOpen(port);
  const c = s.getPeerCertificate();
  const closed = untilClosed(s, 5000);
  s.resume();
  s.end();
  await closed;
  return { serial: c.serialNumber, cn: String(c.subject.CN) };
}

/** Splits consecutive HTTP/1.1 responses (every one of http.wasm's has Content-Length). */
function parseResponses(text: string): { status: number; body: string }[] {
  const out: { status: number; body: string }[] = [];
  let at = 0;
  for (;;) {
    const end = text.indexOf('\r\n\r\n', at);
    if (end < 0) return out;
    const head = text.slice(at, end);
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(head)?.[1]);
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? NaN);
    if (!status || Number.isNaN(length) || text.length < end + 4 + length) return out;
    out.push({ status, body: text.slice(end + 4, end + 4 + length) });
    at = end + 4 + length;
  }
}

/**
 * A Node TLS client whose TLS bytes pass through a stream of ours on their way to
 * a plain TCP socket, so a test decides how records meet TCP segments: after
 * hold(), what TLS writes is kept; flush(cuts) then sends the kept bytes as
 * separate TCP writes cut at the given offsets, waiting `gapMs` between them (to
 * make it likely that the server reads each part on its own; nothing is timed).
 */
interface WireClient {
  tls: TLSSocket;
  tcp: Socket;
  text: () => string;
  hold: () => void;
  /** Writes `data` as one TLS record (one SSL_write) and waits until it is kept. */
  record: (data: string) => Promise<void>;
  kept: () => Buffer;
  flush: (cuts: number[], gapMs?: number) => Promise<void>;
}

async function wireClient(port: number): Promise<WireClient> {
  const tcp = await open(port);
  tcp.on('error', () => undefined);
  let holding = false;
  const kept: Buffer[] = [];
  const wire = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      if (holding) kept.push(chunk);
      else tcp.write(chunk);
      cb();
    },
    read() {},
    final(cb) {
      tcp.end();
      cb();
    },
  });
  tcp.on('data', (d) => wire.push(d));
  tcp.on('end', () => wire.push(null));
  const s = await tlsOpen(port, { socket: wire as unknown as Socket });
  let text = '';
  s.setEncoding('latin1');
  s.on('data', (d: string) => (text += d));
  return {
    tls: s,
    tcp,
    text: () => text,
    hold: () => (holding = true),
    record: (data) => new Promise((resolve, reject) => s.write(data, (e) => (e ? reject(e) : resolve()))),
    kept: () => Buffer.concat(kept),
    async flush(cuts, gapMs = 10) {
      const all = Buffer.concat(kept.splice(0));
      holding = false;
      let at = 0;
      for (const cut of [...cuts, all.length]) {
        tcp.write(all.subarray(at, cut));
        at = cut;
        if (cut < all.length) await sleep(gapMs);
      }
    },
  };
}

/** The TLS records in `wire` (5-byte headers): their count, and whether the bytes end on a record boundary. */
function tlsRecords(wire: Buffer): { count: number; whole: boolean } {
  let at = 0;
  let count = 0;
  while (at + 5 <= wire.length) {
    at += 5 + wire.readUInt16BE(at + 3);
    count++;
  }
  return { count, whole: at === wire.length };
}

// ---- 1. HTTP over TLS ----

describe('http.wasm over TLS', () => {
  let srv: TlsServer;
  let base: string;
  beforeAll(async () => {
    await requireTool('curl');
    srv = await serveTls('build/http.wasm');
    base = `https://127.0.0.1:${srv.port}`;
  });
  afterAll(async () => {
    await srv?.stop();
  });

  function curl(args: string[], input?: string) {
    return run('curl', ['-sS', '--max-time', '10', '--cacert', certs.caCert, ...args], { input, timeoutMs: 20_000 });
  }

  it('curl --cacert ROOT: GET / is Hello, World! (the chain file lets curl verify up to the root)', async () => {
    for (const url of [`${base}/`, `https://localhost:${srv.port}/`]) {
      const r = await curl(['-w', '\n%{http_code} %{ssl_verify_result}', url]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe('Hello, World!\n200 0');
    }
  });

  it('keep-alive: two URLs in one curl run re-use the connection; 1 handshake served 2 requests', async () => {
    const before = await scrape(srv.metricsPort);
    const r = await curl(['-v', `${base}/`, `${base}/`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('Hello, World!Hello, World!');
    expect(r.stderr).toMatch(/Re-using existing connection/);
    const after = await scrape(srv.metricsPort);
    expect(after[ACCEPTED] - before[ACCEPTED]).toBe(1);
    expect(after[HANDSHAKES] - before[HANDSHAKES]).toBe(1);
  });

  it('pipelined requests in one TLS write get their answers in order over one connection', async () => {
    const key = `pipe-${process.pid}`;
    const put = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-X', 'PUT', '--data-binary', 'the second answer', `${base}/kv/${key}`]);
    expect(put.stdout, put.stderr).toBe('201');
    const before = await scrape(srv.metricsPort);
    const s = await tlsOpen(srv.port);
    const host = 'Host: localhost\r\n';
    let text = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (text += d));
    s.write(`GET / HTTP/1.1\r\n${host}\r\nGET /kv/${key} HTTP/1.1\r\n${host}\r\nGET /missing HTTP/1.1\r\n${host}\r\nGET / HTTP/1.1\r\n${host}\r\n`);
    const answers = await until(() => (parseResponses(text).length >= 4 ? parseResponses(text) : null), 10_000, `4 answers, have ${JSON.stringify(text)}`);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 404, 200]);
    expect(answers[0].body).toBe('Hello, World!');
    expect(answers[1].body).toBe('the second answer');
    expect(answers[3].body).toBe('Hello, World!');
    expect(s.destroyed).toBe(false); // keep-alive: still open after all four
    s.destroy();
    const after = await scrape(srv.metricsPort);
    expect(after[HANDSHAKES] - before[HANDSHAKES]).toBe(1);
  });

  // Issue 25: the server stops reading once neither OpenSSL nor the socket holds more. These check
  // that no record OpenSSL read ahead is left behind the re-arm: every request is answered, in order.
  it('pipelined requests in separate TLS records, all in one TCP segment, are answered in order', async () => {
    const c = await wireClient(srv.port);
    const host = 'Host: localhost\r\n';
    c.hold();
    for (const path of ['/', '/missing', '/', '/missing', '/']) await c.record(`GET ${path} HTTP/1.1\r\n${host}\r\n`);
    expect(tlsRecords(c.kept())).toEqual({ count: 5, whole: true });
    await c.flush([]);
    const answers = await until(() => (parseResponses(c.text()).length >= 5 ? parseResponses(c.text()) : null), 10_000,
      `5 answers, have ${JSON.stringify(c.text())}`);
    expect(answers.map((a) => a.status)).toEqual([200, 404, 200, 404, 200]);
    // And the connection goes on: a later request on its own is answered too.
    await c.record(`GET /missing HTTP/1.1\r\n${host}\r\n`);
    await until(() => (parseResponses(c.text()).length >= 6 ? true : null), 10_000, 'the 6th answer');
    expect(parseResponses(c.text())[5].status).toBe(404);
  });

  it('requests split across TLS records, the records cut at every byte into two TCP segments, are answered in order', async () => {
    const host = 'Host: localhost\r\n';
    // Three records: the first request split across the first two, the second request whole in the third.
    const parts = ['GET / HTTP/1.1\r\nHo', `st: localhost\r\n\r\n`, `GET /missing HTTP/1.1\r\n${host}\r\n`];
    const once = async (cut: number) => {
      const c = await wireClient(srv.port);
      c.hold();
      for (const p of parts) await c.record(p);
      const wire = c.kept();
      expect(tlsRecords(wire)).toEqual({ count: 3, whole: true });
      await c.flush([cut]);
      const answers = await until(() => (parseResponses(c.text()).length >= 2 ? parseResponses(c.text()) : null), 10_000,
        `2 answers with the cut at ${cut} of ${wire.length}, have ${JSON.stringify(c.text())}`);
      expect(answers.map((a) => a.status), `cut at ${cut}`).toEqual([200, 404]);
      expect(answers[0].body).toBe('Hello, World!');
      c.tls.destroy();
      c.tcp.destroy();
      return wire.length;
    };
    // The records' size is the same on every connection (same cipher): learn it on one, unsent.
    const probe = await wireClient(srv.port);
    probe.hold();
    for (const p of parts) await probe.record(p);
    const size = probe.kept().length;
    probe.tls.destroy();
    probe.tcp.destroy();
    const cuts = Array.from({ length: size - 1 }, (_, i) => i + 1);
    for (let i = 0; i < cuts.length; i += 8) await Promise.all(cuts.slice(i, i + 8).map((cut) => once(cut)));
  }, 120_000);

  // The reader stops after a short recv and relies on the re-arm to report bytes that come later: a
  // record arriving between that recv and the re-arm must still wake the connection. Bounded stress
  // that makes the interleaving likely: every request in two records, the second written a tick after
  // the first, on many connections at once; a lost wake-up shows as a request never answered.
  it('requests in two records a tick apart, 16 connections x 100 requests: every one is answered', async () => {
    const host = 'Host: localhost\r\n';
    const one = async (n: number) => {
      const s = await tlsOpen(srv.port);
      s.setNoDelay(true);
      let text = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => (text += d));
      for (let i = 0; i < n; i++) {
        s.write('GET / HTTP/1.1\r\n');
        await new Promise((r) => setImmediate(r));
        s.write(`${host}\r\n`);
        await until(() => (parseResponses(text).length > i ? true : null), 10_000, `answer ${i + 1} of ${n}`, 1);
      }
      expect(parseResponses(text).map((a) => a.status)).toEqual(Array(n).fill(200));
      s.destroy();
    };
    await Promise.all(Array.from({ length: 16 }, () => one(100)));
  }, 120_000);

  it('a chunked PUT over TLS is stored; GET returns it byte for byte', async () => {
    const key = `chunked-${process.pid}`;
    // Large enough for many chunks and many TLS records (~190 KB).
    const body = Array.from({ length: 6000 }, (_, i) => `line ${i} of the chunked body\n`).join('');
    const put = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-X', 'PUT', '-H', 'Transfer-Encoding: chunked', '--data-binary', '@-', `${base}/kv/${key}`], body);
    expect(put.code, put.stderr).toBe(0);
    expect(put.stdout).toBe('201');
    const get = await curl([`${base}/kv/${key}`]);
    expect(get.code, get.stderr).toBe(0);
    expect(get.stdout.length).toBe(body.length);
    expect(get.stdout === body).toBe(true);
  });

  it('a client trusting an unrelated CA refuses the server: curl exits 60', async () => {
    const before = await scrape(srv.metricsPort);
    const r = await run('curl', ['-sS', '--max-time', '10', '--cacert', stranger.caCert, `${base}/`], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(60);
    expect(r.stdout).toBe('');
    // The client aborted the handshake with an unknown_ca alert: the server closed it as tls
    // (the module never saw it) and files it under certificate.
    const after = await untilCounted(srv, before, FAILED('certificate'));
    expect(after[CLOSED('tls')] - before[CLOSED('tls')]).toBe(1);
    expect(after[HANDSHAKES] - before[HANDSHAKES]).toBe(0);
  });

  it('plain HTTP on the TLS port is closed, counted as tls / protocol, and TLS still answers after', async () => {
    const before = await scrape(srv.metricsPort);
    const s = await open(srv.port);
    const closed = untilClosed(s, 5000);
    s.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const got = await closed;
    expect(got.toString('latin1')).not.toMatch(/HTTP\/1\.1|Hello/);
    const after = await untilCounted(srv, before, CLOSED('tls'));
    expect(after[FAILED('protocol')] - before[FAILED('protocol')]).toBeGreaterThanOrEqual(1);
    expect(after[HANDSHAKES] - before[HANDSHAKES]).toBe(0);
    const r = await curl([`${base}/`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('Hello, World!');
  });
});

// ---- handshake time ----

describe('tcpmod_tls_handshake_seconds', () => {
  it('times the handshake from its first byte: a client idle before its ClientHello does not count as slow', async () => {
    // The metric's HELP: "Time from the first handshake byte to a completed TLS handshake".
    // A client that connects, waits 1.2 s, then handshakes (~ms on loopback) must land in
    // a fast bucket, not in the 2.5 s one.
    const srv = await serveTlsForTest('build/echo.wasm');
    const raw = await open(srv.port);
    await sleep(1200);
    const t0 = Date.now();
    const s = await tlsOpen(srv.port, { socket: raw });
    const clientSide = (Date.now() - t0) / 1000;
    const back = readBytes(s, 2, 5000);
    s.write('hi'); // the server has the client's Finished once it answers
    expect((await back).toString()).toBe('hi');
    const m = await scrape(srv.metricsPort);
    expect(m[HANDSHAKES]).toBe(1);
    expect(m.tcpmod_tls_handshake_seconds_count).toBe(1);
    expect(m['tcpmod_tls_handshake_seconds_bucket{le="+Inf"}']).toBe(1);
    // Never longer than the client itself waited for the handshake (plus slack for scheduling).
    expect(m.tcpmod_tls_handshake_seconds_sum, `client-side handshake took ${clientSide}s`).toBeLessThan(clientSide + 0.25);
    expect(m['tcpmod_tls_handshake_seconds_bucket{le="0.5"}']).toBe(1);
  });
});

// ---- 2. RESP over TLS ----

describe('resp.wasm over TLS with redis-cli and redis-benchmark', () => {
  let srv: TlsServer;
  beforeAll(async () => {
    await requireTool('redis-cli');
    await requireTool('redis-benchmark');
    srv = await serveTls('build/resp.wasm');
  });
  afterAll(async () => {
    await srv?.stop();
  });

  const tlsArgs = () => ['--tls', '--cacert', certs.caCert, '-h', '127.0.0.1', '-p', String(srv.port)];
  const cli = (...args: string[]) => run('redis-cli', [...tlsArgs(), ...args], { timeoutMs: 15_000 });

  it('redis-cli --tls --cacert: SET, GET, INCR exact', async () => {
    expect((await cli('SET', 'tls:k', 'hello over tls')).stdout).toBe('OK\n');
    expect((await cli('GET', 'tls:k')).stdout).toBe('hello over tls\n');
    expect((await cli('DEL', 'tls:n')).stdout).toMatch(/^[01]\n$/);
    expect((await cli('INCR', 'tls:n')).stdout).toBe('1\n');
    expect((await cli('INCRBY', 'tls:n', '41')).stdout).toBe('42\n');
    expect((await cli('GET', 'tls:n')).stdout).toBe('42\n');
    // A client that does not trust our root never gets an answer.
    const bad = await run('redis-cli', ['--tls', '--cacert', stranger.caCert, '-h', '127.0.0.1', '-p', String(srv.port), 'GET', 'tls:k'], { timeoutMs: 15_000 });
    expect(bad.stdout + bad.stderr).not.toContain('hello over tls');
    expect(bad.stdout + bad.stderr).toMatch(/SSL|TLS|certificate|verify/i);
  });

  it('redis-benchmark --tls -t incr -n 2000 -c 20: the counter is exactly 2000', async () => {
    expect((await cli('DEL', 'counter:__rand_int__')).stdout).toMatch(/^[01]\n$/);
    const before = await scrape(srv.metricsPort);
    const out = await run('redis-benchmark', [...tlsArgs(), '-t', 'incr', '-n', '2000', '-c', '20', '-q'], { timeoutMs: 60_000 });
    const all = out.stdout + out.stderr;
    expect(out.code, all).toBe(0);
    expect(all).not.toMatch(/error|warning|ERR|could not|failed/i);
    expect(out.stdout).toMatch(/INCR: [\d.]+ requests per second/);
    // Without -r the key is the literal "counter:__rand_int__", incremented once per request.
    expect((await cli('GET', 'counter:__rand_int__')).stdout).toBe('2000\n');
    const after = await scrape(srv.metricsPort);
    expect(after[HANDSHAKES] - before[HANDSHAKES]).toBeGreaterThanOrEqual(20);
    expect(after[CLOSED('tls')] - before[CLOSED('tls')]).toBe(0);
  }, 90_000);
});

// ---- 3. openssl s_client: versions, ALPN, client certificates ----

describe('openssl s_client', () => {
  const REQUEST = 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n';

  /** s_client against `port` trusting our root, the request on stdin; -ign_eof waits for the server to close. */
  function sClient(port: number, args: string[]) {
    return run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-CAfile', certs.caCert, '-ign_eof', ...args],
      { input: REQUEST, timeoutMs: 15_000 });
  }

  it('negotiates TLS 1.3 and TLS 1.2, verifies the chain and gets the HTTP answer', async () => {
    const srv = await serveTlsForTest('build/http.wasm');
    for (const [flag, name] of [['-tls1_3', 'TLSv1.3'], ['-tls1_2', 'TLSv1.2']]) {
      const r = await sClient(srv.port, [flag]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toContain(`New, ${name}, Cipher is `);
      expect(r.stdout).toMatch(new RegExp(`Protocol\\s*: ${name.replace('.', '\\.')}`));
      expect(r.stdout).toContain('Verify return code: 0 (ok)');
      expect(r.stdout).toMatch(/HTTP\/1\.1 200 OK[\s\S]*Hello, World!/);
    }
  });

  it('--tls-min-version 1.3 refuses a TLS 1.2 client (a version failure) and serves a TLS 1.3 one', async () => {
    const srv = await serveTlsForTest('build/http.wasm', ['--tls-min-version', '1.3']);
    const before = await scrape(srv.metricsPort);
    const r = await sClient(srv.port, ['-tls1_2']);
    expect(r.code, r.stdout + r.stderr).not.toBe(0);
    expect(r.stdout).not.toContain('Hello, World!');
    expect(r.stdout + r.stderr).toMatch(/protocol version|no protocols available|unsupported protocol/i);
    const after = await untilCounted(srv, before, FAILED('version'));
    expect(after[CLOSED('tls')] - before[CLOSED('tls')]).toBeGreaterThanOrEqual(1);
    expect(after[HANDSHAKES] - before[HANDSHAKES]).toBe(0);
    const ok = await sClient(srv.port, ['-tls1_3']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('New, TLSv1.3, Cipher is ');
    expect(ok.stdout).toContain('Hello, World!');
  });

  it('--alpn http/1.1,foo: s_client -alpn foo gets foo, -alpn http/1.1 gets http/1.1, no overlap goes on without ALPN', async () => {
    const srv = await serveTlsForTest('build/http.wasm', ['--alpn', 'http/1.1,foo']);
    const foo = await sClient(srv.port, ['-alpn', 'foo']);
    expect(foo.code, foo.stderr).toBe(0);
    expect(foo.stdout).toContain('ALPN protocol: foo\n');
    expect(foo.stdout).toContain('Hello, World!');
    // The server's preference order decides when the client offers both.
    const both = await sClient(srv.port, ['-alpn', 'foo,http/1.1']);
    expect(both.stdout).toContain('ALPN protocol: http/1.1\n');
    // Documented in host/native/src/tls.cc: a client offering none of ours proceeds without ALPN.
    const none = await sClient(srv.port, ['-alpn', 'bar']);
    expect(none.code, none.stderr).toBe(0);
    expect(none.stdout).toContain('No ALPN negotiated');
    expect(none.stdout).toContain('Hello, World!');
  });

  it('mutual TLS (--tls-client-auth require): no certificate or a stranger\'s is refused (certificate); ours gets the answer', async () => {
    const srv = await serveTlsForTest('build/http.wasm', ['--tls-ca', certs.caCert, '--tls-client-auth', 'require']);
    for (const [what, args] of [
      ['no client certificate', []],
      ['a certificate from an unrelated CA', ['-cert', stranger.clientCert, '-key', stranger.clientKey]],
    ] as const) {
      const before = await scrape(srv.metricsPort);
      const r = await sClient(srv.port, [...args]);
      expect(r.stdout, what).not.toContain('Hello, World!');
      expect(r.stdout + r.stderr, what).toMatch(/alert|error/i);
      const after = await untilCounted(srv, before, FAILED('certificate'));
      expect(after[CLOSED('tls')] - before[CLOSED('tls')], what).toBeGreaterThanOrEqual(1);
    }
    const ok = await sClient(srv.port, ['-cert', certs.clientCert, '-key', certs.clientKey]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toContain('Verify return code: 0 (ok)');
    expect(ok.stdout).toMatch(/HTTP\/1\.1 200 OK[\s\S]*Hello, World!/);
  });
});

// ---- 4. large transfers and slow readers ----

describe('echo.wasm over TLS: volume and back-pressure', () => {
  it('echoes 5 MiB byte for byte to a Node TLS client', async () => {
    const srv = await serveTlsForTest('build/echo.wasm');
    const s = await tlsOpen(srv.port);
    const data = pattern(5 << 20, 0x5eed);
    const back = readBytes(s, data.length, 30_000);
    s.write(data);
    const got = await back;
    expect(got.length).toBe(data.length);
    expect(got.equals(data)).toBe(true); // not toEqual: a 5 MiB diff helps nobody
    // echo closes once the client has finished sending.
    const closed = untilClosed(s, 5000);
    s.end();
    expect((await closed).length).toBe(0);
    const m = await scrape(srv.metricsPort);
    expect(m.tcpmod_bytes_received_total).toBe(data.length);
    expect(m.tcpmod_bytes_sent_total).toBe(data.length);
  }, 60_000);

  it('a client that stops reading a large TLS reply is cut by --send-timeout 1s (send_timeout counted)', async () => {
    const srv = await serveTlsForTest('build/echo.wasm', ['--send-timeout', '1s']);
    const s = await tlsOpen(srv.port);
    s.pause();
    // Listening from the start: the client may learn of the close (a reset) while still paused.
    // A 'data' listener does not make a paused stream flow.
    const closed = untilClosed(s, 15_000);
    const size = 8 << 20;
    s.write(pattern(size, 3));
    const t0 = Date.now();
    const m = await until(async () => {
      const x = await scrape(srv.metricsPort);
      return x[CLOSED('send_timeout')] >= 1 && x.tcpmod_connections === 0 ? x : null;
    }, 10_000, 'the stalled connection to be closed with send_timeout');
    const took = Date.now() - t0;
    expect(m.tcpmod_send_timeouts_total).toBeGreaterThanOrEqual(1);
    expect(m[CLOSED('tls')]).toBe(0);
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(8000);
    // The client sees the end (once it reads again, if not before), short of the full echo.
    s.resume();
    const rest = await closed;
    expect(rest.length).toBeLessThan(size);
  }, 30_000);
});

// ---- 5. certificate reload ----

describe('certificate reload (SIGHUP)', () => {
  it('new handshakes get the new certificate, open connections keep going, a mismatched key is refused', async () => {
    const live = { cert: join(certs.dir, 'live-chain.crt'), key: join(certs.dir, 'live.key') };
    copyFileSync(certs.serverChain, live.cert);
    copyFileSync(certs.serverKey, live.key);
    const rotated = issueServerCert(certs, 'rotated', 'tcpmod rotated', '77');
    const srv = await serveTlsForTest('build/echo.wasm', [], live);

    const first = await presented(srv.port);
    expect(first.cn).toBe('localhost');
    const oldSerial = first.serial;
    expect(oldSerial).not.toBe('77');

    // A connection opened under the first certificate, kept across both reloads.
    const kept = await tlsOpen(srv.port);
    const echo = async (s: TLSSocket, text: string) => {
      const back = readBytes(s, text.length, 5000);
      s.write(text);
      return (await back).toString();
    };
    expect(await echo(kept, 'before reload')).toBe('before reload');

    // Rotate in place: same paths, new contents, then SIGHUP.
    copyFileSync(rotated.chain, live.cert);
    copyFileSync(rotated.key, live.key);
    srv.proc.kill('SIGHUP');
    const next = await until(async () => {
      const p = await presented(srv.port);
      return p.serial === '77' ? p : null;
    }, 5000, 'a handshake with the rotated certificate');
    expect(next.cn).toBe('tcpmod rotated');
    expect((await scrape(srv.metricsPort)).tcpmod_tls_certificate_reloads_total).toBe(1);
    expect(srv.stderr()).not.toMatch(/reload refused/);
    expect(await echo(kept, 'after reload')).toBe('after reload');
    expect(kept.getPeerCertificate().serialNumber).toBe(oldSerial);

    // A key that does not match the certificate: refused, the rotated certificate keeps serving.
    writeFileSync(live.key, readFileSync(certs.otherKey));
    srv.proc.kill('SIGHUP');
    const line = await until(() => /^tcpmod: SIGHUP: certificate reload refused.*$/m.exec(srv.stderr())?.[0], 5000, 'the refusal line');
    expect(line).toContain('--tls-key');
    expect(srv.proc.exitCode).toBe(null);
    expect(await presented(srv.port)).toEqual({ serial: '77', cn: 'tcpmod rotated' });
    expect((await scrape(srv.metricsPort)).tcpmod_tls_certificate_reloads_total).toBe(1);
    expect(await echo(kept, 'after refusal')).toBe('after refusal');

    // Fixed files reload again.
    copyFileSync(certs.serverKey, live.key);
    copyFileSync(certs.serverChain, live.cert);
    srv.proc.kill('SIGHUP');
    await until(async () => (await presented(srv.port)).serial === oldSerial, 5000, 'the first certificate back');
    expect((await scrape(srv.metricsPort)).tcpmod_tls_certificate_reloads_total).toBe(2);
    expect(await echo(kept, 'still the same connection')).toBe('still the same connection');
    kept.destroy();
    // Every handshake above completed: no reload disturbed one.
    const m = await scrape(srv.metricsPort);
    expect(m[CLOSED('tls')]).toBe(0);
    expect(m[HANDSHAKES]).toBeGreaterThanOrEqual(5);
  }, 60_000);
});

describe('certificate reload from the API (server.reloadTls, stats().tls)', () => {
  it('reloadTls() swaps the certificate for new handshakes and rejects a bad set naming tlsKey', async () => {
    const live = { cert: join(certs.dir, 'api-chain.crt'), key: join(certs.dir, 'api.key') };
    copyFileSync(certs.serverChain, live.cert);
    copyFileSync(certs.serverKey, live.key);
    const rotated = issueServerCert(certs, 'api-rotated', 'tcpmod api rotated', '78');
    const server = createServer({ module: 'build/echo.wasm', port: 0, threads: 1, logLevel: 'silent', tlsCert: live.cert, tlsKey: live.key });
    try {
      const { port } = await server.listen();
      expect((await presented(port)).cn).toBe('localhost');
      const t = server.stats().tls!;
      expect(t.handshakes).toBe(1);
      expect(t.certificateReloads).toBe(0);
      expect(t.handshakeSeconds.count).toBe(1);
      copyFileSync(rotated.chain, live.cert);
      copyFileSync(rotated.key, live.key);
      await server.reloadTls();
      expect(await presented(port)).toEqual({ serial: '78', cn: 'tcpmod api rotated' });
      expect(server.stats().tls!.certificateReloads).toBe(1);
      writeFileSync(live.key, readFileSync(certs.otherKey));
      await expect(server.reloadTls()).rejects.toMatchObject({ name: 'OptionError', option: 'tlsKey' });
      expect(await presented(port)).toEqual({ serial: '78', cn: 'tcpmod api rotated' });
      expect(server.stats().tls!.certificateReloads).toBe(1);
      expect(server.stats().tls!.handshakes).toBe(3);
    } finally {
      await server.close({ drainTimeout: 0 });
    }
  });
});

// ---- 6. options checked at start ----

describe('TLS options checked at start', () => {
  /** `tcpmod serve build/echo.wasm --port 0 ARGS`, expected to exit by itself. */
  const refuse = (args: string[]) =>
    run(process.execPath, ['bin/tcpmod.js', 'serve', 'build/echo.wasm', '--port', '0', ...args], { timeoutMs: 15_000 });

  it('a missing certificate or key file: one line naming the option, exit 1', async () => {
    const nope = join(certs.dir, 'nope.crt');
    const a = await refuse(['--tls-cert', nope, '--tls-key', certs.serverKey]);
    expect(a.code).toBe(1);
    expect(a.stderr).toBe(`tcpmod: --tls-cert cannot read ${nope} (ENOENT)\n`);
    expect(a.stdout).toBe('');
    const nokey = join(certs.dir, 'nope.key');
    const b = await refuse(['--tls-cert', certs.serverChain, '--tls-key', nokey]);
    expect(b.code).toBe(1);
    expect(b.stderr).toBe(`tcpmod: --tls-key cannot read ${nokey} (ENOENT)\n`);
  });

  it('a key that does not match the certificate: one line naming --tls-key, exit 1', async () => {
    const r = await refuse(['--tls-cert', certs.serverChain, '--tls-key', certs.otherKey]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n')).toHaveLength(2); // one line, then the final newline
    expect(r.stderr).toMatch(new RegExp(`^tcpmod: --tls-key ${certs.otherKey}: .*(match|mismatch)`, 'i'));
    // And a certificate file without a certificate in it: one line naming --tls-cert.
    const c = await refuse(['--tls-cert', certs.serverKey, '--tls-key', certs.serverKey]);
    expect(c.code).toBe(1);
    expect(c.stderr).toMatch(new RegExp(`^tcpmod: --tls-cert ${certs.serverKey}: [^\\n]+\\n$`));
  });

  it('an expired certificate starts anyway with a warning containing "expired"', async () => {
    const srv = await serveTlsForTest('build/echo.wasm', [], { cert: certs.expiredCert, key: certs.expiredKey });
    expect(srv.stderr()).toMatch(/expired/);
    // It really serves that certificate: a verifying client refuses it, a non-verifying one gets its echo.
    await expect(tlsOpen(srv.port)).rejects.toMatchObject({ code: 'CERT_HAS_EXPIRED' });
    const s = await tlsOpen(srv.port, { rejectUnauthorized: false });
    const back = readBytes(s, 5, 5000);
    s.write('hello');
    expect((await back).toString()).toBe('hello');
  });
});
