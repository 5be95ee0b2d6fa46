// Issue 26, defect 4: the four WASI calls a module may import answer every bad
// argument with the WASI spec's error code (EBADF 8, EFAULT 21, EINVAL 28),
// write nothing on error, and no sequence of calls can damage what serves the
// next module: with @wasmer/wasi, clock_time_get with a clock id >= 4 or an
// fd_write iovec of length 0xFFFFFFFF panicked ("unreachable"), and a few
// thousand panics broke every later WASI instance of the thread.
// test/fixtures/wasi-edge.wat runs the calls the test sends (see its header).
import { describe, expect, it } from 'vitest';
import { fixture } from './fixtures.js';
import { loadModule, ModuleFault } from '../host/testing.js';

const MEM = 131072; // wasi-edge.wat's fixed memory
const EBADF = 8;
const EFAULT = 21;
const EINVAL = 28;

type Cmd = [string, ...number[]];
function request(cmds: Cmd[]): Buffer {
  const parts: Buffer[] = [];
  for (const [op, ...args] of cmds) {
    const b = Buffer.alloc(1 + args.length * 4);
    b.write(op, 0, 'latin1');
    args.forEach((a, i) => b.writeUInt32LE(a >>> 0, 1 + i * 4));
    parts.push(b);
  }
  return Buffer.concat(parts);
}
function results(out: Uint8Array): number[] {
  const b = Buffer.from(out);
  return Array.from({ length: b.length / 4 }, (_, i) => b.readInt32LE(i * 4));
}
/** An iovec at `at` (ptr, len) as p commands. */
const iov = (at: number, ptr: number, len: number): Cmd[] => [['p', at, ptr], ['p', at + 4, len]];

describe('WASI calls with bad arguments', () => {
  const cases: [string, Cmd[], number][] = [
    ['fd_write to fd 0', [['w', 0, 4096, 1, 4104]], EBADF],
    ['fd_write to fd 3', [['w', 3, 4096, 1, 4104]], EBADF],
    ['fd_write to fd -1', [['w', -1, 4096, 1, 4104]], EBADF],
    ['fd_write with an iovec of length 0xFFFFFFFF', [...iov(4096, 8192, 0xffffffff), ['w', 1, 4096, 1, 4104]], EFAULT],
    ['fd_write with an iovec ending one byte past memory', [...iov(4096, MEM - 10, 11), ['w', 1, 4096, 1, 4104]], EFAULT],
    ['fd_write with an iovec that wraps around 2^32', [...iov(4096, 0xfffffff0, 0x20), ['w', 2, 4096, 1, 4104]], EFAULT],
    ['fd_write with the iovec array past memory', [['w', 1, MEM - 4, 1, 4104]], EFAULT],
    ['fd_write with 0x20000000 iovecs', [['w', 1, 4096, 0x20000000, 4104]], EFAULT],
    ['fd_write with nwritten past memory', [...iov(4096, 8192, 1), ['w', 1, 4096, 1, MEM - 3]], EFAULT],
    ['fd_write with nwritten at -1', [...iov(4096, 8192, 1), ['w', 1, 4096, 1, -1]], EFAULT],
    ['fd_write with 32769 iovecs (the array runs past memory)', [['w', 1, 4096, 32769, 4104]], EFAULT],
    ['clock_time_get of clock 4', [['c', 4, 4096]], EINVAL],
    ['clock_time_get of clock 0xFFFFFFFF', [['c', -1, 4096]], EINVAL],
    ['clock_time_get into the last 7 bytes', [['c', 1, MEM - 7]], EFAULT],
    ['clock_time_get into -8', [['c', 0, -8]], EFAULT],
    ['random_get past memory', [['r', MEM - 4, 5]], EFAULT],
    ['random_get of 0xFFFFFFFF bytes', [['r', 0, 0xffffffff]], EFAULT],
    ['random_get that wraps', [['r', 0xffffff00, 0x200]], EFAULT],
  ];
  for (const [what, cmds, errno] of cases) {
    it(`${what}: errno ${errno}, nothing logged, the instance lives`, async () => {
      const m = await loadModule(await fixture('wasi-edge'));
      const conn = m.connect();
      const r = conn.send(request(cmds));
      expect(r.fault).toBeNull();
      expect(results(r.output).at(-1)).toBe(errno);
      expect(m.logs).toEqual([]);
      expect(m.faults).toEqual([]);
    });
  }

  it('writes the sum of the lengths on a good fd_write, leaves memory alone on a bad one', async () => {
    const m = await loadModule(await fixture('wasi-edge'));
    const conn = m.connect();
    // "hi\n" at 8192 (as a u32: 'h' 'i' '\n' 0)
    const text: Cmd[] = [['p', 8192, 0x000a6968]];
    // Two iovecs at 4096: "hi\n", then one byte past memory; nwritten at 4200 preset to 7. A bad call writes nothing.
    const r = conn.send(request([...text, ...iov(4096, 8192, 3), ...iov(4104, MEM, 1), ['p', 4200, 7], ['w', 1, 4096, 2, 4200]]));
    expect(results(r.output).at(-1)).toBe(EFAULT);
    expect(new DataView(m.instance.memory.buffer).getUint32(4200, true)).toBe(7);
    expect(m.logs).toEqual([]);
    const ok = conn.send(request([['w', 1, 4096, 1, 4200]]));
    expect(results(ok.output)).toEqual([0]);
    expect(new DataView(m.instance.memory.buffer).getUint32(4200, true)).toBe(3);
    expect(m.logs).toEqual([{ level: 'info', message: 'hi', conn: conn.id }]);
    const good = await loadModule(await fixture('wasi-edge'));
    expect(results(good.connect().send(request([['c', 0, 4096], ['c', 1, 4096], ['c', 2, 4096], ['c', 3, 4096], ['r', 8192, MEM - 8192]])).output))
      .toEqual([0, 0, 0, 0, 0]);
  });

  it('10,000 bad calls, then a new WASI module still serves (same thread)', async () => {
    const m = await loadModule(await fixture('wasi-edge'));
    const conn = m.connect();
    const bad = request([['c', 4, 4096], ...iov(4096, 8192, 0xffffffff), ['w', 1, 4096, 1, 4104], ['r', MEM, 1], ['w', 5, 0, 0, 0]]);
    for (let i = 0; i < 2500; i++) {
      const r = conn.send(bad);
      expect(r.fault).toBeNull();
      const got = results(r.output);
      if (got[0] !== EINVAL || got[3] !== EFAULT || got[4] !== EFAULT || got[5] !== EBADF) expect(got, `call ${i}`).toEqual([EINVAL, 0, 0, EFAULT, EFAULT, EBADF]);
    }
    expect(m.faults).toEqual([]);
    // faulty.wat is a different WASI module: it echoes, and "h" writes to stdout and stderr.
    const next = await loadModule(await fixture('faulty'));
    const c = next.connect();
    expect(c.send('123').text).toBe('123');
    expect(c.send('h').text).toBe('h');
    expect(next.logs.map((l) => l.message)).toEqual(['hello', 'oops']);
  });

  it('proc_exit is a fault of kind exit', async () => {
    const m = await loadModule(await fixture('wasi-edge'));
    const r = m.connect().send(request([['x', 3]]));
    expect(r.fault).toBeInstanceOf(ModuleFault);
    expect(r.fault?.kind).toBe('exit');
  });
});
