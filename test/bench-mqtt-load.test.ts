// The bench's native MQTT client (bench/mqtt-load.c) on real sockets: against
// mqtt.wasm it must report deliveries and nothing lost; against a scripted
// broker that writes its packets in pieces (every CONNACK and SUBACK a byte at
// a time, the PUBLISH stream in chunks of 1 to 31 bytes, so packet boundaries
// fall at every offset) it must frame them exactly, and when that broker drops
// one delivery the client must count it. Nothing here is about speed.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error a plain .mjs module without types
import { buildC } from '../bench/lib/tools.mjs';
import { serve, type ServedProcess } from './server-process.js';

type Result = { delivered: number; total: number; published: number; lost: number; errors: number; rps: number; p99Us: number; idleP99Us: number; idleSamples: number };

let bin: string;
beforeAll(() => {
  bin = buildC('bench', 'mqtt-load', () => {});
});

function runLoad(port: number, subscribers: number, seconds: number, latencySeconds: number): Promise<Result> {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, ['127.0.0.1', String(port), String(subscribers), String(seconds), '64', String(latencySeconds)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 40_000);
    p.once('error', reject);
    p.once('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`mqtt-load exited ${code}: ${err}`));
      resolve(JSON.parse(out.trim().split('\n').pop()!) as Result);
    });
  });
}

describe('bench/mqtt-load against mqtt.wasm', () => {
  let srv: ServedProcess;
  beforeAll(async () => {
    srv = await serve('build/mqtt.wasm', ['--host', '127.0.0.1', '--threads', '2']);
  });
  afterAll(async () => {
    await srv?.stop();
  });

  it('10 subscribers for 1 s: deliveries, every one of them arrived, in order', { timeout: 60_000 }, async () => {
    const r = await runLoad(srv.port, 10, 1, 0.5);
    expect(r.delivered).toBeGreaterThan(0);
    expect(r.lost).toBe(0);
    expect(r.errors).toBe(0);
    expect(r.total).toBe(r.published * 10);
    expect(r.p99Us).toBeGreaterThan(0);
    expect(r.idleSamples).toBeGreaterThan(0);
  });
});

/**
 * A broker of just what the client uses, whose writes come in pieces: each
 * connection's outgoing bytes go out one chunk per event-loop turn. `drop`
 * (subscriber index, message number) leaves one delivery out.
 */
function scriptedBroker(drop?: { subscriber: number; message: number }): Promise<{ port: number; close: () => void }> {
  const subscribers: Array<(b: Buffer) => void> = [];
  let published = 0;
  const server = net.createServer((sock) => {
    sock.setNoDelay(true);
    const queue: Array<{ bytes: Buffer; control: boolean }> = [];
    let sending = false;
    let step = 0;
    // Control packets a byte at a time, 1 ms apart (the client's blocking reads see each byte
    // alone); the PUBLISH stream (whatever is queued, merged) in chunks of 1..31 bytes, a turn of
    // the event loop apart, so chunks end at every offset of the 29-byte packets.
    const pump = async () => {
      if (sending) return;
      sending = true;
      while (queue.length && !sock.destroyed) {
        const { control } = queue[0];
        let bytes: Buffer;
        if (control) bytes = queue.shift()!.bytes;
        else {
          const run: Buffer[] = [];
          while (queue.length && !queue[0].control) run.push(queue.shift()!.bytes);
          bytes = Buffer.concat(run);
        }
        for (let off = 0; off < bytes.length && !sock.destroyed; ) {
          const n = control ? 1 : 1 + (step++ % 31);
          sock.write(bytes.subarray(off, off + n));
          off += n;
          await new Promise((r) => (control ? setTimeout(r, 1) : setImmediate(r)));
        }
      }
      sending = false;
    };
    const send = (bytes: Buffer) => {
      queue.push({ bytes, control: bytes[0] >> 4 !== 3 });
      void pump();
    };
    let buf = Buffer.alloc(0);
    sock.on('error', () => {});
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (buf.length < 2) return;
        let len = 0;
        let mult = 1;
        let i = 1;
        for (; i < buf.length && i <= 4; i++) {
          len += (buf[i] & 127) * mult;
          mult *= 128;
          if (!(buf[i] & 128)) break;
        }
        if (i >= buf.length || buf.length < i + 1 + len) return;
        const pkt = buf.subarray(0, i + 1 + len);
        buf = buf.subarray(i + 1 + len);
        const type = pkt[0] >> 4;
        if (type === 1) send(Buffer.from([0x20, 2, 0, 0]));
        else if (type === 8) {
          subscribers.push(send);
          send(Buffer.from([0x90, 3, pkt[i + 1], pkt[i + 2], 0]));
        } else if (type === 3) {
          const n = published++;
          subscribers.forEach((deliver, k) => {
            if (!(drop && drop.subscriber === k && drop.message === n)) deliver(Buffer.from(pkt));
          });
        }
      }
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ port: (server.address() as net.AddressInfo).port, close: () => server.close() })));
}

describe('bench/mqtt-load framing, against a broker that splits its writes', () => {
  it('counts every delivery exactly when packets arrive in pieces', { timeout: 60_000 }, async () => {
    const b = await scriptedBroker();
    try {
      const r = await runLoad(b.port, 3, 1, 0.2);
      expect(r.delivered).toBeGreaterThan(0);
      expect(r.lost).toBe(0);
      expect(r.errors).toBe(0);
      expect(r.total).toBe(r.published * 3);
    } finally {
      b.close();
    }
  });

  it('reports a delivery the broker left out as lost and out of order', { timeout: 60_000 }, async () => {
    const b = await scriptedBroker({ subscriber: 1, message: 5 });
    try {
      const r = await runLoad(b.port, 3, 1, 0.2);
      expect(r.published).toBeGreaterThan(5);
      expect(r.lost).toBe(1);
      expect(r.errors).toBe(1);
      expect(r.total).toBe(r.published * 3 - 1);
    } finally {
      b.close();
    }
  });
});
