// The SDK's v1.2 store declarations (assembly/sdk/kv.ts), compiled from
// AssemblyScript source: the host accepts every signature, inspect lists the
// module as v1.2, and a compare-and-set increment loop written with them ends
// exact when many connections interleave on the process store.
import { describe, expect, it } from 'vitest';
import { V1_2_STORE_IMPORTS } from '../host/module/abi.js';
import { describeModule } from '../dist/inspect.js';
import { loadModule } from '../host/testing.js';
import { serve, type ServedProcess } from './server-process.js';
import { textConn } from './net-client.js';
import { compileAs } from './asc-source.js';
import { scratchFile } from './fixtures.js';

// Each input byte: 'c' adds 1 to "n" by get-version / compare-and-set (retrying
// on KV_EXISTS), 'r' answers how many retries it took so far; 'x' calls every
// other v1.2 function once (so each becomes an import) and answers their sum.
const SOURCE = `
import { Conn, Action, configure, kv_get_ver, kv_cas, kv_set_ex, kv_getdel, kv_expire, kv_persist, kv_ttl,
  kv_append, kv_incr_ex, kv_scan, kv_del_prefix, kv_get_range, kv_send, kv_expire_ex, kv_incr_at, KV_DECR, KV_NX, KV_EXISTS, KV_MISSING, KV_KEEPTTL, KV_XX, KV_GT } from "./sdk";
export * from "./sdk/exports";

const KEY = memory.data<u8>([110]);
const BUF = memory.data(64);
const VER = memory.data(8);
let retries: i64 = 0;
configure(1024, 1024, 0, onData);

function parse(p: usize, n: i32): i64 {
  let v: i64 = 0;
  for (let i = 0; i < n; i++) v = v * 10 + <i64>(load<u8>(p + i) - 48);
  return v;
}

function increment(): i64 {
  for (let attempt = 0; attempt < 1000000; attempt++) {
    const n = kv_get_ver(KEY, 1, BUF, 32, VER);
    if (n == KV_MISSING) {
      store<u8>(BUF, 49);
      if (kv_set_ex(KEY, 1, BUF, 1, KV_NX, 0) == 0) return 1;
      retries++;
      continue;
    }
    const next = parse(BUF, n) + 1;
    const text = next.toString();
    let len = 0;
    for (; len < text.length; len++) store<u8>(BUF + len, <u8>text.charCodeAt(len));
    const rc = kv_cas(KEY, 1, BUF, len, KV_KEEPTTL, 0, load<u64>(VER));
    if (rc == 0) return next;
    if (rc != KV_EXISTS) return -1;
    retries++;
  }
  return -1;
}

function onData(c: Conn): Action {
  for (let i = 0; i < c.inputLen; i++) {
    const b = load<u8>(c.input + i);
    if (b == 99) c.writeInt(increment());
    else if (b == 114) c.writeInt(retries);
    else {
      let sum: i64 = kv_getdel(KEY, 1, BUF, 8) + kv_expire(KEY, 1, 5) + kv_persist(KEY, 1) + kv_ttl(KEY, 1, VER);
      sum += kv_append(KEY, 1, BUF, 1, 0) + kv_incr_ex(KEY, 1, 1, KV_XX, VER) + kv_scan(KEY, 0, 0, 10, BUF, 64, VER) + kv_del_prefix(KEY, 1);
      sum += kv_get_range(KEY, 1, 0, BUF, 8, VER) + kv_send(c.id, KEY, 1, 0, 8, 0, BUF, 0) + kv_expire_ex(KEY, 1, 5, KV_XX | KV_GT);
      sum += kv_incr_at(KEY, 1, 0, 1, KV_DECR, VER);
      c.writeInt(sum);
    }
    c.writeByte(10);
  }
  c.consume(c.inputLen);
  return Action.Continue;
}
`;

describe('the SDK v1.2 store functions', () => {
  it('compile to exactly the imports the host checks, and inspect lists them under v1.2', async () => {
    const file = scratchFile('sdk-kv12.wasm', await compileAs('sdk_kv12', SOURCE));
    const d = await describeModule(file, { memoryCap: 32 << 20 });
    expect(d.v1_2.sort()).toEqual(V1_2_STORE_IMPORTS.map((n) => `tcpmod.${n}`).sort());
    expect(d.v1_1).toEqual([]);
    const m = await loadModule(file);
    expect(m.connect().send('x').text).toMatch(/^-?\d+\n$/);
  });

  it('a get-version / compare-and-set increment from 16 connections on 4 workers ends exact, each value handed out once', async () => {
    const srv = await serve(scratchFile('sdk-kv12b.wasm', await compileAs('sdk_kv12b', SOURCE)), ['--threads', '4']);
    try {
      // Bursts of 'c' per write, so increments race within a call and across workers.
      const results = await Promise.all(Array.from({ length: 16 }, () => lines(srv, ['c', 'ccccc', 'c', 'cccccccccc', 'ccc', 'c'], 21)));
      const seen = results.flat().map(Number);
      expect(seen).toHaveLength(16 * 21);
      expect(new Set(seen).size).toBe(16 * 21);
      expect(Math.max(...seen)).toBe(16 * 21);
      expect((await lines(srv, ['c'], 1)).map(Number)).toEqual([16 * 21 + 1]);
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  });
});

/** Writes each chunk once the replies to the previous ones are in; returns the `want` reply lines. */
async function lines(srv: ServedProcess, chunks: string[], want: number): Promise<string[]> {
  const s = await textConn(srv.port, srv.host);
  let sent = 0;
  try {
    for (const chunk of chunks) {
      sent += chunk.length;
      s.write(chunk);
      await s.until((text) => (text.match(/\n/g) ?? []).length >= sent);
    }
  } finally {
    s.destroy();
  }
  const out = s.text.trim().split('\n');
  expect(out).toHaveLength(want);
  return out;
}
