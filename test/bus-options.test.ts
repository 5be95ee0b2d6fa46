// --bus (docs/abi.md §15): off, a redis:// URL, or by default the --kv Redis
// when that is a plain redis:// one; each refusal one line naming the option,
// the CLI's too.
import { describe, expect, it } from 'vitest';
import { OptionError, resolveOptions, type ServerOptions } from '../dist/options.js';
import { run } from './server-process.js';

const module = 'build/echo.wasm';

function refusal(o: Partial<ServerOptions>): OptionError {
  try {
    resolveOptions({ module, ...o });
  } catch (e) {
    expect(e).toBeInstanceOf(OptionError);
    return e as OptionError;
  }
  throw new Error('no OptionError thrown');
}

describe('--bus', () => {
  it('is off without a Redis store, and follows a redis:// --kv by default', () => {
    expect(resolveOptions({ module }).bus).toBeNull();
    expect(resolveOptions({ module, kv: 'redis://:pw@cache:6380/2' }).bus).toEqual({
      type: 'redis', host: 'cache', port: 6380, db: 2, username: '', password: 'pw', tls: false, fromKv: true,
    });
    expect(resolveOptions({ module, kv: 'redis://cache', bus: 'off' }).bus).toBeNull();
    // A rediss:// store does not give a bus: the bus does not speak TLS yet.
    expect(resolveOptions({ module, kv: 'rediss://cache' }).bus).toBeNull();
  });

  it('takes its own redis:// URL, with or without a store', () => {
    expect(resolveOptions({ module, bus: 'redis://10.0.0.5' }).bus).toMatchObject({ host: '10.0.0.5', port: 6379, password: null, fromKv: false });
    expect(resolveOptions({ module, kv: 'redis://a', bus: 'redis://u:p@b:7000' }).bus).toMatchObject({ host: 'b', port: 7000, username: 'u', password: 'p', fromKv: false });
  });

  it('refuses in one line what it cannot use, never showing a password', () => {
    const form = 'must be "off" or redis://[[USER]:PASSWORD@]HOST[:PORT] (PORT 1 to 65535, default 6379), got';
    for (const v of ['memory', 'on', 'http://h', 'redis://', 'redis://h:0']) expect(refusal({ bus: v }).message, v).toBe(`bus ${form} ${JSON.stringify(v)}`);
    expect(refusal({ bus: 'redis://u:hunter2@h:99999' }).message).toBe(`bus ${form} "redis://***@h:99999"`);
    expect(refusal({ bus: 'rediss://h' }).message).toBe('bus does not speak TLS yet: rediss:// is refused (use redis:// on a trusted network)');
    expect(refusal({ bus: 'redis://user@h' }).message).toBe('bus names user "user" but no password');
    for (const e of [refusal({ bus: 'memory' }), refusal({ bus: 'rediss://h' })]) expect(e.message).not.toContain('\n');
  });

  it('the CLI names the flag', async () => {
    const r = await run(process.execPath, ['bin/tcpmod.js', 'serve', module, '--port', '0', '--bus', 'rediss://h']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('--bus does not speak TLS yet');
  });
});
