// resolveOptions against the table of options: defaults come from the table,
// every kind of value is checked with the option's name in the error, and the
// rules between options (threads, TLS) hold.
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import {
  DEFAULTS, OPTIONS, OptionError, parseOptionValue, resolveOptions, type Kind, type OptionSpec, type ServerOptions,
} from '../host/options.js';

const module = 'build/echo.wasm';
const specs: [string, OptionSpec][] = Object.entries(OPTIONS);

/** The OptionError that `f` throws (fails when it throws something else or nothing). */
function refusal(f: () => unknown): OptionError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(OptionError);
    return e as OptionError;
  }
  throw new Error('no OptionError thrown');
}

describe('defaults', () => {
  it('DEFAULTS holds exactly the table defaults, converted as a user value would be', () => {
    expect(Object.keys(DEFAULTS).sort()).toEqual(specs.filter(([, s]) => s.default !== undefined).map(([n]) => n).sort());
    expect(DEFAULTS).toMatchObject({
      host: '127.0.0.1', port: 7000, backlog: 4096, workerIdleTimeout: 20_000, sendTimeout: 20_000, handlerTimeout: 1000,
      drainTimeout: 5000, keepalive: [1800, 5, 3], moduleMemory: 32 * 1024 ** 2, kvMaxBytes: 64 * 1024 ** 2, logLevel: 'info',
      tlsClientAuth: 'none', tlsMinVersion: '1.2',
    });
  });

  it('options left out resolve to the table defaults', () => {
    const r = resolveOptions({ module });
    expect(r).toEqual({
      module,
      host: DEFAULTS.host,
      port: DEFAULTS.port,
      reusePort: false,
      // `npm run test:batch1` moves only the batch default (TCPMOD_TEST_BATCH).
      batch: process.env.TCPMOD_TEST_BATCH ? Number(process.env.TCPMOD_TEST_BATCH) : DEFAULTS.batch,
      proxyProtocol: 'off',
      backlog: DEFAULTS.backlog,
      minThreads: Math.min(availableParallelism(), 64),
      maxThreads: Math.min(4 * Math.min(availableParallelism(), 64), 64),
      workerIdleTimeoutMs: DEFAULTS.workerIdleTimeout,
      sendTimeoutMs: DEFAULTS.sendTimeout,
      sendMode: 'queued',
      maxOutputBuffer: 8 << 20,
      maxOutputMemory: 256 << 20,
      maxInputMemory: 512 << 20,
      maxMailbox: 4 << 20,
      handlerTimeoutMs: DEFAULTS.handlerTimeout,
      startupTimeoutMs: 5000,
      drainTimeoutMs: DEFAULTS.drainTimeout,
      readTimeoutMs: 5 * 60_000,
      frameTimeoutMs: 30_000,
      maxConnections: null, // worked out at listen from the descriptor limit
      drainIdleMs: 1000,
      lingeringTimeMs: 30_000,
      lingeringTimeoutMs: 5000,
      reloadDrainMs: null,
      reloadFaultLimit: 10,
      reloadWatchMs: 30_000,
      keepalive: DEFAULTS.keepalive,
      moduleMemory: DEFAULTS.moduleMemory,
      config: new Uint8Array(0),
      kvMaxBytes: DEFAULTS.kvMaxBytes,
      kvEviction: 'noeviction',
      kv: { type: 'memory' },
      kvTimeoutMs: 200,
      kvPasswordFile: null,
      kvTlsCa: null,
      bus: null,
      busTlsCa: null,
      logLevel: DEFAULTS.logLevel,
      tls: null,
      upstreams: [],
      upstreamCa: null,
      upstreamConnectTimeoutMs: 2000,
      upstreamReadTimeoutMs: 30_000,
      upstreamFrameTimeoutMs: 30_000,
      maxUpstreams: 10000,
    });
  });

  it('read and frame timeouts take "off" (or false) and durations; maxConnections an integer', () => {
    expect(resolveOptions({ module, readTimeout: 'off', frameTimeout: false })).toMatchObject({ readTimeoutMs: null, frameTimeoutMs: null });
    expect(resolveOptions({ module, readTimeout: '2s', frameTimeout: 500, maxConnections: 100, drainIdle: 0 }))
      .toMatchObject({ readTimeoutMs: 2000, frameTimeoutMs: 500, maxConnections: 100, drainIdleMs: 0 });
    expect(() => resolveOptions({ module, readTimeout: 'never' })).toThrow(/^readTimeout must be a duration .* or "off", got "never"$/);
    expect(() => resolveOptions({ module, frameTimeout: 0 })).toThrow(/^frameTimeout must be at least 1 ms or "off", got 0$/);
    expect(() => resolveOptions({ module, maxConnections: 0 })).toThrow(/^maxConnections must be an integer from 1 to 16777216, got 0$/);
  });

  it('every duration has a maximum: sendTimeout 1000h is refused in one line', () => {
    for (const [name, spec] of specs) if (spec.kind.type === 'duration') expect(spec.kind.max, name).toBeLessThanOrEqual(86_400_000);
    const e = refusal(() => resolveOptions({ module, sendTimeout: '1000h' }));
    expect(e.message).toBe('sendTimeout must be at most 86400000 ms, got "1000h"');
    expect(resolveOptions({ module, sendTimeout: '24h', lingeringTime: 'off' })).toMatchObject({ sendTimeoutMs: 86_400_000, lingeringTimeMs: null });
  });

  it('a value given as undefined is a value left out', () => {
    expect(resolveOptions({ module, port: undefined, tlsCert: undefined })).toEqual(resolveOptions({ module }));
  });
});

describe('every kind refuses a bad value, naming the option', () => {
  // One bad value for each kind the API takes; the table must not grow a kind this list lacks.
  const bad: Record<Kind['type'], unknown[]> = {
    integer: ['x', 1.5, -100000, 1e9, null, true],
    // 1000h: past every duration's maximum (a native int of ms overflows at 597 h).
    duration: ['soon', -1, '-5s', Infinity, {}, '1000h'],
    size: ['lots', '-1', -1, 1.5, 2 ** 60, true],
    string: ['', 5, null],
    choice: ['nope', 1, ''],
    keepalive: ['1800,5', 'a,b,c', [1, 2], [0, 5, 3], true],
    bytes: [5, [1, 2], null],
    protocols: ['', 'h2,', 'h2,,x', 'a b', ['x'.repeat(256)], [5], 7],
    flag: ['yes', 1],
    address: ['nowhere', 'host:99999', 5],
    upstreams: ['redis', 'redis=', '=127.0.0.1:1', '9x=127.0.0.1:1', 'r=localhost:6379', 'r=127.0.0.1:0', 'r=256.0.0.1:1', 'r=::1:6379',
      'r=127.0.0.1:1,', ['a=127.0.0.1:1', 'a=127.0.0.1:2'], [5], 7, {}],
    upstreamTls: ['', '=x', '9x', 'a=', 'a=bad name', ['a', 'a'], 3, [1]],
  };
  for (const [name, spec] of specs.filter(([, s]) => !s.cliOnly)) {
    it(`${name} (${spec.kind.type})`, () => {
      for (const v of bad[spec.kind.type]) {
        const e = refusal(() => resolveOptions({ module, [name]: v } as ServerOptions));
        expect(e.option, `${name}: ${JSON.stringify(v)}`).toBe(name);
        expect(e.message).toMatch(new RegExp(`^${name} must `));
        expect(e.message).not.toContain('\n');
      }
    });
  }

  it('the kinds only the CLI uses today (address) or none yet (flag) check too', () => {
    for (const v of bad.address) expect(refusal(() => parseOptionValue('metrics', OPTIONS.metrics.kind, v)).message).toMatch(/^metrics must be HOST:PORT, got /);
    expect(parseOptionValue('metrics', OPTIONS.metrics.kind, '[::1]:9100')).toEqual({ host: '::1', port: 9100 });
    for (const v of bad.flag) expect(refusal(() => parseOptionValue('verbose', { type: 'flag' }, v)).message).toMatch(/^verbose must be true or false, got /);
    expect(parseOptionValue('verbose', { type: 'flag' }, true)).toBe(true);
  });

  it('messages say what is accepted', () => {
    expect(refusal(() => resolveOptions({ module, port: 70000 })).message).toBe('port must be an integer from 0 to 65535, got 70000');
    expect(refusal(() => resolveOptions({ module, sendTimeout: '-5' })).message).toBe('sendTimeout must be at least 1 ms, got "-5"');
    expect(refusal(() => resolveOptions({ module, moduleMemory: 'lots' })).message)
      .toBe('moduleMemory must be a size in bytes (e.g. 65536, 512KiB, 32MiB), got "lots"');
    expect(refusal(() => resolveOptions({ module, moduleMemory: '1KiB' })).message).toBe('moduleMemory must be an integer from 65536 to 4294967296, got 1024');
    expect(refusal(() => resolveOptions({ module, logLevel: 'loud' as 'info' })).message)
      .toBe('logLevel must be one of debug, info, warn, error, silent; got "loud"');
    expect(refusal(() => resolveOptions({ module, startupTimeout: '2h' })).message).toBe('startupTimeout must be at most 3600000 ms, got "2h"');
    expect(refusal(() => resolveOptions({ module, startupTimeout: 0 })).message).toBe('startupTimeout must be at least 1 ms, got 0');
    expect(resolveOptions({ module, startupTimeout: '250ms' }).startupTimeoutMs).toBe(250);
  });
});

describe('good values', () => {
  it('sizes as numbers or strings with a unit', () => {
    expect(resolveOptions({ module, moduleMemory: '1MiB', kvMaxBytes: 10 })).toMatchObject({ moduleMemory: 1024 ** 2, kvMaxBytes: 10 });
    expect(resolveOptions({ module, moduleMemory: 65536, kvMaxBytes: '0' })).toMatchObject({ moduleMemory: 65536, kvMaxBytes: 0 });
  });

  it('durations, integers as digit strings, keepalive off, config bytes', () => {
    const r = resolveOptions({ module, sendTimeout: '1.5s', drainTimeout: 0, port: '8080' as unknown as number, keepalive: 'off', config: 'hi' });
    expect(r).toMatchObject({ sendTimeoutMs: 1500, drainTimeoutMs: 0, port: 8080, keepalive: null, config: new TextEncoder().encode('hi') });
    expect(resolveOptions({ module, keepalive: false }).keepalive).toBeNull();
    expect(resolveOptions({ module, keepalive: [60, 10, 5] }).keepalive).toEqual([60, 10, 5]);
  });
});

describe('upstreams', () => {
  it('NAME=IP:PORT[,IP:PORT…], repeatable, kept in order', () => {
    const r = resolveOptions({ module, upstream: ['redis=127.0.0.1:6380, 127.0.0.1:6381', 'v6=[::1]:7000'], upstreamConnectTimeout: '250ms' });
    expect(r.upstreams).toEqual([
      { name: 'redis', addresses: [{ host: '127.0.0.1', port: 6380 }, { host: '127.0.0.1', port: 6381 }] },
      { name: 'v6', addresses: [{ host: '::1', port: 7000 }] },
    ]);
    expect(r.upstreamConnectTimeoutMs).toBe(250);
    expect(resolveOptions({ module, upstream: 'a=10.0.0.1:1' }).upstreams).toEqual([{ name: 'a', addresses: [{ host: '10.0.0.1', port: 1 }] }]);
  });
  it('one line naming what is wrong: bad name, bad address, duplicate name, too many', () => {
    expect(refusal(() => resolveOptions({ module, upstream: '9x=127.0.0.1:1' })).message)
      .toBe('upstream must have a NAME of 1 to 32 of A-Z a-z 0-9 _ . - starting with a letter; "9x" in "9x=127.0.0.1:1" is not one');
    expect(refusal(() => resolveOptions({ module, upstream: 'r=localhost:6379' })).message)
      .toBe('upstream must give addresses as IPv4:PORT or [IPv6]:PORT (PORT 1 to 65535); "localhost:6379" in "r=localhost:6379" is not one');
    expect(refusal(() => resolveOptions({ module, upstream: ['a=127.0.0.1:1', 'a=127.0.0.1:2'] })).message)
      .toBe('upstream must name each upstream once; "a" is given twice');
    expect(refusal(() => resolveOptions({ module, upstream: 'redis' })).message).toBe('upstream must be NAME=IP:PORT[,IP:PORT…], got "redis"');
    const many = Array.from({ length: 17 }, (_, i) => `127.0.0.1:${i + 1}`).join(',');
    expect(refusal(() => resolveOptions({ module, upstream: `r=${many}` })).message).toBe('upstream must give at most 16 addresses per name; "r" has 17');
    expect(refusal(() => resolveOptions({ module, upstreamReadTimeout: '0' })).message).toBe('upstreamReadTimeout must be at least 1 ms or "off", got "0"');
    expect(refusal(() => resolveOptions({ module, upstreamReadTimeout: 'soon' })).message).toBe('upstreamReadTimeout must be a duration (milliseconds, or a number with ms, s, m or h) or "off", got "soon"');
    expect(resolveOptions({ module, upstreamReadTimeout: 'off' }).upstreamReadTimeoutMs).toBeNull();
    expect(resolveOptions({ module, upstreamReadTimeout: '300ms' }).upstreamReadTimeoutMs).toBe(300);
    expect(refusal(() => resolveOptions({ module, upstreamFrameTimeout: '0' })).message).toBe('upstreamFrameTimeout must be at least 1 ms or "off", got "0"');
    expect(refusal(() => resolveOptions({ module, upstreamFrameTimeout: 'later' })).message).toBe('upstreamFrameTimeout must be a duration (milliseconds, or a number with ms, s, m or h) or "off", got "later"');
    expect(resolveOptions({ module, upstreamFrameTimeout: 'off' }).upstreamFrameTimeoutMs).toBeNull();
    expect(resolveOptions({ module, upstreamFrameTimeout: '500ms' }).upstreamFrameTimeoutMs).toBe(500);
    expect(refusal(() => resolveOptions({ module, upstreamConnectTimeout: '2m' })).message).toBe('upstreamConnectTimeout must be at most 60000 ms, got "2m"');
  });
  it('--upstream-tls NAME[=SERVERNAME] marks upstreams for TLS; --upstream-ca only with it; one line per mistake', () => {
    const ups = ['a=127.0.0.1:1', 'b=127.0.0.1:2', 'c=127.0.0.1:3'];
    const r = resolveOptions({ module, upstream: ups, upstreamTls: ['a', 'b=redis.internal'], upstreamCa: '/ca.pem' });
    expect(r.upstreams.map((u) => u.tls ?? null)).toEqual([{ name: 'a', servername: null }, { name: 'b', servername: 'redis.internal' }, null]);
    expect(r.upstreamCa).toBe('/ca.pem');
    expect(resolveOptions({ module, upstream: ups, upstreamTls: 'c=[::1]' }).upstreams[2].tls).toEqual({ name: 'c', servername: '::1' });
    expect(resolveOptions({ module, upstream: ups, upstreamTls: 'a' }).upstreamCa).toBeNull();
    expect(refusal(() => resolveOptions({ module, upstream: ups, upstreamTls: 'd' })).message).toBe('upstreamTls names "d", which no upstream defines');
    expect(refusal(() => resolveOptions({ module, upstream: ups, upstreamTls: ['a', 'a=x'] })).message).toBe('upstreamTls must name each upstream once; "a" is given twice');
    expect(refusal(() => resolveOptions({ module, upstream: ups, upstreamTls: 'a=bad_name!' })).message)
      .toBe('upstreamTls must give SERVERNAME as a DNS name or an IP address; "bad_name!" in "a=bad_name!" is not one');
    expect(refusal(() => resolveOptions({ module, upstream: ups, upstreamTls: '=x' })).message)
      .toBe('upstreamTls must start with an upstream NAME (1 to 32 of A-Z a-z 0-9 _ . -, starting with a letter); "=x" does not');
    expect(refusal(() => resolveOptions({ module, upstream: ups, upstreamCa: '/ca.pem' })).message).toBe('upstreamCa only applies with upstreamTls');
    expect(refusal(() => resolveOptions({ module, upstream: ups, upstreamTls: 3 as never })).message)
      .toBe('upstreamTls must be NAME or NAME=SERVERNAME (an --upstream name) or a list of them, got 3');
  });
});

describe('durations with an off value', () => {
  const kind = { type: 'duration', min: 1, off: 'off' } as const;
  it('the off word, or false, disables: null', () => {
    expect(parseOptionValue('idle', kind, 'off')).toBeNull();
    expect(parseOptionValue('idle', kind, false)).toBeNull();
  });
  it('other values are durations as usual', () => {
    expect(parseOptionValue('idle', kind, '2s')).toBe(2000);
    expect(parseOptionValue('idle', kind, 250)).toBe(250);
  });
  it('errors mention the off word', () => {
    expect(refusal(() => parseOptionValue('idle', kind, 'never')).message)
      .toBe('idle must be a duration (milliseconds, or a number with ms, s, m or h) or "off", got "never"');
    expect(refusal(() => parseOptionValue('idle', kind, 0)).message).toBe('idle must be at least 1 ms or "off", got 0');
  });
  it('without an off value, "off" and false are not durations', () => {
    expect(refusal(() => parseOptionValue('idle', { type: 'duration', min: 1 }, 'off')).message).toMatch(/^idle must be a duration .*\), got "off"$/);
    expect(refusal(() => parseOptionValue('idle', { type: 'duration', min: 1 }, false)).option).toBe('idle');
  });
});

describe('rules between options', () => {
  it('threads sets both bounds and excludes them', () => {
    expect(resolveOptions({ module, threads: 3 })).toMatchObject({ minThreads: 3, maxThreads: 3 });
    expect(refusal(() => resolveOptions({ module, threads: 2, maxThreads: 4 })).message).toBe('threads cannot be combined with minThreads/maxThreads');
    expect(refusal(() => resolveOptions({ module, minThreads: 4, maxThreads: 2 })).message).toBe('maxThreads (2) must not be below minThreads (4)');
    expect(resolveOptions({ module, minThreads: 20 })).toMatchObject({ minThreads: 20, maxThreads: 64 });
  });

  const tls = { module, tlsCert: 'cert.pem', tlsKey: 'key.pem' };
  it('TLS: cert and key, the rest defaulted', () => {
    expect(resolveOptions(tls).tls).toEqual({ cert: 'cert.pem', key: 'key.pem', ca: null, clientAuth: 'none', minVersion: '1.2', alpn: [] });
  });

  it('TLS: everything given; alpn as a list or a string', () => {
    const all = { ...tls, tlsCa: 'ca.pem', tlsClientAuth: 'request', tlsMinVersion: '1.3' } as const;
    expect(resolveOptions({ ...all, alpn: ['h2', 'http/1.1'] }).tls).toEqual({
      cert: 'cert.pem', key: 'key.pem', ca: 'ca.pem', clientAuth: 'request', minVersion: '1.3', alpn: ['h2', 'http/1.1'],
    });
    expect(resolveOptions({ ...all, alpn: ' h2 ,http/1.1' }).tls!.alpn).toEqual(['h2', 'http/1.1']);
    expect(resolveOptions({ ...all, alpn: [] }).tls!.alpn).toEqual([]);
  });

  it('TLS: one-line errors naming the option', () => {
    const cases: [ServerOptions, string][] = [
      [{ module, tlsCert: 'c' }, 'tlsKey is required with tlsCert'],
      [{ module, tlsKey: 'k' }, 'tlsCert is required with tlsKey'],
      [{ module, tlsCa: 'ca' }, 'tlsCa only applies with tlsCert and tlsKey'],
      [{ module, tlsClientAuth: 'none' }, 'tlsClientAuth only applies with tlsCert and tlsKey'],
      [{ module, tlsMinVersion: '1.3' }, 'tlsMinVersion only applies with tlsCert and tlsKey'],
      [{ module, alpn: 'h2' }, 'alpn only applies with tlsCert and tlsKey'],
      [{ ...tls, tlsClientAuth: 'require' }, 'tlsClientAuth "require" needs tlsCa to check client certificates against'],
      [{ ...tls, tlsClientAuth: 'request' }, 'tlsClientAuth "request" needs tlsCa to check client certificates against'],
    ];
    for (const [options, message] of cases) expect(refusal(() => resolveOptions(options)).message).toBe(message);
  });

  it('errors that mention other options can name them by flag', () => {
    const e = refusal(() => resolveOptions({ module, tlsCert: 'c' }));
    expect(e.describe((n) => (OPTIONS as Record<string, OptionSpec>)[n]?.flag ?? n)).toBe('--tls-key is required with --tls-cert');
  });

  it('file paths are not opened here', () => {
    expect(() => resolveOptions({ ...tls, tlsCa: '/nonexistent/ca.pem', tlsClientAuth: 'require' })).not.toThrow();
  });
});
