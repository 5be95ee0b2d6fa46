// examples/chat: the AssemblyScript chat server, built with `tcpmod build`'s
// function and driven through tcpmod/testing with several connections, the
// test choosing when published lines are delivered (m.deliver()); then one run
// on a real server with real sockets.
import { mkdtempSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildModule } from '../dist/build.js';
import { createServer, type TcpmodServer } from '../dist/index.js';
import { loadModule } from '../dist/testing.js';
import { open } from './net-client.js';
import { until } from './wait.js';

let wasm: string;
beforeAll(async () => {
  const out = join(mkdtempSync(join(tmpdir(), 'tcpmod-chat-')), 'chat.wasm');
  wasm = (await buildModule({ baseDir: 'examples/chat', outFile: out })).file;
}, 120_000);

/** What each delivery wrote, by connection id, in delivery order (empty outputs left out). */
function delivered(ds: { conn: number; text: string }[]): [number, string][] {
  return ds.filter((d) => d.text !== '').map((d) => [d.conn, d.text]);
}

describe('examples/chat on tcpmod/testing', () => {
  it('lines reach everyone else in the room, rooms are apart, /who counts, /quit is announced', async () => {
    const m = await loadModule(wasm);
    const [a, b, c] = [m.connect(), m.connect(), m.connect()];
    expect(a.opened.text).toBe(`* welcome, guest${a.id}: /nick NAME, /join ROOM, /who, /quit\n`);
    expect(a.send('/nick ann\n').text).toBe('* you are ann\n');
    expect(b.send('/nick bob\r\n').text).toBe('* you are bob\n');
    expect(a.send('/nick two words\n/nick \n').text).toBe('* usage: /nick NAME (1 to 16 bytes, no spaces)\n'.repeat(2));
    // Nothing arrives until the test delivers; then in publish order, the sender left out.
    expect(a.send('hi all\nsecond line\n').text).toBe('');
    expect(m.undelivered).toBe(6);
    expect(delivered(m.deliver())).toEqual([[b.id, '<ann> hi all\n'], [c.id, '<ann> hi all\n'], [b.id, '<ann> second line\n'], [c.id, '<ann> second line\n']]);
    expect(a.send('/who\n').text).toBe('* 3 here\n');

    c.send('/join kitchen\n');
    expect(delivered(m.deliver())).toEqual([[a.id, `* guest${c.id} left\n`], [b.id, `* guest${c.id} left\n`], [c.id, `* guest${c.id} joined kitchen\n`]]);
    expect(a.send('/who\n').text).toBe('* 2 here\n');
    expect(c.send('/who\n').text).toBe('* 1 here\n');
    b.send('lobby only\n');
    c.send('kitchen only\n');
    expect(delivered(m.deliver())).toEqual([[a.id, '<bob> lobby only\n']]);

    const bye = b.send('/quit\nnever\n');
    expect([bye.text, bye.closed]).toEqual(['* bye\n', 'module']);
    expect(delivered(m.deliver())).toEqual([[a.id, '* bob left\n']]);
    expect(a.send('/who\n/nope\n').text).toBe('* 1 here\n* unknown command\n');
    // A client that just goes away leaves its room silently (on_close has no state slot to say who it was).
    a.close();
    expect(m.deliver()).toEqual([]);
    expect(m.faults).toEqual([]);
  });

  it('answers the same however the input is cut', async () => {
    const m = await loadModule(wasm);
    m.connect();
    const out = m.connect().sendInPieces('/nick zoe\r\nhello\n/who\n/join a\n/who\n');
    expect(Buffer.from(out).toString()).toBe('* you are zoe\n* 2 here\n* 1 here\n');
  });

  it('a line over 1 KiB closes the connection with a word', async () => {
    const m = await loadModule(wasm);
    const r = m.connect().send('x'.repeat(1100));
    expect([r.text, r.closed]).toEqual(['* line too long\n', 'module']);
  });
});

describe('examples/chat on a server', () => {
  let srv: TcpmodServer;
  const sockets: Socket[] = [];
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await srv?.close({ drainTimeout: 0 });
  });

  it('two clients talk over real sockets', async () => {
    srv = createServer({ module: wasm, port: 0, logLevel: 'silent', threads: 2 });
    const { port } = await srv.listen();
    const got: string[] = ['', ''];
    for (let i = 0; i < 2; i++) {
      const s = await open(port);
      sockets.push(s);
      s.setEncoding('utf8').on('data', (d: string) => (got[i] += d));
    }
    await until(() => got.every((g) => g.includes('welcome')), 10_000, 'both welcomes');
    sockets[0].write('/nick ann\n');
    await until(() => got[0].includes('you are ann'), 10_000, 'the nick');
    sockets[0].write('hello bob\n');
    await until(() => got[1].includes('<ann> hello bob\n'), 10_000, 'the line');
    sockets[0].write('/quit\n');
    await until(() => got[1].includes('* ann left\n'), 10_000, 'the leave line');
  });
});
