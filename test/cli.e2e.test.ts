// The `tcpmod` binary as users run it: help, option checks at the door, and
// graceful shutdown on SIGTERM.
import { createServer as createNetServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { open, pattern, readBytes, untilClosed } from './net-client.js';
import { run, serve } from './server-process.js';

const tcpmod = (...args: string[]) => run(process.execPath, ['bin/tcpmod.js', ...args], { timeoutMs: 20_000 });

describe('help', () => {
  it('describes every serve option', async () => {
    const top = await tcpmod('--help');
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/serve/);
    expect(top.stdout).toMatch(/inspect/);
    const v = await tcpmod('--version');
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const r = await tcpmod('serve', '--help');
    expect(r.code).toBe(0);
    for (const opt of ['--host', '--port', '--threads', '--min-threads', '--max-threads', '--idle-timeout', '--send-timeout',
      '--handler-timeout', '--drain-timeout', '--keepalive', '--module-memory', '--config', '--kv-max-bytes', '--metrics', '--log-level'])
      expect(r.stdout, opt).toContain(opt);
  });
});

describe('options are validated at the door', () => {
  const cases: [string[], RegExp][] = [
    [['--min-threads', '0'], /^tcpmod: --min-threads must be an integer from 1 to 64, got "0"$/],
    [['--min-threads', '4', '--max-threads', '2'], /^tcpmod: --max-threads \(2\) must not be below minThreads \(4\)$/],
    [['--send-timeout', '-5'], /^tcpmod: --send-timeout must be at least 1 ms, got "-5"$/],
    [['--idle-timeout', 'soon'], /^tcpmod: --idle-timeout must be a duration/],
    [['--keepalive', '1800,5'], /^tcpmod: --keepalive must be "off" or IDLE,INTERVAL,COUNT/],
    [['--keepalive', 'a,b,c'], /^tcpmod: --keepalive must be "off" or IDLE,INTERVAL,COUNT/],
    [['--port', '70000'], /^tcpmod: --port must be an integer from 0 to 65535, got "70000"$/],
    [['--metrics', 'nowhere'], /^tcpmod: --metrics must be HOST:PORT/],
    [['--module-memory', 'lots'], /^tcpmod: --module-memory must be a size/],
  ];
  for (const [args, message] of cases) {
    it(args.join(' '), async () => {
      const r = await tcpmod('serve', 'build/echo.wasm', ...args);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(message);
    });
  }

  it('refuses a file that is not a module, naming the problem', async () => {
    const r = await tcpmod('serve', 'package.json', '--port', '0');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not a WebAssembly module/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('refuses a port in use with one line naming the syscall and errno', async () => {
    const holder = createNetServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
    const port = (holder.address() as { port: number }).port;
    try {
      const r = await tcpmod('serve', 'build/echo.wasm', '--port', String(port));
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`tcpmod: listen EADDRINUSE 127.0.0.1:${port}\n`);
    } finally {
      holder.close();
    }
  });

  it('accepts durations with units', async () => {
    const s = await serve('build/echo.wasm', ['--idle-timeout', '1.5s', '--send-timeout', '500ms', '--drain-timeout', '1m', '--handler-timeout', '2000']);
    expect(await s.stop()).toBe(0);
  });
});

describe('graceful shutdown on SIGTERM', () => {
  it('finishes the reply in flight, closes idle connections at the drain timeout, and exits 0', async () => {
    const s = await serve('build/echo.wasm', ['--threads', '2', '--drain-timeout', '1500ms']);
    const idle = await open(s.port, s.host);
    const idleClosed = untilClosed(idle, 10_000);
    const busy = await open(s.port, s.host);
    const data = pattern(8 << 20, 9);
    busy.pause(); // the server's send blocks until we read
    busy.write(data);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const exit = s.stop('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    const got = await readBytes(busy, data.length, 10_000); // resumes reading
    expect(got.length).toBe(data.length);
    expect(got.equals(data)).toBe(true);
    await idleClosed;
    expect(await exit).toBe(0);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(1400); // the idle client was kept until the drain timeout
    expect(took).toBeLessThan(1500 + 3000);
    busy.destroy();
  });

  it('exits at once when no connection is open', async () => {
    const s = await serve('build/echo.wasm', ['--drain-timeout', '10s']);
    const t0 = Date.now();
    expect(await s.stop('SIGINT')).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('a second signal stops at once', async () => {
    const s = await serve('build/echo.wasm', ['--drain-timeout', '30s']);
    const c = await open(s.port, s.host);
    const exit = s.stop('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    s.proc.kill('SIGTERM');
    const code = await exit;
    expect(code).not.toBeNull();
    expect(Date.now() - t0).toBeLessThan(3000);
    c.destroy();
  });
});
