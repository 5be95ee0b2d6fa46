// Per-connection timers (ABI v1.1: tcpmod.set_timer and tcpmod_on_timer), over
// real sockets with a WAT module and an SDK module, and on the harness's clock.
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type TcpmodServer } from '../dist/index.js';
import { loadModule } from '../host/testing.js';
import { compileAs } from './asc-source.js';
import { fixture, scratchFile, watToWasm } from './fixtures.js';
import { open } from './net-client.js';
import { sleep, until } from './wait.js';

const SDK_TICKER = `
import { Conn, Action, configure, setOnTimer } from "./sdk";
export * from "./sdk/exports";

// "t" ticks five times, 100 ms apart, then closes; "x" cancels; other bytes are echoed.
function onData(c: Conn): Action {
  for (let i = 0; i < c.inputLen; i++) {
    const b = load<u8>(c.input + <usize>i);
    if (b == 0x74) {
      store<u32>(c.state, 0);
      c.setTimer(100);
      c.writeString("armed\\n");
    } else if (b == 0x78) {
      c.cancelTimer();
      c.writeString("cancelled\\n");
    } else c.writeByte(b);
  }
  c.consume(c.inputLen);
  return c.eof ? Action.Close : Action.Continue;
}

function onTimer(c: Conn): Action {
  const n = load<u32>(c.state) + 1;
  store<u32>(c.state, n);
  c.writeString("tick\\n");
  if (n < 5) {
    c.setTimer(100);
    return Action.Continue;
  }
  return Action.Close;
}

configure(1024, 1024, 4, onData);
setOnTimer(onTimer);
`;

let sdkTicker = '';
beforeAll(async () => {
  sdkTicker = scratchFile('sdk-ticker.wasm', await compileAs('sdk_ticker', SDK_TICKER));
}, 60_000);

const servers: TcpmodServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close({ drainTimeout: 0 });
});

async function start(module: string, opts: object = {}): Promise<{ server: TcpmodServer; port: number }> {
  const server = createServer({ module, port: 0, threads: 2, logLevel: 'silent', ...opts });
  servers.push(server);
  const { port } = await server.listen();
  return { server, port };
}

/** Everything a connection receives until the server closes it, with when each piece came. */
function record(s: Socket): { text: () => string; times: number[]; closed: Promise<number> } {
  let text = '';
  const times: number[] = [];
  s.on('data', (d) => {
    text += d;
    times.push(Date.now());
  });
  s.on('error', () => undefined);
  return { text: () => text, times, closed: new Promise((r) => s.once('close', () => r(Date.now()))) };
}

for (const [label, file] of [['WAT module', () => fixture('ticker')], ['SDK module', async () => sdkTicker]] as const) {
  describe(`timers: ${label}`, () => {
    it('ticks every 100 ms five times (re-armed from on_timer), then closes', async () => {
      const { server, port } = await start(await file());
      const s = await open(port);
      const r = record(s);
      const t0 = Date.now();
      s.write('t');
      const closedAt = await r.closed;
      expect(r.text()).toBe('armed\ntick\ntick\ntick\ntick\ntick\n');
      expect(closedAt - t0).toBeGreaterThanOrEqual(450);
      expect(closedAt - t0).toBeLessThan(3000);
      expect(server.stats().timersFired).toBe(5);
      expect(server.stats().timersArmed).toBe(0);
    });

    it('cancels: no tick after "x", and the connection goes on', async () => {
      const { server, port } = await start(await file());
      const s = await open(port);
      const r = record(s);
      s.write('t');
      await until(() => r.text() === 'armed\ntick\n', 2000, 'one tick', 10);
      s.write('x');
      await until(() => r.text().endsWith('cancelled\n'), 2000, 'the cancel', 10);
      await sleep(400);
      s.write('e');
      await until(() => r.text().endsWith('e'), 2000, 'the echo', 10);
      expect(r.text()).toBe('armed\ntick\ncancelled\ne');
      expect(server.stats().timersArmed).toBe(0);
      s.destroy();
    });

    it('never fires for a connection that closed', async () => {
      const { server, port } = await start(await file());
      const s = await open(port);
      const r = record(s);
      s.write('t');
      await until(() => r.text() === 'armed\n', 2000, 'armed', 10);
      s.destroy();
      await until(() => server.stats().connections === 0, 2000, 'the close', 10);
      await sleep(400);
      expect(server.stats().timersFired).toBe(0);
      expect(server.stats().timersArmed).toBe(0);
    });
  });
}

describe('timers: the WAT module', () => {
  it('a trap in on_timer costs that connection only', async () => {
    const { server, port } = await start(await fixture('ticker'));
    const other = record(await open(port));
    const b = await open(port);
    const rb = record(b);
    b.write('t');
    const a = await open(port);
    const ra = record(a);
    a.write('k');
    await ra.closed;
    expect(ra.text()).toBe('armed\n');
    await rb.closed;
    expect(rb.text()).toBe('armed\ntick\ntick\ntick\ntick\ntick\n');
    expect(server.stats().moduleFaults.trap).toBe(1);
    expect(server.stats().connectionsClosed.fault).toBe(1);
    void other;
  });

  it('refuses a delay outside 0..86,400,000 ms', async () => {
    const { port } = await start(await fixture('ticker'));
    const s = await open(port);
    const r = record(s);
    s.write('r');
    await until(() => r.text() === 'n\n', 2000, 'the answer', 10);
    s.destroy();
  });

  it('a module that imports set_timer without exporting tcpmod_on_timer does not load', async () => {
    const wat = `(module
      (import "tcpmod" "set_timer" (func (param i32 i32) (result i32)))
      (memory (export "memory") 1 1)
      (func (export "tcpmod_abi_v1"))
      (func (export "tcpmod_io_desc") (result i32) (i32.const 0))
      (func (export "tcpmod_on_data") (param i32 i32 i32) (result i32) (i32.const 0)))`;
    const file = scratchFile('timer-without-export.wasm', await watToWasm('t.wat', wat));
    await expect(createServer({ module: file, port: 0, logLevel: 'silent' }).listen())
      .rejects.toThrow(/import tcpmod\.set_timer needs the export tcpmod_on_timer/);
  });

  it('1,000 connections with timers and traffic: every tick exactly once, never beside another callback of the same connection', async () => {
    const { server, port } = await start(await fixture('ticker'));
    const conns: { s: Socket; r: ReturnType<typeof record> }[] = [];
    for (let i = 0; i < 1000; i += 100) {
      const batch = await Promise.all(Array.from({ length: 100 }, () => open(port)));
      for (const s of batch) conns.push({ s, r: record(s) });
    }
    // Traffic while the timers run: three echoes per connection, each sent as that connection's
    // "armed", first and second tick arrive, so every byte is on its way at least two ticks (200 ms
    // of the server's timer) before the fifth tick closes the connection, however late this process
    // runs (fixed sleeps for all 1,000 at once let a loaded machine send a byte after the close).
    for (const { s } of conns) {
      let seen = '';
      let next = 0;
      s.on('data', (d) => {
        seen += d;
        const marks = (seen.match(/armed\n|tick\n/g) ?? []).length;
        for (; next < Math.min(marks, 3); next++) s.write('abc'[next]);
      });
      s.write('t');
    }
    await Promise.all(conns.map(({ r }) => r.closed));
    for (const { r } of conns) {
      const text = r.text();
      expect(text.match(/tick\n/g)?.length ?? 0, text).toBe(5);
      expect(text.match(/armed\n/g)?.length ?? 0, text).toBe(1);
      expect(text.replace(/armed\n|tick\n/g, '').split('').sort().join(''), text).toBe('abc');
    }
    // The client sees a close before the worker's counters reach the main thread: wait for the count.
    await until(() => server.stats().timersFired >= 5000, 10_000, '5,000 timer firings counted');
    expect(server.stats().timersFired).toBe(5000);
    const probe = await open(port);
    const rp = record(probe);
    probe.write('o');
    await until(() => rp.text().endsWith('\n'), 10_000, 'the overlap count', 10);
    expect(rp.text()).toBe('0\n'); // no on_timer ever ran beside on_data for the same connection
    probe.destroy();
  }, 60_000);
});

describe('timers in the socket-free harness', () => {
  it('arm and fire on the harness clock', async () => {
    const m = await loadModule(await fixture('ticker'), { now: 1_000_000 });
    const conn = m.connect();
    expect(conn.send('t').text).toBe('armed\n');
    expect(m.clock.now).toBe(1_000_000); // the fake clock moves only when the test moves it
    const first = m.clock.advance(250);
    expect(first.map((f) => f.text)).toEqual(['tick\n', 'tick\n']);
    expect(first.map((f) => f.at)).toEqual([1_000_100, 1_000_200]);
    expect(first.every((f) => f.conn === conn.id)).toBe(true);
    expect(m.clock.now).toBe(1_000_250);
    const rest = m.clock.advance(1000);
    expect([...first, ...rest].map((f, i, all) => (i ? f.at - all[i - 1].at : 100))).toEqual([100, 100, 100, 100, 100]);
    expect(rest[2].closed).toBe('module');
    expect(conn.closed).toBe('module');
    expect(m.clock.advance(1000)).toEqual([]);
    // cancel
    const c2 = m.connect();
    c2.send('t');
    expect(c2.send('x').text).toBe('cancelled\n');
    expect(m.clock.advance(500)).toEqual([]);
    // a trap in on_timer is a fault of that connection
    const c3 = m.connect();
    c3.send('k');
    const [f] = m.clock.advance(100);
    expect(f.conn).toBe(c3.id);
    expect(f.fault?.kind).toBe('trap');
    expect(c3.closed).toBe('fault');
    expect(m.faults).toEqual([f.fault]);
  });
});
