// Half-close (docs/abi.md §20) through examples/tcp-forward: each direction of
// a forwarded connection ends on its own.
// - tcpmod/testing: the client's EOF ends the sending side to the backend
//   (u.shutdown) and keeps the client; the backend's answer then reaches it;
//   the backend's EOF ends the client's output while the client goes on
//   sending; every split of the request before the EOF.
// - Real sockets: a client that writes a request and half-closes gets the
//   whole answer of a backend that answers only after reading EOF; the
//   reverse (the backend answers and ends its side, the client sends on, then
//   reads everything); a half-closed client with an idle backend does not
//   make the server spin (events counted over a second); afterwards no
//   connection, upstream or descriptor is left. Both directions again over TLS
//   (the client's close_notify and FIN end its side; the server's come after its output).
// - A module without the new imports still closes at the client's EOF.
import { readdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer as netServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildModule } from '../dist/build.js';
import { createServer, type TcpmodServer } from '../dist/index.js';
import { loadModule } from '../dist/testing.js';
import { native } from '../host/sys.js';
import { compileAs } from './asc-source.js';
import { scratchFile } from './fixtures.js';
import { makeTestCerts, type TestCerts } from './tls-certs.js';
import { sleep, until } from './wait.js';

let wasm: string;
const dir = mkdtempSync(join(tmpdir(), 'tcpmod-halfclose-'));
beforeAll(async () => {
  wasm = (await buildModule({ baseDir: 'examples/tcp-forward', outFile: join(dir, 'forward.wasm') })).file;
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const fds = () => readdirSync('/proc/self/fd').length;

describe('half-close through tcp-forward on tcpmod/testing', () => {
  it('the client\'s EOF ends the side to the backend and keeps the client; the answer then comes, and both ends close it (peer)', async () => {
    const m = await loadModule(wasm, { upstreams: ['backend'] });
    const c = m.connect();
    const u = c.upstream('backend');
    u.accept();
    const sent = c.send('GET / HTTP/1.0\r\n\r\n', { eof: true });
    expect(sent.closed).toBeNull();
    expect(c.inputEnded).toBe(true);
    expect(u.takeText()).toBe('GET / HTTP/1.0\r\n\r\n');
    expect(u.shutdown).toBe(true);
    expect(() => c.send('more')).toThrow(/ended its sending side/);
    const answer = 'HTTP/1.0 200 OK\r\n\r\nthe whole answer';
    let got = '';
    for (const ch of answer) got += u.reply(ch).text; // the answer cut at every byte
    expect(got).toBe(answer);
    expect(c.closed).toBeNull();
    const last = u.close(); // the backend read EOF, answered, and closed: both ways are done
    expect(last.closed).toBe('peer');
    expect(c.outputEnded).toBe(true);
  });

  it('every split of the request before the EOF reaches the backend whole, then its end', async () => {
    const m = await loadModule(wasm, { upstreams: ['backend'] });
    const request = 'POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc';
    for (let cut = 0; cut <= request.length; cut++) {
      const c = m.connect();
      const u = c.upstream('backend');
      if (cut % 2) u.accept(); // queued while it connects, or sent to an open one
      c.send(request.slice(0, cut));
      expect(u.shutdown).toBe(false);
      expect(c.send(request.slice(cut), { eof: true }).closed).toBeNull();
      if (u.state === 'connecting') u.accept();
      expect(u.takeText()).toBe(request);
      expect(u.shutdown).toBe(true);
      expect(u.reply('ok').text).toBe('ok');
      expect(u.close().closed).toBe('peer');
    }
  });

  it('the backend\'s EOF ends the client\'s output; the client sends on; its EOF then ends the rest', async () => {
    const m = await loadModule(wasm, { upstreams: ['backend'] });
    const c = m.connect();
    const u = c.upstream('backend');
    u.accept();
    expect(u.reply('greeting').text).toBe('greeting');
    const ended = u.end();
    expect(ended.closed).toBeNull();
    expect(u.state).toBe('open');
    expect(c.outputEnded).toBe(true);
    for (const ch of 'after the backend ended') expect(c.send(ch).closed).toBeNull();
    expect(u.takeText()).toBe('after the backend ended');
    expect(u.shutdown).toBe(false);
    expect(c.send('', { eof: true }).closed).toBeNull();
    expect(u.shutdown).toBe(true);
    expect(u.close().closed).toBe('peer');
  });

  it('a module without the half-close imports still closes at the client\'s EOF (v1 echo, v1.2 redis-proxy)', async () => {
    const echo = await loadModule('build/echo.wasm');
    const e = echo.connect();
    expect(e.send('hi', { eof: true }).closed).toBe('peer');
    const proxy = await loadModule('build/redis-proxy.wasm', { upstreams: ['redis'] });
    const p = proxy.connect();
    expect(p.send('', { eof: true }).closed).toBe('peer');
  });
});

/** A backend (allowHalfOpen) whose connections are handled by `onConn`. */
async function backend(onConn: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = netServer({ allowHalfOpen: true }, onConn);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as { port: number }).port };
}

/** Collects a socket's bytes until its 'end' (the peer's FIN). */
function readToEnd(s: Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on('data', (b) => parts.push(b));
  return new Promise((resolve, reject) => {
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('error', reject);
  });
}

function connectTo(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port, allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Bytes that tell their offset (a lost, duplicated or reordered piece shows). */
function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + (i >> 9) + seed) & 0xff;
  return b;
}

describe('half-close through tcp-forward over sockets', () => {
  let server: TcpmodServer;
  let port = 0;
  let backends: Server[] = [];
  let baseline = 0;
  const name = (p: number) => `backend=127.0.0.1:${p}`;

  afterAll(async () => {
    await server?.close({ drainTimeout: 0 });
    for (const b of backends) b.close();
  });

  async function serve(backendPort: number): Promise<void> {
    if (server) await server.close({ drainTimeout: 0 });
    server = createServer({ module: wasm, port: 0, threads: 2, logLevel: 'silent', upstream: name(backendPort) });
    port = (await server.listen()).port;
  }

  it('a client that writes a request and half-closes gets the whole answer of a backend that answers after EOF', async () => {
    // The backend reads to EOF, then answers with 256 KiB derived from what it read, then ends.
    const b = await backend((s) => {
      readToEnd(s).then((req) => {
        s.end(Buffer.concat([Buffer.from(`got ${req.length}\n`), pattern(256 * 1024, req.length & 0xff)]));
      }, () => s.destroy());
    });
    backends.push(b.server);
    await serve(b.port);
    baseline = fds();
    for (const size of [1, 1000, 300_000]) {
      const c = await connectTo(port);
      const answer = readToEnd(c);
      c.end(pattern(size, 7)); // the request, then the FIN
      const got = await answer;
      expect(got.equals(Buffer.concat([Buffer.from(`got ${size}\n`), pattern(256 * 1024, size & 0xff)]))).toBe(true);
      c.destroy();
    }
    await until(() => server.stats().connections === 0, 10_000, `connections closed (${server.stats().connections})`);
    expect(server.stats().connectionsClosed.peer).toBe(3);
    expect(Object.values(server.stats().moduleFaults).reduce((a, n) => a + n, 0)).toBe(0);
  }, 60_000);

  it('a backend that answers and ends its side while the client sends on: the client reads it all, the backend gets everything', async () => {
    const received: Promise<Buffer>[] = [];
    const greeting = pattern(100_000, 3);
    const b = await backend((s) => {
      received.push(readToEnd(s).then((all) => {
        s.destroy();
        return all;
      }));
      s.end(greeting); // answers at once and ends its sending side; it still reads
    });
    backends.push(b.server);
    await serve(b.port);
    const c = await connectTo(port);
    const first = pattern(50_000, 11);
    c.write(first);
    const got = await readToEnd(c); // the greeting, then the FIN the forwarder passed on
    expect(got.equals(greeting)).toBe(true);
    // The client keeps sending after it read the end, then ends too.
    const second = pattern(200_000, 13);
    c.end(second);
    await until(() => received.length === 1, 10_000, 'the backend connection');
    const all = await received[0];
    expect(all.equals(Buffer.concat([first, second]))).toBe(true);
    await new Promise<void>((r) => (c.destroyed ? r() : c.once('close', () => r())));
    await until(() => server.stats().connections === 0, 10_000, `connections closed (${server.stats().connections})`);
    expect(server.stats().connectionsClosed.peer).toBe(1);
  }, 60_000);

  it('a half-closed client with an idle backend does not wake the server in a loop; then nothing is left', async () => {
    let held: Socket | null = null;
    const b = await backend((s) => {
      held = s; // reads, answers nothing, never ends
      s.on('data', () => undefined);
      s.on('end', () => undefined);
    });
    backends.push(b.server);
    await serve(b.port);
    const before = fds();
    const c = await connectTo(port);
    const answer = readToEnd(c);
    c.end('request then FIN');
    await until(() => held !== null, 10_000, 'the backend connection');
    await sleep(200); // the EOF has been taken and the client re-armed
    const events0 = server.stats().events;
    await sleep(1000);
    const events = server.stats().events - events0;
    // Idle: a handful at most (a timer tick). A socket at EOF re-armed for input reports at once, for ever: millions.
    expect(events).toBeLessThan(50);
    expect(server.stats().connections).toBe(1);
    // The backend answers and ends: the client gets it and the connection goes.
    held!.end('late answer');
    expect((await answer).toString()).toBe('late answer');
    c.destroy();
    await until(() => server.stats().connections === 0, 10_000, 'connection closed');
    await until(() => native.upstreamStats().open === 0, 10_000, `upstreams closed (${JSON.stringify(native.upstreamStats())})`);
    await until(() => fds() <= before, 10_000, `descriptors back to ${before} (now ${fds()})`);
    expect(server.stats().outputQueuedBytes).toBe(0);
    expect(server.stats().inputBufferedBytes).toBe(0);
  }, 60_000);

  it('stress: 300 clients half-close at once in both orders; every answer whole, every connection closed as peer, nothing left', async () => {
    // Odd connections: the backend answers after the client's EOF. Even: it answers and ends first, then reads the
    // client's rest. The close of a connection whose two ends are done races its own hang-up in epoll.
    const b = await backend((s) => {
      let n = 0;
      s.on('data', (d) => (n += d.length));
      s.once('data', (d) => {
        const tag = d[0];
        if (tag % 2 === 0) s.end(pattern(20_000 + tag * 7, tag));
        s.once('end', () => {
          if (tag % 2 === 1) s.end(Buffer.concat([Buffer.from(`${n}\n`), pattern(20_000 + tag * 7, tag)]));
          else s.destroy();
        });
      });
    });
    backends.push(b.server);
    await serve(b.port);
    const before = fds();
    const N = 300;
    const runs = Array.from({ length: N }, async (_, i) => {
      const tag = i % 251;
      const c = await connectTo(port);
      const answer = readToEnd(c);
      const body = Buffer.concat([Buffer.from([tag]), pattern(1000 + i, 5)]);
      if (tag % 2 === 1) {
        c.end(body);
        const got = await answer;
        expect(got.equals(Buffer.concat([Buffer.from(`${body.length}\n`), pattern(20_000 + tag * 7, tag)]))).toBe(true);
      } else {
        c.write(body);
        const got = await answer;
        expect(got.equals(pattern(20_000 + tag * 7, tag))).toBe(true);
        c.end('rest');
      }
      await new Promise<void>((r) => (c.destroyed ? r() : c.once('close', () => r())));
    });
    await Promise.all(runs);
    await until(() => server.stats().connections === 0, 20_000, `connections closed (${server.stats().connections})`);
    expect(server.stats().connectionsClosed.peer).toBe(N);
    expect(Object.values(server.stats().moduleFaults).reduce((a, n) => a + n, 0)).toBe(0);
    await until(() => native.upstreamStats().open === 0, 10_000, 'upstreams closed');
    await until(() => fds() <= before, 10_000, `descriptors back to ${before} (now ${fds()})`);
  }, 120_000);

  it('a half-closed client whose backend never answers is bounded by --read-timeout from its EOF (reason timeout)', async () => {
    const b = await backend((s) => s.on('data', () => undefined)); // reads, never answers, never ends
    backends.push(b.server);
    const srv = createServer({ module: wasm, port: 0, threads: 1, logLevel: 'silent', upstream: name(b.port), readTimeout: '1s' });
    try {
      const c = await connectTo((await srv.listen()).port);
      const answer = readToEnd(c);
      c.end('request then FIN');
      await until(() => srv.stats().connectionsClosed.timeout === 1, 15_000, `closed by the read timeout (${JSON.stringify(srv.stats().connectionsClosed)})`);
      expect((await answer).length).toBe(0);
      expect(srv.stats().connections).toBe(0);
      c.destroy();
    } finally {
      await srv.close({ drainTimeout: 0 });
    }
  }, 30_000);

  it('a v1 module (echo) still closes the connection at the client\'s EOF', async () => {
    const echo = createServer({ module: 'build/echo.wasm', port: 0, threads: 1, logLevel: 'silent' });
    const p = (await echo.listen()).port;
    try {
      const c = await connectTo(p);
      const got = readToEnd(c);
      c.end('ping');
      expect((await got).toString()).toBe('ping');
      await until(() => echo.stats().connections === 0, 10_000, 'closed at EOF');
      expect(echo.stats().connectionsClosed.peer).toBe(1);
      c.destroy();
    } finally {
      await echo.close({ drainTimeout: 0 });
    }
  }, 30_000);
});

describe('half-close result codes and events over sockets (an SDK module)', () => {
  // One letter a command: w send the letter to the upstream, u upstream_shutdown of a handle that does not exist,
  // s upstream_shutdown, o "bye" then shutdown_output, l "late" (after o: discarded). Events are told as lines.
  const source = `
import { Action, Conn, configure, setOnOpen, setOnUpstream, UPSTREAM_DATA, UPSTREAM_EOF, UPSTREAM_CLOSED } from "./sdk";
import { host_upstream_send, host_upstream_shutdown, host_shutdown_output } from "./sdk/abi";
export * from "./sdk/exports";
function onData(c: Conn): Action {
  const up = load<i32>(c.state);
  for (let i = 0; i < c.inputLen; i++) {
    const k = load<u8>(c.input + i);
    if (k == 0x77) { c.writeString("send "); c.writeInt(host_upstream_send(c.id, up, c.input + i, 1)); c.writeString("\\n"); }
    if (k == 0x75) { c.writeString("bad "); c.writeInt(host_upstream_shutdown(c.id, up + 1000)); c.writeString("\\n"); }
    if (k == 0x73) { c.writeString("shut "); c.writeInt(host_upstream_shutdown(c.id, up)); c.writeString("\\n"); }
    if (k == 0x6f) { c.writeString("bye\\n"); c.writeString("out "); c.writeInt(host_shutdown_output(c.id)); c.writeString("\\n"); }
    if (k == 0x6c) c.writeString("late\\n");
  }
  c.consume(c.inputLen);
  return Action.Continue;
}
configure(4096, 4096, 8, onData);
setOnOpen((c: Conn): Action => { store<i32>(c.state, c.openUpstream("backend")); return Action.Continue; });
setOnUpstream((c: Conn, up: i32, event: i32): Action => {
  if (event == UPSTREAM_DATA) { c.writeString("data "); c.writeInt(c.inputLen); c.writeString("\\n"); }
  if (event == UPSTREAM_EOF) c.writeString("eof\\n");
  if (event == UPSTREAM_CLOSED) c.writeString("closed\\n");
  c.consume(c.inputLen);
  return Action.Continue;
});
`;

  it('upstream_send 0, then -3 after upstream_shutdown, -1 once gone; -1 for no such handle; EOF (5) keeps the handle; shutdown_output after the call\'s output; later output discarded; closed as peer', async () => {
    const file = scratchFile('half-codes.wasm', await compileAs('half-codes', source));
    let got = '';
    let up: Socket | null = null;
    const b = await backend((s) => {
      up = s;
      s.on('data', (d) => (got += d.toString()));
      s.on('end', () => (got += '<end>'));
    });
    const srv = createServer({ module: file, port: 0, threads: 2, logLevel: 'silent', upstream: `backend=127.0.0.1:${b.port}` });
    try {
      const c = await connectTo((await srv.listen()).port);
      let text = '';
      let ended = false;
      c.on('data', (d) => (text += d.toString()));
      c.on('end', () => (ended = true));
      const step = async (cmd: string, expected: string) => {
        const before = text.length;
        if (cmd) c.write(cmd);
        await until(() => text.length - before >= expected.length, 10_000, `${JSON.stringify(expected)} after ${JSON.stringify(cmd)} (got ${JSON.stringify(text)})`);
        expect(text.slice(before)).toBe(expected);
      };
      await until(() => up !== null, 10_000, 'the backend connection');
      await step('w', 'send 0\n');
      await step('u', 'bad -1\n');
      up!.write('hi');
      await step('', 'data 2\n');
      up!.end(); // the backend ends its side: EOF, the handle stays
      await step('', 'eof\n');
      await step('w', 'send 0\n');
      await until(() => got === 'ww', 10_000, `the backend got both sends (${got})`);
      // In one call: the send after the shutdown is refused; then, both sides of the upstream ended, CLOSED.
      await step('sw', 'shut 0\nsend -3\nclosed\n');
      expect(got).toBe('ww<end>');
      await step('w', 'send -1\n'); // the handle is gone
      await step('o', 'bye\nout 0\n');
      await until(() => ended, 10_000, 'the client read the FIN after "out 0"');
      c.write('l'); // discarded: the output has ended
      c.end(); // both directions over, no upstream left: closed as peer
      await until(() => srv.stats().connections === 0, 10_000, 'closed');
      expect(srv.stats().connectionsClosed.peer).toBe(1);
      expect(text).not.toContain('late');
      c.destroy();
    } finally {
      await srv.close({ drainTimeout: 0 });
      b.server.close();
    }
  }, 60_000);
});


describe('half-close over TLS through tcp-forward (close_notify, then the FIN)', () => {
  let certs: TestCerts;
  let server: TcpmodServer | undefined;
  const backends: Server[] = [];
  beforeAll(() => { certs = makeTestCerts(); });
  afterAll(async () => {
    await server?.close({ drainTimeout: 0 });
    for (const b of backends) b.close();
    certs?.remove();
  });

  async function serveTls(backendPort: number): Promise<number> {
    if (server) await server.close({ drainTimeout: 0 });
    server = createServer({ module: wasm, port: 0, threads: 2, logLevel: 'silent', upstream: `backend=127.0.0.1:${backendPort}`, tlsCert: certs.serverChain, tlsKey: certs.serverKey });
    return (await server.listen()).port;
  }
  const connectTls = (port: number) => new Promise<TLSSocket>((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: readFileSync(certs.caCert), allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });

  it('a TLS client that writes a request and ends its side gets the whole answer of a backend that answers after EOF', async () => {
    const b = await backend((s) => {
      readToEnd(s).then((req) => s.end(Buffer.concat([Buffer.from(`got ${req.length}\n`), pattern(256 * 1024, req.length & 0xff)])), () => s.destroy());
    });
    backends.push(b.server);
    const port = await serveTls(b.port);
    for (const size of [1, 300_000]) {
      const c = await connectTls(port);
      const answer = readToEnd(c);
      c.end(pattern(size, 5)); // the request, close_notify, the FIN
      expect((await answer).equals(Buffer.concat([Buffer.from(`got ${size}\n`), pattern(256 * 1024, size & 0xff)]))).toBe(true);
      c.destroy();
    }
    await until(() => server!.stats().connections === 0, 10_000, `connections closed (${server!.stats().connections})`);
    expect(server!.stats().connectionsClosed.peer).toBe(2);
    expect(Object.values(server!.stats().moduleFaults).reduce((a, n) => a + n, 0)).toBe(0);
  }, 60_000);

  it('a backend that answers and ends while the TLS client sends on: the client reads it all and its end, then its further bytes reach the backend', async () => {
    const received: Promise<Buffer>[] = [];
    const greeting = pattern(100_000, 9);
    const b = await backend((s) => {
      received.push(readToEnd(s).then((all) => { s.destroy(); return all; }));
      s.end(greeting);
    });
    backends.push(b.server);
    const port = await serveTls(b.port);
    const c = await connectTls(port);
    const first = pattern(50_000, 17);
    c.write(first);
    expect((await readToEnd(c)).equals(greeting)).toBe(true); // then the server's close_notify and FIN
    const second = pattern(200_000, 19);
    c.end(second);
    await until(() => received.length === 1, 10_000, 'the backend connection');
    expect((await received[0]).equals(Buffer.concat([first, second]))).toBe(true);
    await until(() => server!.stats().connections === 0, 10_000, `connections closed (${server!.stats().connections})`);
    expect(server!.stats().connectionsClosed.peer).toBe(1);
  }, 60_000);
});
