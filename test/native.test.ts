// The native shim against real sockets: every export, and -errno mapping.
import { constants as os } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { C, check, native, SysError } from '../host/sys.js';

const E = os.errno;
const opened: number[] = [];
const track = (fd: number) => (opened.push(fd), fd);
afterEach(() => {
  while (opened.length) native.close(opened.pop()!);
});

function listener(host = '127.0.0.1'): { fd: number; port: number } {
  const fd = track(check(native.listenTcp(host, 0, 16), 'listen'));
  const name = native.sockName(fd);
  if (typeof name === 'number') throw new Error('sockName failed');
  return { fd, port: name.port };
}

describe('sockets', () => {
  it('listens on IPv4 and IPv6, reports the bound address', () => {
    const v4 = listener('127.0.0.1');
    expect(v4.port).toBeGreaterThan(0);
    const v6 = track(check(native.listenTcp('::1', 0, 16), 'listen'));
    expect(native.sockName(v6)).toMatchObject({ address: '::1', family: 'IPv6' });
  });

  it('maps a used port to -EADDRINUSE and a closed port to -ECONNREFUSED', () => {
    const { port } = listener();
    expect(native.listenTcp('127.0.0.1', port, 16)).toBe(-E.EADDRINUSE);
    native.close(opened.pop()!);
    expect(native.connectTcp('127.0.0.1', port)).toBe(-E.ECONNREFUSED);
    const err = new SysError(-E.ECONNREFUSED, 'connect');
    expect(err).toMatchObject({ code: 'ECONNREFUSED', errno: -E.ECONNREFUSED, syscall: 'connect' });
    expect(() => check(-E.EADDRINUSE, 'bind')).toThrow(/bind EADDRINUSE/);
  });

  it('rejects a non-numeric host as a programming error', () => {
    expect(() => native.listenTcp('not an address', 0, 1)).toThrow(TypeError);
  });

  it('accepts non-blocking, sends and receives straight from and into buffers, sets and reads options', () => {
    const l = listener();
    expect(native.accept(l.fd)).toBe(-E.EAGAIN);
    const client = track(check(native.connectTcp('127.0.0.1', l.port), 'connect'));
    const server = track(check(native.accept(l.fd), 'accept'));
    const mem = new ArrayBuffer(64);
    new Uint8Array(mem).set(Buffer.from('ping'), 10);
    expect(native.send(client, mem, 10, 4, 1000)).toBe(4);
    const into = new ArrayBuffer(16);
    let n = -1;
    for (let i = 0; i < 100 && n < 0; i++) n = native.recv(server, into, 3, 8);
    expect(n).toBe(4);
    expect(Buffer.from(into, 3, 4).toString()).toBe('ping');
    expect(native.recv(server, into, 0, 8)).toBe(-E.EAGAIN);
    expect(native.setsockoptInt(server, C.IPPROTO_TCP, C.TCP_KEEPIDLE, 77)).toBe(0);
    expect(native.getsockoptInt(server, C.IPPROTO_TCP, C.TCP_KEEPIDLE)).toBe(77);
    expect(native.setsockoptInt(-1, C.SOL_SOCKET, C.SO_KEEPALIVE, 1)).toBe(-E.EBADF);
    expect(() => native.recv(server, into, 10, 100)).toThrow(RangeError);
    expect(native.shutdown(client, C.SHUT_WR)).toBe(0);
    for (let i = 0; i < 1000 && (n = native.recv(server, into, 0, 8)) < 0; i++);
    expect(n).toBe(0); // EOF
  });

  it('times out a send to a peer that never reads', () => {
    const l = listener();
    const client = track(check(native.connectTcp('127.0.0.1', l.port), 'connect'));
    const server = track(check(native.accept(l.fd), 'accept'));
    native.setsockoptInt(server, C.SOL_SOCKET, C.SO_SNDBUF, 4096);
    native.setsockoptInt(client, C.SOL_SOCKET, C.SO_RCVBUF, 4096);
    const big = new Uint8Array(8 << 20);
    const t0 = Date.now();
    expect(native.send(server, big, 0, big.length, 200)).toBe(-E.ETIMEDOUT);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
  });
});

describe('epoll and eventfd', () => {
  it('reports one ready item with its kind, honours ONESHOT until re-armed, times out', () => {
    const ep = track(check(native.epollCreate(), 'epoll_create1'));
    const ev = new Float64Array(5);
    const cells = new Int32Array(2);
    expect(native.epollWait(ep, 10, ev, 1, cells, 0, 1)).toBe(0);
    const wake = track(check(native.eventfdCreate(), 'eventfd'));
    expect(native.epollCtl(ep, C.EPOLL_CTL_ADD, wake, C.EPOLLIN | C.EPOLLONESHOT, C.KIND_WAKE)).toBe(0);
    expect(native.epollCtl(ep, C.EPOLL_CTL_ADD, wake, C.EPOLLIN, C.KIND_WAKE)).toBe(-E.EEXIST);
    expect(native.eventfdWrite(wake)).toBe(0);
    expect(native.epollWait(ep, 100, ev, 1, cells, 0, 1)).toBe(1);
    expect([ev[0], ev[1], ev[2] & C.EPOLLIN]).toEqual([wake, C.KIND_WAKE, C.EPOLLIN]);
    expect([...cells]).toEqual([0, 0]); // a wake-up is not work
    expect(native.epollWait(ep, 10, ev, 1, cells, 0, 1)).toBe(0); // disarmed
    expect(native.epollCtl(ep, C.EPOLL_CTL_MOD, wake, C.EPOLLIN | C.EPOLLONESHOT, C.KIND_WAKE)).toBe(0);
    expect(native.epollWait(ep, 100, ev, 1, cells, 0, 1)).toBe(1); // still readable: MOD re-reports it
    expect(native.epollCtl(ep, C.EPOLL_CTL_DEL, 999_999, 0, 0)).toBe(-E.EBADF);
    expect(() => native.epollWait(ep, 0, new Float64Array(5), 1, cells, 0, 5)).toThrow(TypeError);
  });
});

describe('connection table', () => {
  it('carries unconsumed input and the state slot between loads', () => {
    const l = listener();
    const client = track(check(native.connectTcp('127.0.0.1', l.port), 'connect'));
    const fd = check(native.accept(l.fd), 'accept');
    const id = native.connOpen(fd, 12345, 4, 1);
    expect(id).toBeGreaterThan(0);
    expect(native.connOpen(fd, 12345, 4, 1)).toBe(-E.EEXIST);
    expect(native.connCount(12345)).toBe(1);
    const mem = new ArrayBuffer(256);
    const u8 = new Uint8Array(mem);
    const got = new Int32Array(1);
    native.send(client, Buffer.from('abcdef'), 0, 6, 1000);
    let r = 0;
    for (let i = 0; i < 100 && r === 0; i++) r = native.connLoad(fd, id, mem, 100, 50, 200, got);
    expect(r).toBe(6);
    expect(got[0]).toBe(6);
    expect(Buffer.from(u8.subarray(200, 204))).toEqual(Buffer.alloc(4)); // fresh state slot is zero
    u8.set([1, 2, 3, 4], 200);
    expect(native.connSave(fd, id, mem, 103, 3, 200)).toBe(0); // keep "def"
    expect(native.connSave(fd, id + 1, mem, 103, 3, 200)).toBe(-E.EBADF); // a stale id touches nothing
    u8.fill(0);
    native.send(client, Buffer.from('gh'), 0, 2, 1000);
    r = 0;
    for (let i = 0; i < 100 && r <= 3; i++) r = native.connLoad(fd, id, mem, 0, 50, 200, got);
    expect(Buffer.from(u8.subarray(0, r)).toString()).toBe('defgh');
    expect([...u8.subarray(200, 204)]).toEqual([1, 2, 3, 4]);
    // Listed as not opened until the module is told of it (on_open starts).
    expect(native.connList(12345)).toEqual([fd, id, C.KIND_UNOPENED]);
    expect(native.connOpened(fd, id)).toBe(0);
    expect(native.connList(12345)).toEqual([fd, id, C.KIND_CONN]);
    expect(native.connHeld(12345, 1)).toEqual([fd, id, C.KIND_CONN]);
    expect(native.connShutdown(fd, id + 1, C.SHUT_RDWR)).toBe(-E.EBADF);
    expect(native.connShutdownGroup(12345, C.SHUT_RDWR)).toBe(1);
    expect(native.connLoad(fd, id, mem, 0, 50, 200) & native.LOAD_EOF).toBe(native.LOAD_EOF);
    expect(native.connClose(fd, id + 1)).toBe(-E.EBADF);
    expect(native.connClose(fd, id)).toBe(0);
    expect(native.connClose(fd, id)).toBe(-E.EBADF);
    expect(native.connList(12345)).toEqual([]);
    expect(native.connCount(12345)).toBe(0);
  });

  it('hands an entry to one holder at a time: claimed by epollWait, given back by connRearm', () => {
    const ep = track(check(native.epollCreate(), 'epoll_create1'));
    const l = listener();
    const client = track(check(native.connectTcp('127.0.0.1', l.port), 'connect'));
    const fd = check(native.accept(l.fd), 'accept');
    const id = native.connOpen(fd, ep, 0, 7); // held by its opener, 7
    native.connOpened(fd, id);
    const ev = new Float64Array(5);
    const cells = new Int32Array(4);
    // In epoll while its opener holds it: an event for it cannot be claimed by another.
    expect(native.connAdd(ep, fd, id, C.EPOLLIN | C.EPOLLET | C.EPOLLONESHOT)).toBe(0);
    native.send(client, Buffer.from('x'), 0, 1, 1000);
    expect(native.epollWait(ep, 50, ev, 2, cells, 0, 1)).toBe(0); // dropped, not handed to 2
    expect(native.connHeld(ep, 7)).toEqual([fd, id, C.KIND_CONN]);
    // The opener re-arms: the pending input is reported again, and 2 takes it.
    expect(native.connRearm(ep, fd, id, C.EPOLLIN | C.EPOLLET | C.EPOLLONESHOT)).toBe(0);
    expect(native.connHeld(ep, 7)).toEqual([]);
    expect(native.epollWait(ep, 1000, ev, 2, cells, 0, 1)).toBe(1);
    expect([ev[0], ev[1], ev[3]]).toEqual([fd, C.KIND_CONN, id]);
    expect(native.connHeld(ep, 2)).toEqual([fd, id, C.KIND_CONN]);
    expect([...cells.subarray(0, 2)]).toEqual([1, 1]); // busy: one worker, this one
    expect(native.epollWait(ep, 10, ev, 2, cells, 0, 1)).toBe(0);
    expect([...cells.subarray(0, 2)]).toEqual([0, 0]); // the next wait ends the busy mark
    expect(native.connClose(fd, id)).toBe(0);
  });

  it('loads a plain input event in the wait itself, only for the generation named, and sends with the save', () => {
    const ep = track(check(native.epollCreate(), 'epoll_create1'));
    const l = listener();
    const client = track(check(native.connectTcp('127.0.0.1', l.port), 'connect'));
    const fd = check(native.accept(l.fd), 'accept');
    const id = native.connOpen(fd, ep, 4, 3, C.KIND_CONN, 0, 2); // generation 2
    native.connOpened(fd, id);
    const EV = C.EPOLLIN | C.EPOLLET | C.EPOLLONESHOT;
    expect(native.connAdd(ep, fd, id, EV)).toBe(0);
    const mem = new ArrayBuffer(256);
    const u8 = new Uint8Array(mem);
    u8.set([9, 9, 9, 9], 200);
    expect(native.connSave(fd, id, mem, 0, 0, 200, ep, EV)).toBe(0); // state 9 9 9 9, re-armed
    const ev = new Float64Array(8);
    const cells = new Int32Array(4);
    expect(() => native.epollWait(ep, 0, new Float64Array(5), 3, cells, 0, 1, 1, mem, 100, 50, 200, 2)).toThrow(TypeError);
    native.send(client, Buffer.from('abc'), 0, 3, 1000);
    u8.fill(0);
    expect(native.epollWait(ep, 1000, ev, 3, cells, 0, 1, 1, mem, 100, 50, 200, 2)).toBe(1);
    expect([ev[0], ev[1], ev[3], ev[4]]).toEqual([fd, C.KIND_CONN, id, 0]);
    expect([ev[5], ev[6], ev[7]]).toEqual([1, 3, 3]); // loaded: 3 bytes in, 3 received
    expect(Buffer.from(u8.subarray(100, 103)).toString()).toBe('abc');
    expect([...u8.subarray(200, 204)]).toEqual([9, 9, 9, 9]);
    // The reply goes with the save: all taken by the socket, then kept "c" and re-armed.
    u8.set(Buffer.from('reply'), 10);
    expect(native.connSave(fd, id, mem, 102, 1, 200, ep, EV, 10, 5)).toBe(0);
    expect(native.connHeld(ep, 3)).toEqual([]);
    const back = new Uint8Array(16);
    let n = -1;
    for (let i = 0; i < 1000 && (n = native.recv(client, back, 0, 16)) < 0; i++);
    expect(Buffer.from(back.subarray(0, n)).toString()).toBe('reply');
    expect(() => native.connSave(fd, id, mem, 0, 0, 200, ep, EV, 250, 10)).toThrow(RangeError);
    // Another generation's memory is not this connection's: the wait claims it and leaves the load to the caller.
    native.send(client, Buffer.from('d'), 0, 1, 1000);
    u8.fill(0);
    expect(native.epollWait(ep, 1000, ev, 3, cells, 0, 1, 1, mem, 100, 50, 200, 1)).toBe(1);
    expect([ev[0], ev[3], ev[5]]).toEqual([fd, id, 0]);
    expect(u8.subarray(100, 104).every((b) => b === 0)).toBe(true);
    expect(native.connLoad(fd, id, mem, 100, 50, 200)).toBe(2); // "c" kept, "d" received
    expect(Buffer.from(u8.subarray(100, 102)).toString()).toBe('cd');
    expect(native.connClose(fd, id)).toBe(0);
  });

  it('a reply the socket cannot take at once: connSave says how much is left and saves nothing', () => {
    const ep = track(check(native.epollCreate(), 'epoll_create1'));
    const l = listener();
    const client = track(check(native.connectTcp('127.0.0.1', l.port), 'connect'));
    const fd = check(native.accept(l.fd), 'accept');
    native.setsockoptInt(fd, C.SOL_SOCKET, C.SO_SNDBUF, 4096);
    native.setsockoptInt(client, C.SOL_SOCKET, C.SO_RCVBUF, 4096);
    const id = native.connOpen(fd, ep, 0, 3);
    native.connOpened(fd, id);
    const EV = C.EPOLLIN | C.EPOLLET | C.EPOLLONESHOT;
    expect(native.connAdd(ep, fd, id, EV)).toBe(0);
    const mem = new ArrayBuffer(4 << 20);
    new Uint8Array(mem).set(Buffer.from('kept'), 0);
    const left = native.connSave(fd, id, mem, 0, 4, 0, ep, EV, 1024, (4 << 20) - 1024);
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThan((4 << 20) - 1024);
    expect(native.connHeld(ep, 3)).toEqual([fd, id, C.KIND_CONN]); // not re-armed: still held
    const into = new ArrayBuffer(16);
    expect(native.connLoad(fd, id, into, 0, 16, 0, undefined, 1)).toBe(0); // nothing saved: no carry-over
    expect(native.connClose(fd, id)).toBe(0);
  });

  it('hands modules ids that are never 0 and never repeat among open connections, across the 2^31 wrap', () => {
    const l = listener();
    const next = native.connSetNextId(2 ** 31 - 3);
    expect(next).toBeGreaterThanOrEqual(2 ** 31 - 3);
    const open: [number, number][] = [];
    try {
      for (let i = 0; i < 8; i++) {
        const client = track(check(native.connectTcp('127.0.0.1', l.port), 'connect'));
        void client;
        const fd = check(native.accept(l.fd), 'accept');
        open.push([fd, native.connOpen(fd, 777, 0, 1)]);
      }
      const modIds = open.map(([, id]) => id % 2 ** 31);
      expect(modIds).not.toContain(0);
      expect(new Set(modIds).size).toBe(modIds.length);
      expect(new Set(open.map(([, id]) => id)).size).toBe(open.length);
    } finally {
      for (const [fd, id] of open) native.connClose(fd, id);
    }
  });
});

describe('the worker wait, bound once (waitBind, waitTarget, waitNext)', () => {
  const EV = C.EPOLLIN | C.EPOLLET | C.EPOLLONESHOT;
  const HOLDER = 3;
  // cells: [workers, busy workers, this worker's busy flag]; totals[2]: its output bytes.
  function bound(maxEvents = 1) {
    const ep = track(check(native.epollCreate(), 'epoll_create1'));
    const ev = new Float64Array(8);
    const cells = new Int32Array(3);
    cells[0] = 1;
    const save = new Float64Array(9);
    const totals = new Float64Array(4);
    expect(native.waitBind(ep, HOLDER, 0, 1, 2, maxEvents, 2, ev, cells, save, totals)).toBe(0);
    return { ep, ev, cells, save, totals };
  }
  /** An accepted connection in the table, held by HOLDER, on generation `gen`. */
  function connection(ep: number, stateSize: number, gen: number) {
    const l = listener();
    const client = track(check(native.connectTcp('127.0.0.1', l.port), 'connect'));
    const fd = check(native.accept(l.fd), 'accept');
    const id = native.connOpen(fd, ep, stateSize, HOLDER, C.KIND_CONN, 0, gen);
    native.connOpened(fd, id);
    expect(native.connAdd(ep, fd, id, EV)).toBe(0);
    return { client, fd, id };
  }
  /** Records the save the next waitNext makes: [fd, id, restPtr, restLen, statePtr, events, outPtr, outLen, pending]. */
  function pend(save: Float64Array, ...fields: number[]) {
    save.set([...fields, 1]);
  }
  function recvAll(client: number, want: number): string {
    const back = new Uint8Array(64);
    let got = '';
    for (let i = 0; i < 2000 && got.length < want; i++) {
      const n = native.recv(client, back, 0, 64);
      if (n > 0) got += Buffer.from(back.subarray(0, n)).toString();
    }
    return got;
  }

  it('makes the pending save (reply sent and counted, carry-over and state kept, re-armed) before it waits, then loads the next event', () => {
    const { ep, ev, cells, save, totals } = bound();
    const { client, fd, id } = connection(ep, 4, 2);
    const mem = new ArrayBuffer(256);
    const u8 = new Uint8Array(mem);
    expect(native.waitTarget(mem, 100, 50, 200, 2)).toBe(0);
    expect(native.connSave(fd, id, mem, 0, 0, 200, ep, EV)).toBe(0); // armed, held by nobody
    native.send(client, Buffer.from('abc'), 0, 3, 1000);
    expect(native.waitNext(1000)).toBe(1);
    expect([ev[0], ev[1], ev[3], ev[5], ev[6], ev[7]]).toEqual([fd, C.KIND_CONN, id, 1, 3, 3]);
    expect(cells[2]).toBe(1); // busy: it holds the connection
    expect(native.connHeld(ep, HOLDER)).toEqual([fd, id, C.KIND_CONN]);
    // The module kept "c" and answered "reply"; the next bytes arrive before the wait that saves.
    u8.set(Buffer.from('reply'), 10);
    u8.set([5, 6, 7, 8], 200);
    pend(save, fd, id, 102, 1, 200, EV, 10, 5);
    native.send(client, Buffer.from('d'), 0, 1, 1000);
    expect(native.waitNext(1000)).toBe(1);
    expect(save[8]).toBe(0);
    expect(totals[2]).toBe(5);
    expect(recvAll(client, 5)).toBe('reply');
    // Saved, re-armed (the 'd' reported by the re-arm), claimed again and loaded after the carry-over.
    expect([ev[0], ev[1], ev[3], ev[5], ev[6], ev[7]]).toEqual([fd, C.KIND_CONN, id, 1, 2, 1]);
    expect(Buffer.from(u8.subarray(100, 102)).toString()).toBe('cd');
    expect([...u8.subarray(200, 204)]).toEqual([5, 6, 7, 8]);
    // Nothing pending: a timeout gives the connection's hold back to nobody else and counts nothing.
    expect(native.waitNext(0)).toBe(0);
    expect(totals[2]).toBe(5);
    expect(native.connClose(fd, id)).toBe(0);
  });

  it('a reply the socket takes only in part: KIND_SAVE with the bytes left, the connection still held, nothing saved or counted', () => {
    const { ep, ev, cells, save, totals } = bound();
    const { fd, id, client } = connection(ep, 0, 0);
    native.setsockoptInt(fd, C.SOL_SOCKET, C.SO_SNDBUF, 4096);
    native.setsockoptInt(client, C.SOL_SOCKET, C.SO_RCVBUF, 4096);
    const mem = new ArrayBuffer(4 << 20);
    expect(native.waitTarget(mem, 0, 16, 0, 0)).toBe(0);
    new Uint8Array(mem).set(Buffer.from('kept'), 0);
    cells[2] = 1;
    cells[1] = 1;
    const out = (4 << 20) - 1024;
    pend(save, fd, id, 0, 4, 0, EV, 1024, out);
    expect(native.waitNext(1000)).toBe(1);
    expect([ev[0], ev[1], ev[3], ev[5]]).toEqual([fd, native.KIND_SAVE, id, 0]);
    const left = ev[6];
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThan(out);
    expect(totals[2]).toBe(0);
    expect([cells[1], cells[2]]).toEqual([1, 1]); // still busy: it still holds the connection
    expect(native.connHeld(ep, HOLDER)).toEqual([fd, id, C.KIND_CONN]);
    const into = new ArrayBuffer(16);
    expect(native.connLoad(fd, id, into, 0, 16, 0, undefined, 1)).toBe(0); // no carry-over saved
    // The caller finishes it as after() does: the rest its own way (queued or blocking), then saved and
    // re-armed without an out region.
    expect(native.connSave(fd, id, mem, 0, 4, 0, ep, EV)).toBe(0);
    expect(native.connHeld(ep, HOLDER)).toEqual([]);
    expect(native.connClose(fd, id)).toBe(0);
  });

  it('a save that fails or names a region outside the bound memory: KIND_SAVE with -errno or SAVE_OUTSIDE, and no wait', () => {
    const { ep, ev, save } = bound();
    const { fd, id } = connection(ep, 4, 0);
    const mem = new ArrayBuffer(256);
    expect(native.waitTarget(mem, 0, 64, 200, 0)).toBe(0);
    pend(save, fd, id + 1, 0, 0, 200, EV, 10, 5); // a stale id
    expect(native.waitNext(60_000)).toBe(1);
    expect([ev[0], ev[1], ev[3], ev[6]]).toEqual([fd, native.KIND_SAVE, id + 1, -E.EBADF]);
    pend(save, fd, id, 0, 0, 254, EV, 0, 0); // the 4-byte state slot past the end
    expect(native.waitNext(60_000)).toBe(1);
    expect([ev[1], ev[6]]).toEqual([native.KIND_SAVE, native.SAVE_OUTSIDE]);
    pend(save, fd, id, 250, 10, 200, EV, 0, 0); // the carry-over past the end
    expect(native.waitNext(60_000)).toBe(1);
    expect([ev[1], ev[6]]).toEqual([native.KIND_SAVE, native.SAVE_OUTSIDE]);
    pend(save, fd, id, 0, 0, 200, EV, 250, 10); // the reply past the end
    expect(native.waitNext(60_000)).toBe(1);
    expect([ev[1], ev[6]]).toEqual([native.KIND_SAVE, native.SAVE_OUTSIDE]);
    // No load target: nothing to save from.
    expect(native.waitTarget()).toBe(0);
    pend(save, fd, id, 0, 0, 200, EV, 0, 0);
    expect(native.waitNext(60_000)).toBe(1);
    expect([ev[1], ev[6]]).toEqual([native.KIND_SAVE, native.SAVE_OUTSIDE]);
    expect(native.connHeld(ep, HOLDER)).toEqual([fd, id, C.KIND_CONN]); // still held through all of it
    expect(() => native.waitTarget(mem, 200, 100, 0, 0)).toThrow(RangeError); // an in region outside memory
    expect(native.connClose(fd, id)).toBe(0);
  });

  it('a memory that grew is bound again: a pending save is made with the old binding first, and loads land in the new one', () => {
    const { ep, ev, save } = bound();
    const { client, fd, id } = connection(ep, 4, 1);
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 4 });
    const old = memory.buffer;
    expect(native.waitTarget(old, 100, 50, 200, 1)).toBe(0);
    new Uint8Array(old).set([1, 2, 3, 4], 200);
    pend(save, fd, id, 0, 0, 200, EV, 0, 0);
    memory.grow(1); // detaches `old`
    expect(old.byteLength).toBe(0);
    const grown = memory.buffer;
    // The state slot in the new page: outside the old binding, inside the new one.
    expect(native.waitTarget(grown, 100, 50, 70_000, 1)).toBe(0); // the pending save made first (re-armed)
    expect(save[8]).toBe(0);
    expect(native.connHeld(ep, HOLDER)).toEqual([]);
    native.send(client, Buffer.from('xy'), 0, 2, 1000);
    expect(native.waitNext(1000)).toBe(1);
    expect([ev[0], ev[3], ev[5], ev[6]]).toEqual([fd, id, 1, 2]);
    const u8 = new Uint8Array(memory.buffer);
    expect(Buffer.from(u8.subarray(100, 102)).toString()).toBe('xy');
    expect([...u8.subarray(70_000, 70_004)]).toEqual([1, 2, 3, 4]); // the state saved from the old binding
    expect(native.connClose(fd, id)).toBe(0);
  });
});

describe('key-value store', () => {
  it('gets, sets, deletes, increments atomically and enforces its byte budget', () => {
    native.kvClear();
    const k = Buffer.from('key');
    const out = new Uint8Array(16);
    expect(native.kvGet(k, 0, 3, out, 0, 16)).toBe(-1);
    expect(native.kvSet(k, 0, 3, Buffer.from('value'), 0, 5)).toBe(0);
    expect(native.kvGet(k, 0, 3, out, 0, 16)).toBe(5);
    expect(Buffer.from(out.subarray(0, 5)).toString()).toBe('value');
    expect(native.kvGet(k, 0, 3, out, 0, 2)).toBe(5); // too small: length only
    const n = new Uint8Array(8);
    expect(native.kvIncr(Buffer.from('n'), 0, 1, 5n, n, 0)).toBe(0);
    expect(native.kvIncr(Buffer.from('n'), 0, 1, -7n, n, 0)).toBe(0);
    expect(new DataView(n.buffer).getBigInt64(0, true)).toBe(-2n);
    expect(native.kvGet(Buffer.from('n'), 0, 1, out, 0, 16)).toBe(2);
    expect(Buffer.from(out.subarray(0, 2)).toString()).toBe('-2');
    expect(native.kvIncr(k, 0, 3, 1n, n, 0)).toBe(-1); // "value" is not an integer
    native.kvSet(Buffer.from('max'), 0, 3, Buffer.from('9223372036854775807'), 0, 19);
    expect(native.kvIncr(Buffer.from('max'), 0, 3, 1n, n, 0)).toBe(-1); // overflow
    expect(native.kvDel(k, 0, 3)).toBe(1);
    expect(native.kvDel(k, 0, 3)).toBe(0);
    const prev = native.kvConfigure(1024);
    try {
      expect(native.kvSet(Buffer.from('big'), 0, 3, new Uint8Array(2048), 0, 2048)).toBe(-2);
    } finally {
      native.kvConfigure(prev);
      native.kvClear();
    }
    expect(native.kvStats()).toMatchObject({ keys: 0, bytes: 0 });
  });
});
