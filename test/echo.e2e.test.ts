// build/echo.wasm served by the real host, over real sockets.
import { readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type TcpmodServer } from '../dist/index.js';
import { batchOption } from './batch-variant.js';
import { open, pattern, readBytes } from './net-client.js';

let server: TcpmodServer;
let port: number;

beforeAll(async () => {
  server = createServer({ module: 'build/echo.wasm', port: 0, threads: 2, logLevel: 'warn', ...batchOption() });
  port = (await server.listen()).port;
});
afterAll(() => server?.close({ drainTimeout: 0 }));

describe('echo over real sockets', () => {
  it('moves 1 MiB through one connection byte for byte', async () => {
    const s = await open(port);
    const data = pattern(1 << 20, 7);
    const back = readBytes(s, data.length);
    s.write(data);
    expect((await back).equals(data)).toBe(true);
    s.destroy();
  });

  it('serves 200 concurrent connections x 50 messages of mixed sizes, each in order', async () => {
    const sizes = [1, 16, 100, 1000, 4096, 20_000];
    const one = async (c: number) => {
      const s = await open(port);
      let expected = 0;
      const sent: Buffer[] = [];
      for (let m = 0; m < 50; m++) sent.push(pattern(sizes[(c + m) % sizes.length], c * 1000 + m));
      const all = Buffer.concat(sent);
      expected = all.length;
      const back = readBytes(s, expected, 60_000);
      for (const msg of sent) s.write(msg);
      const got = await back;
      s.destroy();
      return got.equals(all);
    };
    const results = await Promise.all(Array.from({ length: 200 }, (_, c) => one(c)));
    expect(results.filter((ok) => !ok)).toEqual([]);
  });

  it('echoes a client that sends in 1-byte pieces', async () => {
    const s = await open(port);
    const data = Buffer.from('one byte at a time, every byte its own segment');
    const back = readBytes(s, data.length);
    for (const b of data) {
      s.write(Buffer.of(b));
      await new Promise((r) => setImmediate(r));
    }
    expect((await back).toString()).toBe(data.toString());
    s.destroy();
  });

  it('a client that disconnects mid-stream does not disturb the others', async () => {
    const steady = await Promise.all(Array.from({ length: 10 }, () => open(port)));
    const rude = await Promise.all(Array.from({ length: 10 }, () => open(port)));
    for (const s of rude) {
      s.write(pattern(200_000, 3));
      s.destroy();
    }
    const ok = await Promise.all(steady.map(async (s, i) => {
      const data = pattern(50_000, i);
      const back = readBytes(s, data.length);
      s.write(data);
      const got = await back;
      s.destroy();
      return got.equals(data);
    }));
    expect(ok.every(Boolean)).toBe(true);
  });
});

describe('lifecycle', () => {
  const threads = () => readdirSync('/proc/self/task').length;
  const fds = () => readdirSync('/proc/self/fd').length;

  it('a server started on port 0 and stopped leaves no thread or fd behind', async () => {
    // Let earlier servers' threads finish going away before taking the baseline.
    await new Promise((r) => setTimeout(r, 200));
    const t0 = threads();
    const f0 = fds();
    const s = createServer({ module: 'build/echo.wasm', port: 0, threads: 3, logLevel: 'warn' });
    const addr = await s.listen();
    expect(addr.port).toBeGreaterThan(0);
    expect(threads()).toBeGreaterThanOrEqual(t0 + 3);
    const c = await open(addr.port);
    const back = readBytes(c, 5);
    c.write('hello');
    expect((await back).toString()).toBe('hello');
    c.destroy();
    await s.close();
    expect(s.state).toBe('stopped');
    for (let i = 0; i < 100 && (threads() > t0 || fds() > f0); i++) await new Promise((r) => setTimeout(r, 50));
    expect(threads()).toBe(t0);
    expect(fds()).toBe(f0);
  });
});
