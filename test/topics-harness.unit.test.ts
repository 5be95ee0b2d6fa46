// tcpmod/testing with topics (docs/abi.md §15): harness connections subscribe
// and publish to each other; m.deliver() hands each waiting message to its
// subscriber's tcpmod_on_message, in publish order, when the test says so.
import { describe, expect, it } from 'vitest';
import { loadModule } from '../dist/testing.js';
import { fixture } from './fixtures.js';
import { cmd } from './resp-client.js';

const text = (b: Uint8Array) => Buffer.from(b).toString('latin1');

describe('tcpmod/testing: publish and subscribe between connections', () => {
  it('a chat line reaches every other connection once, in order, when the test delivers', async () => {
    const m = await loadModule(await fixture('chat'));
    const [a, b, c] = [m.connect(), m.connect(), m.connect()];
    expect(text(a.send('hello\nwor').output)).toBe('');
    expect(m.undelivered).toBe(3); // all three subscribed to "room", the sender included
    a.send('ld\n');
    const got = m.deliver();
    expect(got.map((d) => [d.conn, text(d.output)])).toEqual([
      [a.id, ''], [b.id, 'hello\n'], [c.id, 'hello\n'], [a.id, ''], [b.id, 'world\n'], [c.id, 'world\n'],
    ]);
    expect(text(got[1].topic)).toBe('room');
    expect(got[1].pattern.length).toBe(0);
    expect(m.undelivered).toBe(0);
    expect(text(b.send('/n\n').output)).toBe('0\n'); // b has published nothing yet
    expect(text(a.send('/n\n').output)).toBe('3\n'); // its last publish reached three subscriptions
  });

  it('a closed connection gets nothing more, and publishes reach only the open ones', async () => {
    const m = await loadModule(await fixture('chat'));
    const [a, b, c] = [m.connect(), m.connect(), m.connect()];
    a.send('one\n');
    b.close();
    const got = m.deliver();
    expect(got.map((d) => d.conn)).toEqual([a.id, c.id]);
    a.send('two\n');
    expect(m.undelivered).toBe(2);
    expect(text(a.send('/n\n').output)).toBe('2\n');
    m.deliver();
  });

  it("direct subscriptions (§19): resp.wasm's SUBSCRIBE takes PUBLISH's frame with no on_message call, PSUBSCRIBE its pmessage", async () => {
    const m = await loadModule('build/resp.wasm');
    const [a, b, p] = [m.connect(), m.connect(), m.connect()];
    a.send(cmd('SUBSCRIBE', 'news'));
    b.send(cmd('PSUBSCRIBE', 'n*'));
    expect(text(p.send(cmd('PUBLISH', 'news', 'hi\r\nthere')).output)).toBe(':2\r\n');
    const got = m.deliver();
    expect(got.map((d) => [d.conn, d.frame, text(d.output)])).toEqual([
      [a.id, true, '*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$9\r\nhi\r\nthere\r\n'],
      [b.id, false, '*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$9\r\nhi\r\nthere\r\n'],
    ]);
    // The frame is what on_message writes for the same message: a long message (a 3-digit length) too.
    const long = 'x'.repeat(300);
    p.send(cmd('PUBLISH', 'news', long));
    expect(m.deliver().map((d) => text(d.output))[0]).toBe(`*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$300\r\n${long}\r\n`);
  });
});
