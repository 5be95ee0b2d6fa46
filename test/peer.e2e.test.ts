// Past one process: SO_REUSEPORT shares a port between servers, and
// tcpmod.peer_addr (ABI v1.1) tells a module who its client is.
import { once } from 'node:events';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createServer } from '../dist/index.js';
import { loadModule } from '../host/testing.js';
import { fixture } from './fixtures.js';

async function ask(port: number, host: string, localAddress?: string): Promise<{ reply: string; localPort: number }> {
  const s = connect({ port, host, localAddress });
  await once(s, 'connect');
  s.write('?');
  const [d] = await once(s, 'data');
  const localPort = s.localPort!;
  s.destroy();
  return { reply: String(d), localPort };
}

describe('tcpmod.peer_addr', () => {
  it('gives the client address as IP:PORT and [IPv6]:PORT, and refuses a buffer too small', async () => {
    const v4 = createServer({ module: await fixture('peer'), port: 0, threads: 1, logLevel: 'silent' });
    const { port } = await v4.listen();
    const v6 = createServer({ module: await fixture('peer'), host: '::1', port: 0, threads: 1, logLevel: 'silent' });
    const { port: port6 } = await v6.listen();
    try {
      const a = await ask(port, '127.0.0.1', '127.0.0.2');
      expect(a.reply).toBe(`127.0.0.2:${a.localPort}\nn`);
      const b = await ask(port6, '::1');
      expect(b.reply).toBe(`[::1]:${b.localPort}\nn`);
    } finally {
      await v4.close({ drainTimeout: 0 });
      await v6.close({ drainTimeout: 0 });
    }
  });

  it('answers what the harness is told in the socket-free harness', async () => {
    const m = await loadModule(await fixture('peer'));
    m.peerAddress = '[2001:db8::1]:4242';
    expect(m.connect().send('?').text).toBe('[2001:db8::1]:4242\nn');
  });
});

describe('--reuse-port', () => {
  it('lets two servers share one port, both taking connections; without it the second is refused', async () => {
    const a = createServer({ module: 'build/echo.wasm', port: 0, threads: 1, reusePort: true, logLevel: 'silent' });
    const { port } = await a.listen();
    const b = createServer({ module: 'build/echo.wasm', port, threads: 1, reusePort: true, logLevel: 'silent' });
    await b.listen();
    const c = createServer({ module: 'build/echo.wasm', port, threads: 1, logLevel: 'silent' });
    try {
      await expect(c.listen()).rejects.toMatchObject({ code: 'EADDRINUSE' });
      for (let i = 0; i < 60; i++) {
        const s = connect({ port, host: '127.0.0.1' });
        await once(s, 'connect');
        s.write('x');
        await once(s, 'data');
        s.destroy();
      }
      expect(a.stats().connectionsAccepted).toBeGreaterThan(0);
      expect(b.stats().connectionsAccepted).toBeGreaterThan(0);
      expect(a.stats().connectionsAccepted + b.stats().connectionsAccepted).toBe(60);
    } finally {
      await a.close({ drainTimeout: 0 });
      await b.close({ drainTimeout: 0 });
    }
  });
});
