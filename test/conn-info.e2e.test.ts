// tcpmod.conn_info (ABI v1.1): what a module can learn about its connection's
// transport — plain TCP or TLS, the ALPN protocol, a client certificate — over
// real sockets with the TLS options, and in the socket-free harness.
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type TcpmodServer } from '../dist/index.js';
import { loadModule } from '../host/testing.js';
import { fixture } from './fixtures.js';
import { open } from './net-client.js';
import { makeTestCerts, type TestCerts } from './tls-certs.js';

let certs: TestCerts;
beforeAll(() => {
  certs = makeTestCerts();
});
afterAll(() => certs?.remove());

async function serve(opts: object): Promise<{ server: TcpmodServer; port: number }> {
  const server = createServer({ module: await fixture('conninfo'), port: 0, threads: 1, logLevel: 'silent', ...opts });
  const { port } = await server.listen();
  return { server, port };
}

describe('tcpmod.conn_info', () => {
  it('says plain TCP, no ALPN, no certificate, and refuses another id, an unknown key and a short buffer', async () => {
    const { server, port } = await serve({});
    try {
      const s = await open(port);
      s.write('?');
      const [line] = await once(s, 'data');
      expect(String(line)).toBe('0::0:n:n:0\n'); // empty ALPN fits any buffer: 0
      s.destroy();
    } finally {
      await server.close({ drainTimeout: 0 });
    }
  });

  it('says TLS, the negotiated ALPN protocol and the client certificate under mutual TLS', async () => {
    const { server, port } = await serve({
      tlsCert: certs.serverChain, tlsKey: certs.serverKey, tlsCa: certs.caCert, tlsClientAuth: 'request', alpn: 'x-demo,http/1.1',
    });
    try {
      const ask = async (withCert: boolean): Promise<string> => {
        const s = tlsConnect({
          port, host: '127.0.0.1', servername: 'localhost', ca: readFileSync(certs.caCert), ALPNProtocols: ['http/1.1'],
          ...(withCert ? { cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) } : {}),
        });
        await once(s, 'secureConnect');
        s.write('?');
        const [line] = await once(s, 'data');
        s.destroy();
        return String(line);
      };
      expect(await ask(false)).toBe('1:http/1.1:0:n:n:n\n');
      expect(await ask(true)).toBe('1:http/1.1:1:n:n:n\n');
    } finally {
      await server.close({ drainTimeout: 0 });
    }
  });

  it('is listed by tcpmod inspect as a v1.1 addition', async () => {
    const { inspectModule } = await import('../dist/inspect.js');
    expect(await inspectModule(await fixture('conninfo'), { memoryCap: 32 << 20 })).toMatch(/^v1\.1:\s+tcpmod\.conn_info$/m);
    expect(await inspectModule('build/echo.wasm', { memoryCap: 32 << 20 })).toMatch(/^v1\.1:\s+none$/m);
  });

  it('says plain TCP in the socket-free harness', async () => {
    const m = await loadModule(await fixture('conninfo'));
    expect(m.connect().send('?').text).toBe('0::0:n:n:0\n');
  });
});
