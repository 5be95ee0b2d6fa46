// --bus rediss:// (docs/abi.md §15): the bus over TLS, with the host's one
// client-side TLS code. Two `tcpmod serve` processes of resp.wasm on one
// redis-server that speaks only TLS and wants a password: one names the bus
// itself (--bus rediss://, --bus-tls-ca), the other's bus follows its rediss://
// store (--kv-tls-ca). Messages cross both ways, a 200 kB one whole (many TLS
// records); a plain redis-cli --tls PUBLISH reaches both; a process that does
// not trust the server's CA counts failures and says why.
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metricsPort, scrape } from './metrics.js';
import { open } from './net-client.js';
import { requireTool, serve, type ServedProcess } from './server-process.js';
import { startTlsRedis, type TlsRedis } from './services.js';
import { makeTestCerts, type TestCerts } from './tls-certs.js';
import { sleep, until } from './wait.js';

let certs: TestCerts;
let tlsRedis: TlsRedis | null = null;
let tlsPort = 0;
let a: ServedProcess;
let b: ServedProcess;
const metrics: Record<number, number> = {};
const sockets: Socket[] = [];
const tlsCli = (...args: string[]) => tlsRedis!.cli(...args);

/** A command as RESP. */
const resp = (...args: string[]) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;

/** A RESP client of resp.wasm that sends commands and collects the bodies of the `message` pushes it gets. */
async function client(port: number): Promise<{ s: Socket; send: (...args: string[]) => void; messages: string[] }> {
  const s = await open(port);
  sockets.push(s);
  const messages: string[] = [];
  let buf = Buffer.alloc(0);
  s.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    // Whole pushes only: *3 $7 message $N channel $N body.
    for (;;) {
      const m = /^\*3\r\n\$7\r\nmessage\r\n\$(\d+)\r\n/.exec(buf.toString('latin1', 0, 64));
      if (!m) {
        // Anything else (subscribe confirmations, :N replies) is a line or an array of short lines: drop one line.
        const eol = buf.indexOf('\r\n');
        if (eol < 0 || buf[0] === 0x2a && buf.toString('latin1', 0, 12).startsWith('*3\r\n$7\r\nmess')) return;
        buf = buf.subarray(eol + 2);
        continue;
      }
      let at = m[0].length + Number(m[1]) + 2;
      const head = /^\$(\d+)\r\n/.exec(buf.toString('latin1', at, at + 16));
      if (!head) return;
      const end = at + head[0].length + Number(head[1]) + 2;
      if (buf.length < end) return;
      messages.push(buf.toString('utf8', at + head[0].length, end - 2));
      at = end;
      buf = buf.subarray(end);
    }
  });
  return { s, send: (...args) => s.write(resp(...args)), messages };
}

beforeAll(async () => {
  await requireTool('redis-server');
  certs = makeTestCerts();
  tlsRedis = await startTlsRedis(certs, { password: 's3cret' });
  tlsPort = tlsRedis.tlsPort;
  const common = ['--threads', '2', '--metrics', '127.0.0.1:0'];
  [a, b] = await Promise.all([
    serve('build/resp.wasm', ['--bus', `rediss://:s3cret@127.0.0.1:${tlsPort}`, '--bus-tls-ca', certs.caCert, ...common]),
    serve('build/resp.wasm', ['--kv', `rediss://:s3cret@127.0.0.1:${tlsPort}`, '--kv-tls-ca', certs.caCert, ...common]),
  ]);
  for (const p of [a, b]) metrics[p.port] = await metricsPort(p, 10_000);
}, 60_000);

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all([a?.stop(), b?.stop()]);
  await tlsRedis?.kill();
  certs?.remove();
});

describe('--bus rediss:// (TLS, AUTH)', () => {
  it('messages cross between the two processes both ways, a 200 kB one whole, and a plain TLS PUBLISH reaches both', async () => {
    const [subA, subB, pubA, pubB] = await Promise.all([client(a.port), client(b.port), client(a.port), client(b.port)]);
    const gotA = subA.messages;
    const gotB = subB.messages;
    subA.send('SUBSCRIBE', 'tls-room');
    subB.send('SUBSCRIBE', 'tls-room');
    await until(async () => (await tlsCli('PUBSUB', 'NUMSUB', 'tls-room')).stdout === 'tls-room\n2\n', 10_000, 'both processes subscribed in Redis');
    const big = 'z'.repeat(200_000);
    pubA.send('PUBLISH', 'tls-room', 'from a');
    pubB.send('PUBLISH', 'tls-room', 'from b');
    pubA.send('PUBLISH', 'tls-room', big);
    expect((await tlsCli('PUBLISH', 'tls-room', 'from redis-cli')).stdout).toBe('2\n');
    await until(() => gotA.length >= 4 && gotB.length >= 4, 10_000, 'every message in both processes');
    await sleep(300); // an echo or a duplicate would have arrived by now
    for (const got of [gotA, gotB]) {
      expect(got).toHaveLength(4);
      expect(new Set(got)).toEqual(new Set(['from a', 'from b', big, 'from redis-cli']));
      expect(got.indexOf('from a')).toBeLessThan(got.indexOf(big)); // one publisher's order
    }
    for (const p of [a, b]) {
      const m = await scrape(metrics[p.port]);
      expect(m.tcpmod_bus_connected).toBe(1);
      expect(m.tcpmod_bus_failures_total ?? 0).toBe(0);
    }
  }, 30_000);

  it('a server whose CA is not trusted (Node\'s bundled roots): the bus fails, counted, with the certificate reason logged', async () => {
    const p = await serve('build/resp.wasm', ['--bus', `rediss://:s3cret@127.0.0.1:${tlsPort}`, '--threads', '1', '--metrics', '127.0.0.1:0']);
    try {
      const mp = await metricsPort(p, 10_000);
      const c = await client(p.port);
      c.send('PUBLISH', 'anything', 'x'); // the bus connects at first use
      await until(async () => ((await scrape(mp)).tcpmod_bus_failures_total ?? 0) > 0, 10_000, 'a counted bus failure');
      await until(() => /bus to Redis unavailable.*TLS handshake: .*certificate/.test(p.stderr()), 10_000, 'the certificate reason in the log', 100);
      expect((await scrape(mp)).tcpmod_bus_connected).toBe(0);
    } finally {
      await p.stop();
    }
  }, 30_000);
});
