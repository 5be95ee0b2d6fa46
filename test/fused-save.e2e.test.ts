// The save a kept event leaves to the next wait (host/worker/loop.ts, waitNext):
// a reply the socket takes only in part comes back as a KIND_SAVE event and is
// finished the queued or blocking way, in order, with the byte counters exact.
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type TcpmodServer } from '../dist/index.js';
import { open, pattern, readBytes } from './net-client.js';
import { sleep, until } from './wait.js';

const servers: TcpmodServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close({ drainTimeout: 0 })));
});

describe.each(['queued', 'blocking'] as const)('a deferred save (--send-mode %s)', (sendMode) => {
  it('a client that stops reading gets every byte back in order, and bytesSent = bytesReceived', async () => {
    const server = createServer({ module: 'build/echo.wasm', port: 0, threads: 1, logLevel: 'warn', sendMode, sendTimeout: '20s' });
    servers.push(server);
    const { port } = await server.listen();
    const s = await open(port);
    // Paused: the echoes fill the socket buffers, so some event's last reply is taken only in part.
    s.pause();
    const total = 24 << 20;
    const data = pattern(total, 11);
    for (let at = 0; at < total; at += 60_000) s.write(data.subarray(at, Math.min(total, at + 60_000)));
    await sleep(300);
    const back = await readBytes(s, total, 60_000);
    expect(back.equals(data)).toBe(true);
    const st = await until(() => {
      const v = server.stats();
      return v.bytesSent === total && v.bytesReceived === total ? v : null;
    }, 5_000, 'the byte counters');
    expect([st.bytesReceived, st.bytesSent]).toEqual([total, total]);
    s.destroy();
  }, 90_000);
});
