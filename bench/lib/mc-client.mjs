// A minimal memcached text-protocol client for the benchmarks (bench/memcache.mjs):
// one socket, one request at a time, replies read until their terminator.
import net from 'node:net';

export class McClient {
  /** Connects to 127.0.0.1:port. */
  static connect(port) {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('error', reject);
      s.once('connect', () => {
        s.setNoDelay(true);
        resolve(new McClient(s));
      });
    });
  }

  constructor(socket) {
    this.s = socket;
    this.chunks = [];
    this.size = 0;
    this.waiter = null;
    socket.on('data', (d) => {
      this.chunks.push(d);
      this.size += d.length;
      this.waiter?.();
    });
    // A server that closes mid-reply fails the request instead of leaving it waiting.
    socket.on('error', (e) => this.failer?.(e));
    socket.on('close', () => this.failer?.(new Error(`connection closed after ${this.size} bytes of a reply`)));
  }

  /**
   * Sends `req` and resolves with the reply once `done(buffer)` says it is
   * complete; `done` is asked only once `min` bytes are in (joining the chunks
   * on every arrival would copy a 30 MiB reply hundreds of times).
   */
  request(req, done, min = 1) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.size < min) return;
        const buf = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.size);
        this.chunks = [buf];
        if (!done(buf)) return;
        this.chunks = [];
        this.size = 0;
        this.waiter = null;
        resolve(buf);
      };
      this.waiter = check;
      this.failer = reject;
      this.s.write(req);
    });
  }

  /** A reply ending in `tail` (END\r\n of a get: only at the end of a buffer; values may hold it). */
  untilTail(req, tail) {
    const t = Buffer.from(tail);
    return this.request(req, (b) => b.length >= t.length && b.subarray(b.length - t.length).equals(t));
  }

  /** One line reply (STORED, a number, ...). */
  line(req) {
    return this.request(req, (b) => b.length >= 2 && b[b.length - 2] === 13 && b[b.length - 1] === 10).then((b) => b.toString('latin1').trimEnd());
  }

  close() {
    this.s.destroy();
  }
}

/** A get reply of `n` values of `size` bytes each ends after this many bytes (keys of the same length). */
export function getReplyBytes(keys, size, flags = 0) {
  let n = 5; // END\r\n
  for (const k of keys) n += `VALUE ${k} ${flags} ${size}\r\n`.length + size + 2;
  return n;
}
