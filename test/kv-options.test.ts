// The key-value backend options: --kv (memory or a redis:// URL, taken apart
// at the door), --kv-timeout and --kv-password-file, and the rules between
// them. The password file is read when the server starts, so its tests start one.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULTS, OPTIONS, OptionError, parseKv, resolveOptions, type OptionSpec } from '../dist/options.js';
import { createServer } from '../dist/server.js';
import { refusal } from './option-refusal.js';
import { run } from './server-process.js';

const module = 'build/echo.wasm';
const flag = (n: string) => (OPTIONS as Record<string, OptionSpec>)[n]?.flag ?? n;

const URL_FORM = 'must be "memory" or redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB] (PORT 1 to 65535, default 6379; DB a number, default 0), got';

describe('--kv', () => {
  it('defaults to the in-process store, with a 200 ms timeout', () => {
    expect(DEFAULTS).toMatchObject({ kv: 'memory', kvTimeout: 200 });
    expect(resolveOptions({ module })).toMatchObject({ kv: { type: 'memory' }, kvTimeoutMs: 200, kvPasswordFile: null });
  });

  it('takes a redis:// URL apart: host, port (default 6379), database (default 0), user and password', () => {
    const redis = (host: string, port: number, db: number, username: string, password: string | null, tls = false) =>
      ({ type: 'redis', host, port, db, username, password, tls });
    expect(parseKv('kv', 'redis://127.0.0.1:6380')).toEqual(redis('127.0.0.1', 6380, 0, '', null));
    expect(parseKv('kv', 'redis://cache.internal')).toEqual(redis('cache.internal', 6379, 0, '', null));
    expect(parseKv('kv', 'redis://cache/')).toEqual(redis('cache', 6379, 0, '', null));
    expect(parseKv('kv', 'redis://:s3cret@cache:1/15')).toEqual(redis('cache', 1, 15, '', 's3cret'));
    expect(parseKv('kv', 'redis://app:p%40ss%2Fw@[::1]:6379/2')).toEqual(redis('::1', 6379, 2, 'app', 'p@ss/w'));
    expect(parseKv('kv', 'REDIS://h:7')).toEqual(redis('h', 7, 0, '', null));
    expect(parseKv('kv', 'rediss://:pw@cache.example:6380/1')).toEqual(redis('cache.example', 6380, 1, '', 'pw', true));
    expect(resolveOptions({ module, kv: 'redis://h:7/3', kvTimeout: '1s' })).toMatchObject({ kv: redis('h', 7, 3, '', null), kvTimeoutMs: 1000 });
  });

  it('refuses anything else with one exact line, never showing a password', () => {
    for (const v of ['redis', 'memory ', 'http://h:1', 'redisss://h', 'rediss:/h', 'redis://', 'redis://:1', 'redis://h:0', 'redis://h:65536', 'redis://h:x',
      'redis://h/x', 'redis://h/1/2', 'redis://h/-1', 'redis://h/1234567890', 'redis://h?db=1', 'redis://h#x', 'redis://h:1%']) {
      expect(refusal({ kv: v }).message, v).toBe(`kv ${URL_FORM} ${JSON.stringify(v)}`);
    }
    const e = refusal({ kv: 'redis://user:hunter2@h:99999' });
    expect(e.message).toBe(`kv ${URL_FORM} "redis://***@h:99999"`);
    expect(e.message).not.toContain('hunter2');
    expect(refusal({ kv: 5 as unknown as string }).message).toBe('kv must be memory or a redis:// URL, got 5');
  });

  it('--kv-tls-ca only with rediss://', () => {
    expect(resolveOptions({ module, kv: 'rediss://h', kvTlsCa: '/ca.pem' })).toMatchObject({ kv: { tls: true }, kvTlsCa: '/ca.pem' });
    expect(resolveOptions({ module, kv: 'rediss://h' })).toMatchObject({ kvTlsCa: null });
    expect(refusal({ kv: 'redis://h', kvTlsCa: '/ca.pem' }).describe(flag)).toBe('--kv-tls-ca only applies with a rediss:// --kv');
    expect(refusal({ kvTlsCa: '/ca.pem' }).describe(flag)).toBe('--kv-tls-ca only applies with a redis:// or rediss:// --kv');
  });
});

describe('--kv-timeout and --kv-password-file', () => {
  it('are checked as a duration and a path', () => {
    expect(refusal({ kv: 'redis://h', kvTimeout: 0 }).message).toBe('kvTimeout must be at least 1 ms, got 0');
    expect(refusal({ kv: 'redis://h', kvTimeout: 'soon' }).message).toMatch(/^kvTimeout must be a duration/);
    expect(refusal({ kv: 'redis://h', kvPasswordFile: '' }).message).toBe('kvPasswordFile must be a file path, got ""');
  });

  it('only apply with a redis:// store', () => {
    const e = refusal({ kvTimeout: '1s' });
    expect(e.message).toBe('kvTimeout only applies with a redis:// or rediss:// kv');
    expect(e.describe(flag)).toBe('--kv-timeout only applies with a redis:// or rediss:// --kv');
    expect(refusal({ kv: 'memory', kvPasswordFile: '/x' }).describe(flag)).toBe('--kv-password-file only applies with a redis:// or rediss:// --kv');
    // And the in-process store's budget only applies to it.
    expect(refusal({ kv: 'redis://h', kvMaxBytes: '1MiB' }).describe(flag)).toBe('--kv-max-bytes only applies with --kv memory (Redis keeps its own limit and policy, maxmemory and maxmemory-policy)');
    expect(refusal({ kv: 'redis://h', kvEviction: 'allkeys-lru' }).describe(flag)).toBe('--kv-eviction only applies with --kv memory (Redis keeps its own limit and policy, maxmemory and maxmemory-policy)');
  });

  it('--kv-eviction: noeviction by default; the four policies as Redis spells them; anything else refused in one line', () => {
    expect(resolveOptions({ module }).kvEviction).toBe('noeviction');
    for (const p of ['noeviction', 'allkeys-lru', 'volatile-lru', 'allkeys-lfu']) expect(resolveOptions({ module, kvEviction: p }).kvEviction).toBe(p);
    expect(refusal({ kvEviction: 'lru' }).describe(flag)).toMatch(/^--kv-eviction must be one of noeviction, allkeys-lru, volatile-lru, allkeys-lfu; got "lru"$/);
  });

  it('a password file excludes a password in the URL; a user needs a password', () => {
    expect(refusal({ kv: 'redis://:pw@h', kvPasswordFile: '/x' }).describe(flag)).toBe('--kv-password-file cannot be combined with a password in the --kv URL');
    expect(refusal({ kv: 'redis://app@h' }).describe(flag)).toBe('--kv names user "app" but no password (in the URL or --kv-password-file)');
    expect(resolveOptions({ module, kv: 'redis://app@h', kvPasswordFile: '/x' })).toMatchObject({ kv: { username: 'app', password: null }, kvPasswordFile: '/x' });
  });
});

describe('the password and CA files are read when the server starts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcpmod-kv-options-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // Each file option: the server it belongs to, what an unusable file holds, and what listen() then says.
  const files = [
    { what: 'a password file that is missing or empty', option: 'kvPasswordFile', kv: 'redis://127.0.0.1:1', holds: '\n', refused: 'is empty' },
    { what: 'a CA file that is missing or holds no certificate', option: 'kvTlsCa', kv: 'rediss://127.0.0.1:1', holds: 'not a certificate\n', refused: 'is not a PEM CA certificate file (no PEM certificate found)' },
  ] as const;
  for (const f of files) {
    it(`${f.what} stops listen() with an error naming the option`, async () => {
      const listen = (file: string) => createServer({ module, kv: f.kv, [f.option]: file, threads: 1, logLevel: 'silent' }).listen();
      await expect(listen(join(dir, 'none'))).rejects.toThrow(new RegExp(`^${f.option} could not be read: ENOENT`));
      const unusable = join(dir, f.option);
      writeFileSync(unusable, f.holds);
      await expect(listen(unusable)).rejects.toThrow(`${f.option} ${f.refused}: ${unusable}`);
    });
  }

  it('the CLI prints the one line with the flag', async () => {
    const r = await run(process.execPath, ['bin/tcpmod.js', 'serve', module, '--port', '0', '--kv', 'redis://127.0.0.1:1', '--kv-password-file', join(dir, 'none')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--kv-password-file could not be read: ENOENT/);
    const bad = await run(process.execPath, ['bin/tcpmod.js', 'serve', module, '--port', '0', '--kv', 'redis://h:0']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('--kv must be "memory" or redis[s]://');
  });
});

describe('--kv-timeout has an upper bound (a kv call blocks its worker; the native wait is an int of ms)', () => {
  const AT_MOST = 'must be at most 3600000 ms, got';

  it('accepts up to 1 hour and refuses anything longer with one exact line', () => {
    expect(resolveOptions({ module, kv: 'redis://h', kvTimeout: '1h' })).toMatchObject({ kvTimeoutMs: 3_600_000 });
    expect(resolveOptions({ module, kv: 'redis://h', kvTimeout: 3_600_000 })).toMatchObject({ kvTimeoutMs: 3_600_000 });
    for (const v of ['3600001', '3600001ms', '61m', '2h', '600h', 3_600_001, 2 ** 31, 1e300]) {
      const e = refusal({ kv: 'redis://h', kvTimeout: v });
      expect(e.message, String(v)).toBe(`kvTimeout ${AT_MOST} ${JSON.stringify(v)}`);
      expect(e.describe(flag)).toBe(`--kv-timeout ${AT_MOST} ${JSON.stringify(v)}`);
    }
    // Not a number at all is still the duration error, not the bound.
    expect(refusal({ kv: 'redis://h', kvTimeout: Infinity }).message).toMatch(/^kvTimeout must be a duration/);
  });

  it('createServer refuses it before anything starts', () => {
    let thrown: unknown = null;
    try {
      createServer({ module, kv: 'redis://127.0.0.1:1', kvTimeout: '2h', threads: 1, logLevel: 'silent' });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(OptionError);
    expect((thrown as OptionError).message).toBe('kvTimeout must be at most 3600000 ms, got "2h"');
    expect((thrown as OptionError).code).toBe('TCPMOD_INVALID_OPTION');
  });

  it('the CLI prints the one line with the flag and exits non-zero', async () => {
    // A server that took the option would listen on: run() kills it (well within the test's timeout).
    const args = ['bin/tcpmod.js', 'serve', module, '--port', '0', '--kv', 'redis://127.0.0.1:1', '--kv-timeout', '2h'];
    const r = await run(process.execPath, args, { timeoutMs: 20_000 });
    expect(r.stdout).not.toMatch(/listening/);
    expect(r.stderr).toBe('tcpmod: --kv-timeout must be at most 3600000 ms, got "2h"\n');
    expect(r.code).toBe(1);
  }, 60_000);
});
