// What the tests of the native shim's sockets and TLS set up again and again
// (tls-native, native-phases): listening sockets, accepted descriptors, TLS
// contexts from the test certificates and client sockets, each remembered and
// released by release() (call it in afterEach, after the file's own clean-up).
import { readFileSync } from 'node:fs';
import type net from 'node:net';
import { expect } from 'vitest';
import { check, native } from '../host/sys.js';
import type { TestCerts } from './tls-certs.js';
import { until } from './wait.js';

const T = native as any; // tlsContextCreate/Free are not in native.d.ts

export interface NativeFixture {
  /** Descriptors to close in release(). */
  fds: number[];
  /** Client sockets to destroy in release(). */
  sockets: net.Socket[];
  /** TLS contexts to free in release(). */
  contexts: number[];
  /** A listening socket on 127.0.0.1, port chosen by the kernel. */
  listener(): { fd: number; port: number };
  /** The next connection accepted on `lfd` (waits up to 5 s); closed in release() unless `keep`. */
  acceptOne(lfd: number, keep?: boolean): Promise<number>;
  /** A native TLS server context with the test server's chain and key (`opts` over the defaults). */
  context(opts?: Record<string, unknown>): number;
  release(): void;
}

export function nativeFixture(certs: TestCerts): NativeFixture {
  const fds: number[] = [];
  const sockets: net.Socket[] = [];
  const contexts: number[] = [];
  return {
    fds,
    sockets,
    contexts,
    listener() {
      const fd = check(native.listenTcp('127.0.0.1', 0, 16), 'listen');
      fds.push(fd);
      const name = native.sockName(fd);
      if (typeof name === 'number') throw new Error('sockName failed');
      return { fd, port: name.port };
    },
    async acceptOne(lfd, keep = false) {
      // Boxed: until waits for a truthy result, and descriptor 0 is a descriptor.
      const { fd } = await until(() => {
        const c = native.accept(lfd);
        return c >= 0 ? { fd: c } : null;
      }, 5000, 'accept', 1);
      if (!keep) fds.push(fd);
      return fd;
    },
    context(opts = {}) {
      const id = T.tlsContextCreate({
        cert: readFileSync(certs.serverChain, 'utf8'), key: readFileSync(certs.serverKey, 'utf8'), clientAuth: 'none', minVersion: '1.2', alpn: [], ...opts,
      });
      expect(typeof id, String(id)).toBe('number');
      contexts.push(id);
      return id;
    },
    release() {
      while (sockets.length) sockets.pop()!.destroy();
      while (fds.length) native.close(fds.pop()!);
      while (contexts.length) T.tlsContextFree(contexts.pop());
    },
  };
}
