// Direct delivery (docs/abi.md §19) over real sockets, with resp.wasm, whose
// SUBSCRIBE is a direct subscription and whose PUBLISH carries the "message"
// push as its frame: every subscriber gets every message once, in order per
// publisher, at --batch 1 and 8, whether the frame is written by the
// publishing thread or waits in the mailbox (a subscriber sending PINGs while
// messages arrive is often held); its replies and the pushes never cut into
// each other (each stream parses as whole RESP frames); a subscriber that does
// not read is closed at --max-mailbox (reason 3) while the others get
// everything; TLS subscribers get everything through the mailbox.
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { open } from './net-client.js';
import { cmd, RespStream } from './resp-client.js';
import { serversPerTest } from './servers-per-test.js';
import { makeTestCerts } from './tls-certs.js';
import { waitFor as until } from './wait.js';

const { start, sockets } = serversPerTest(() => ({ logLevel: 'silent', port: 0, module: 'build/resp.wasm', threads: 2 }));

/** A subscriber of `channel`, its SUBSCRIBE confirmed. */
async function subscriber(s: Socket, channel: string): Promise<RespStream> {
  const r = new RespStream(s);
  s.write(cmd('SUBSCRIBE', channel));
  await until(() => r.items.length >= 1, () => 'subscribe confirmation');
  expect(r.items.shift()).toEqual(['subscribe', channel, ':1']);
  return r;
}

/** Publishes m messages "p<who>:<i>" to the channel, pipelined in chunks, and waits for every reply. */
async function publisher(s: Socket, who: number, channel: string, m: number, size = 0): Promise<void> {
  let replies = 0;
  s.on('data', (d: Buffer) => (replies += d.toString('latin1').split('\r\n').length - 1));
  const pad = 'x'.repeat(size);
  for (let i = 0; i < m; i += 100) {
    let chunk = '';
    for (let j = i; j < Math.min(m, i + 100); j++) chunk += cmd('PUBLISH', channel, `p${who}:${j}${pad}`);
    s.write(chunk);
    await until(() => replies >= Math.min(m, i + 100) - 200, () => `publisher ${who}: ${replies} replies`);
  }
  await until(() => replies >= m, () => `publisher ${who}: ${replies} of ${m} replies`);
}

/** Every message of every publisher, once, in order per publisher; the PINGs' replies (pongs) counted. */
function check(r: RespStream, publishers: number, m: number, channel: string): number {
  expect(r.error).toBeNull();
  const next = new Array(publishers).fill(0);
  let pongs = 0;
  for (const it of r.items) {
    if (Array.isArray(it) && it[0] === 'pong') {
      pongs++;
      continue;
    }
    expect(Array.isArray(it) && it.length === 3 && it[0] === 'message' && it[1] === channel).toBe(true);
    const [who, i] = (it[2] as string).slice(1).split(':').map((x) => parseInt(x, 10));
    expect(i).toBe(next[who]);
    next[who]++;
  }
  expect(next).toEqual(new Array(publishers).fill(m));
  return pongs;
}

describe('direct delivery (resp.wasm SUBSCRIBE / PUBLISH)', () => {
  for (const batch of [1, 8]) {
    it(`every message once and in order per publisher, replies and pushes whole, with --batch ${batch}`, async () => {
      const { server, port } = await start({ batch });
      const M = 1500;
      const subs = await Promise.all(Array.from({ length: 6 }, () => open(port)));
      sockets.push(...subs);
      const streams = await Promise.all(subs.map((s) => subscriber(s, 'ch')));
      // Three subscribers send PINGs while messages arrive: held by a worker for their own
      // commands, their frames wait in the mailbox; the others mostly get them at the publish.
      let pinging = true;
      const pings = [0, 0, 0];
      const pinger = (async () => {
        while (pinging) {
          for (let k = 0; k < 3; k++) {
            subs[k].write(cmd('PING'));
            pings[k]++;
          }
          await new Promise((r) => setTimeout(r, 1));
        }
      })();
      const pubs = await Promise.all([open(port), open(port)]);
      sockets.push(...pubs);
      await Promise.all(pubs.map((p, who) => publisher(p, who, 'ch', M)));
      pinging = false;
      await pinger;
      await until(() => streams.every((r, k) => r.error !== null || r.items.length >= 2 * M + (k < 3 ? pings[k] : 0)),
        () => streams.map((r) => r.items.length).join(' '));
      streams.forEach((r, k) => expect(check(r, 2, M, 'ch')).toBe(k < 3 ? pings[k] : 0));
      const t = server.stats().topics;
      expect(t.delivered).toBe(6 * 2 * M);
      expect(t.direct).toBeGreaterThan(0);
      expect(t.direct).toBeLessThanOrEqual(t.delivered);
    });
  }

  it('a subscriber that does not read is closed with reason 3 (its mailbox or output bound); the others get everything', async () => {
    const { server, port } = await start({ maxMailbox: 1024 * 1024, maxOutputBuffer: 256 * 1024 });
    const slow = await open(port);
    sockets.push(slow);
    slow.write(cmd('SUBSCRIBE', 'ch'));
    await new Promise((r) => setTimeout(r, 100));
    slow.pause(); // reads nothing more: its socket, then its output queue, then its mailbox fill
    let closed = false;
    slow.on('close', () => (closed = true));
    const subs = await Promise.all(Array.from({ length: 3 }, () => open(port)));
    sockets.push(...subs);
    const streams = await Promise.all(subs.map((s) => subscriber(s, 'ch')));
    const pub = await open(port);
    sockets.push(pub);
    const M = 6000;
    await publisher(pub, 0, 'ch', M, 2000); // 12 MB to each subscriber: more than loopback socket buffers take
    await until(() => streams.every((r) => r.error !== null || r.items.length >= M), () => streams.map((r) => r.items.length).join(' '));
    for (const r of streams) check(r, 1, M, 'ch');
    // Closed with reason 3 at whichever bound it reaches first: its mailbox (topics.overflows), or its
    // output queue when a claim's frames were staged into it (both count as overflow closes).
    await until(() => server.stats().connectionsClosed.overflow >= 1, () => JSON.stringify({ topics: server.stats().topics, closed: server.stats().connectionsClosed }));
    slow.resume();
    await until(() => closed, () => 'the slow subscriber closed');
    expect(server.stats().connectionsClosed.overflow).toBeGreaterThanOrEqual(1);
  });

  it('TLS subscribers get every message in order, through the mailbox', async () => {
    const certs = makeTestCerts();
    const { server, port } = await start({ tlsCert: certs.serverChain, tlsKey: certs.serverKey });
    const ca = readFileSync(certs.caCert);
    const subs = await Promise.all(Array.from({ length: 3 }, () => new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => resolve(s));
      s.once('error', reject);
    })));
    sockets.push(...subs);
    const streams = await Promise.all(subs.map((s) => subscriber(s, 'ch')));
    const pub = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => resolve(s));
      s.once('error', reject);
    });
    sockets.push(pub);
    const M = 1000;
    await publisher(pub, 0, 'ch', M);
    await until(() => streams.every((r) => r.error !== null || r.items.length >= M), () => streams.map((r) => r.items.length).join(' '));
    for (const r of streams) check(r, 1, M, 'ch');
    expect(server.stats().topics.direct).toBe(0); // a TLS record is the owner's to make
  });
});
