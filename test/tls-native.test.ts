// The native TLS engine (host/native/src/tls.cc) through its test-only exports:
// contexts and their errors, certificate info, and real handshakes and records
// between a native server session on an accepted socket and Node's own TLS client.
//
// Node's client runs on this thread's event loop, so the server side is driven in
// small non-blocking steps (timeouts of a few ms, awaiting a timer in between);
// where the server must block (the 5 MiB echo, the send timeout) the client runs
// in a worker thread or is meant to stall.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { constants as os } from 'node:os';
import { fileURLToPath } from 'node:url';
import tls from 'node:tls';
import { Worker } from 'node:worker_threads';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { C, native } from '../host/sys.js';
import { nativeFixture } from './native-fixture.js';
import { makeTestCerts } from './tls-certs.js';
import { sleep, until } from './wait.js';

const E = os.errno;
const T = native as any; // the tls* exports are not in native.d.ts yet
const ADDON = fileURLToPath(new URL('../host/native/build/Release/tcpmod_native.node', import.meta.url));

const certs = makeTestCerts();
afterAll(() => certs.remove());
const pem = (path: string) => readFileSync(path, 'utf8');
const CA = pem(certs.caCert);

const fx = nativeFixture(certs);
const { sockets, contexts, listener, acceptOne, context } = fx;
const handles: number[] = [];
afterEach(() => {
  while (handles.length) T.tlsTestClose(handles.pop(), false);
  fx.release();
});

function attach(ctx: number, fd: number): number {
  const h = T.tlsTestAttach(ctx, fd);
  expect(h).toBeGreaterThan(0);
  handles.push(h);
  return h;
}

/** Runs handshake steps until the result is not "needs input". */
const handshake = (h: number) =>
  until(() => {
    const rc = T.tlsTestHandshake(h, 20);
    return rc === 0 ? null : rc;
  }, 5000, 'handshake', 1);

const info = (h: number) => T.tlsTestInfo(h);

/** Reads on the server side until `n` bytes or EOF. */
async function serverRead(h: number, n: number): Promise<{ data: Buffer; eof: boolean }> {
  const buf = new ArrayBuffer(65536);
  const chunks: Buffer[] = [];
  let total = 0;
  let eof = false;
  await until(() => {
    const r = T.tlsTestRead(h, buf, 0, buf.byteLength);
    if (r.n < 0) throw new Error(`tlsTestRead ${r.n} ${info(h).failure}`);
    chunks.push(Buffer.from(buf.slice(0, r.n)));
    total += r.n;
    eof = r.eof;
    return total >= n || eof ? true : null;
  }, 5000, `${n} bytes`, 1);
  return { data: Buffer.concat(chunks), eof };
}

function serverSend(h: number, data: Buffer | string, timeoutMs = 20): number {
  const b = Buffer.from(data);
  return T.tlsTestSend(h, b, 0, b.length, timeoutMs);
}

interface Client {
  socket: tls.TLSSocket;
  /** Resolves with 'secure' at secureConnect, or with the first error. */
  result: Promise<'secure' | Error>;
  errors: Error[];
  received: () => Buffer;
  ended: () => boolean;
}

function tlsClient(port: number, opts: tls.ConnectionOptions = {}): Client {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: CA, ...opts });
  sockets.push(socket);
  const errors: Error[] = [];
  const chunks: Buffer[] = [];
  let ended = false;
  socket.on('data', (d: Buffer) => chunks.push(d));
  socket.on('end', () => (ended = true));
  const result = new Promise<'secure' | Error>((resolve) => {
    socket.once('secureConnect', () => resolve('secure'));
    socket.on('error', (e) => (errors.push(e), resolve(e)));
  });
  return { socket, result, errors, received: () => Buffer.concat(chunks), ended: () => ended };
}

/** A listener, a client connecting to it with opts, and the server side's attached session. */
async function pair(ctx: number, opts: tls.ConnectionOptions = {}) {
  const l = listener();
  const client = tlsClient(l.port, opts);
  const fd = await acceptOne(l.fd);
  const h = attach(ctx, fd);
  return { client, fd, h };
}

/** An `openssl s_client` (a child process) that verifies the server against the CA and closes
 *  after the handshake; exit resolves with its output. */
async function sClientPair(ctx: number) {
  const l = listener();
  const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${l.port}`, '-servername', 'localhost',
    '-CAfile', certs.caCert, '-verify_return_error'], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exit = new Promise<string>((resolve) => child.once('close', () => resolve(out)));
  const h = attach(ctx, await acceptOne(l.fd));
  return { h, exit };
}

/** pair() and a handshake that must succeed on both sides. */
async function connected(ctx: number, opts: tls.ConnectionOptions = {}) {
  const p = await pair(ctx, opts);
  expect(await handshake(p.h)).toBe(1);
  expect(await p.client.result).toBe('secure');
  return p;
}

describe('tls contexts', () => {
  it('creates a context from a chain and a key, and frees it once', () => {
    const id = T.tlsContextCreate({ cert: pem(certs.serverChain), key: pem(certs.serverKey), clientAuth: 'none', minVersion: '1.3', alpn: ['h2'] });
    expect(id).toBeGreaterThan(0);
    expect(T.tlsContextFree(id)).toBe(0);
    expect(T.tlsContextFree(id)).toBe(-E.EBADF);
  });

  it('reports configuration errors as exact one-line messages', () => {
    const cert = pem(certs.serverChain);
    const key = pem(certs.serverKey);
    const err = (o: Record<string, unknown>) => T.tlsContextCreate({ cert, key, clientAuth: 'none', minVersion: '1.2', alpn: [], ...o });
    expect(err({ cert: '' })).toBe('certificate: no PEM certificate found');
    expect(err({ cert: key })).toBe('certificate: no PEM certificate found');
    expect(err({ cert: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' })).toBe('certificate: cannot parse PEM certificate 1');
    expect(err({ cert: cert + '-----BEGIN CERTIFICATE-----\nMIIB\n' })).toBe('certificate: cannot parse PEM certificate 3');
    expect(err({ key: '' })).toBe('key: no PEM private key found');
    expect(err({ key: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' })).toBe('key: cannot parse PEM private key');
    expect(err({ key: '-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n' }))
      .toBe('key: encrypted private keys are not supported');
    expect(err({ key: pem(certs.otherKey) })).toBe('key does not match the certificate');
    expect(err({ cert: pem(certs.expiredCert) })).toBe('key does not match the certificate');
    expect(err({ ca: 'not a certificate', clientAuth: 'require' })).toBe('ca: no PEM certificate found');
    expect(err({ clientAuth: 'require' })).toBe("ca: required when clientAuth is 'request' or 'require'");
    expect(err({ clientAuth: 'maybe' })).toBe("clientAuth: must be 'none', 'request' or 'require'");
    expect(err({ minVersion: '1.1' })).toBe("minVersion: must be '1.2' or '1.3'");
    expect(err({ alpn: ['h2', ''] })).toBe('alpn: protocol names must be 1 to 255 bytes long');
  });

  it('throws on wrong argument types', () => {
    expect(() => T.tlsContextCreate('cert')).toThrow(TypeError);
    expect(() => T.tlsContextCreate({ cert: 1, key: '' })).toThrow(/options.cert must be a string/);
    expect(() => T.tlsContextCreate({ cert: '', key: '', alpn: [1] })).toThrow(/options.alpn/);
    expect(() => T.tlsContextFree('1')).toThrow(TypeError);
  });

  it('is one registry for the whole process: a context made in a worker thread serves this one', async () => {
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       const n = require(workerData.addon);
       parentPort.postMessage(n.tlsContextCreate({ cert: workerData.cert, key: workerData.key }));`,
      { eval: true, workerData: { addon: ADDON, cert: pem(certs.serverChain), key: pem(certs.serverKey) } },
    );
    const id = await new Promise<number>((resolve, reject) => (worker.once('message', resolve), worker.once('error', reject)));
    await worker.terminate();
    expect(id).toBeGreaterThan(0);
    contexts.push(id);
    const { h } = await connected(id);
    expect(info(h).done).toBe(true);
  });
});

describe('tlsCertInfo', () => {
  it('describes the leaf certificate', () => {
    const now = Date.now();
    const leaf = T.tlsCertInfo(pem(certs.serverChain));
    expect(leaf).toMatchObject({ subject: 'CN=localhost', issuer: 'CN=tcpmod test intermediate', selfSigned: false });
    expect(leaf.notBefore).toBeLessThanOrEqual(now);
    expect(leaf.notAfter).toBeGreaterThan(now);
    expect(T.tlsCertInfo(CA)).toMatchObject({ subject: 'CN=tcpmod test CA', issuer: 'CN=tcpmod test CA', selfSigned: true });
  });

  it('detects an expired certificate and reports a missing one', () => {
    const old = T.tlsCertInfo(pem(certs.expiredCert));
    expect(old.notBefore).toBe(Date.UTC(2020, 0, 1));
    expect(old.notAfter).toBe(Date.UTC(2020, 1, 1));
    expect(old.notAfter).toBeLessThan(Date.now());
    expect(T.tlsCertInfo('nothing here')).toBe('certificate: no PEM certificate found');
    expect(() => T.tlsCertInfo(42)).toThrow(TypeError);
  });
});

describe('tls handshakes', () => {
  it('completes TLS 1.3 and carries data both ways', async () => {
    const { client, h } = await connected(context());
    expect(client.socket.getProtocol()).toBe('TLSv1.3');
    const i = info(h);
    expect(i).toMatchObject({ done: true, alpn: '', peerCert: false, failure: '', pending: false });
    expect(i.micros).toBeGreaterThan(0);
    client.socket.write('hello');
    expect((await serverRead(h, 5)).data.toString()).toBe('hello');
    expect(serverSend(h, 'world')).toBe(5);
    await until(() => (client.received().length >= 5 ? true : null), 5000, 'client data', 1);
    expect(client.received().toString()).toBe('world');
  });

  it('completes TLS 1.2', async () => {
    const { client, h } = await connected(context(), { maxVersion: 'TLSv1.2' });
    expect(client.socket.getProtocol()).toBe('TLSv1.2');
    client.socket.write('twelve');
    expect((await serverRead(h, 6)).data.toString()).toBe('twelve');
  });

  it("refuses a TLS 1.2 client with minVersion '1.3'", async () => {
    const { client, h } = await pair(context({ minVersion: '1.3' }), { maxVersion: 'TLSv1.2' });
    expect(await handshake(h)).toBe(-E.EPROTO);
    expect(info(h).failure).toBe('version');
    expect(await client.result).toBeInstanceOf(Error);
  });

  it('negotiates ALPN in server preference order, and proceeds without it when nothing matches', async () => {
    const ctx = context({ alpn: ['h2', 'http/1.1'] });
    const a = await connected(ctx, { ALPNProtocols: ['http/1.1', 'h2'] });
    expect(info(a.h).alpn).toBe('h2');
    expect(a.client.socket.alpnProtocol).toBe('h2');
    const b = await connected(ctx, { ALPNProtocols: ['http/1.1'] });
    expect(info(b.h).alpn).toBe('http/1.1');
    const c = await connected(ctx, { ALPNProtocols: ['spdy/3'] });
    expect(info(c.h).alpn).toBe('');
    expect(c.client.socket.alpnProtocol).toBe(false);
    const d = await connected(ctx);
    expect(info(d.h).alpn).toBe('');
  });

  it("with clientAuth 'require', refuses a client without a certificate and accepts one with it", async () => {
    const ctx = context({ ca: CA, clientAuth: 'require' });
    const bare = await pair(ctx);
    expect(await handshake(bare.h)).toBe(-E.EPROTO);
    expect(info(bare.h)).toMatchObject({ failure: 'certificate', done: false });
    await until(() => (bare.client.errors.length > 0 ? true : null), 5000, 'client error', 1); // TLS 1.3: after its own Finished

    const ok = await connected(ctx, { cert: pem(certs.clientCert), key: pem(certs.clientKey) });
    expect(info(ok.h).peerCert).toBe(true);
    ok.client.socket.write('authenticated');
    expect((await serverRead(ok.h, 13)).data.toString()).toBe('authenticated');

    // Not signed by the CA: the intermediate's server certificate is no client certificate of ours.
    const wrong = await pair(ctx, { cert: pem(certs.serverCert), key: pem(certs.serverKey) });
    expect(await handshake(wrong.h)).toBe(-E.EPROTO);
    expect(info(wrong.h).failure).toBe('certificate');
  });

  it("with clientAuth 'request', accepts a client without a certificate", async () => {
    const { h } = await connected(context({ ca: CA, clientAuth: 'request' }));
    expect(info(h).peerCert).toBe(false);
  });

  it('sends the intermediate from the chain; a client that rejects the leaf alone fails it ("certificate")', async () => {
    // Node's client verifies only after its handshake and then just closes, so the
    // server would see a completed handshake or a reset; openssl s_client sends an alert.
    const withChain = await sClientPair(context());
    expect(await handshake(withChain.h)).toBe(1);
    expect(await withChain.exit).toMatch(/Verify return code: 0 \(ok\)/);

    const leafOnly = await sClientPair(context({ cert: pem(certs.serverCert) }));
    expect(await handshake(leafOnly.h)).toBe(-E.EPROTO);
    expect(info(leafOnly.h)).toMatchObject({ failure: 'certificate', detail: 'tlsv1 alert unknown ca' });
    expect(await leafOnly.exit).toMatch(/unable to (verify|get local issuer)/);
  });

  it('fails a client that does not speak TLS with "protocol"', async () => {
    const l = listener();
    const raw = net.connect(l.port, '127.0.0.1');
    sockets.push(raw);
    raw.on('error', () => {});
    raw.write('GET / HTTP/1.1\r\n\r\n');
    const h = attach(context(), await acceptOne(l.fd));
    expect(await handshake(h)).toBe(-E.EPROTO);
    expect(info(h)).toMatchObject({ failure: 'protocol', detail: 'http request' });
    expect(T.tlsTestHandshake(h, 0)).toBe(-E.EPROTO); // final
  });

  it('tells a client that closes before its first byte (a health check) from one that closes mid-handshake ("socket")', async () => {
    const l = listener();
    const quiet = net.connect(l.port, '127.0.0.1');
    sockets.push(quiet);
    const h1 = attach(context(), await acceptOne(l.fd));
    expect(T.tlsTestHandshake(h1, 0)).toBe(0);
    quiet.end();
    expect(await handshake(h1)).toBe(-E.ENOTCONN);
    expect(info(h1).failure).toBe('');
    const partial = net.connect(l.port, '127.0.0.1');
    sockets.push(partial);
    const h2 = attach(context(), await acceptOne(l.fd));
    partial.end(Buffer.from([0x16, 0x03, 0x01])); // the start of a record header, then FIN
    expect(await handshake(h2)).toBe(-E.ECONNRESET);
    expect(info(h2).failure).toBe('socket');
  });

  it('refuses reads and sends before the handshake, and unknown contexts and handles', async () => {
    const l = listener();
    const raw = net.connect(l.port, '127.0.0.1');
    sockets.push(raw);
    const fd = await acceptOne(l.fd);
    const h = attach(context(), fd);
    expect(T.tlsTestRead(h, new ArrayBuffer(8), 0, 8)).toEqual({ n: -E.EINVAL, eof: false });
    expect(serverSend(h, 'x')).toBe(-E.EINVAL);
    expect(T.tlsTestAttach(999_999, fd)).toBe(-E.EBADF);
    expect(T.tlsTestHandshake(999_999, 0)).toBe(-E.EBADF);
    expect(() => T.tlsTestRead(h, new ArrayBuffer(8), 4, 8)).toThrow(RangeError);
  });
});

describe('tls records', () => {
  it('echoes 5 MiB byte for byte (client in a worker thread, so the server may block)', async () => {
    const size = 5 << 20;
    const l = listener();
    const worker = new Worker(
      `const { parentPort, workerData: w } = require('node:worker_threads');
       const tls = require('node:tls');
       const { createHash, randomBytes } = require('node:crypto');
       const data = randomBytes(w.size);
       const got = [];
       let n = 0;
       const s = tls.connect({ host: '127.0.0.1', port: w.port, servername: 'localhost', ca: w.ca }, () => s.write(data));
       s.on('data', (d) => {
         got.push(d);
         n += d.length;
         if (n >= data.length) {
           parentPort.postMessage({ same: Buffer.concat(got).equals(data), n, sha: createHash('sha256').update(data).digest('hex') });
           s.end();
         }
       });
       s.on('error', (e) => parentPort.postMessage({ error: String(e) }));`,
      { eval: true, workerData: { port: l.port, ca: CA, size } },
    );
    const done = new Promise<any>((resolve, reject) => (worker.once('message', resolve), worker.once('error', reject)));
    try {
      const h = attach(context(), await acceptOne(l.fd));
      expect(await until(() => { const rc = T.tlsTestHandshake(h, 1000); return rc === 0 ? null : rc; }, 5000, 'handshake', 1)).toBe(1);
      const buf = new ArrayBuffer(256 << 10);
      const hash = createHash('sha256');
      let total = 0;
      while (total < size) {
        const r = T.tlsTestRead(h, buf, 0, buf.byteLength);
        expect(r.n).toBeGreaterThanOrEqual(0);
        expect(r.eof).toBe(false);
        if (r.n === 0) {
          await sleep(1);
          continue;
        }
        hash.update(new Uint8Array(buf, 0, r.n));
        expect(T.tlsTestSend(h, buf, 0, r.n, 5000)).toBe(r.n);
        total += r.n;
      }
      const result = await done;
      expect(result).toMatchObject({ same: true, n: size, sha: hash.digest('hex') });
      expect((await serverRead(h, 1)).eof).toBe(true); // the client's end(): close_notify
    } finally {
      await worker.terminate();
    }
  });

  it('sends close_notify, which the client sees as the end of the stream', async () => {
    const a = await connected(context());
    T.tlsTestClose(a.h, true);
    handles.splice(handles.indexOf(a.h), 1);
    await until(() => (a.client.ended() ? true : null), 2000, 'client end', 1);

    const b = await connected(context());
    T.tlsTestClose(b.h, false); // frees without a word: the client must not see an end yet
    handles.splice(handles.indexOf(b.h), 1);
    await sleep(200);
    expect(b.client.ended()).toBe(false);
  });

  it('reads the peer closing, with or without close_notify, as EOF', async () => {
    const a = await connected(context());
    a.client.socket.write('bye');
    a.client.socket.end(); // close_notify, then FIN
    const r = await serverRead(a.h, 1 << 20);
    expect(r).toMatchObject({ eof: true });
    expect(r.data.toString()).toBe('bye');
    expect(T.tlsTestRead(a.h, new ArrayBuffer(8), 0, 8)).toEqual({ n: 0, eof: true });

    // TCP closed under the TLS layer: FIN without close_notify.
    const l = listener();
    const tcp = net.connect(l.port, '127.0.0.1');
    sockets.push(tcp);
    const b = tlsClient(0, { socket: tcp } as tls.ConnectionOptions);
    const h = attach(context(), await acceptOne(l.fd));
    expect(await handshake(h)).toBe(1);
    expect(await b.result).toBe('secure');
    tcp.end();
    expect(await serverRead(h, 1 << 20)).toMatchObject({ eof: true });
    expect(info(h).failure).toBe('');
  });

  it('reports input OpenSSL holds that no socket event would announce (TlsHasPending)', async () => {
    const { client, h } = await connected(context());
    client.socket.write(Buffer.alloc(20000, 7)); // two records: 16384 + 3616 bytes
    const small = new ArrayBuffer(100);
    await until(() => (T.tlsTestRead(h, small, 0, 100).n > 0 ? true : null), 5000, 'first bytes', 1);
    expect(info(h).pending).toBe(true); // the rest of the 16 KiB record is decrypted already
    const rest = await serverRead(h, 19900);
    expect(rest.data.length).toBe(19900);
    expect(info(h).pending).toBe(false);
  });

  // Issue 25: a read that got a request must not go on to a second SSL_read that
  // ends in an empty recv (EAGAIN). Every read that returns bytes is checked, for
  // one record and records written back to back. (A recv that fills OpenSSL's
  // read-ahead buffer, as a 16 KiB record does, may be followed by an empty one:
  // the socket could have held more. Small requests never fill it.)
  for (const [what, writes] of [
    ['one record', ['GET / HTTP/1.1\r\n\r\n']],
    ['three records written back to back', ['one,', 'two,', 'three']],
  ] as const) {
    it(`a read that returns data makes no recv that finds nothing (${what})`, async () => {
      const { client, h } = await connected(context());
      const total = writes.reduce((n, w) => n + Buffer.from(w).length, 0);
      for (const w of writes) client.socket.write(w);
      const buf = new ArrayBuffer(65536);
      let got = 0;
      const emptyAfterData: number[] = [];
      await until(() => {
        const before = info(h).emptyRecvs;
        const r = T.tlsTestRead(h, buf, got, buf.byteLength - got);
        if (r.n < 0) throw new Error(`tlsTestRead ${r.n}`);
        if (r.n > 0) emptyAfterData.push(info(h).emptyRecvs - before);
        got += r.n;
        return got >= total ? true : null;
      }, 5000, `${total} bytes`, 1);
      expect(got).toBe(total);
      expect(emptyAfterData.length).toBeGreaterThan(0);
      expect(emptyAfterData.every((n) => n === 0), `empty recvs per data read: ${emptyAfterData}`).toBe(true);
      expect(info(h).pending).toBe(false); // nothing left behind in OpenSSL
      // The stream goes on: a later record is read in full, again without an empty recv.
      client.socket.write('after');
      expect((await serverRead(h, 5)).data.toString()).toBe('after');
      expect(info(h).pending).toBe(false);
    });
  }

  it('reports client data that arrived with the handshake as pending', async () => {
    const { client, h } = await pair(context());
    // ClientHello in, server flight out. Stepped until the session has read from its socket:
    // right after accept the ClientHello may not be there yet (a step then only peeks).
    await until(() => {
      expect(T.tlsTestHandshake(h, 20)).toBe(0);
      return info(h).recvs > 0 ? true : null;
    }, 5000, 'the ClientHello read', 1);
    expect(await client.result).toBe('secure'); // TLS 1.3: the client is done and may send at once
    client.socket.write('early');
    await sleep(50); // its Finished and the data are both in the socket now
    expect(T.tlsTestHandshake(h, 20)).toBe(1);
    expect(info(h).pending).toBe(true); // read ahead with the Finished: no EPOLLIN will come for it
    const small = new ArrayBuffer(16);
    expect(T.tlsTestRead(h, small, 0, 16)).toEqual({ n: 5, eof: false });
    expect(info(h).pending).toBe(false);
  });

  it('keeps a session working after its context is freed', async () => {
    const ctx = context();
    const { client, h, fd } = await connected(ctx);
    expect(T.tlsContextFree(ctx)).toBe(0);
    contexts.splice(contexts.indexOf(ctx), 1);
    expect(T.tlsTestAttach(ctx, fd)).toBe(-E.EBADF);
    client.socket.write('still here');
    expect((await serverRead(h, 10)).data.toString()).toBe('still here');
    expect(serverSend(h, 'yes')).toBe(3);
    await until(() => (client.received().length >= 3 ? true : null), 5000, 'client data', 1);
    T.tlsTestClose(h, true);
    handles.splice(handles.indexOf(h), 1);
    await until(() => (client.ended() ? true : null), 2000, 'client end', 1);
  });

  it('never raises SIGPIPE: a send on a socket shut down for writing fails with -EPIPE ("socket")', async () => {
    const { h, fd } = await connected(context());
    let sigpipes = 0;
    const onPipe = () => sigpipes++;
    process.on('SIGPIPE', onPipe); // a handler instead of Node's SIG_IGN: a raised SIGPIPE would be seen
    try {
      expect(native.shutdown(fd, C.SHUT_WR)).toBe(0);
      expect(serverSend(h, 'into the void')).toBe(-E.EPIPE);
      expect(info(h)).toMatchObject({ failure: 'socket', detail: 'Broken pipe' });
      await sleep(50);
      expect(sigpipes).toBe(0);
    } finally {
      process.off('SIGPIPE', onPipe);
    }
  });

  it('resumes sessions, TLS 1.2 (session cache) and TLS 1.3 (tickets), also with client certificates', async () => {
    const ctx = context({ ca: CA, clientAuth: 'require' });
    const auth = { cert: pem(certs.clientCert), key: pem(certs.clientKey) };
    for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
      const first = await pair(ctx, { ...auth, maxVersion });
      const session = new Promise<Buffer>((resolve) => first.client.socket.once('session', resolve));
      expect(await handshake(first.h)).toBe(1);
      const ticket = await session;
      expect(first.client.socket.isSessionReused()).toBe(false);
      const again = await connected(ctx, { ...auth, maxVersion, session: ticket });
      expect(again.client.socket.isSessionReused()).toBe(true);
      expect(info(again.h).peerCert).toBe(true);
    }
  });

  it('times out a send to a client that does not read ("timeout")', async () => {
    const { client, h } = await connected(context());
    client.socket.pause();
    const big = new Uint8Array(64 << 20);
    const t0 = Date.now();
    expect(T.tlsTestSend(h, big, 0, big.length, 200)).toBe(-E.ETIMEDOUT); // this thread is blocked: nobody reads
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    expect(info(h).failure).toBe('timeout');
    expect(serverSend(h, 'x')).toBe(-E.ETIMEDOUT); // final
  });
});
