// Backpressure from a slow client to its upstream (docs/abi.md §16): while the
// client's queued output is above its high-water mark, the host does not read
// the client's upstreams (their kernel buffers fill and TCP stops the sender);
// once the client drains, reading resumes. test/fixtures/upstream-proxy.wat
// passes an upstream's bytes to its client; the upstream streams 48 MiB to a
// client that reads nothing for a while, then everything.
import { createServer as netServer, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { createServer, type TcpmodServer } from '../dist/index.js';
import { fixture } from './fixtures.js';
import { open } from './net-client.js';
import { sleep, until } from './wait.js';

const servers: TcpmodServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close({ drainTimeout: 0 }).catch(() => undefined);
});

const MiB = 1 << 20;

describe('a client that does not read its upstream\'s output', () => {
  it('stops the host reading the upstream (bounded output), and gets every byte once it reads', async () => {
    const total = 48 * MiB;
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    let written = 0; // what the upstream managed to hand to its socket
    let upstream: Socket | null = null;
    const up = netServer((s) => {
      upstream = s;
      s.on('error', () => undefined);
      s.resume();
      const pump = () => {
        while (written < total) {
          written += chunk.length;
          if (!s.write(chunk)) return void s.once('drain', pump);
        }
        s.end();
      };
      pump();
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    const upPort = (up.address() as { port: number }).port;
    // --max-output-buffer 8 MiB (high-water 1 MiB): without backpressure 48 MiB would overflow it and close the client.
    const server = createServer({
      module: await fixture('upstream-proxy'), port: 0, threads: 2, logLevel: 'silent',
      upstream: `redis=127.0.0.1:${upPort}`, maxOutputBuffer: '8MiB', sendTimeout: '60s',
    });
    servers.push(server);
    const { port } = await server.listen();

    const c = await open(port);
    c.pause();
    let closed = false;
    c.on('close', () => (closed = true));
    c.write('go'); // the fixture opens its upstream at on_open; any byte is fine
    await until(() => upstream !== null, 10_000, 'the upstream connected');
    // Reads nothing for 3 s: the upstream stalls, the server's queued output stays bounded.
    let maxQueued = 0;
    for (let i = 0; i < 30; i++) {
      await sleep(100);
      maxQueued = Math.max(maxQueued, server.stats().outputAllocatedBytes);
    }
    const stalledAt = written;
    expect(closed).toBe(false);
    expect(stalledAt).toBeLessThan(total / 2); // the sender was stopped by TCP: the host stopped reading
    expect(maxQueued).toBeLessThan(8 * MiB);
    // Now it reads: every byte arrives, in one piece.
    let got = 0;
    let bad = 0;
    c.on('data', (d: Buffer) => {
      got += d.length;
      for (let i = 0; i < d.length; i += 4093) if (d[i] !== 0x61) bad++;
    });
    c.resume();
    await until(() => got >= total || closed, 60_000, 'every byte read');
    expect(got).toBe(total);
    expect(bad).toBe(0);
    c.destroy();
    up.close();
  }, 120_000);
});
