// The commands resp.wasm maps onto the store's v1.2 calls, driven with
// redis-cli: shared by test/resp.e2e.test.ts (the process store) and
// test/kv-redis.e2e.test.ts (--kv redis://), so both stores answer alike.
import { expect } from 'vitest';

type Cli = (...args: string[]) => Promise<{ stdout: string; stderr: string }>;

/** Runs the commands under `ns:` (a prefix no other test uses); the store holds no other `ns:` key. */
export async function newCommandsWithCli(cli: Cli, ns: string): Promise<void> {
  const k = (s: string) => `${ns}:${s}`;
  const out = async (...args: string[]) => (await cli(...args)).stdout;
  // SET options
  expect(await out('SET', k('s'), 'v1', 'NX')).toBe('OK\n');
  expect(await out('SET', k('s'), 'v2', 'NX')).toBe('\n');
  expect(await out('SET', k('s'), 'v3', 'XX', 'GET')).toBe('v1\n');
  expect(await out('SET', k('none'), 'v', 'XX')).toBe('\n');
  expect(await out('SET', k('s'), 'v4', 'EX', '100', 'GET')).toBe('v3\n');
  expect(Number(await out('TTL', k('s')))).toSatisfy((t: number) => t > 95 && t <= 100);
  expect(await out('SET', k('s'), 'v5', 'KEEPTTL')).toBe('OK\n');
  expect(Number(await out('PTTL', k('s')))).toSatisfy((t: number) => t > 95_000 && t <= 100_000);
  expect(await out('SET', k('s'), 'v6', 'PX', '100000')).toBe('OK\n');
  expect(await out('PERSIST', k('s'))).toBe('1\n');
  expect(await out('TTL', k('s'))).toBe('-1\n');
  // SETNX GETSET GETDEL APPEND
  expect(await out('SETNX', k('n'), 'a')).toBe('1\n');
  expect(await out('SETNX', k('n'), 'b')).toBe('0\n');
  expect(await out('GETSET', k('n'), 'c')).toBe('a\n');
  expect(await out('APPEND', k('n'), 'de')).toBe('3\n');
  expect(await out('GETDEL', k('n'))).toBe('cde\n');
  expect(await out('GETDEL', k('n'))).toBe('\n');
  // EXPIRE family: a key expires on the store's clock
  expect(await out('SET', k('e'), 'v')).toBe('OK\n');
  expect(await out('PEXPIRE', k('e'), '150')).toBe('1\n');
  expect(await out('EXPIRE', k('none'), '10')).toBe('0\n');
  await new Promise((r) => setTimeout(r, 300));
  expect(await out('GET', k('e'))).toBe('\n');
  expect(await out('TTL', k('e'))).toBe('-2\n');
  // EXPIRE with Redis 7's NX/XX/GT/LT (answers as redis-server 7.0 gives them)
  expect(await out('SET', k('x'), 'v')).toBe('OK\n');
  for (const [args, want] of [
    [['EXPIRE', k('x'), '100', 'XX'], '0'], [['EXPIRE', k('x'), '100', 'GT'], '0'], [['EXPIRE', k('x'), '100', 'LT'], '1'],
    [['EXPIRE', k('x'), '50', 'NX'], '0'], [['EXPIRE', k('x'), '200', 'gt'], '1'], [['EXPIRE', k('x'), '300', 'LT'], '0'],
    [['EXPIRE', k('x'), '150', 'LT', 'XX'], '1'], [['EXPIRE', k('none'), '10', 'NX'], '0'], [['PEXPIRE', k('x'), '0', 'GT'], '0'],
    [['EXPIRE', k('x'), '10', 'NX', 'XX'], 'ERR NX and XX, GT or LT options at the same time are not compatible'],
    [['EXPIRE', k('x'), '10', 'GT', 'LT'], 'ERR GT and LT options at the same time are not compatible'],
    [['EXPIRE', k('x'), '10', 'FOO'], 'ERR Unsupported option FOO'],
  ] as const) {
    const r = await cli(...args);
    expect((r.stdout + r.stderr).trim(), args.join(' ')).toBe(want);
  }
  expect(Number(await out('TTL', k('x')))).toSatisfy((t: number) => t > 145 && t <= 150);
  expect(await out('PEXPIRE', k('x'), '-5', 'LT')).toBe('1\n');
  expect(await out('EXISTS', k('x'))).toBe('0\n');
  // SCAN (redis-cli --scan walks the cursor) and KEYS, with patterns
  for (let i = 0; i < 30; i++) expect(await out('SET', k(`user:${i}`), 'v')).toBe('OK\n');
  const scanned = (await out('--scan', '--pattern', `${ns}:user:*`)).trim().split('\n');
  expect(new Set(scanned).size).toBe(30);
  expect((await out('KEYS', `${ns}:user:1?`)).trim().split('\n').sort()).toEqual(Array.from({ length: 10 }, (_, i) => k(`user:1${i}`)).sort());
  expect(await out('KEYS', `${ns}:nothing*`)).toBe('\n');
  // DBSIZE and FLUSHALL see the whole store, not an index of this module's writes
  const before = Number(await out('DBSIZE'));
  expect(before).toBeGreaterThanOrEqual(31);
  expect(await out('DEL', k('user:0'))).toBe('1\n');
  expect(Number(await out('DBSIZE'))).toBe(before - 1);
}
