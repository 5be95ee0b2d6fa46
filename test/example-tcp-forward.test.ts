// examples/tcp-forward: the L4 forwarder, built with `tcpmod build`'s function.
// Through tcpmod/testing with a scripted backend (bytes both ways, queued
// before the connect, the backend's close closing the client after its last
// bytes, a refused backend, and backpressure: a backend whose queue is full
// holds the client's input until it moves); then curl through a real server
// to a real nginx: a page, a 3 MB file byte for byte, a POST body, keep-alive.
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildModule } from '../dist/build.js';
import { createServer, type TcpmodServer } from '../dist/index.js';
import { loadModule } from '../dist/testing.js';
import { requireTool, run } from './server-process.js';
import { freePort, spawnGroup, type Group } from './services.js';
import { until } from './wait.js';

let wasm: string;
const dir = mkdtempSync(join(tmpdir(), 'tcpmod-forward-'));
beforeAll(async () => {
  wasm = (await buildModule({ baseDir: 'examples/tcp-forward', outFile: join(dir, 'forward.wasm') })).file;
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('examples/tcp-forward on tcpmod/testing', () => {
  it('passes bytes both ways; the backend\'s close closes the client after its last bytes', async () => {
    const m = await loadModule(wasm, { upstreams: ['backend'] });
    const c = m.connect();
    const u = c.upstream('backend');
    expect(c.send('hello ').text).toBe('');
    expect(c.send('backend').text).toBe('');
    expect(u.takeText()).toBe('hello backend'); // queued while it connects
    expect(u.accept().text).toBe('');
    expect(u.reply('hello client').text).toBe('hello client');
    expect(c.send('more').closed).toBeNull();
    expect(u.takeText()).toBe('more');
    const last = u.close();
    expect(last.closed).toBe('module');
  });

  it('input split at every byte reaches the backend whole; a reply cut at every byte reaches the client whole', async () => {
    const m = await loadModule(wasm, { upstreams: ['backend'] });
    const c = m.connect();
    const u = c.upstream('backend');
    u.accept();
    const request = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n';
    for (const ch of request) c.send(ch);
    expect(u.takeText()).toBe(request);
    const reply = 'HTTP/1.1 204 No Content\r\n\r\n';
    let out = '';
    for (const ch of reply) out += u.reply(ch).text;
    expect(out).toBe(reply);
  });

  it('a backend that cannot be reached aborts the client; a name not listed aborts at open; --config names another', async () => {
    const m = await loadModule(wasm, { upstreams: ['backend'] });
    const c = m.connect();
    expect(c.upstream('backend').refuse('refused').closed).toBe('module');
    const none = await loadModule(wasm, { upstreams: ['other'] });
    expect(none.connect().opened.closed).toBe('module');
    const other = await loadModule(wasm, { upstreams: ['other'], config: 'upstream=other' });
    expect(other.connect().upstream('other').state).toBe('connecting');
  });

  it('backpressure: a backend whose queue is full holds the client\'s input until the backend moves, then none is lost', async () => {
    const m = await loadModule(wasm, { upstreams: ['backend'] });
    const c = m.connect();
    const u = c.upstream('backend');
    u.accept();
    const chunk = new Uint8Array(64 * 1024).fill(7);
    let sent = 0;
    // 9 MiB: the backend takes nothing, its queue stops at 8 MiB (--max-output-buffer's default).
    for (let i = 0; i < 144; i++) {
      c.send(chunk);
      sent += chunk.length;
    }
    const first = u.take().length;
    expect(first).toBeLessThan(sent);
    expect(first).toBeGreaterThanOrEqual(8 * 1024 * 1024 - chunk.length);
    // The backend answers: its event resumes the held input (upstream_resume(conn, 0)).
    expect(u.reply('ok').text).toBe('ok');
    const second = u.take().length;
    expect(first + second).toBe(sent);
    expect(c.closed).toBeNull();
  });
});

describe('examples/tcp-forward in front of nginx', () => {
  let nginx: Group | null = null;
  let nginxPort = 0;
  let server: TcpmodServer;
  let port = 0;
  const big = Buffer.alloc(3_000_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 131 + (i >> 9)) & 0xff;

  beforeAll(async () => {
    await requireTool('curl');
    const nginxBin = '/usr/sbin/nginx';
    nginxPort = await freePort();
    const root = join(dir, 'www');
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, 'index.html'), 'hello through tcp-forward\n');
    writeFileSync(join(root, 'big.bin'), big);
    const conf = join(dir, 'nginx.conf');
    writeFileSync(conf, [
      'daemon off; worker_processes 1; pid ' + join(dir, 'nginx.pid') + '; error_log ' + join(dir, 'error.log') + ';',
      'events { worker_connections 256; }',
      'http { access_log off; client_body_temp_path ' + dir + '; proxy_temp_path ' + dir + '; fastcgi_temp_path ' + dir + ';',
      '  uwsgi_temp_path ' + dir + '; scgi_temp_path ' + dir + ';',
      `  server { listen 127.0.0.1:${nginxPort}; root ${root}; location /echo { return 200 "posted $content_length\\n"; } } }`,
    ].join('\n'));
    nginx = spawnGroup(nginxBin, ['-c', conf, '-p', dir]);
    await until(async () => (await run('curl', ['-s', `http://127.0.0.1:${nginxPort}/`], { timeoutMs: 5_000 })).stdout.includes('hello'), 20_000, 'nginx up', 100);
    server = createServer({ module: wasm, port: 0, threads: 2, logLevel: 'silent', upstream: `backend=127.0.0.1:${nginxPort}` });
    port = (await server.listen()).port;
  }, 60_000);
  afterAll(async () => {
    await server?.close({ drainTimeout: 0 });
    // SIGQUIT: nginx's graceful stop, which its workers get from the master; the group is gone before the next file.
    await nginx?.stop('SIGQUIT');
  });

  it('curl gets the page, a 3 MB file byte for byte, a POST answered, several requests on one connection', async () => {
    const page = await run('curl', ['-s', `http://127.0.0.1:${port}/`], { timeoutMs: 10_000 });
    expect(page.stdout).toBe('hello through tcp-forward\n');
    const out = join(dir, 'got.bin');
    const r = await run('curl', ['-s', '-o', out, '-w', '%{http_code} %{size_download}', `http://127.0.0.1:${port}/big.bin`], { timeoutMs: 30_000 });
    expect(r.stdout).toBe(`200 ${big.length}`);
    const { readFileSync } = await import('node:fs');
    expect(createHash('sha256').update(readFileSync(out)).digest('hex')).toBe(createHash('sha256').update(big).digest('hex'));
    const post = await run('curl', ['-s', '--data-binary', 'x'.repeat(100_000), `http://127.0.0.1:${port}/echo`], { timeoutMs: 10_000 });
    expect(post.stdout).toBe('posted 100000\n');
    // Keep-alive: two URLs, one connection (curl reuses it: "Re-using existing connection").
    const two = await run('curl', ['-sv', `http://127.0.0.1:${port}/`, `http://127.0.0.1:${port}/`], { timeoutMs: 10_000 });
    expect(two.stdout).toBe('hello through tcp-forward\n'.repeat(2));
    expect(two.stderr).toMatch(/Re-using existing connection/i);
    expect(Object.values(server.stats().moduleFaults).reduce((a, b) => a + b, 0)).toBe(0);
  }, 60_000);
});
