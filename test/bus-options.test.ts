// --bus (docs/abi.md §15): off, a redis:// or rediss:// URL, or by default the
// --kv Redis; --bus-tls-ca only with TLS; each refusal one line naming the
// option, the CLI's too.
import { describe, expect, it } from 'vitest';
import { resolveOptions } from '../dist/options.js';
import { refusal } from './option-refusal.js';
import { run } from './server-process.js';

const module = 'build/echo.wasm';

describe('--bus', () => {
  it('is off without a Redis store, and follows a redis:// or rediss:// --kv by default', () => {
    expect(resolveOptions({ module }).bus).toBeNull();
    expect(resolveOptions({ module, kv: 'redis://:pw@cache:6380/2' }).bus).toEqual({
      type: 'redis', host: 'cache', port: 6380, db: 2, username: '', password: 'pw', tls: false, fromKv: true,
    });
    expect(resolveOptions({ module, kv: 'redis://cache', bus: 'off' }).bus).toBeNull();
    // A rediss:// store gives a bus over TLS, with the store's CAs unless --bus-tls-ca says otherwise.
    expect(resolveOptions({ module, kv: 'rediss://cache' }).bus).toMatchObject({ host: 'cache', tls: true, fromKv: true });
    expect(resolveOptions({ module, kv: 'rediss://cache', busTlsCa: '/b.pem' }).busTlsCa).toBe('/b.pem');
  });

  it('takes its own redis:// or rediss:// URL, with or without a store', () => {
    expect(resolveOptions({ module, bus: 'rediss://10.0.0.5:6380', busTlsCa: '/ca.pem' })).toMatchObject({ bus: { host: '10.0.0.5', port: 6380, tls: true, fromKv: false }, busTlsCa: '/ca.pem' });
    expect(resolveOptions({ module, bus: 'rediss://h' }).busTlsCa).toBeNull();
    expect(resolveOptions({ module, bus: 'redis://10.0.0.5' }).bus).toMatchObject({ host: '10.0.0.5', port: 6379, password: null, fromKv: false });
    expect(resolveOptions({ module, kv: 'redis://a', bus: 'redis://u:p@b:7000' }).bus).toMatchObject({ host: 'b', port: 7000, username: 'u', password: 'p', fromKv: false });
  });

  it('refuses in one line what it cannot use, never showing a password', () => {
    const form = 'must be "off" or redis[s]://[[USER]:PASSWORD@]HOST[:PORT] (PORT 1 to 65535, default 6379), got';
    for (const v of ['memory', 'on', 'http://h', 'redis://', 'redis://h:0']) expect(refusal({ bus: v }).message, v).toBe(`bus ${form} ${JSON.stringify(v)}`);
    expect(refusal({ bus: 'redis://u:hunter2@h:99999' }).message).toBe(`bus ${form} "redis://***@h:99999"`);
    expect(refusal({ bus: 'redis://h', busTlsCa: '/ca.pem' }).message).toBe('busTlsCa only applies with a rediss:// bus (or a rediss:// kv it follows)');
    expect(refusal({ kv: 'redis://h', busTlsCa: '/ca.pem' }).message).toBe('busTlsCa only applies with a rediss:// bus (or a rediss:// kv it follows)');
    expect(refusal({ bus: 'redis://user@h' }).message).toBe('bus names user "user" but no password');
    for (const e of [refusal({ bus: 'memory' }), refusal({ busTlsCa: '/x' })]) expect(e.message).not.toContain('\n');
  });

  it('the CLI names the flag', async () => {
    const r = await run(process.execPath, ['bin/tcpmod.js', 'serve', module, '--port', '0', '--bus', 'redis://h', '--bus-tls-ca', '/ca.pem']);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toContain('--bus-tls-ca only applies with a rediss:// --bus (or a rediss:// --kv it follows)');
  });
});
