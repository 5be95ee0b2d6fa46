// memcache.wasm served by `tcpmod serve`, driven by the memcached world's own
// clients: memccapable -a (the ASCII tests of memcached's capability checker),
// the libmemcached command-line tools, and raw sockets: N clients x M incr on
// several workers end exact. .ci/run installs libmemcached-tools.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './fixtures.js';
import { requireTool, run, serve, type ServedProcess } from './server-process.js';
import { textConn } from './net-client.js';

let srv: ServedProcess;
let servers: string;
const dir = mkdtempSync(join(tmpdir(), 'tcpmod-memcache-'));

beforeAll(async () => {
  for (const t of ['memccapable', 'memcping', 'memccp', 'memccat', 'memcrm', 'memcstat', 'memcflush', 'memcexist', 'memctouch']) await requireTool(t);
  srv = await serve(join(ROOT, 'build', 'memcache.wasm'), ['--threads', '4']);
  servers = `--servers=127.0.0.1:${srv.port}`;
}, 60_000);

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  expect(await srv?.stop()).toBe(0);
});

const tool = (name: string, ...args: string[]) => run(name, [servers, ...args], { timeoutMs: 30_000 });

describe('memcache.wasm against memcached\'s clients', () => {
  it('passes memccapable -a, every ASCII test', async () => {
    const r = await run('memccapable', ['-a', '-h', '127.0.0.1', '-p', String(srv.port)], { timeoutMs: 60_000 });
    expect(r.stdout + r.stderr).not.toMatch(/\[FAIL\]/);
    expect(r.stdout).toMatch(/All tests passed/);
    expect(r.stdout.match(/\[pass\]/g)?.length).toBe(27);
    expect(r.code).toBe(0);
  });

  it('the libmemcached tools: memcping, memccp, memccat, memcexist, memctouch, memcstat, memcrm, memcflush', async () => {
    const file = join(dir, 'greeting.txt');
    writeFileSync(file, 'hello from memccp\n');
    expect((await tool('memcping')).code).toBe(0);
    expect((await tool('memccp', file)).code).toBe(0);
    const cat = await tool('memccat', 'greeting.txt');
    expect(cat.code).toBe(0);
    expect(cat.stdout).toBe('hello from memccp\n\n'); // the value, then the newline memccat adds
    expect((await tool('memcexist', 'greeting.txt')).code).toBe(0);
    expect((await tool('memctouch', '--expire=100', 'greeting.txt')).code).toBe(0);
    const stat = await tool('memcstat');
    expect(stat.code).toBe(0);
    expect(stat.stdout).toMatch(/version: 1\.6\.21-tcpmod/);
    expect((await tool('memcrm', 'greeting.txt')).code).toBe(0);
    expect((await tool('memcexist', 'greeting.txt')).code).not.toBe(0);
    expect((await tool('memccp', file)).code).toBe(0);
    expect((await tool('memcflush')).code).toBe(0);
    expect((await tool('memcexist', 'greeting.txt')).code).not.toBe(0);
    expect((await tool('memctouch', '--expire=100', 'greeting.txt')).code).not.toBe(0);
  }, 60_000);

  it('16 clients x 200 incr on 4 workers end at exactly 3200, each value handed out once', async () => {
    const setup = await lines('set counter 0 0 1\r\n0\r\n', 1);
    expect(setup).toEqual(['STORED']);
    const client = async (): Promise<number[]> => {
      const out: number[] = [];
      // Bursts of 1 to 10 pipelined incr, so they race inside a call and across workers.
      for (let sent = 0, k = 1; sent < 200; k = (k % 10) + 1) {
        const n = Math.min(k, 200 - sent);
        out.push(...(await lines('incr counter 1\r\n'.repeat(n), n)).map(Number));
        sent += n;
      }
      return out;
    };
    const seen = (await Promise.all(Array.from({ length: 16 }, client))).flat();
    expect(seen).toHaveLength(3200);
    expect(new Set(seen).size).toBe(3200);
    expect(Math.max(...seen)).toBe(3200);
    expect(await lines('get counter\r\n', 3)).toEqual(['VALUE counter 0 4', '3200', 'END']);
  }, 60_000);
});

describe('memcache.wasm items sent from the store (kv_send) over sockets', () => {
  it('big and small values in one pipelined multi-get arrive whole and in order', async () => {
    const big = 'B'.repeat(300_000);
    expect(await lines(`set e2e:big 9 0 ${big.length}\r\n${big}\r\nset e2e:s 1 0 2\r\nhi\r\n`, 2)).toEqual(['STORED', 'STORED']);
    const c = await textConn(srv.port);
    try {
      c.write('get e2e:s e2e:big e2e:s\r\nget e2e:big\r\n');
      const want = `VALUE e2e:s 1 2\r\nhi\r\nVALUE e2e:big 9 300000\r\n${big}\r\nVALUE e2e:s 1 2\r\nhi\r\nEND\r\nVALUE e2e:big 9 300000\r\n${big}\r\nEND\r\n`;
      await c.until((t) => t.length >= want.length);
      expect(c.text === want).toBe(true);
    } finally {
      c.destroy();
    }
  }, 60_000);

  it('a big item rewritten while 4 clients get it: every reply\'s header matches its data (one version each)', async () => {
    const versions = [['a', 1, 40_000], ['b', 2, 50_000]] as const;
    const setOf = (i: number) => {
      const [ch, flags, n] = versions[i % 2];
      return `set e2e:race ${flags} 0 ${n}\r\n${ch.repeat(n)}\r\n`;
    };
    expect(await lines(setOf(0), 1)).toEqual(['STORED']);
    const writer = async () => {
      for (let i = 1; i <= 40; i++) expect(await lines(setOf(i), 1)).toEqual(['STORED']);
    };
    const reader = async () => {
      const c = await textConn(srv.port);
      try {
        for (let i = 0; i < 25; i++) {
          const before = c.text.length;
          c.write('get e2e:race\r\n');
          await c.until((t) => t.endsWith('END\r\n') && t.length > before + 5);
          const reply = c.text.slice(before);
          const m = /^VALUE e2e:race (\d) (\d+)\r\n([ab]+)\r\nEND\r\n$/.exec(reply);
          expect(m, reply.slice(0, 60)).not.toBeNull();
          // The flags name the version: the length and bytes must be that version's.
          const [ch, , n] = versions[Number(m![1]) - 1];
          expect([Number(m![2]), m![3].length, m![3] === ch.repeat(n)]).toEqual([n, n, true]);
        }
      } finally {
        c.destroy();
      }
    };
    await Promise.all([writer(), writer(), reader(), reader(), reader(), reader()]);
  }, 120_000);
});

/** Sends `input` on a new connection and returns the first `want` reply lines. */
async function lines(input: string, want: number): Promise<string[]> {
  const s = await textConn(srv.port);
  try {
    s.write(input);
    await s.until((text) => (text.match(/\r\n/g) ?? []).length >= want);
  } finally {
    s.destroy();
  }
  return s.text.split('\r\n').slice(0, want);
}
