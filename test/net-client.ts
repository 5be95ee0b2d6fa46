// Small socket clients for end-to-end tests.
import { connect, type Socket } from 'node:net';

/**
 * The sockets a test file opens, destroyed together after each test. track()
 * also swallows their errors: a reset or a cut is what many tests provoke, and
 * an unhandled 'error' would fail the file instead of the test's own checks.
 */
export function socketSet(): { track<S extends Socket>(s: S): S; untrack(s: Socket): void; destroyAll(): void } {
  const sockets = new Set<Socket>();
  return {
    track<S extends Socket>(s: S): S {
      sockets.add(s);
      s.on('error', () => undefined);
      return s;
    },
    untrack(s: Socket): void {
      sockets.delete(s);
    },
    destroyAll(): void {
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
  };
}

export function open(port: number, host = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host, noDelay: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Collects bytes from a socket until `n` have arrived (or the socket ends). */
export function readBytes(s: Socket, n: number, timeoutMs = 20_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let have = 0;
    const timer = setTimeout(() => finish(new Error(`timed out with ${have} of ${n} bytes`)), timeoutMs);
    const onData = (d: Buffer) => {
      chunks.push(d);
      have += d.length;
      if (have >= n) finish();
    };
    const onEnd = () => finish(have >= n ? undefined : new Error(`socket ended after ${have} of ${n} bytes`));
    function finish(err?: Error) {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('end', onEnd);
      s.off('close', onEnd);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks));
    }
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('close', onEnd);
    s.resume(); // a socket paused on purpose does not flow again just because a listener was added
  });
}

/** Resolves when the peer closes the connection (end or close), with the bytes that came before. */
export function untilClosed(s: Socket, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => reject(new Error('connection was not closed')), timeoutMs);
    s.on('data', (d) => chunks.push(d));
    s.once('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    s.on('error', () => undefined);
  });
}

export function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 255;
  }
  return b;
}

/** A connection whose replies are collected as text; see textConn(). */
export interface TextConn {
  /** Everything received so far. */
  readonly text: string;
  write(data: string): void;
  /** Resolves once done(text) holds; throws (with the text so far) when the connection closes first or after timeoutMs. */
  until(done: (text: string) => boolean, timeoutMs?: number): Promise<void>;
  destroy(): void;
}

/** Opens a connection to a line protocol's server and collects its replies as text. */
export async function textConn(port: number, host = '127.0.0.1'): Promise<TextConn> {
  const s = await open(port, host);
  let text = '';
  let wake: (() => void) | null = null;
  s.on('data', (d) => {
    text += d;
    wake?.();
  });
  s.on('close', () => wake?.());
  return {
    get text() {
      return text;
    },
    write: (data) => void s.write(data),
    async until(done, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (!done(text)) {
        if (s.destroyed || Date.now() > deadline) throw new Error(`got ${JSON.stringify(text)}`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 100);
        });
        wake = null;
      }
    },
    destroy: () => void s.destroy(),
  };
}

/** Lines as they arrive on s (latin1), complete ones only: the array grows as data comes. */
export function lines(s: Socket): string[] {
  const got: string[] = [];
  let rest = '';
  s.setEncoding('latin1');
  s.on('data', (d: string) => {
    const parts = (rest + d).split('\n');
    rest = parts.pop()!;
    got.push(...parts);
  });
  return got;
}
