// build/http.wasm through the socket-free harness (run `npm run build:wasm` first):
// GET /whoami answers the client's address (tcpmod.peer_addr, ABI v1.1; the
// harness answers h.peerAddress), and the /kv/ routes answer 503 when the store
// is unavailable (ABI v1.1: every kv function may return -3). The harness runs
// the real native store, so an outage is made by replacing the native kv calls
// the instance makes with ones that answer -3, as a Redis-backed store does
// when Redis is down. Every input is fed at every split point as well.
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { native } from '../host/sys.js';
import { loadHarness, runSplit, splitPlans, type Harness } from '../host/testing.js';

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => Buffer.from(b).toString('latin1');
/** The output with every Date value masked (the module writes the current time). */
const masked = (b: Uint8Array) => text(b).replace(/Date: [^\r\n]*GMT\r\n/g, 'Date: <date>\r\n');

let h: Harness;
beforeAll(async () => {
  h = await loadHarness('build/http.wasm');
});
beforeEach(() => {
  native.kvClear();
  h.peerAddress = '127.0.0.1:40000';
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** A response as http.wasm writes it (Server, Date, then the rest in its order). */
function response(status: string, headers: string[], body = ''): string {
  return [`HTTP/1.1 ${status}`, 'Server: tcpmod', 'Date: <date>', ...headers, '', body].join('\r\n');
}

/** Feeds `input` at every split and returns the one output they all gave (masked). */
function everySplit(input: string, setup: () => void = () => native.kvClear()): string {
  const b = bytes(input);
  let first: string | null = null;
  for (const cuts of splitPlans(b.length)) {
    setup();
    const { output, closed } = runSplit(h, b, cuts);
    expect(closed, `cuts ${cuts.join(',')}`).toBeNull();
    const out = masked(output);
    if (first === null) first = out;
    else expect(out, `cuts ${cuts.join(',')}`).toBe(first);
  }
  expect(h.faults).toBe(0);
  return first!;
}

describe('http.wasm: GET /whoami', () => {
  it("answers the client's address (IPv4 and IPv6), HEAD without the body, at every split", () => {
    for (const addr of ['203.0.113.7:51234', '[2001:db8::1]:443']) {
      h.peerAddress = addr;
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

/** Every native kv call answers -3 (store unavailable, nothing changed). */
function outage(): void {
  for (const name of ['kvGet', 'kvSet', 'kvDel', 'kvIncr'] as const) vi.spyOn(native, name).mockReturnValue(-3);
}

const UNAVAILABLE = response('503 Service Unavailable', ['Content-Type: text/plain', 'Content-Length: 20'], 'Service Unavailable\n');

describe('http.wasm with a store that is unavailable (kv -3)', () => {
  it('answers every /kv/ route 503 and keeps the connection', () => {
    const out = everySplit(
      'GET /kv/a HTTP/1.1\r\nHost: x\r\n\r\n' +
        'HEAD /kv/a HTTP/1.1\r\nHost: x\r\n\r\n' +
        'PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nnew' +
        'DELETE /kv/a HTTP/1.1\r\nHost: x\r\n\r\n' +
        'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
      outage,
    );
    const headOnly = UNAVAILABLE.slice(0, UNAVAILABLE.indexOf('\r\n\r\n') + 4);
    expect(out).toBe(UNAVAILABLE + headOnly + UNAVAILABLE + UNAVAILABLE +
      response('200 OK', ['Content-Type: text/plain', 'Content-Length: 13'], 'Hello, World!'));
  });

  it('changes nothing while the store is down, and serves the stored value once it is back', () => {
    const { conn } = h.open();
    expect(masked(conn.feed('PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nold').output)).toContain('201 Created');
    outage();
    // A PUT whose look-up works but whose write fails is a 503 too.
    vi.mocked(native.kvGet).mockRestore();
    const down = masked(conn.feed('PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nnew' + 'DELETE /kv/a HTTP/1.1\r\nHost: x\r\n\r\n').output);
    expect(down).toBe(UNAVAILABLE + UNAVAILABLE);
    vi.restoreAllMocks();
    const back = masked(conn.feed('GET /kv/a HTTP/1.1\r\nHost: x\r\n\r\n').output);
    expect(back).toBe(response('200 OK', ['Content-Type: application/octet-stream', 'Content-Length: 3'], 'old'));
  });
});
