// Pipelined replies go out together (issue 15, item 4): when one event answers
// several requests -- by the module's own loop or by the host's progress loop
// calling it again -- the client gets them in one write, and a tcpmod.send
// keeps its place in the order. Checked through tcpmod/testing's `writes`,
// which counts the writes the one ABI driver makes (the worker loop runs the
// same driver; test/coalesce.e2e.test.ts counts the real sendto calls).
import { describe, expect, it } from 'vitest';
import { loadModule } from '../host/testing.js';
import { fixture } from './fixtures.js';

const lines = (n: number, prefix = 'line') => Array.from({ length: n }, (_, i) => `${prefix} ${i}\n`).join('');

describe('one write per event for pipelined replies', () => {
  it('a module answering one line per call: 16 lines in one read, 16 calls, one write', async () => {
    const m = await loadModule(await fixture('oneline'));
    const c = m.connect();
    const input = lines(16);
    const r = c.send(input);
    expect(r.text).toBe(input);
    expect(r.writes).toBe(1);
    // An incomplete last line stays behind; the write still carries every whole one.
    const r2 = c.send('a\nb\nc');
    expect(r2).toMatchObject({ text: 'a\nb\n', writes: 1, closed: null });
    expect(c.send('\n')).toMatchObject({ text: 'c\n', writes: 1 });
    // Cut anywhere, the bytes are the same.
    expect(Buffer.from(m.connect().sendInPieces(input)).toString()).toBe(input);
  });

  it('a tcpmod.send keeps its place: what was answered before it goes first, in its own write', async () => {
    const m = await loadModule(await fixture('oneline'));
    const c = m.connect();
    const r = c.send('a\nb\nSx\nc\nd\n');
    expect(r.text).toBe('a\nb\nSx\nc\nd\n');
    expect(r.writes).toBe(3); // "a\nb\n", then the tcpmod.send, then "c\nd\n"
    expect(c.send('Sy\nSz\n')).toMatchObject({ text: 'Sy\nSz\n', writes: 2 });
    expect(c.send('e\nSw\n')).toMatchObject({ text: 'e\nSw\n', writes: 2 });
  });

  it('CLOSE after pipelined replies: all of them and the last in one write; ABORT drops only its own reply', async () => {
    const m = await loadModule(await fixture('oneline'));
    expect(m.connect().send('a\nb\nQ\nc\n')).toMatchObject({ text: 'a\nb\nQ\n', writes: 1, closed: 'module' });
    expect(m.connect().send('a\nb\nA\nc\n')).toMatchObject({ text: 'a\nb\n', writes: 1, closed: 'module' });
    expect(m.connect().send('A\nb\n')).toMatchObject({ text: '', writes: 0, closed: 'module' });
    // EOF with lines pending: each is answered, in one write, and the peer closed it.
    expect(m.connect().send('a\nb\n', { eof: true })).toMatchObject({ text: 'a\nb\n', writes: 1, closed: 'peer' });
  });

  it('echo, http and resp answer 16 pipelined requests in one write', async () => {
    const echo = (await loadModule('build/echo.wasm')).connect();
    expect(echo.send(lines(16))).toMatchObject({ text: lines(16), writes: 1 });

    const http = (await loadModule('build/http.wasm')).connect();
    const get = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n';
    const r = http.send(get.repeat(16));
    expect(r.text.split('HTTP/1.1 200 OK').length - 1).toBe(16);
    expect(r.writes).toBe(1);

    const resp = (await loadModule('build/resp.wasm')).connect();
    const cmds = Array.from({ length: 16 }, (_, i) => `*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${String(i).length}\r\n${i}\r\n`).join('');
    expect(resp.send(cmds)).toMatchObject({ text: '+OK\r\n'.repeat(16), writes: 1 });
    expect(resp.send('*2\r\n$3\r\nGET\r\n$1\r\nk\r\n'.repeat(16))).toMatchObject({ text: '$2\r\n15\r\n'.repeat(16), writes: 1 });
  });
});
