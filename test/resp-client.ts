// RESP2 as a test client writes and reads it over a real socket: the command
// builder (an array of bulk strings, as redis-cli sends) and a strict reader
// of what a subscriber receives. Shared by the pub/sub tests (resp-pubsub*,
// topics*, upstream-testing).
import type { Socket } from 'node:net';

/** A bulk string; its length is the UTF-8 byte count. */
export const bulk = (s: string): string => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
/** A command: an array of bulk strings. */
export const cmd = (...a: string[]): string => `*${a.length}\r\n${a.map(bulk).join('')}`;

/**
 * A strict RESP2 reader of a subscriber's stream: each item is a whole array of bulk strings (or
 * integers) or a simple/integer reply; anything else (a frame cut by another) sets `error` at once.
 */
export class RespStream {
  items: (string[] | string)[] = [];
  error: Error | null = null;
  private buf: Buffer = Buffer.alloc(0);
  constructor(s: Socket) {
    s.on('data', (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      try {
        this.parse();
      } catch (e) {
        this.error ??= e as Error;
      }
    });
  }
  private line(at: number): [string, number] | null {
    const end = this.buf.indexOf('\r\n', at, 'latin1');
    return end < 0 ? null : [this.buf.toString('latin1', at, end), end + 2];
  }
  private parse(): void {
    let at = 0;
    for (;;) {
      const head = this.line(at);
      if (!head) break;
      const [h, next] = head;
      if (h[0] === ':' || h[0] === '+') {
        this.items.push(h);
        at = next;
        continue;
      }
      if (h[0] !== '*') throw new Error(`not a RESP frame at ${JSON.stringify(this.buf.toString('latin1', at, at + 40))}`);
      const n = Number(h.slice(1));
      const parts: string[] = [];
      let p = next;
      let whole = true;
      for (let i = 0; i < n; i++) {
        const l = this.line(p);
        if (!l) { whole = false; break; }
        if (l[0][0] === ':') { parts.push(l[0]); p = l[1]; continue; }
        if (l[0][0] !== '$') throw new Error(`bulk expected, got ${JSON.stringify(l[0])}`);
        const len = Number(l[0].slice(1));
        if (this.buf.length < l[1] + len + 2) { whole = false; break; }
        if (this.buf.toString('latin1', l[1] + len, l[1] + len + 2) !== '\r\n') throw new Error('bulk not ended by CRLF');
        parts.push(this.buf.toString('latin1', l[1], l[1] + len));
        p = l[1] + len + 2;
      }
      if (!whole) break;
      this.items.push(parts);
      at = p;
    }
    this.buf = this.buf.subarray(at);
  }
}
