// The `tcpmod` binary as users run it: help, option checks at the door, and
// graceful shutdown on SIGTERM.
import { createServer as createNetServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createServer, OptionError } from '../host/index.js';
import { OPTIONS, type OptionSpec, type ServerOptions } from '../host/options.js';
import { open, pattern, readBytes, untilClosed } from './net-client.js';
import { run, serve } from './server-process.js';

// Paths only: option checks never open the files (the server does, when it starts).
const TLS = ['--tls-cert', 'cert.pem', '--tls-key', 'key.pem'];
const tcpmod = (...args: string[]) => run(process.execPath, ['bin/tcpmod.js', ...args], { timeoutMs: 20_000 });

/** A help text's options by flag: each option's wrapped lines joined with single spaces. */
function helpEntries(help: string): Map<string, string> {
  const entries = new Map<string, string>();
  let flag: string | null = null;
  for (const line of help.split('\n')) {
    const start = /^  (?:-\w, )?(--[\w-]+)/.exec(line);
    if (start) flag = start[1];
    else if (!/^ {3,}\S/.test(line)) flag = null; // only an option's continuation lines are indented deeper
    if (flag) entries.set(flag, `${entries.get(flag) ?? ''} ${line}`.replace(/\s+/g, ' ').trim());
  }
  return entries;
}

describe('help', () => {
  it('describes every serve option of the table, with its default', async () => {
    const top = await tcpmod('--help');
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/serve/);
    expect(top.stdout).toMatch(/inspect/);
    const v = await tcpmod('--version');
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const r = await tcpmod('serve', '--help');
    expect(r.code).toBe(0);
    const entries = helpEntries(r.stdout);
    const specs: [string, OptionSpec][] = Object.entries(OPTIONS);
    for (const [name, spec] of specs) {
      const entry = entries.get(spec.flag);
      expect(entry, `${name}: ${spec.flag} in serve --help`).toBeDefined();
      if (spec.arg) expect(entry, name).toContain(`${spec.flag} ${spec.arg}`);
      expect(entry, name).toContain(spec.help);
      if (spec.default !== undefined) expect(entry, name).toContain(`default: ${JSON.stringify(spec.default)}`);
      else if (spec.defaultNote !== undefined) expect(entry, name).toContain(`(default: ${spec.defaultNote})`);
      else expect(entry, name).not.toContain('default:');
    }
    // and nothing but the table (and --help)
    expect([...entries.keys()].sort()).toEqual([...specs.map(([, s]) => s.flag), '--help'].sort());
  });

  it('inspect takes its --module-memory default from the table', async () => {
    const r = await tcpmod('inspect', '--help');
    expect(r.code).toBe(0);
    expect(helpEntries(r.stdout).get('--module-memory')).toContain(`default: ${JSON.stringify(OPTIONS.moduleMemory.default)}`);
  });
});

describe('options are validated at the door', () => {
  const cases: [string[], RegExp][] = [
    [['--min-threads', '0'], /^tcpmod: --min-threads must be an integer from 1 to 64, got "0"$/],
    [['--min-threads', '4', '--max-threads', '2'], /^tcpmod: --max-threads \(2\) must not be below minThreads \(4\)$/],
    [['--send-timeout', '-5'], /^tcpmod: --send-timeout must be at least 1 ms, got "-5"$/],
    // 1000 h would overflow the native int of ms the send timeout becomes (a poll() that waits forever).
    [['--send-timeout', '1000h'], /^tcpmod: --send-timeout must be at most 86400000 ms, got "1000h"$/],
    [['--lingering-time', '2h'], /^tcpmod: --lingering-time must be at most 3600000 ms or "off", got "2h"$/],
    [['--idle-timeout', 'soon'], /^tcpmod: --idle-timeout must be a duration/],
    [['--keepalive', '1800,5'], /^tcpmod: --keepalive must be "off" or IDLE,INTERVAL,COUNT/],
    [['--keepalive', 'a,b,c'], /^tcpmod: --keepalive must be "off" or IDLE,INTERVAL,COUNT/],
    [['--port', '70000'], /^tcpmod: --port must be an integer from 0 to 65535, got "70000"$/],
    [['--metrics', 'nowhere'], /^tcpmod: --metrics must be HOST:PORT/],
    [['--module-memory', 'lots'], /^tcpmod: --module-memory must be a size/],
    [['--tls-cert', 'cert.pem'], /^tcpmod: --tls-key is required with --tls-cert$/],
    [['--tls-key', 'key.pem'], /^tcpmod: --tls-cert is required with --tls-key$/],
    [['--tls-cert', ''], /^tcpmod: --tls-cert must be a file path, got ""$/],
    [['--tls-ca', 'ca.pem'], /^tcpmod: --tls-ca only applies with --tls-cert and --tls-key$/],
    [['--alpn', 'h2'], /^tcpmod: --alpn only applies with --tls-cert and --tls-key$/],
    [['--tls-min-version', '1.3'], /^tcpmod: --tls-min-version only applies with --tls-cert and --tls-key$/],
    [[...TLS, '--tls-client-auth', 'require'], /^tcpmod: --tls-client-auth "require" needs --tls-ca to check client certificates against$/],
    [[...TLS, '--tls-client-auth', 'request'], /^tcpmod: --tls-client-auth "request" needs --tls-ca to check client certificates against$/],
    [[...TLS, '--alpn', 'h2,,http/1.1'], /^tcpmod: --alpn must be protocol names separated by commas, each 1 to 255 printable ASCII characters \(e\.g\. h2,http\/1\.1\), got "h2,,http\/1\.1"$/],
    [[...TLS, '--alpn', `h2,${'x'.repeat(256)}`], /^tcpmod: --alpn must be protocol names separated by commas/],
    // commander checks choices (as it does for --log-level), with its own one line
    [['--tls-min-version', '1.1'], /^error: option '--tls-min-version <version>' argument '1\.1' is invalid\. Allowed choices are 1\.2, 1\.3\.$/],
    [['--tls-client-auth', 'maybe'], /^error: option '--tls-client-auth <mode>' argument 'maybe' is invalid\. Allowed choices are none, request, require\.$/],
  ];
  // Each case is a process of its own that only starts and refuses (a Node start-up's CPU, no
  // socket, no shared state): they run side by side, as many as vitest's maxConcurrency.
  for (const [args, message] of cases) {
    it.concurrent(args.join(' '), async ({ expect }) => {
      const r = await tcpmod('serve', 'build/echo.wasm', ...args);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(message);
    });
  }

  it('createServer refuses a duration past its maximum (sendTimeout 1000h) in its constructor', () => {
    expect(() => createServer({ module: 'build/echo.wasm', sendTimeout: '1000h' })).toThrow(OptionError);
    expect(() => createServer({ module: 'build/echo.wasm', sendTimeout: '1000h' })).toThrow(/^sendTimeout must be at most 86400000 ms, got "1000h"$/);
  });

  it('createServer refuses bad TLS options in its constructor, naming the camelCase option', () => {
    const tls = { module: 'build/echo.wasm', tlsCert: 'cert.pem', tlsKey: 'key.pem' };
    const bad: [ServerOptions, string, string][] = [
      [{ module: 'build/echo.wasm', tlsCert: 'cert.pem' }, 'tlsKey', 'tlsKey is required with tlsCert'],
      [{ module: 'build/echo.wasm', tlsKey: 'key.pem' }, 'tlsCert', 'tlsCert is required with tlsKey'],
      [{ module: 'build/echo.wasm', tlsCa: 'ca.pem' }, 'tlsCa', 'tlsCa only applies with tlsCert and tlsKey'],
      [{ module: 'build/echo.wasm', alpn: ['h2'] }, 'alpn', 'alpn only applies with tlsCert and tlsKey'],
      [{ ...tls, tlsCert: '' }, 'tlsCert', 'tlsCert must be a file path, got ""'],
      [{ ...tls, tlsClientAuth: 'require' }, 'tlsClientAuth', 'tlsClientAuth "require" needs tlsCa to check client certificates against'],
      [{ ...tls, tlsClientAuth: 'always' as 'require' }, 'tlsClientAuth', 'tlsClientAuth must be one of none, request, require; got "always"'],
      [{ ...tls, tlsMinVersion: '1.1' as '1.2' }, 'tlsMinVersion', 'tlsMinVersion must be one of 1.2, 1.3; got "1.1"'],
      [{ ...tls, alpn: ['h2', 'with space'] }, 'alpn',
        'alpn must be protocol names separated by commas, each 1 to 255 printable ASCII characters (e.g. h2,http/1.1), got ["h2","with space"]'],
    ];
    for (const [options, option, message] of bad) {
      let thrown: unknown;
      try {
        createServer(options);
      } catch (e) {
        thrown = e;
      }
      expect(thrown, message).toBeInstanceOf(OptionError);
      expect((thrown as OptionError).option).toBe(option);
      expect((thrown as OptionError).message).toBe(message);
      expect((thrown as Error).message).not.toContain('\n');
    }
    const s = createServer({ ...tls, tlsCa: 'ca.pem', tlsClientAuth: 'require', tlsMinVersion: '1.3', alpn: 'h2, http/1.1' });
    expect(s.state).toBe('created');
    expect(s.options.tls).toEqual({ cert: 'cert.pem', key: 'key.pem', ca: 'ca.pem', clientAuth: 'require', minVersion: '1.3', alpn: ['h2', 'http/1.1'] });
  });

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
    // A drain-idle grace longer than the drain timeout: idle connections are kept until the timeout.
    const s = await serve('build/echo.wasm', ['--threads', '2', '--drain-timeout', '1500ms', '--drain-idle', '10s']);
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
