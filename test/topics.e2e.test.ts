// Topics (docs/abi.md §15) over real sockets: a chat room where each line a
// client sends reaches every other client exactly once and in order per
// sender; no connection is ever in two callbacks at once while messages and
// its own input arrive together; a subscriber that does not read is closed at
// its mailbox bound (reason 3) while the others keep receiving; subscriptions
// and mailboxes go with their connections.
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createServer } from '../dist/index.js';
import { fixture, scratchFile, watToWasm } from './fixtures.js';
import { lines, open } from './net-client.js';
import { serversPerTest } from './servers-per-test.js';
import { waitFor as until } from './wait.js';

const { start, sockets } = serversPerTest(async () => ({ logLevel: 'silent', port: 0, module: await fixture('chat') }));

/** n chat clients, each subscribed (its on_open ran: "/n" answers after it). */
async function clients(port: number, n: number): Promise<{ s: Socket; got: string[] }[]> {
  const list = await Promise.all(Array.from({ length: n }, () => open(port)));
  sockets.push(...list);
  const out = list.map((s) => ({ s, got: lines(s) }));
  for (const c of out) c.s.write('/n\n');
  await until(() => out.every((c) => c.got.length >= 1), () => 'subscribed');
  for (const c of out) c.got.splice(0);
  return out;
}

/** Checks that every client got every other client's lines exactly once, in order per sender. */
function checkDelivery(cs: { got: string[] }[], m: number): void {
  cs.forEach((c, me) => {
    const next = new Array(cs.length).fill(0);
    for (const line of c.got) {
      const [who, j] = line.split(' ').map(Number);
      expect(who).not.toBe(me);
      expect(j).toBe(next[who]);
      next[who]++;
    }
    next.forEach((k, who) => expect(k).toBe(who === me ? 0 : m));
  });
}

describe('topics: a chat room', () => {
  it.each([1, 8])('N clients x M lines: each line reaches every other client once, in order per sender (2 threads, batch %i)', async (batch) => {
    const { server, port } = await start({ threads: 2, batch });
    const N = 8, M = 60;
    const cs = await clients(port, N);
    // Lines written in pieces cut anywhere (a line may straddle writes).
    await Promise.all(cs.map(async (c, i) => {
      const text = Array.from({ length: M }, (_, j) => `${i} ${j}\n`).join('');
      for (let at = 0; at < text.length;) {
        const n = 1 + ((at * 7 + i) % 23);
        c.s.write(text.slice(at, at + n));
        at += n;
        if (at % 5 === 0) await new Promise((r) => setImmediate(r));
      }
    }));
    await until(() => cs.every((c) => c.got.length >= (N - 1) * M), () => cs.map((c) => c.got.length).join(','));
    await new Promise((r) => setTimeout(r, 100)); // nothing more may come
    checkDelivery(cs, M);
    const t = server.stats().topics;
    expect(t.published).toBe(N * M);
    expect(t.delivered).toBe(N * N * M); // every subscriber, the sender included (it skips its own)
    expect(t.overflows).toBe(0);
    cs[0].s.write('/o\n');
    await until(() => cs[0].got.length > (N - 1) * M, () => 'overlaps answer');
    expect(cs[0].got.at(-1)).toBe('0');
  });

  it('no connection is in two callbacks at once under a publish storm with its own input arriving (2 threads)', async () => {
    const { server, port } = await start({ threads: 2, batch: 4 });
    const N = 6, M = 400;
    const cs = await clients(port, N);
    // Everyone floods at once: each connection gets messages while its own lines arrive.
    for (let round = 0; round < 4; round++) {
      cs.forEach((c, i) => c.s.write(Array.from({ length: M / 4 }, (_, j) => `${i} ${round * (M / 4) + j}\n`).join('')));
      await new Promise((r) => setImmediate(r));
    }
    await until(() => cs.every((c) => c.got.length >= (N - 1) * M), () => cs.map((c) => c.got.length).join(','));
    checkDelivery(cs, M);
    cs[1].s.write('/o\n');
    await until(() => cs[1].got.length > (N - 1) * M, () => 'overlaps answer');
    expect(cs[1].got.at(-1)).toBe('0');
    expect(server.stats().topics.overflows).toBe(0);
  });

  it('a subscriber that does not read is closed at --max-mailbox (reason 3); the others receive everything', async () => {
    // The mailbox holds a whole round of the publisher's (500 lines of ~270 bytes each): a subscriber that reads keeps up.
    const { server, port } = await start({ threads: 2, maxMailbox: '256KiB', maxOutputBuffer: '64KiB' });
    const [pub, fast, slow] = await clients(port, 3);
    slow.s.pause(); // reads nothing from now on
    const line = 'x'.repeat(200);
    let sent = 0;
    // Until the slow one is closed (its kernel buffers, output queue and mailbox are full), bounded.
    for (let round = 0; round < 400 && server.stats().topics.overflows === 0; round++) {
      pub.s.write(Array.from({ length: 500 }, (_, j) => `0 ${sent + j} ${line}\n`).join(''));
      sent += 500;
      await until(() => fast.got.length >= sent, () => `fast got ${fast.got.length} of ${sent}`);
    }
    const t = server.stats().topics;
    expect(t.overflows).toBe(1);
    // The overflow is counted where the mailbox refuses; the close is counted by the connection's
    // owner a moment later.
    await until(() => server.stats().connectionsClosed.overflow >= 1, () => `closed for overflow: ${server.stats().connectionsClosed.overflow}`);
    expect(server.stats().connectionsClosed.overflow).toBe(1);
    // The publisher and the fast subscriber go on.
    pub.s.write(`0 ${sent} last\n`);
    await until(() => fast.got.length === sent + 1, () => `fast got ${fast.got.length}`);
    fast.got.forEach((l, j) => expect(l.split(' ')[1]).toBe(String(j)));
    await until(() => server.stats().topics.subscriptions === 2, () => `subscriptions ${server.stats().topics.subscriptions}`);
  });

  it('10,000 subscribe/close cycles leave the topic table empty and RSS flat', async () => {
    const { server, port } = await start({ threads: 2 });
    const cycle = async (n: number) => {
      for (let k = 0; k < n; k += 100) {
        const batch = await clients(port, 100);
        for (const c of batch) c.s.destroy();
        sockets.splice(0);
      }
      await until(() => server.stats().topics.subscriptions === 0, () => `subscriptions ${server.stats().topics.subscriptions}`);
    };
    await cycle(2000);
    const rss0 = process.memoryUsage().rss;
    await cycle(8000);
    const rss1 = process.memoryUsage().rss;
    const t = server.stats().topics;
    expect(t.topics).toBe(0);
    expect(t.patterns).toBe(0);
    expect(t.subscriptions).toBe(0);
    // A leak of one mailbox record or subscription per cycle would be far above this bound.
    expect(rss1 - rss0).toBeLessThan(24 * 1024 * 1024);
  }, 120_000);

  it('a module that imports subscribe without exporting tcpmod_on_message does not load, with the fix named', async () => {
    const wat = `(module
      (import "tcpmod" "subscribe" (func (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1 1)
      (func (export "tcpmod_abi_v1"))
      (func (export "tcpmod_io_desc") (result i32) (i32.const 0))
      (func (export "tcpmod_on_data") (param i32 i32 i32) (result i32) (i32.const 0)))`;
    const file = scratchFile('subscribe-without-export.wasm', await watToWasm('s.wat', wat));
    await expect(createServer({ module: file, port: 0, logLevel: 'silent' }).listen())
      .rejects.toThrow(/import tcpmod\.subscribe needs the export tcpmod_on_message \(i32, i32, i32, i32, i32\) -> i32.*TCPMOD_EXPORT\(tcpmod_on_message\)/s);
  });
});
