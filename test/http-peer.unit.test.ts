// build/http.wasm through the socket-free harness (run `npm run build:wasm` first):
// GET /whoami answers the client's address (tcpmod.peer_addr, ABI v1.1; the
// harness answers m.peerAddress), and the /kv/ routes answer 503 when the store
// is unavailable (ABI v1.1: every kv function may return -3, as a Redis-backed
// store does when Redis is down): m.kv.unavailable makes the module's kv calls
// answer -3, all of them or the ones a function picks. Every input is sent at
// every split point as well.
import { beforeEach, describe, expect, it } from 'vitest';
import { loadModule, type LoadedModule } from '../host/testing.js';

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => Buffer.from(b).toString('latin1');
/** The output with every Date value masked (the module writes the current time). */
const masked = (b: Uint8Array) => text(b).replace(/Date: [^\r\n]*GMT\r\n/g, 'Date: <date>\r\n');

let m: LoadedModule;
beforeEach(async () => {
  // A fresh module each test: an empty store of its own that is up, the default address, no faults.
  m = await loadModule('build/http.wasm');
});

/** A response as http.wasm writes it (Server, Date, then the rest in its order). */
function response(status: string, headers: string[], body = ''): string {
  return [`HTTP/1.1 ${status}`, 'Server: tcpmod', 'Date: <date>', ...headers, '', body].join('\r\n');
}

/**
 * Sends `input` on a fresh connection at every split (sendInPieces: every split, from the
 * store as it was, must give what the whole input gives) and returns that output (masked);
 * the connection must stay open and nothing fault.
 */
function everySplit(input: string): string {
  const c = m.connect();
  const out = masked(c.sendInPieces(bytes(input)));
  expect(c.closed).toBeNull();
  expect(m.faults).toEqual([]);
  return out;
}

describe('http.wasm: GET /whoami', () => {
  it("answers the client's address (IPv4 and IPv6), HEAD without the body, at every split", () => {
    for (const addr of ['203.0.113.7:51234', '[2001:db8::1]:443']) {
      m.peerAddress = addr;
      const out = everySplit('GET /whoami HTTP/1.1\r\nHost: x\r\n\r\nHEAD /whoami?x=1 HTTP/1.1\r\nHost: x\r\n\r\n');
      const head = ['Content-Type: text/plain', `Content-Length: ${addr.length + 1}`];
      expect(out).toBe(response('200 OK', head, `${addr}\n`) + response('200 OK', head));
    }
  });

  it('refuses other methods with 405 and Allow', () => {
    const out = everySplit('POST /whoami HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n');
    expect(out).toBe(response('405 Method Not Allowed', ['Content-Type: text/plain', 'Content-Length: 19', 'Allow: GET, HEAD'], 'Method Not Allowed\n'));
  });
});

const UNAVAILABLE = response('503 Service Unavailable', ['Content-Type: text/plain', 'Content-Length: 20'], 'Service Unavailable\n');

describe('http.wasm with a store that is unavailable (kv -3)', () => {
  it('answers every /kv/ route 503 and keeps the connection', () => {
    m.kv.set('a', 'old');
    m.kv.unavailable = true;
    const out = everySplit(
      'GET /kv/a HTTP/1.1\r\nHost: x\r\n\r\n' +
        'HEAD /kv/a HTTP/1.1\r\nHost: x\r\n\r\n' +
        'PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nnew' +
        'DELETE /kv/a HTTP/1.1\r\nHost: x\r\n\r\n' +
        'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
    );
    const headOnly = UNAVAILABLE.slice(0, UNAVAILABLE.indexOf('\r\n\r\n') + 4);
    expect(out).toBe(UNAVAILABLE + headOnly + UNAVAILABLE + UNAVAILABLE +
      response('200 OK', ['Content-Type: text/plain', 'Content-Length: 13'], 'Hello, World!'));
    expect(m.kv.keys()).toEqual(['a']);
    expect(m.kv.get('a')).toBe('old');
  });

  it('changes nothing while the store is down, and serves the stored value once it is back', () => {
    const conn = m.connect();
    expect(masked(conn.send('PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nold').output)).toContain('201 Created');
    // A PUT whose look-up works but whose write fails is a 503 too.
    m.kv.unavailable = (op) => op !== 'get';
    const down = masked(conn.send('PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nnew' + 'DELETE /kv/a HTTP/1.1\r\nHost: x\r\n\r\n').output);
    expect(down).toBe(UNAVAILABLE + UNAVAILABLE);
    m.kv.unavailable = false;
    const back = masked(conn.send('GET /kv/a HTTP/1.1\r\nHost: x\r\n\r\n').output);
    expect(back).toBe(response('200 OK', ['Content-Type: application/octet-stream', 'Content-Length: 3'], 'old'));
  });
});
