// build/resp.wasm through the socket-free harness (run `npm run build:wasm` first):
// the client's address in CLIENT INFO / CLIENT LIST (tcpmod.peer_addr, ABI v1.1;
// the harness answers m.peerAddress), and a store that is unavailable (ABI v1.1:
// every kv function may return -3, as a Redis-backed store does when Redis is
// down): m.kv.unavailable makes the module's kv calls answer -3, all of them or
// the ones a function picks (a store that fails part-way through a command).
// Every input is also sent at every split point and must give the same output.
import { beforeEach, describe, expect, it } from 'vitest';
import { loadModule, type KvOp, type LoadedModule, type TestConn } from '../host/testing.js';

const latin1 = (s: string) => Buffer.from(s, 'latin1');
const text = (b: Uint8Array) => Buffer.from(b).toString('latin1');
const mb = (...args: string[]) => `*${args.length}\r\n` + args.map((a) => `$${latin1(a).length}\r\n${a}\r\n`).join('');
const bulk = (s: string) => `$${latin1(s).length}\r\n${s}\r\n`;
const int = (n: number) => `:${n}\r\n`;
const OK = '+OK\r\n';
const PONG = '+PONG\r\n';
const NIL = '$-1\r\n';
const err = (s: string) => `-${s}\r\n`;
const UNAVAILABLE = err('ERR store unavailable');

/** The line CLIENT INFO / CLIENT LIST give for a connection. */
const line = (id: number, addr: string, name: string, cmd: string) =>
  `id=${id} addr=${addr} name=${name} flags=N db=0 cmd=${cmd} user=default resp=2\n`;

let m: LoadedModule;
beforeEach(async () => {
  // A fresh module each test: an empty store of its own that is up, the default address, no faults.
  m = await loadModule('build/resp.wasm');
});

/**
 * Sends `input` on a fresh connection at every split (sendInPieces: every split, from the
 * store as it was, must give what the whole input gives) and checks the output is
 * `expected(conn)` (it may name the connection's id), the connection stays open and nothing faulted.
 */
function everySplit(input: string, expected: (c: TestConn) => string): void {
  const c = m.connect();
  expect(text(c.sendInPieces(latin1(input)))).toBe(expected(c));
  expect(c.closed).toBeNull();
  expect(m.faults).toEqual([]);
}

describe('resp.wasm: CLIENT INFO and CLIENT LIST report the client address', () => {
  it('CLIENT INFO gives id, addr and name the way Redis does (IPv4 and IPv6)', () => {
    for (const addr of ['203.0.113.7:51234', '[2001:db8::1]:6379']) {
      m.peerAddress = addr;
      everySplit('CLIENT INFO\r\n' + mb('CLIENT', 'SETNAME', 'app-1') + mb('client', 'info'), (c) =>
        bulk(line(c.id, addr, '', 'client|info')) + OK + bulk(line(c.id, addr, 'app-1', 'client|info')));
    }
  });

  it('CLIENT LIST lists the calling connection, and filters by TYPE and ID', () => {
    m.peerAddress = '198.51.100.20:40001';
    const addr = m.peerAddress;
    everySplit(
      'CLIENT LIST\r\nCLIENT LIST TYPE normal\r\nCLIENT LIST TYPE pubsub\r\nCLIENT LIST ID 999999999\r\n',
      (c) => bulk(line(c.id, addr, '', 'client|list')).repeat(2) + bulk('') + bulk(''),
    );
    const conn = m.connect();
    expect(conn.send(`CLIENT LIST ID 1 ${conn.id}\r\n`).text).toBe(bulk(line(conn.id, addr, '', 'client|list')));
  });

  it('refuses bad CLIENT LIST filters with the Redis errors', () => {
    everySplit('CLIENT LIST TYPE foo\r\nCLIENT LIST ID abc\r\nCLIENT LIST ID 0\r\nCLIENT LIST FOO\r\nCLIENT LIST TYPE\r\nCLIENT INFO x\r\n', () =>
      err("ERR Unknown client type 'foo'") + err('ERR Invalid client ID') + err('ERR Invalid client ID') + err('ERR syntax error') +
      err('ERR syntax error') + err("ERR wrong number of arguments for 'client|info' command"));
  });

  it('CLIENT HELP mentions INFO and LIST', () => {
    const help = m.connect().send('CLIENT HELP\r\n').text;
    expect(help).toContain('+INFO\r\n');
    expect(help).toMatch(/\+LIST \[TYPE/);
  });
});

/**
 * Makes the store unavailable for the kv calls in `down` (all of them by default): they answer
 * -3 and change nothing. `after` lets the first n of those calls through first (a store that
 * fails in the middle of a command). Returns the number of calls of those kinds made since.
 */
function outage(down: KvOp[] = ['get', 'set', 'del', 'incr'], after = 0): { calls: () => number } {
  let calls = 0;
  m.kv.unavailable = (op) => down.includes(op) && calls++ >= after;
  return { calls: () => calls };
}

describe('resp.wasm with a store that is unavailable (kv -3)', () => {
  it('answers every store command "-ERR store unavailable", keeps the stream framed, and serves other commands', () => {
    const commands = [
      mb('GET', 'k'), mb('SET', 'k', 'v'), mb('SET', 'k', 'v', 'NX', 'GET'), mb('SET', 'k', 'v', 'EX', '100'), mb('DEL', 'k', 'j'),
      mb('EXISTS', 'k'), mb('INCR', 'n'), mb('INCRBY', 'n', '5'), mb('DECR', 'n'), mb('MGET', 'k', 'j'), mb('MSET', 'k', '1', 'j', '2'),
      mb('STRLEN', 'k'), mb('APPEND', 'k', 'x'), mb('TTL', 'k'), mb('PTTL', 'k'), mb('DBSIZE'), mb('FLUSHALL'),
    ];
    m.kv.unavailable = true;
    everySplit('PING\r\n' + commands.join('PING\r\n') + 'PING\r\nCLIENT ID\r\n', (c) =>
      PONG + Array(commands.length).fill(UNAVAILABLE).join(PONG) + PONG + int(c.id));
    expect(m.kv.size).toBe(0);
  });

  it('changes nothing while the store is down, and works again when it is back', () => {
    const conn = m.connect();
    expect(text(conn.send(mb('SET', 'k', 'v') + mb('SET', 'n', '10')).output)).toBe(OK + OK);
    m.kv.unavailable = true;
    expect(text(conn.send(mb('SET', 'k', 'w') + mb('DEL', 'k') + mb('INCR', 'n') + mb('FLUSHALL')).output)).toBe(UNAVAILABLE.repeat(4));
    m.kv.unavailable = false;
    expect(text(conn.send(mb('GET', 'k') + mb('GET', 'n') + mb('INCR', 'n') + mb('DBSIZE')).output)).toBe(bulk('v') + bulk('10') + int(11) + int(2));
  });

  it('fails a command whose store goes down part-way, and does not act on the read it could not make', () => {
    // SET NX on a missing key: one conditional write (kv_set_ex), which finds the store down.
    outage(['set_ex']);
    everySplit(mb('SET', 'k', 'v', 'NX') + mb('PING'), () => UNAVAILABLE + PONG);
    m.kv.unavailable = false;
    const conn = m.connect();
    expect(text(conn.send(mb('EXISTS', 'k')).output)).toBe(int(0));

    // SET NX GET on an existing key whose look-up fails: nothing is written (a missing-looking read is not acted on).
    expect(text(conn.send(mb('SET', 'k', 'old')).output)).toBe(OK);
    outage(['get_ver']);
    expect(text(conn.send(mb('SET', 'k', 'new', 'NX', 'GET')).output)).toBe(UNAVAILABLE);
    m.kv.unavailable = false;
    expect(text(conn.send(mb('GET', 'k')).output)).toBe(bulk('old'));

    // MGET whose second read fails: the first value, already written, is taken back.
    expect(text(conn.send(mb('SET', 'a', 'A') + mb('SET', 'b', 'B')).output)).toBe(OK + OK);
    const o = outage(['get'], 1);
    expect(text(conn.send(mb('MGET', 'a', 'b', 'c') + mb('PING')).output)).toBe(UNAVAILABLE + PONG);
    // Once the store failed, the command made no further store call.
    expect(o.calls()).toBe(2);
    m.kv.unavailable = false;
    expect(text(conn.send(mb('MGET', 'a', 'b', 'c')).output)).toBe('*3\r\n' + bulk('A') + bulk('B') + NIL);
  });

  it('closes the connection when a failed reply has already left (it could not be told from a good one)', () => {
    // A value larger than the 256 KiB out region: the MGET reply spills through tcpmod.send before the second read fails.
    const big = 'x'.repeat(300 * 1024);
    const conn = m.connect();
    expect(text(conn.send(mb('SET', 'big', big)).output)).toBe(OK);
    outage(['get'], 1);
    const r = conn.send(mb('MGET', 'big', 'other') + mb('PING'));
    expect(r.fault).toBeNull();
    expect(r.closed).not.toBeNull();
    expect(text(r.output)).not.toContain(PONG);
    expect(m.faults).toEqual([]);
  });
});
