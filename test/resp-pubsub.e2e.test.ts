// resp.wasm pub/sub (SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE, PUBLISH)
// over real sockets: redis-cli in subscribed mode in one process receiving what
// redis-cli PUBLISH sends from another, and the RESP2 replies, pushes and
// subscribed-mode rules byte for byte as Redis sends them; and node-redis
// (the npm `redis` client) in subscribed mode.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { createClient } from 'redis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { open, readBytes } from './net-client.js';
import { bulk, cmd } from './resp-client.js';
import { requireTool, run, serve, type ServedProcess } from './server-process.js';
import { waitFor as until } from './wait.js';

let srv: ServedProcess;
const children: ChildProcess[] = [];
const sockets: Socket[] = [];

beforeAll(async () => {
  await requireTool('redis-cli');
  srv = await serve('build/resp.wasm', ['--threads', '2']);
});
afterEach(() => {
  for (const c of children.splice(0)) c.kill();
  for (const s of sockets.splice(0)) s.destroy();
});
afterAll(async () => {
  await srv?.stop();
});

const cli = (...args: string[]) => run('redis-cli', ['-h', '127.0.0.1', '-p', String(srv.port), ...args]);

/** A long-running redis-cli (SUBSCRIBE or PSUBSCRIBE) and what it has printed so far. */
function listener(...args: string[]): { out: () => string } {
  const child = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(srv.port), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let text = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (text += d));
  return { out: () => text };
}

/** Sends the commands and reads exactly the bytes of the expected reply. */
async function exchange(s: Socket, send: string, expected: string): Promise<void> {
  s.write(send);
  expect((await readBytes(s, Buffer.byteLength(expected), 10_000)).toString('latin1')).toBe(expected);
}

describe('resp.wasm pub/sub', () => {
  it('redis-cli SUBSCRIBE and PSUBSCRIBE in their own processes receive what redis-cli PUBLISH sends', async () => {
    const sub = listener('SUBSCRIBE', 'news');
    const psub = listener('PSUBSCRIBE', 'news*', 'h?llo');
    await until(() => sub.out().includes('subscribe\nnews\n1\n') && psub.out().includes('h?llo\n2\n'), () => sub.out() + psub.out());
    expect((await cli('PUBLISH', 'news', 'first')).stdout).toBe('2\n'); // the channel and the pattern news*
    expect((await cli('PUBLISH', 'hello', 'second')).stdout).toBe('1\n');
    expect((await cli('PUBLISH', 'nobody', 'third')).stdout).toBe('0\n');
    await until(() => sub.out().includes('first') && psub.out().includes('second'), () => sub.out() + psub.out());
    expect(sub.out()).toBe('subscribe\nnews\n1\nmessage\nnews\nfirst\n');
    expect(psub.out()).toBe('psubscribe\nnews*\n1\npsubscribe\nh?llo\n2\npmessage\nnews*\nnews\nfirst\npmessage\nh?llo\nhello\nsecond\n');
  });

  it('replies, pushes and the RESP2 subscribed-mode rules as Redis sends them', async () => {
    const [a, b] = await Promise.all([open(srv.port), open(srv.port)]);
    sockets.push(a, b);
    await exchange(a, cmd('SUBSCRIBE', 'x', 'y', 'x'),
      `*3\r\n${bulk('subscribe')}${bulk('x')}:1\r\n*3\r\n${bulk('subscribe')}${bulk('y')}:2\r\n*3\r\n${bulk('subscribe')}${bulk('x')}:2\r\n`);
    await exchange(a, cmd('PSUBSCRIBE', 'y*'), `*3\r\n${bulk('psubscribe')}${bulk('y*')}:3\r\n`);
    await exchange(a, cmd('GET', 'k'), "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n");
    await exchange(a, cmd('PING'), `*2\r\n${bulk('pong')}${bulk('')}`);
    await exchange(a, cmd('PING', 'hi'), `*2\r\n${bulk('pong')}${bulk('hi')}`);
    // A message with CRLF and binary bytes in it arrives whole.
    const push = `*3\r\n${bulk('message')}${bulk('y')}${bulk('a\r\nb\x00c')}*4\r\n${bulk('pmessage')}${bulk('y*')}${bulk('y')}${bulk('a\r\nb\x00c')}`;
    const pushed = readBytes(a, Buffer.byteLength(push), 10_000); // listening before the publish
    await exchange(b, cmd('PUBLISH', 'y', 'a\r\nb\x00c'), ':2\r\n');
    expect((await pushed).toString('latin1')).toBe(push);
    await exchange(a, cmd('UNSUBSCRIBE', 'x', 'nope'), `*3\r\n${bulk('unsubscribe')}${bulk('x')}:2\r\n*3\r\n${bulk('unsubscribe')}${bulk('nope')}:2\r\n`);
    await exchange(a, cmd('PUNSUBSCRIBE'), `*3\r\n${bulk('punsubscribe')}$-1\r\n:1\r\n`);
    await exchange(a, cmd('UNSUBSCRIBE'), `*3\r\n${bulk('unsubscribe')}$-1\r\n:0\r\n`);
    // Out of subscribed mode: commands run again, and nothing more arrives.
    await exchange(b, cmd('PUBLISH', 'y', 'late'), ':0\r\n');
    await exchange(a, cmd('PING'), '+PONG\r\n');
    await exchange(a, cmd('GET', 'pubsub:none'), '$-1\r\n');
  });

  it('node-redis subscribe and pSubscribe get what another node-redis client publishes, and stop after unsubscribing', async () => {
    const sub = createClient({ url: `redis://127.0.0.1:${srv.port}` });
    const pub = createClient({ url: `redis://127.0.0.1:${srv.port}` });
    try {
      await sub.connect();
      await pub.connect();
      const got: string[][] = [];
      await sub.subscribe('lib:ch', (message, channel) => got.push(['message', channel, message]));
      await sub.pSubscribe('lib:*', (message, channel) => got.push(['pmessage', channel, message]));
      expect(await pub.publish('lib:ch', 'hi')).toBe(2);
      expect(await pub.publish('lib:other', 'yo')).toBe(1);
      await until(() => got.length === 3, () => JSON.stringify(got));
      expect(got).toEqual([['message', 'lib:ch', 'hi'], ['pmessage', 'lib:ch', 'hi'], ['pmessage', 'lib:other', 'yo']]);
      await sub.unsubscribe('lib:ch');
      await sub.pUnsubscribe();
      expect(await pub.publish('lib:ch', 'late')).toBe(0);
    } finally {
      await Promise.allSettled([sub.quit(), pub.quit()]);
    }
  });

  it('a subscriber that closes leaves no subscription behind', async () => {
    const s = await open(srv.port);
    await exchange(s, cmd('SUBSCRIBE', 'gone'), `*3\r\n${bulk('subscribe')}${bulk('gone')}:1\r\n`);
    s.destroy();
    // The close is handled by a worker a moment later: bounded wait for the table to drop it.
    let n = '1\n';
    for (let i = 0; i < 100 && n !== '0\n'; i++) {
      n = (await cli('PUBLISH', 'gone', 'x')).stdout;
      if (n !== '0\n') await new Promise((r) => setTimeout(r, 20));
    }
    expect(n).toBe('0\n');
  });
});
