// The native calls that decide a connection's phases and its close in one
// crossing each (host/native/src/conn_tls.cc connPhase, conn_close.cc connEnd
// and connClosing), against real sockets, a real epoll set and real TLS
// clients: every result of each (ready / waits, re-armed / failed / closed
// before its first byte / gone; lingers / closed now; kept / closed at the
// end / closed on a send timeout).
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { constants as os } from 'node:os';
import tls from 'node:tls';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { TLS_FAILURES } from '../host/pool/counters.js';
import { C, check, native } from '../host/sys.js';
import { nativeFixture } from './native-fixture.js';
import { makeTestCerts } from './tls-certs.js';
import { sleep, until } from './wait.js';

const E = os.errno;
const EV = C.EPOLLIN | C.EPOLLET | C.EPOLLONESHOT;
const certs = makeTestCerts();
afterAll(() => certs.remove());

const fx = nativeFixture(certs);
const { fds, sockets, listener } = fx;
const groups: number[] = [];
afterEach(() => {
  for (const g of groups.splice(0)) {
    const l = native.connList(g);
    for (let i = 0; i < l.length; i += 3) native.connClose(l[i], l[i + 1]);
    native.timersForget(g);
  }
  fx.release();
});

/** A server group: its epoll set (the group key), timers, and optional PROXY and linger settings. */
function group(opts: { proxy?: number; lingerMs?: number } = {}): number {
  const ep = check(native.epollCreate(), 'epoll_create1');
  fds.push(ep);
  groups.push(ep);
  expect(native.timersConfigure(ep, 0, 0)).toBeGreaterThanOrEqual(0); // its timerfd
  if (opts.proxy) expect(native.proxyConfigure(ep, opts.proxy)).toBe(0);
  if (opts.lingerMs) expect(native.lingerConfigure(ep, opts.lingerMs, opts.lingerMs)).toBe(0);
  return ep;
}

/** Accepts one connection into the table of `ep`, held by worker 1, in the epoll set. */
async function accepted(ep: number, lfd: number, tlsCtx = 0): Promise<{ fd: number; id: number }> {
  const fd = await fx.acceptOne(lfd, true); // the connection table owns it
  const id = native.connOpen(fd, ep, 0, 1, C.KIND_CONN, tlsCtx);
  expect(id).toBeGreaterThan(0);
  expect(native.connAdd(ep, fd, id, EV)).toBe(0);
  return { fd, id };
}

/** Waits (yielding to this thread's event loop, where the clients run) until worker 1 claims the connection's next event; its due bits. */
async function claim(ep: number, fd: number): Promise<number> {
  const ev = new Float64Array(5);
  const cells = new Int32Array(4);
  return until(() => (native.epollWait(ep, 0, ev, 1, cells, 0, 1) === 1 && ev[0] === fd ? { due: ev[4] } : null), 5000, 'claim', 2)
    .then((r) => r.due);
}

function rawClient(port: number): net.Socket {
  // Half-open allowed: a client that has read the server's EOF still sends until it ends its side itself.
  const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  s.on('error', () => {});
  sockets.push(s);
  return s;
}

/** Steps connPhase (claiming each event it waits for) until it returns something other than 0. */
async function step(ep: number, fd: number, id: number, out: Float64Array, open = 1): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const rc = native.connPhase(fd, id, ep, EV, 1000, open, out);
    if (rc !== 0) return rc;
    expect(native.connHeld(ep, 1)).toEqual([]); // waiting: re-armed by the call
    await claim(ep, fd);
  }
  throw new Error('the phase did not end');
}

const kind = (ep: number, fd: number, id: number) => {
  const l = native.connList(ep);
  for (let i = 0; i < l.length; i += 3) if (l[i] === fd && l[i + 1] === id) return l[i + 2];
  return -1;
};

describe('connPhase: the phases before the module, one call per event', () => {
  it('reads a PROXY header split over events (waits, re-armed), then is ready and open in the same call', async () => {
    const ep = group({ proxy: 3 });
    const l = listener();
    const client = rawClient(l.port);
    const { fd, id } = await accepted(ep, l.fd);
    const out = new Float64Array(2);
    // Nothing yet: it waits, re-armed (no longer held), nothing counted.
    expect(native.connPhase(fd, id, ep, EV, 1000, 1, out)).toBe(0);
    expect([...out]).toEqual([-1, -1]);
    expect(native.connHeld(ep, 1)).toEqual([]);
    client.write('PROXY TCP4 1.2.3.4 ');
    expect((await claim(ep, fd)) & native.DUE_PROXY).toBe(native.DUE_PROXY);
    expect(native.connPhase(fd, id, ep, EV, 1000, 1, out)).toBe(0); // incomplete: taken, waits again
    expect(native.connHeld(ep, 1)).toEqual([]);
    client.write('5.6.7.8 1111 2222\r\n');
    await claim(ep, fd);
    expect(native.connPhase(fd, id, ep, EV, 1000, 1, out)).toBe(1);
    expect([...out]).toEqual([-1, -1]); // no handshake
    expect(kind(ep, fd, id)).toBe(C.KIND_CONN); // moved to open: the module is being told
    expect(native.connHeld(ep, 1)).toEqual([fd, id, C.KIND_CONN]); // still the caller's, for on_open
    expect(native.connPeer(fd, id)).toBe('1.2.3.4:1111');
    expect(native.connPhase(fd, id + 1, ep, EV, 1000, 1, out)).toBe(-E.EBADF); // a stale id touches nothing
  });

  it('without open, stays unopened when ready (the caller opens it); an open connection is ready at once', async () => {
    const ep = group({ proxy: 1 });
    const l = listener();
    rawClient(l.port).write('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n');
    const { fd, id } = await accepted(ep, l.fd);
    const out = new Float64Array(2);
    expect(await step(ep, fd, id, out, 0)).toBe(1);
    expect(kind(ep, fd, id)).toBe(C.KIND_UNOPENED);
    expect(native.connOpened(fd, id)).toBe(0);
    expect(native.connPhase(fd, id, ep, EV, 1000, 1, out)).toBe(1);
    expect(kind(ep, fd, id)).toBe(C.KIND_CONN);
  });

  it('fails a connection that is not the balancer\'s (-EPROTO, no TLS label), and one closed before its first byte (-ENOTCONN)', async () => {
    const ep = group({ proxy: 3 });
    const l = listener();
    const bad = rawClient(l.port);
    bad.write('GET / HTTP/1.1\r\n\r\n');
    const a = await accepted(ep, l.fd);
    const out = new Float64Array(2);
    expect(await step(ep, a.fd, a.id, out)).toBe(-E.EPROTO);
    expect(out[1]).toBe(-1);
    expect(native.connHeld(ep, 1)).toEqual([a.fd, a.id, C.KIND_UNOPENED]); // still held: the caller drops it
    expect(native.connClose(a.fd, a.id)).toBe(0);
    const gone = rawClient(l.port);
    const b = await accepted(ep, l.fd);
    gone.end();
    expect(await step(ep, b.fd, b.id, out)).toBe(-E.ENOTCONN);
    expect([...out]).toEqual([-1, -1]);
  });

  describe('TLS', () => {
    const ctx = (): number => fx.context();

    it('completes a handshake over several events, reports its time, opens it; a PROXY header first, then the handshake, in one call', async () => {
      for (const proxy of [0, 3]) {
        const ep = group({ proxy });
        const l = listener();
        const c = ctx();
        const raw = rawClient(l.port);
        if (proxy) raw.write('PROXY TCP4 9.9.9.9 5.6.7.8 7 8\r\n');
        const client = tls.connect({ socket: raw, ca: readFileSync(certs.caCert, 'utf8'), servername: 'localhost' });
        client.on('error', () => {});
        const { fd, id } = await accepted(ep, l.fd, c);
        const out = new Float64Array(2);
        const done = new Promise((resolve) => client.once('secureConnect', resolve));
        expect(await step(ep, fd, id, out)).toBe(1);
        expect(out[0]).toBeGreaterThan(0);
        expect(out[1]).toBe(-1);
        expect(kind(ep, fd, id)).toBe(C.KIND_CONN);
        const info = native.connTlsInfo(fd, id);
        expect(typeof info === 'object' && info.handshaken && info.micros === out[0]).toBe(true);
        if (proxy) expect(native.connPeer(fd, id)).toBe('9.9.9.9:7');
        await done;
        client.destroy();
      }
    });

    it('fails a handshake with its label (an index into TLS_FAILURE_LABELS, the metrics\' labels), or -ENOTCONN before a byte', async () => {
      expect([...native.TLS_FAILURE_LABELS]).toEqual([...TLS_FAILURES]);
      const ep = group();
      const l = listener();
      const c = ctx();
      rawClient(l.port).write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      const a = await accepted(ep, l.fd, c);
      const out = new Float64Array(2);
      const rc = await step(ep, a.fd, a.id, out);
      expect(rc).toBe(-E.EPROTO);
      expect(out[0]).toBe(-1);
      const info = native.connTlsInfo(a.fd, a.id);
      expect(typeof info === 'object' && native.TLS_FAILURE_LABELS[out[1]] === info.failure).toBe(true);
      expect(native.connClose(a.fd, a.id)).toBe(0);
      const gone = rawClient(l.port);
      const b = await accepted(ep, l.fd, c);
      gone.end();
      await sleep(20);
      expect(await step(ep, b.fd, b.id, out)).toBe(-E.ENOTCONN);
      expect([...out]).toEqual([-1, -1]);
    });
  });
});

describe('connEnd and connClosing: the close, one call per event', () => {
  async function openConn(ep: number, l: { fd: number; port: number }) {
    const client = rawClient(l.port);
    const got: Buffer[] = [];
    let ended = false;
    client.on('data', (b) => got.push(b));
    client.on('end', () => (ended = true));
    const c = await accepted(ep, l.fd);
    expect(native.connOpened(c.fd, c.id)).toBe(0);
    return { ...c, client, got, ended: () => ended };
  }

  it('lingers (kept, re-armed, writing shut down) and then closes when the client does; counted once (close result 1)', async () => {
    const ep = group({ lingerMs: 5000 });
    const l = listener();
    const c = await openConn(ep, l);
    expect(native.connEnd(c.fd, c.id, ep, EV, 1 << 20)).toBe(native.CLOSE_KEPT);
    expect(native.connHeld(ep, 1)).toEqual([]); // re-armed
    await until(() => c.ended() || null, 5000, 'EOF after the reply');
    // The client sends more: discarded, kept.
    c.client.write('more');
    const step = new Int32Array(1);
    let due = await claim(ep, c.fd);
    expect(due & native.DUE_CLOSING).toBe(native.DUE_CLOSING);
    expect(native.connClosing(c.fd, c.id, due, ep, EV, 1 << 20, step)).toBe(native.CLOSE_KEPT);
    expect(step[0]).toBe(1);
    expect(native.connHeld(ep, 1)).toEqual([]);
    // The client closes: the phase ends, the socket is closed, its close was counted when it began.
    c.client.end();
    due = await claim(ep, c.fd);
    expect(native.connClosing(c.fd, c.id, due, ep, EV, 1 << 20, step)).toBe(1);
    expect(step[0]).toBe(0);
    expect(native.connClose(c.fd, c.id)).toBe(-E.EBADF);
  });

  it('closes at once without lingerEpfd, with lingering off, and when gone; a send timeout in the close phase closes it', async () => {
    const off = group();
    const l = listener();
    const a = await openConn(off, l);
    expect(native.connEnd(a.fd, a.id, -1, 0, 0)).toBe(0); // asked not to linger: closed now, the caller counts it
    expect(native.connEnd(a.fd, a.id, -1, 0, 0)).toBe(-E.EBADF);
    const b = await openConn(off, l);
    expect(native.connEnd(b.fd, b.id, off, EV, 1 << 20)).toBe(0); // lingering off (time 0): closed now
    const ep = group({ lingerMs: 5000 });
    const c = await openConn(ep, l);
    expect(native.connEnd(c.fd, c.id, ep, EV, 1 << 20)).toBe(native.CLOSE_KEPT);
    const step = new Int32Array(1);
    c.client.write('x');
    await claim(ep, c.fd);
    // As the timer event hands it over when its send deadline has passed.
    expect(native.connClosing(c.fd, c.id, native.DUE_CLOSING | native.DUE_SEND_TIMEOUT, ep, EV, 1 << 20, step)).toBe(1);
    expect(step[0]).toBe(-E.ETIMEDOUT);
    expect(native.connClosing(c.fd, c.id, native.DUE_CLOSING, ep, EV, 1 << 20, step)).toBe(-E.EBADF);
  });
});
