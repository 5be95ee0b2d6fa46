// TLS to upstreams (--upstream-tls, --upstream-ca; docs/abi.md §16): the byte
// proxy test/fixtures/upstream-proxy.wat in front of redis-server's own TLS
// port. A good CA and name serve redis-cli, a large value both ways; a wrong
// CA, a wrong name and a peer that does not speak TLS each end in FAILED with
// the reason the module reads (conn_info key 4), counted by reason in metrics.
import { writeFileSync } from 'node:fs';
import { createServer as netServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type TcpmodServer } from '../dist/index.js';
import { metricsRegistry } from '../dist/metrics.js';
import { native } from '../host/sys.js';
import { fixture } from './fixtures.js';
import { open, readBytes, untilClosed } from './net-client.js';
import { requireTool, run } from './server-process.js';
import { RedisServer, startTlsRedis, type TlsRedis } from './services.js';
import { makeTestCerts, type TestCerts } from './tls-certs.js';
import { until } from './wait.js';

let certs: TestCerts;
let tlsRedis: TlsRedis | null = null;
let tlsPort = 0;
const plain = new RedisServer();
const servers: TcpmodServer[] = [];
let proxyPath: string;
const tlsCli = (...args: string[]) => tlsRedis!.cli(...args);

beforeAll(async () => {
  await requireTool('redis-server');
  certs = makeTestCerts();
  proxyPath = await fixture('upstream-proxy');
  await plain.start();
  // Bound to two addresses: the certificate names 127.0.0.1 (and localhost), not 127.0.0.2.
  tlsRedis = await startTlsRedis(certs, { bind: '127.0.0.1 127.0.0.2' });
  tlsPort = tlsRedis.tlsPort;
}, 60_000);
afterAll(async () => {
  for (const s of servers) await s.close({ drainTimeout: 0 }).catch(() => undefined);
  await tlsRedis?.kill();
  await plain.kill();
  certs?.remove();
});

async function proxy(upstream: string, extra: Record<string, unknown>): Promise<{ server: TcpmodServer; port: number }> {
  const server = createServer({ module: proxyPath, port: 0, threads: 2, logLevel: 'silent', upstream, ...extra });
  servers.push(server);
  return { server, port: (await server.listen()).port };
}

/** What the proxy answers a client whose upstream cannot be reached: the module's error line with the host's reason. */
async function failure(port: number): Promise<string> {
  const c = await open(port);
  c.write('PING\r\n');
  return (await untilClosed(c)).toString();
}

describe('TLS to an upstream (redis-server --tls-port)', () => {
  it('verified against --upstream-ca and the address: redis-cli works through it, a 300 kB value both ways', async () => {
    const { server, port } = await proxy(`redis=127.0.0.1:${tlsPort}`, { upstreamTls: 'redis', upstreamCa: certs.caCert });
    const script = 'SET tk hello\nGET tk\nINCRBY tn 41\nDEL tk tn\nPING\n';
    const r = await run('redis-cli', ['-p', String(port)], { input: script, timeoutMs: 10_000 });
    expect(r.stdout).toBe('OK\nhello\n41\n2\nPONG\n');
    const big = 'y'.repeat(300_000);
    expect((await run('redis-cli', ['-p', String(port), '-x', 'SET', 'tbig'], { input: big, timeoutMs: 10_000 })).stdout.trim()).toBe('OK');
    expect((await tlsCli('STRLEN', 'tbig')).stdout.trim()).toBe(String(big.length));
    expect((await run('redis-cli', ['-p', String(port), 'GET', 'tbig'], { timeoutMs: 10_000 })).stdout.trim()).toBe(big);
    expect(Object.values(server.stats().moduleFaults).reduce((a, b) => a + b, 0)).toBe(0);
  }, 30_000);

  // Regression: a client's bytes that arrived before the upstream's handshake ended were all queued, and
  // one look then sent one TLS record of them (a partial SSL_write) and waited for an EPOLLOUT edge that
  // never came, the socket not being full: the SET hung. A client that writes its whole command at once,
  // on a fresh connection each time, makes that order (input first, handshake after) the usual one.
  it('a 300 kB SET written at once on connect, 20 times, each on a new upstream: every one answered +OK', async () => {
    const { server, port } = await proxy(`redis=127.0.0.1:${tlsPort}`, { upstreamTls: 'redis', upstreamCa: certs.caCert });
    const value = 'z'.repeat(300_000);
    const command = Buffer.from(`*3\r\n$3\r\nSET\r\n$6\r\ntqueue\r\n$${value.length}\r\n${value}\r\n`);
    for (let i = 0; i < 20; i++) {
      const c = await open(port);
      c.write(command);
      try {
        expect((await readBytes(c, 5, 5_000).catch((e: Error) => Buffer.from(`SET ${i}: ${e.message}`))).toString()).toBe('+OK\r\n');
      } finally {
        c.destroy();
      }
    }
    expect((await tlsCli('STRLEN', 'tqueue')).stdout.trim()).toBe(String(value.length));
    expect(Object.values(server.stats().moduleFaults).reduce((a, b) => a + b, 0)).toBe(0);
  }, 60_000);

  it('a SERVERNAME is sent as SNI and checked against the certificate\'s DNS names', async () => {
    const { port } = await proxy(`redis=127.0.0.1:${tlsPort}`, { upstreamTls: 'redis=localhost', upstreamCa: certs.caCert });
    expect((await run('redis-cli', ['-p', String(port), 'PING'], { timeoutMs: 10_000 })).stdout.trim()).toBe('PONG');
    const wrong = await proxy(`redis=127.0.0.1:${tlsPort}`, { upstreamTls: 'redis=other.example', upstreamCa: certs.caCert });
    expect(await failure(wrong.port)).toMatch(/^-ERR upstream failed: tls_verify: [^\r\n]*mismatch[^\r\n]* \(127\.0\.0\.1\)\r\n$/i);
  }, 30_000);

  it('a wrong CA, a wrong address name, a peer without TLS: FAILED with the reason, counted by reason', async () => {
    const before = native.upstreamStats();
    // Node's bundled roots (no --upstream-ca) do not know the test CA.
    const untrusted = await proxy(`redis=127.0.0.1:${tlsPort}`, { upstreamTls: 'redis' });
    expect(await failure(untrusted.port)).toMatch(/^-ERR upstream failed: tls_verify: unable to get local issuer certificate \(127\.0\.0\.1\)\r\n$/);
    // 127.0.0.2 is the same server, but the certificate does not name that address.
    const misnamed = await proxy(`redis=127.0.0.2:${tlsPort}`, { upstreamTls: 'redis', upstreamCa: certs.caCert });
    expect(await failure(misnamed.port)).toMatch(/^-ERR upstream failed: tls_verify: [^\r\n]*mismatch[^\r\n]* \(127\.0\.0\.2\)\r\n$/i);
    // A peer that answers the ClientHello with plain text: not TLS.
    const talker = netServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => s.end('-ERR this is not TLS\r\n'));
    });
    await new Promise<void>((r) => talker.listen(0, '127.0.0.1', r));
    const notTls = await proxy(`redis=127.0.0.1:${(talker.address() as { port: number }).port}`, { upstreamTls: 'redis', upstreamCa: certs.caCert });
    expect(await failure(notTls.port)).toMatch(/^-ERR upstream failed: tls_handshake: [^\r\n]+ \(127\.0\.0\.1\)\r\n$/);
    const after = native.upstreamStats();
    expect(after.tlsVerify - before.tlsVerify).toBe(2);
    expect(after.tlsHandshake - before.tlsHandshake).toBe(1);
    expect(after.failed - before.failed).toBe(3);
    const text = await metricsRegistry(notTls.server).scrape();
    expect(text).toMatch(new RegExp(`^tcpmod_upstream_connect_failures_total\\{reason="tls_verify"\\} ${after.tlsVerify}$`, 'm'));
    expect(text).toMatch(new RegExp(`^tcpmod_upstream_connect_failures_total\\{reason="tls_handshake"\\} ${after.tlsHandshake}$`, 'm'));
    await until(() => native.upstreamStats().open === before.open, 10_000, 'every failed upstream gone');
    talker.close();
  }, 30_000);

  it('a TLS failure moves on to the next address, as a refusal does', async () => {
    const { port } = await proxy(`redis=127.0.0.2:${tlsPort},127.0.0.1:${tlsPort}`, { upstreamTls: 'redis', upstreamCa: certs.caCert });
    expect((await run('redis-cli', ['-p', String(port), 'PING'], { timeoutMs: 10_000 })).stdout.trim()).toBe('PONG');
  }, 30_000);

  it('tcpmod serve: a bad --upstream-ca file is one line naming the option', async () => {
    const bad = join(certs.dir, 'not-a-ca.pem');
    writeFileSync(bad, 'hello\n');
    const r = await run(process.execPath, ['bin/tcpmod.js', 'serve', proxyPath, '--port', '0', '--upstream', `redis=127.0.0.1:${tlsPort}`,
      '--upstream-tls', 'redis', '--upstream-ca', bad], { timeoutMs: 20_000 });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--upstream-ca is not a PEM CA certificate file/);
  }, 30_000);
});
