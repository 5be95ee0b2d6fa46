// resp.wasm PUBSUB CHANNELS / NUMSUB / NUMPAT (the topic_count and
// topics_list calls, docs/abi.md §15) and the RESP2 subscribed-mode rules,
// checked against a real redis-server: the same subscriptions made on both,
// the same questions asked, the replies compared byte for byte (CHANNELS
// sorted: Redis lists them in hash order). Then every command split at every
// byte boundary, and node-redis's PUBSUB calls.
import type { Socket } from 'node:net';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open } from './net-client.js';
import { bulk, cmd } from './resp-client.js';
import { requireTool, serve, type ServedProcess } from './server-process.js';
import { RedisServer } from './services.js';
import { sleep, until } from './wait.js';

const redis = new RedisServer();
let srv: ServedProcess;
const sockets: Socket[] = [];

beforeAll(async () => {
  await requireTool('redis-server');
  await redis.start();
  srv = await serve('build/resp.wasm', ['--threads', '2']);
}, 60_000);
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await srv?.stop();
  await redis.kill();
});

/** The length of the one RESP2 value at buf[at..], or -1 when it is not all there. */
function valueEnd(buf: Buffer, at: number): number {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return -1;
  const type = String.fromCharCode(buf[at]);
  const n = Number(buf.toString('latin1', at + 1, eol));
  if (type === '$') return n < 0 ? eol + 2 : eol + 2 + n + 2 <= buf.length ? eol + 2 + n + 2 : -1;
  if (type === '*') {
    let p = eol + 2;
    for (let i = 0; i < n; i++) {
      p = valueEnd(buf, p);
      if (p < 0) return -1;
    }
    return p;
  }
  return eol + 2;
}

/** A connection that reads whole RESP2 replies. */
class Resp {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  constructor(readonly s: Socket) {
    s.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
  }
  static async open(port: number): Promise<Resp> {
    const s = await open(port);
    sockets.push(s);
    return new Resp(s);
  }
  /** The next `n` replies, as one string. */
  async replies(n = 1, ms = 10_000): Promise<string> {
    const end = Date.now() + ms;
    for (;;) {
      let p = 0;
      for (let i = 0; i < n && p >= 0; i++) p = this.buf.length > p ? valueEnd(this.buf, p) : -1;
      if (p >= 0) {
        const out = this.buf.toString('latin1', 0, p);
        this.buf = this.buf.subarray(p);
        return out;
      }
      if (Date.now() > end) throw new Error(`timed out waiting for ${n} replies, have ${JSON.stringify(this.buf.toString('latin1'))}`);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 50);
      });
      this.wake = null;
    }
  }
  async ask(n: number, ...commands: string[][]): Promise<string> {
    this.s.write(commands.map((c) => cmd(...c)).join(''));
    return this.replies(n);
  }
}

/** A CHANNELS reply with its elements sorted (Redis answers in hash order). */
function sortedArray(reply: string): string {
  const m = /^\*(\d+)\r\n([\s\S]*)$/.exec(reply);
  if (!m) return reply;
  const items = m[2].split(/(?=\$\d+\r\n)/).filter(Boolean);
  return `*${m[1]}\r\n${items.sort().join('')}`;
}

/** The subscriptions and questions, on one server; every reply, in order. */
async function script(port: number): Promise<string[]> {
  const [s1, s2, s3, s4, q] = await Promise.all([Resp.open(port), Resp.open(port), Resp.open(port), Resp.open(port), Resp.open(port)]);
  await s1.ask(2, ['SUBSCRIBE', 'news', 'weather']);
  await s2.ask(1, ['SUBSCRIBE', 'news']);
  await s3.ask(3, ['PSUBSCRIBE', 'n*', 'w*', 'n*']);
  await s4.ask(1, ['PSUBSCRIBE', 'n*']);
  const out: string[] = [];
  const asks: string[][] = [
    ['PUBSUB', 'NUMSUB', 'news', 'weather', 'nope', ''], ['PUBSUB', 'NUMPAT'], ['PUBSUB', 'CHANNELS'], ['pubsub', 'channels', 'n*'],
    ['PUBSUB', 'CHANNELS', '*'], ['PUBSUB', 'CHANNELS', ''], ['PUBSUB', 'CHANNELS', 'x[a-z]'], ['PUBSUB', 'NUMSUB'],
    ['PUBSUB', 'NUMPAT', 'x'], ['PUBSUB', 'CHANNELS', 'a', 'b'], ['PUBSUB', 'FOO'], ['PUBSUB'],
  ];
  for (const a of asks) {
    const r = await q.ask(1, a);
    out.push(a[1]?.toLowerCase() === 'channels' ? sortedArray(r) : r);
  }
  // Subscribed-mode rules on a subscriber: PING as a push, PUBSUB and GET refused, and the connection goes on.
  out.push(await s1.ask(1, ['PING']), await s1.ask(1, ['PING', 'hi']), await s1.ask(1, ['PUBSUB', 'NUMPAT']), await s1.ask(1, ['GET', 'k']));
  await s1.ask(1, ['UNSUBSCRIBE', 'weather']);
  await s3.ask(1, ['PUNSUBSCRIBE', 'w*']);
  out.push(await q.ask(2, ['PUBSUB', 'NUMSUB', 'weather'], ['PUBSUB', 'NUMPAT']), sortedArray(await q.ask(1, ['PUBSUB', 'CHANNELS'])));
  // A subscriber that goes away takes its subscriptions (the host forgets them a moment after the close).
  s2.s.destroy();
  s4.s.destroy();
  await until(async () => (await q.ask(1, ['PUBSUB', 'NUMSUB', 'news'])) === `*2\r\n${bulk('news')}:1\r\n`, 10_000, 'news down to 1 subscriber');
  out.push(await q.ask(1, ['PUBSUB', 'NUMPAT']));
  for (const s of [s1, s3, q]) s.s.destroy();
  return out;
}

describe('resp.wasm PUBSUB and subscribed mode, as redis-server answers', () => {
  it('CHANNELS, NUMSUB, NUMPAT and their errors give the bytes redis-server gives, as subscriptions come and go', async () => {
    const ours = await script(srv.port);
    const theirs = await script(redis.port);
    expect(ours).toEqual(theirs);
    // And the answers are the ones meant (not two servers agreeing on nothing).
    expect(theirs[0]).toBe(`*8\r\n${bulk('news')}:2\r\n${bulk('weather')}:1\r\n${bulk('nope')}:0\r\n${bulk('')}:0\r\n`);
    expect(theirs[1]).toBe(':2\r\n');
    expect(theirs[2]).toBe(`*2\r\n${bulk('news')}${bulk('weather')}`);
  }, 60_000);

  it('each command split at every byte boundary gets the same reply (a query connection and a subscriber)', async () => {
    const [sub, q] = await Promise.all([Resp.open(srv.port), Resp.open(srv.port)]);
    await sub.ask(2, ['SUBSCRIBE', 'split:a', 'split:b']);
    const cases: [Resp, string[], string][] = [
      [q, ['PUBSUB', 'NUMSUB', 'split:a', 'split:zz'], `*4\r\n${bulk('split:a')}:1\r\n${bulk('split:zz')}:0\r\n`],
      [q, ['PUBSUB', 'CHANNELS', 'split:*'], `*2\r\n${bulk('split:a')}${bulk('split:b')}`],
      [sub, ['PING', 'x'], `*2\r\n${bulk('pong')}${bulk('x')}`],
      [sub, ['GET', 'k'], "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"],
    ];
    for (const [c, args, expected] of cases) {
      const bytes = Buffer.from(cmd(...args));
      for (let cut = 1; cut < bytes.length; cut++) {
        c.s.write(bytes.subarray(0, cut));
        await sleep(2);
        c.s.write(bytes.subarray(cut));
        expect(await c.replies(1), `${args.join(' ')} cut at ${cut}`).toBe(expected);
      }
    }
  }, 120_000);

  it('node-redis pubSubChannels, pubSubNumSub and pubSubNumPat', async () => {
    const sub = createClient({ url: `redis://127.0.0.1:${srv.port}` });
    const c = createClient({ url: `redis://127.0.0.1:${srv.port}` });
    try {
      await Promise.all([sub.connect(), c.connect()]);
      await sub.subscribe(['lib:x', 'lib:y'], () => undefined);
      await sub.pSubscribe('lib:*', () => undefined);
      expect((await c.pubSubChannels('lib:*')).sort()).toEqual(['lib:x', 'lib:y']);
      expect(await c.pubSubNumSub(['lib:x', 'lib:none'])).toEqual({ 'lib:x': 1, 'lib:none': 0 });
      expect(await c.pubSubNumPat()).toBe(1);
    } finally {
      await Promise.allSettled([sub.quit(), c.quit()]);
    }
  });
});
