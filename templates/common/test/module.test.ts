// Unit tests of the module without sockets: tcpmod/testing runs it through the
// same ABI driver as the server, so what passes here behaves the same over TCP.
import { fileURLToPath } from 'node:url';
import { beforeEach, describe, expect, it } from 'vitest';
import { loadModule, type LoadedModule } from 'tcpmod/testing';

const wasm = fileURLToPath(new URL('../build/module.wasm', import.meta.url));
let m: LoadedModule;

beforeEach(async () => {
  m = await loadModule(wasm); // a fresh instance and an empty store for every test
});

describe('the line protocol', () => {
  it('answers PING', () => {
    expect(m.connect().send('PING\n').text).toBe('PONG\n');
  });

  it('keeps values in the shared store, across connections', () => {
    expect(m.connect().send('SET greeting hello\r\n').text).toBe('OK\n');
    expect(m.connect().send('GET greeting\nGET nothing\n').text).toBe('hello\n(nil)\n');
    expect(m.kv.get('greeting')).toBe('hello');
  });

  it('counts with INCR, starting from a preloaded value', () => {
    m.kv.set('visits', '41');
    expect(m.connect().send('INCR visits\n').text).toBe('42\n');
    expect(m.connect().send('SET word abc\nINCR word\n').text).toBe('OK\nERR not an integer\n');
  });

  it('counts lines per connection in the state slot', () => {
    const a = m.connect();
    const b = m.connect();
    a.send('PING\nPING\n');
    b.send('PING\n');
    expect(a.send('SEEN\n').text).toBe('3\n');
    expect(b.send('SEEN\n').text).toBe('2\n');
  });

  it('gives the same answers however TCP splits the input', () => {
    // Every split of the input, on fresh connections: the output must never change.
    const out = m.connect().sendInPieces('SET k v\r\nGET k\nSEEN\nPING\n', { at: 'every' });
    expect(new TextDecoder().decode(out)).toBe('OK\nv\n3\nPONG\n');
  });

  it('closes on QUIT and on a line that is too long', () => {
    const q = m.connect().send('QUIT\nPING\n');
    expect(q.text).toBe('BYE\n');
    expect(q.closed).not.toBeNull();
    const long = m.connect().send('x'.repeat(2000));
    expect(long.text).toBe('ERR line too long\n');
    expect(long.closed).not.toBeNull();
  });
});
