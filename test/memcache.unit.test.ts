// memcache.wasm (the memcached text protocol) through tcpmod/testing: exact
// replies as memcached words them, exptime on the fake clock, the data of a
// refused item skipped, and every script split at every byte boundary.
import { beforeEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { loadModule, type LoadedModule } from '../host/testing.js';
import { ROOT } from './fixtures.js';

const MODULE = join(ROOT, 'build', 'memcache.wasm');
const T0 = 1_800_000_000_000; // the fake clock's start, ms since the epoch

let m: LoadedModule;
beforeEach(async () => {
  m = await loadModule(MODULE, { now: T0 });
});

/** The reply to `input` on a fresh connection. */
const ask = (input: string) => m.connect().send(input).text;

describe('memcache.wasm', () => {
  it('storage and retrieval commands, with memcached\'s exact replies', () => {
    const c = m.connect();
    const say = (s: string) => c.send(s).text;
    expect(say('set a 5 0 3\r\nabc\r\n')).toBe('STORED\r\n');
    expect(say('get a\r\n')).toBe('VALUE a 5 3\r\nabc\r\nEND\r\n');
    expect(say('get a missing a\r\n')).toBe('VALUE a 5 3\r\nabc\r\nVALUE a 5 3\r\nabc\r\nEND\r\n');
    expect(say('add a 0 0 1\r\nx\r\n')).toBe('NOT_STORED\r\n');
    expect(say('add b 1 0 1\r\nx\r\n')).toBe('STORED\r\n');
    expect(say('replace nope 0 0 1\r\nx\r\n')).toBe('NOT_STORED\r\n');
    expect(say('replace b 2 0 2\r\nyy\r\n')).toBe('STORED\r\n');
    expect(say('append a 9 0 2\r\nde\r\n')).toBe('STORED\r\n');
    expect(say('prepend a 9 0 2\r\n__\r\n')).toBe('STORED\r\n');
    expect(say('get a b\r\n')).toBe('VALUE a 5 7\r\n__abcde\r\nVALUE b 2 2\r\nyy\r\nEND\r\n');
    expect(say('append none 0 0 1\r\nx\r\n')).toBe('NOT_STORED\r\n');
    expect(say('prepend none 0 0 1\r\nx\r\n')).toBe('NOT_STORED\r\n');
    const gets = say('gets a\r\n');
    const cas = /^VALUE a 5 7 (\d+)\r\n__abcde\r\nEND\r\n$/.exec(gets)![1];
    expect(say(`cas a 0 0 1 ${BigInt(cas) + 1n}\r\nz\r\n`)).toBe('EXISTS\r\n');
    expect(say(`cas a 7 0 1 ${cas}\r\nz\r\n`)).toBe('STORED\r\n');
    expect(say(`cas a 7 0 1 ${cas}\r\nw\r\n`)).toBe('EXISTS\r\n');
    expect(say('cas nope 0 0 1 1\r\nz\r\n')).toBe('NOT_FOUND\r\n');
    expect(say('get a\r\n')).toBe('VALUE a 7 1\r\nz\r\nEND\r\n');
    expect(say('delete a\r\n')).toBe('DELETED\r\n');
    expect(say('delete a\r\n')).toBe('NOT_FOUND\r\n');
    expect(say('set n 0 0 2\r\n10\r\n')).toBe('STORED\r\n');
    expect(say('incr n 5\r\n')).toBe('15\r\n');
    expect(say('decr n 100\r\n')).toBe('0\r\n');
    expect(say('incr n 18446744073709551615\r\n')).toBe('18446744073709551615\r\n');
    expect(say('incr n 2\r\n')).toBe('1\r\n'); // wraps at 2^64, as memcached
    expect(say('incr nope 1\r\n')).toBe('NOT_FOUND\r\n');
    expect(say('incr b 1\r\n')).toBe('CLIENT_ERROR cannot increment or decrement non-numeric value\r\n');
    expect(say('incr n -1\r\n')).toBe('CLIENT_ERROR invalid numeric delta argument\r\n');
    expect(say('set q 0 0 1 noreply\r\nq\r\nincr n 1 noreply\r\ndelete q noreply\r\nget q\r\n')).toBe('END\r\n');
    expect(say('version\r\n')).toBe('VERSION 1.6.21-tcpmod\r\n');
    expect(say('verbosity 1\r\nverbosity\r\nverbosity noreply\r\n')).toBe('OK\r\nERROR\r\n');
    expect(say('bogus\r\n')).toBe('ERROR\r\n');
    expect(say('set k 0 0 notanumber\r\n')).toBe('CLIENT_ERROR bad command line format\r\n');
    expect(say(`get ${'k'.repeat(251)}\r\n`)).toBe('CLIENT_ERROR bad command line format\r\n');
    // As memcached 1.6: the 4 bytes after the line are taken as the data; the \n left over is an empty command.
    expect(say('set k 0 0 2\r\nabc\r\n')).toBe('CLIENT_ERROR bad data chunk\r\nERROR\r\n');
    expect(say('get k\r\n')).toBe('END\r\n');
    expect(say('flush_all\r\nget b\r\n')).toBe('OK\r\nEND\r\n');
    expect(c.send('quit\r\n').closed).toBe('module');
  });

  it('exptime as memcached reads it: relative seconds up to 30 days, a Unix time beyond, negative already gone; touch and gat', () => {
    const c = m.connect();
    const say = (s: string) => c.send(s).text;
    expect(say('set r 0 10 1\r\nr\r\n')).toBe('STORED\r\n');
    expect(say(`set u 0 ${T0 / 1000 + 100} 1\r\nu\r\n`)).toBe('STORED\r\n');
    expect(say('set n 0 -1 1\r\nn\r\n')).toBe('STORED\r\n');
    expect(say('get n\r\n')).toBe('END\r\n');
    m.clock.advance(10_000);
    expect(say('get r u\r\n')).toBe('VALUE r 0 1\r\nr\r\nVALUE u 0 1\r\nu\r\nEND\r\n');
    m.clock.advance(1);
    expect(say('get r\r\n')).toBe('END\r\n');
    expect(say('touch u 50\r\ntouch r 50\r\n')).toBe('TOUCHED\r\nNOT_FOUND\r\n');
    m.clock.advance(49_000);
    expect(say('gat 0 u\r\n')).toBe('VALUE u 0 1\r\nu\r\nEND\r\n'); // 0: never expires from now on
    m.clock.advance(3_600_000);
    const gats = say('gats 5 u\r\n');
    expect(gats).toMatch(/^VALUE u 0 1 \d+\r\nu\r\nEND\r\n$/);
    m.clock.advance(5_001);
    expect(say('get u\r\n')).toBe('END\r\n');
  });

  it('flush_all with a delay flushes when its timer fires', () => {
    const c = m.connect();
    expect(c.send('set a 0 0 1\r\na\r\nflush_all 2\r\nget a\r\n').text).toBe('STORED\r\nOK\r\nVALUE a 0 1\r\na\r\nEND\r\n');
    m.clock.advance(2000);
    expect(c.send('get a\r\n').text).toBe('END\r\n');
  });

  it('an item over 1 MiB: SERVER_ERROR object too large for cache, its data skipped however it arrives', () => {
    const c = m.connect();
    const big = 1024 * 1024 + 1;
    expect(c.send(`set big 0 0 ${big}\r\n${'x'.repeat(1000)}`).text).toBe('SERVER_ERROR object too large for cache\r\n');
    expect(c.send('x'.repeat(big - 1000)).text).toBe('');
    expect(c.send('\r\nget big\r\nset ok 0 0 1048576\r\n').text).toBe('END\r\n');
    expect(c.send(`${'y'.repeat(1048576)}\r\nget ok\r\n`).text.slice(0, 28)).toBe('STORED\r\nVALUE ok 0 1048576\r\n');
  });

  it('answers alike however the input is split, at every byte boundary', () => {
    const script = 'set a 1 0 3\r\nabc\r\nget a b\r\nadd a 0 0 1 noreply\r\nx\r\nappend a 0 0 2\r\nde\r\nprepend a 0 0 1\r\n<\r\n'
      + 'incr c 1\r\nset c 0 0 1\r\n7\r\nincr c 5\r\ndecr c 3\r\ngets a\r\ntouch a 100\r\ndelete a\r\ndelete a noreply\r\nbogus\r\n'
      + 'set k 0 0 2\r\nabc\r\nversion\r\nflush_all\r\nget c\r\n';
    const out = m.connect().sendInPieces(script);
    expect(new TextDecoder().decode(out)).toMatch(/^STORED\r\nVALUE a 1 3\r\nabc\r\nEND\r\nSTORED\r\nSTORED\r\nNOT_FOUND\r\nSTORED\r\n12\r\n9\r\nVALUE a 1 6 \d+\r\n<abcde\r\nEND\r\nTOUCHED\r\nDELETED\r\nERROR\r\nCLIENT_ERROR bad data chunk\r\nERROR\r\nVERSION 1\.6\.21-tcpmod\r\nOK\r\nEND\r\n$/);
    expect(ask('get a\r\n')).toBe('END\r\n');
  });

  it('items over 16 KiB go out through kv_send: exact replies, in order with small ones, pipelined, and for gets/gat/gats', () => {
    const c = m.connect();
    const big = (n: number, ch: string) => ch.repeat(n);
    const b1 = big(20_000, 'b'), b2 = big(300_000, 'c'), small = 'tiny';
    expect(c.send(`set b1 3 0 ${b1.length}\r\n${b1}\r\nset b2 4 0 ${b2.length}\r\n${b2}\r\nset s 5 0 4\r\n${small}\r\n`).text).toBe('STORED\r\nSTORED\r\nSTORED\r\n');
    // Two requests in one input: the big values sent by the host and the small ones written by the module stay in order.
    const r = c.send('get s b1 nope b2 s\r\nget b1\r\n');
    expect(r.text).toBe(`VALUE s 5 4\r\n${small}\r\nVALUE b1 3 20000\r\n${b1}\r\nVALUE b2 4 300000\r\n${b2}\r\nVALUE s 5 4\r\n${small}\r\nEND\r\n`
      + `VALUE b1 3 20000\r\n${b1}\r\nEND\r\n`);
    const gets = c.send('gets b2\r\n').text;
    const cas = /^VALUE b2 4 300000 (\d+)\r\n/.exec(gets)![1];
    expect(gets).toBe(`VALUE b2 4 300000 ${cas}\r\n${b2}\r\nEND\r\n`);
    expect(c.send(`gats 100 b2\r\n`).text).toBe(`VALUE b2 4 300000 ${cas}\r\n${b2}\r\nEND\r\n`);
    expect(c.send(`gat 0 b1\r\n`).text).toBe(`VALUE b1 3 20000\r\n${b1}\r\nEND\r\n`);
  });

  it('a big item rewritten between the header read and kv_send: the header and data sent are of one version', () => {
    const c = m.connect();
    const v1 = 'a'.repeat(40_000), v2 = 'z'.repeat(50_000);
    expect(c.send(`set k 1 0 ${v1.length}\r\n${v1}\r\n`).text).toBe('STORED\r\n');
    let rewrites = 0;
    // The harness asks this before each store call: rewrite the item once, right after the module read its header.
    m.kv.unavailable = (op, key) => {
      if (op === 'get_range' && key === 'mc:k' && rewrites++ === 1) {
        const item = new Uint8Array(4 + v2.length);
        new DataView(item.buffer).setUint32(0, 2, true);
        item.set(new TextEncoder().encode(v2), 4);
        m.kv.set('mc:k', item);
      }
      return false;
    };
    expect(c.send('get k\r\n').text).toBe(`VALUE k 2 50000\r\n${v2}\r\nEND\r\n`);
    expect(rewrites).toBeGreaterThan(2);
  });

  it('a number past i64 (or past its field: flags over 32 bits, a length over 2^31 - 3) is refused with memcached\'s error, never wrapped, at every split', () => {
    const script: [string, string][] = [
      ['set n 0 0 1\r\n5\r\n', 'STORED\r\n'],
      ['set k 0 0 18446744073709551619\r\nabc\r\n', 'CLIENT_ERROR bad command line format\r\nERROR\r\n'],
      ['set k 0 0 9223372036854775808\r\n', 'CLIENT_ERROR bad command line format\r\n'],
      ['set k 0 0 4294967298\r\n', 'CLIENT_ERROR bad command line format\r\n'],
      ['set k 0 9223372036854775808 1\r\nx\r\n', 'CLIENT_ERROR bad command line format\r\nERROR\r\n'],
      ['set k 0 -9223372036854775809 1\r\nx\r\n', 'CLIENT_ERROR bad command line format\r\nERROR\r\n'],
      ['set k 4294967296 0 1\r\nx\r\n', 'CLIENT_ERROR bad command line format\r\nERROR\r\n'],
      ['set k 18446744073709551616 0 1\r\nx\r\n', 'CLIENT_ERROR bad command line format\r\nERROR\r\n'],
      ['cas n 0 0 1 18446744073709551616\r\nx\r\n', 'CLIENT_ERROR bad command line format\r\nERROR\r\n'],
      ['touch n 99999999999999999999\r\n', 'CLIENT_ERROR invalid exptime argument\r\n'],
      ['gat 9223372036854775808 n\r\n', 'CLIENT_ERROR invalid exptime argument\r\n'],
      ['incr n 18446744073709551616\r\n', 'CLIENT_ERROR invalid numeric delta argument\r\n'],
      ['decr n 99999999999999999999\r\n', 'CLIENT_ERROR invalid numeric delta argument\r\n'],
      ['flush_all 9223372036854775808\r\n', 'CLIENT_ERROR bad command line format\r\n'],
      // The largest exptime is a time ~292 billion years away: kept (the store's longest TTL), not wrapped into the past.
      ['set far 1 9223372036854775807 2\r\nok\r\n', 'STORED\r\n'],
      ['set neg 1 -9223372036854775808 2\r\nno\r\n', 'STORED\r\n'],
      ['get far neg n\r\n', 'VALUE far 1 2\r\nok\r\nVALUE n 0 1\r\n5\r\nEND\r\n'],
    ];
    const input = script.map(([i]) => i).join('');
    const want = script.map(([, o]) => o).join('');
    expect(m.connect().send(input).text).toBe(want);
    m.kv.clear();
    expect(new TextDecoder().decode(m.connect().sendInPieces(input))).toBe(want);
    expect(m.kv.ttl('mc:far')).toBe(2 ** 46);
  });
});
