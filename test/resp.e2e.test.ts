// build/resp.wasm over real sockets, driven by the real Redis clients
// (redis-cli, redis-benchmark). A missing client fails the suite: .ci/run
// installs them. Run `npm run build:wasm` and `npm run build:host` first.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchArgs } from './batch-variant.js';
import { requireTool, run, serve, type ServedProcess } from './server-process.js';
import { newCommandsWithCli } from './resp-commands.js';

let srv: ServedProcess;

beforeAll(async () => {
  await requireTool('redis-cli');
  await requireTool('redis-benchmark');
  srv = await serve('build/resp.wasm', ['--threads', '2', ...batchArgs()]);
});

afterAll(async () => {
  await srv?.stop();
});

function cli(...args: string[]) {
  return run('redis-cli', ['-h', '127.0.0.1', '-p', String(srv.port), ...args]);
}

function bench(...args: string[]) {
  return run('redis-benchmark', ['-h', '127.0.0.1', '-p', String(srv.port), ...args], { timeoutMs: 120_000 });
}

/** redis-benchmark shows failures as "Error from server", "WARNING ..." or connection errors. */
function expectClean(out: { code: number | null; stdout: string; stderr: string }) {
  const all = out.stdout + out.stderr;
  expect(out.code, all).toBe(0);
  expect(all).not.toMatch(/error|warning|ERR|could not|failed/i);
}

describe('resp.wasm with a Node client library (ioredis, from npm)', () => {
  it('SET EX / NX / GET, GETSET, GETDEL, APPEND, EXPIRE, TTL, PERSIST, scanStream with MATCH, KEYS, DBSIZE', async () => {
    const r = new Redis({ host: '127.0.0.1', port: srv.port, lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await r.connect();
      expect(await r.set('io:a', '1', 'EX', 100)).toBe('OK');
      expect(await r.ttl('io:a')).toBeGreaterThan(95);
      expect(await r.set('io:a', '2', 'NX')).toBe(null);
      expect(await r.persist('io:a')).toBe(1);
      expect(await r.ttl('io:a')).toBe(-1);
      expect(await r.persist('io:a')).toBe(0);
      expect(await r.set('io:a', '3', 'XX', 'GET')).toBe('1');
      expect(await r.getset('io:a', '4')).toBe('3');
      expect(await r.append('io:a', '5')).toBe(2);
      expect(await r.getdel('io:a')).toBe('45');
      expect(await r.exists('io:a')).toBe(0);
      expect(await r.setnx('io:b', 'x')).toBe(1);
      expect(await r.pexpire('io:b', 100_000)).toBe(1);
      expect(await r.pttl('io:b')).toBeGreaterThan(95_000);
      for (let i = 0; i < 25; i++) await r.set(`io:list:${i}`, 'v');
      const seen: string[] = [];
      for await (const keys of r.scanStream({ match: 'io:list:*', count: 4 })) seen.push(...(keys as string[]));
      expect(new Set(seen).size).toBe(25);
      expect((await r.keys('io:list:2?')).sort()).toEqual(['io:list:20', 'io:list:21', 'io:list:22', 'io:list:23', 'io:list:24']);
      expect(await r.dbsize()).toBeGreaterThanOrEqual(26);
    } finally {
      r.disconnect();
    }
  }, 60_000);
});

describe('resp.wasm with redis-cli', () => {
  it('SET with NX/XX/GET/EX/PX/KEEPTTL, SETNX, GETSET, GETDEL, APPEND, EXPIRE/PEXPIRE/TTL/PTTL/PERSIST, SCAN, KEYS, DBSIZE', async () => {
    await newCommandsWithCli(cli, 'e2e-v12');
  }, 60_000);

  it('SET, GET, DEL, INCR', async () => {
    expect((await cli('SET', 'e2e:k', 'hello world')).stdout).toBe('OK\n');
    expect((await cli('GET', 'e2e:k')).stdout).toBe('hello world\n');
    expect((await cli('DEL', 'e2e:k', 'e2e:none')).stdout).toBe('1\n');
    expect((await cli('GET', 'e2e:k')).stdout).toBe('\n'); // nil prints as an empty line when not on a terminal
    expect((await cli('INCR', 'e2e:n')).stdout).toBe('1\n');
    expect((await cli('INCRBY', 'e2e:n', '41')).stdout).toBe('42\n');
    expect((await cli('GET', 'e2e:n')).stdout).toBe('42\n');
  });

  it('prints the error text for an unknown command and for wrong arity', async () => {
    const r = await cli('NOSUCHCMD', 'a', 'b');
    expect(r.stdout + r.stderr).toContain("ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' 'b'");
    const a = await cli('GET');
    expect(a.stdout + a.stderr).toContain("ERR wrong number of arguments for 'get' command");
    const i = await cli('INCR', 'e2e:text-not-int');
    expect(i.stdout).toBe('1\n');
    await cli('SET', 'e2e:text', 'abc');
    const bad = await cli('INCR', 'e2e:text');
    expect(bad.stdout + bad.stderr).toContain('ERR value is not an integer or out of range');
  });

  it('stores a 300 KB value from stdin (-x) and reads it back', async () => {
    const value = 'x'.repeat(300_000);
    expect((await run('redis-cli', ['-h', '127.0.0.1', '-p', String(srv.port), '-x', 'SET', 'e2e:big'], { input: value })).stdout).toBe('OK\n');
    // -x appends stdin as the last argument verbatim (no trailing newline was sent).
    expect((await cli('STRLEN', 'e2e:big')).stdout).toBe('300000\n');
    expect((await cli('GET', 'e2e:big')).stdout).toBe(value + '\n');
  });

  it('expires keys set with PX', async () => {
    expect((await cli('SET', 'e2e:ttl', 'v', 'PX', '300')).stdout).toBe('OK\n');
    expect((await cli('GET', 'e2e:ttl')).stdout).toBe('v\n');
    await new Promise((r) => setTimeout(r, 450));
    expect((await cli('GET', 'e2e:ttl')).stdout).toBe('\n');
    expect((await cli('TTL', 'e2e:ttl')).stdout).toBe('-2\n');
  });

  it('answers CONFIG GET and COMMAND the way clients expect', async () => {
    expect((await cli('CONFIG', 'GET', 'save')).stdout).toBe('save\n\n');
    expect((await cli('CONFIG', 'GET', 'appendonly')).stdout).toBe('appendonly\nno\n');
    expect((await cli('COMMAND', 'COUNT')).stdout).toBe('41\n');
    expect((await cli('PING')).stdout).toBe('PONG\n');
  });

  it('works through a pipe of many commands (redis-cli --pipe)', async () => {
    const cmds = Array.from({ length: 1000 }, (_, i) => `SET e2e:pipe:${i} ${i}\r\nINCR e2e:pipe:count\r\n`).join('');
    const r = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(srv.port), '--pipe'], { input: cmds });
    expect(r.stdout + r.stderr).toMatch(/errors: 0, replies: 2000/);
    expect((await cli('GET', 'e2e:pipe:count')).stdout).toBe('1000\n');
    expect((await cli('MGET', 'e2e:pipe:0', 'e2e:pipe:999')).stdout).toBe('0\n999\n');
  });

  it('counts keys with DBSIZE and empties the store with FLUSHALL / FLUSHDB', async () => {
    // Start from a known state: earlier cases left keys behind.
    expect((await cli('FLUSHALL')).stdout).toBe('OK\n');
    expect((await cli('DBSIZE')).stdout).toBe('0\n');
    expect((await cli('SET', 'e2e:a', '1')).stdout).toBe('OK\n');
    expect((await cli('MSET', 'e2e:b', '2', 'e2e:c', '3')).stdout).toBe('OK\n');
    expect((await cli('INCR', 'e2e:d')).stdout).toBe('1\n');
    expect((await cli('APPEND', 'e2e:e', 'x')).stdout).toBe('1\n');
    expect((await cli('DBSIZE')).stdout).toBe('5\n');
    expect((await cli('DEL', 'e2e:a')).stdout).toBe('1\n');
    expect((await cli('DBSIZE')).stdout).toBe('4\n');
    expect((await cli('FLUSHALL')).stdout).toBe('OK\n');
    expect((await cli('DBSIZE')).stdout).toBe('0\n');
    expect((await cli('GET', 'e2e:b')).stdout).toBe('\n');
    // Keys written over many connections, from both worker threads.
    const cmds = Array.from({ length: 500 }, (_, i) => `SET e2e:many:${i} ${i}\r\n`).join('');
    const r = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(srv.port), '--pipe'], { input: cmds });
    expect(r.stdout + r.stderr).toMatch(/errors: 0, replies: 500/);
    expect((await cli('SET', 'e2e:a', '1')).stdout).toBe('OK\n');
    expect((await cli('DBSIZE')).stdout).toBe('501\n');
    expect((await cli('FLUSHDB', 'ASYNC')).stdout).toBe('OK\n');
    expect((await cli('DBSIZE')).stdout).toBe('0\n');
    expect((await cli('MGET', 'e2e:many:0', 'e2e:a')).stdout).toBe('\n\n');
    const bad = await cli('SET', 'e2e:x', 'v', 'FLUSHALL');
    expect(bad.stdout + bad.stderr).toContain('ERR syntax error');
  });
});

describe('resp.wasm with redis-benchmark', () => {
  it('runs ping/set/get/incr without errors and counts INCR exactly', async () => {
    await cli('DEL', 'counter:__rand_int__');
    const out = await bench('-t', 'ping,set,get,incr', '-n', '20000', '-c', '20', '-q');
    expectClean(out);
    for (const t of ['PING_INLINE', 'PING_MBULK', 'SET', 'GET', 'INCR']) expect(out.stdout).toMatch(new RegExp(`${t}: [\\d.]+ requests per second`));
    // Without -r the key is the literal "counter:__rand_int__", incremented once per request,
    // from 20 connections spread over 2 worker threads.
    expect((await cli('GET', 'counter:__rand_int__')).stdout).toBe('20000\n');
  }, 120_000);

  it('runs pipelined (-P 16) ping/set/get without errors', async () => {
    const out = await bench('-P', '16', '-t', 'ping,set,get', '-n', '20000', '-q');
    expectClean(out);
    for (const t of ['PING_INLINE', 'PING_MBULK', 'SET', 'GET']) expect(out.stdout).toMatch(new RegExp(`${t}: [\\d.]+ requests per second`));
    // The SET payload is 3 random bytes (-d defaults to 3).
    expect((await cli('STRLEN', 'key:__rand_int__')).stdout).toBe('3\n');
  }, 120_000);
});
