// A module that speaks first (tcpmod.send from on_open): a client that never
// reads the greeting is cut after the send timeout and counted as such, and the
// failure does not follow the worker to the next connection.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type TcpmodServer } from '../dist/index.js';
import { fixture } from './fixtures.js';
import { open, readBytes } from './net-client.js';
import { until } from './wait.js';

/** The largest buffer (bytes) a tcp_wmem/tcp_rmem sysctl lets the kernel autotune a socket to: its third field. */
function sysctlMax(name: 'tcp_wmem' | 'tcp_rmem'): number {
  return Number(readFileSync(`/proc/sys/net/ipv4/${name}`, 'utf8').trim().split(/\s+/)[2]);
}

// The premise, true by construction: the greeting is larger than everything loopback can hold for a
// client that never reads (the server's send buffer at its autotuned maximum plus the client's receive
// buffer at its maximum), plus 1 MiB, so the server is left with output that can make no progress.
// A fixed 4 MiB greeting fitted whole in this machine's buffers (4.2 MB absorbed: tcp_wmem max 4 MiB).
const CHUNK = 65536;
const GREETING_CHUNKS = Math.ceil((sysctlMax('tcp_wmem') + sysctlMax('tcp_rmem') + (1 << 20)) / CHUNK);
const GREETING = GREETING_CHUNKS * CHUNK;

let server: TcpmodServer;
let port: number;
beforeAll(async () => {
  const config = new Uint8Array(4);
  new DataView(config.buffer).setUint32(0, GREETING_CHUNKS, true); // greeter.wat: the number of 64 KiB chunks
  // One worker, so the next connection is opened by the worker whose send just failed. The whole greeting
  // must be accepted into the connection's output queue (a refused send would end on_open as a fault).
  // The send timeout also applies to the client that does read the greeting (tens of MiB here): 2 s
  // without progress, not 300 ms, so that a loaded test process pausing between reads is not cut.
  server = createServer({
    module: await fixture('greeter'), config, port: 0, threads: 1, sendTimeout: 2000, logLevel: 'warn',
    maxOutputBuffer: GREETING + (1 << 20),
  });
  port = (await server.listen()).port;
});
afterAll(() => server?.close({ drainTimeout: 0 }));

describe('a send that fails in on_open', () => {
  it('closes that connection with reason send_timeout, and the next connection is served', async () => {
    const before = server.stats().sendTimeouts;
    const mute = await open(port);
    mute.pause(); // never reads the greeting
    mute.on('error', () => undefined);
    await until(() => server.stats().sendTimeouts > before, 15_000, 'the send timeout');
    expect(server.stats().connectionsClosed.send_timeout).toBeGreaterThanOrEqual(1);
    mute.destroy();

    const c = await open(port);
    const greeting = await readBytes(c, GREETING);
    expect(greeting.length).toBe(GREETING);
    expect(greeting.every((b) => b === 0x67)).toBe(true);
    const reply = readBytes(c, 3);
    c.write('hi');
    expect((await reply).toString()).toBe('ok\n');
    c.destroy();
    expect(server.stats().connectionsClosed.socket_error).toBe(0);
  });
});
