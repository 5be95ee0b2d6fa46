// The C side of ABI v1: include/tcpmod.h and examples/c-kv, built with clang
// --target=wasm32 as a module author would (clang and wasm-ld must be installed;
// CI installs them, and without them these tests fail rather than skip).
// The header is checked against the host's own tables by compiling a module that
// uses every import and defines every export; the example passes `tcpmod
// inspect`, answers every command the same however TCP splits its input
// (socket-free harness, every byte boundary), and serves a real socket.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { OPTIONAL_EXPORTS, REQUIRED_EXPORTS, TCPMOD_IMPORTS } from '../host/module/abi.js';
import { IMPORT_DECLARATIONS } from '../host/module/declarations.js';
import { readShape, signature } from '../host/module/wasm-binary.js';
import { native } from '../host/sys.js';
import { loadModule, splitPlans, type CloseReasonName, type LoadedModule } from '../host/testing.js';
import { ROOT } from './fixtures.js';
import { run, serve } from './server-process.js';

const tmp = mkdtempSync(join(tmpdir(), 'tcpmod-c-kv-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const KV_WASM = join(tmp, 'kv.wasm');
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => Buffer.from(b).toString('latin1');

/** Runs a build command; a missing compiler is a failure with the reason, not a skip. */
function mustRun(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  if (r.error) throw new Error(`${cmd} could not run (${r.error.message}): install clang and lld (wasm-ld)`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stdout}${r.stderr}`);
}

beforeAll(() => {
  mustRun('sh', [join(ROOT, 'examples', 'c-kv', 'build.sh'), KV_WASM]);
}, 120_000);

describe('include/tcpmod.h', () => {
  it('declares every import and export with the signature the host checks', () => {
    // Calls every import (clang emits only the imports a module uses) and defines every export.
    const src = `#include "tcpmod.h"
static uint8_t buf[2048];
static tcpmod_result_t res;
static const tcpmod_iodesc_t desc = { buf, 1024, buf + 1024, 1024, 0, 0, &res, 0 };
TCPMOD_EXPORT(tcpmod_abi_v1) void tcpmod_abi_v1(void) {}
TCPMOD_EXPORT(tcpmod_io_desc) const tcpmod_iodesc_t *tcpmod_io_desc(void) { return &desc; }
TCPMOD_EXPORT(_initialize) void _initialize(void) {}
TCPMOD_EXPORT(__collect) void __collect(void) {}
TCPMOD_EXPORT(tcpmod_state_version) int32_t tcpmod_state_version(void) { return 1; }
TCPMOD_EXPORT(tcpmod_init) int32_t tcpmod_init(int32_t n) { return n > 1000 ? 1 : 0; }
TCPMOD_EXPORT(tcpmod_on_open) int32_t tcpmod_on_open(int32_t c) { return tcpmod_set_timer(c, 1) + tcpmod_want(c, 2); }
TCPMOD_EXPORT(tcpmod_on_timer) int32_t tcpmod_on_timer(int32_t c, int32_t n) { return tcpmod_peer_addr(c, (char *)buf, n); }
TCPMOD_EXPORT(tcpmod_on_upstream) int32_t tcpmod_on_upstream(int32_t c, int32_t u, int32_t e, int32_t n) {
  return e == TCPMOD_UPSTREAM_FAILED ? tcpmod_upstream_close(c, u) : tcpmod_upstream_send(c, u, buf, n) + tcpmod_upstream_open(c, "r", 1) + tcpmod_upstream_resume(c, u) + tcpmod_upstream_addr("r", 1, 0, (char *)buf, 8) +
    (e == TCPMOD_UPSTREAM_EOF ? tcpmod_shutdown_output(c) : n == TCPMOD_UPSTREAM_SHUT ? tcpmod_upstream_shutdown(c, u) : 0);
}
TCPMOD_EXPORT(tcpmod_on_message) int32_t tcpmod_on_message(int32_t c, int32_t n, int32_t t, int32_t p, int32_t m) {
  return tcpmod_publish(buf, t, buf + n, m) + tcpmod_unsubscribe(c, TCPMOD_TOPIC_GLOB, buf, p) + tcpmod_subscribe(c, TCPMOD_TOPIC_MQTT, buf, t) +
    tcpmod_topic_count(TCPMOD_TOPIC_EXACT, buf, t) + tcpmod_topics_list(buf, p, 0, buf + n, m) +
    tcpmod_publish_frame(buf, t, buf, m, buf + n, p) + tcpmod_subscribe(c, TCPMOD_TOPIC_EXACT | TCPMOD_TOPIC_DIRECT, buf, t);
}
TCPMOD_EXPORT(tcpmod_on_close) void tcpmod_on_close(int32_t c, int32_t r) { if (r == TCPMOD_REASON_TLS) tcpmod_abort(0, 0, c, r); }
TCPMOD_EXPORT(tcpmod_on_data) int32_t tcpmod_on_data(int32_t c, int32_t n, int32_t f) {
  int64_t v;
  tcpmod_log(TCPMOD_LOG_INFO, buf, n);
  n += tcpmod_send(c, buf, n) + tcpmod_kv_get(buf, 1, buf, 8) + tcpmod_kv_set(buf, 1, buf, 1) + tcpmod_kv_del(buf, 1);
  n += tcpmod_kv_incr(buf, 1, 1, &v) + tcpmod_conn_info(c, TCPMOD_INFO_ALPN, buf, 8) + tcpmod_draining();
  uint64_t ver;
  int64_t w;
  n += tcpmod_kv_get_ver(buf, 1, buf, 8, &ver) + tcpmod_kv_getdel(buf, 1, buf, 8) + tcpmod_kv_set_ex(buf, 1, buf, 1, TCPMOD_KV_NX, 5);
  n += tcpmod_kv_cas(buf, 1, buf, 1, TCPMOD_KV_KEEPTTL, 0, ver) + tcpmod_kv_expire(buf, 1, TCPMOD_KV_TTL_MAX) + tcpmod_kv_persist(buf, 1);
  n += tcpmod_kv_ttl(buf, 1, &w) + tcpmod_kv_append(buf, 1, buf, 1, TCPMOD_KV_PREPEND) + tcpmod_kv_incr_ex(buf, 1, 1, TCPMOD_KV_XX, &w);
  n += tcpmod_kv_scan(buf, 1, w, 10, buf, 64, &w) + tcpmod_kv_del_prefix(buf, 1);
  n += tcpmod_kv_get_range(buf, 1, 0, buf, 8, &ver) + tcpmod_kv_send(c, buf, 1, 0, 8, ver, buf, 1) + tcpmod_kv_expire_ex(buf, 1, 5, TCPMOD_KV_XX | TCPMOD_KV_GT | TCPMOD_KV_LT);
  n += tcpmod_kv_incr_at(buf, 1, 0, 1, TCPMOD_KV_DECR, &ver);
  res.consumed = (uint32_t)n + (uint32_t)tcpmod_now_ms() + (uint32_t)f + (uint32_t)v + (uint32_t)w;
  return TCPMOD_CONTINUE;
}
`;
    const file = join(tmp, 'all.c');
    const out = join(tmp, 'all.wasm');
    writeFileSync(file, src);
    mustRun('clang', ['--target=wasm32', '-nostdlib', '-O2', '-Wall', '-Wextra', '-Werror', '-std=c11', '-I', join(ROOT, 'include'),
      '-Wl,--no-entry', '-Wl,--max-memory=131072', '-o', out, file]);
    const shape = readShape(new Uint8Array(readFileSync(out)));
    const imports = Object.fromEntries(shape.imports.map((i) => [`${i.module}.${i.name}`, i.desc.kind === 'function' ? signature(i.desc.type) : i.desc.kind]));
    expect(imports).toEqual(Object.fromEntries(Object.entries(TCPMOD_IMPORTS).map(([n, s]) => [`tcpmod.${n}`, s])));
    const exports = Object.fromEntries(shape.exports.filter((e) => e.desc.kind === 'function').map((e) => [e.name, e.desc.kind === 'function' ? signature(e.desc.type) : '']));
    expect(exports).toEqual({ ...REQUIRED_EXPORTS, ...OPTIONAL_EXPORTS });
    expect(shape.memories[0].maximum).toBe(2);
  });

  it('has, word for word, the C prototype a refused import signature suggests', () => {
    const header = readFileSync(join(ROOT, 'include', 'tcpmod.h'), 'utf8').replace(/\s+/g, ' ');
    expect(Object.keys(IMPORT_DECLARATIONS).sort()).toEqual(Object.keys(TCPMOD_IMPORTS).sort());
    for (const [name, d] of Object.entries(IMPORT_DECLARATIONS)) {
      expect(header, name).toContain(` ${d.c};`);
      expect(header, name).toContain(`TCPMOD_IMPORT(${name})`);
    }
  });

  it('ships in the npm package', () => {
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const [pack] = JSON.parse(r.stdout) as { files: { path: string }[] }[];
    expect(pack.files.map((f) => f.path)).toContain('include/tcpmod.h');
  });

  it('refuses to compile for a target other than wasm32', () => {
    const file = join(tmp, 'native.c');
    writeFileSync(file, '#include "tcpmod.h"\n');
    const r = spawnSync('clang', ['-fsyntax-only', '-I', join(ROOT, 'include'), file], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/tcpmod\.h is for WebAssembly modules/);
  });
});

describe('examples/c-kv', () => {
  it('passes tcpmod inspect: its own 2-page memory with a maximum, the kv imports, no WASI', async () => {
    const r = await run(process.execPath, [join(ROOT, 'bin', 'tcpmod.js'), 'inspect', KV_WASM], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/defines its own: 2\.\.2 pages/);
    expect(r.stdout).toMatch(/state:\s+4 bytes per connection/);
    expect(r.stdout).toMatch(/in\s+\[\d+, \d+\)\s+4096 bytes/);
    expect(r.stdout).toContain('tcpmod.kv_incr (i32, i32, i64, i32) -> i32');
    expect(r.stdout).not.toContain('wasi_snapshot_preview1');
    const j = await run(process.execPath, [join(ROOT, 'bin', 'tcpmod.js'), 'inspect', '--json', KV_WASM], { timeoutMs: 30_000 });
    expect(j.code, j.stdout).toBe(0);
    expect(JSON.parse(j.stdout)).toMatchObject({ ok: true, memory: { source: 'own', declared: { initial: 2, maximum: 2 } }, stateSize: 4, v1_1: [] });
  });

  describe('through the socket-free harness, every command split at every byte boundary', () => {
    let m: LoadedModule;
    beforeEach(async () => {
      // A fresh module each test: its own store, connection ids from 1, no faults.
      m = await loadModule(KV_WASM);
    });

    const where = (input: string) => `input ${JSON.stringify(input.length > 80 ? input.slice(0, 80) + '…' : input)}`;

    /**
     * Sends `input` on a fresh connection, with the store emptied and then seeded with `seed`,
     * at every split (sendInPieces: each split from that same store must give what the whole
     * input gives), and checks the whole gives `reply` and closes as `closed`.
     */
    function everySplit(input: string, reply: string, closed: CloseReasonName | null, opts: { eof?: boolean; seed?: Record<string, string> } = {}) {
      m.kv.clear();
      for (const [k, v] of Object.entries(opts.seed ?? {})) m.kv.set(k, Buffer.from(v, 'latin1'));
      const c = m.connect();
      expect(dec(c.sendInPieces(enc(input), { eof: opts.eof })), where(input)).toBe(reply);
      expect(c.closed, where(input)).toBe(closed);
      if (opts.eof) closesAsPeerAtEverySplit(input);
      expect(m.faults).toEqual([]);
    }

    /**
     * sendInPieces with eof counts a close as 'peer' or 'module' the same (whether CLOSE comes
     * in the call that carries EOF depends on the cuts); c-kv never closes by itself at EOF,
     * so every split must close as 'peer'.
     */
    function closesAsPeerAtEverySplit(input: string) {
      const bytes = enc(input);
      for (const cuts of splitPlans(bytes.length)) {
        const c = m.connect();
        let prev = 0;
        for (const cut of [...cuts, bytes.length]) {
          if (c.closed !== null) break;
          c.send(bytes.subarray(prev, cut), { eof: cut === bytes.length });
          prev = cut;
        }
        expect(c.closed, `${where(input)} cut at [${cuts.length > 10 ? `${cuts.length} cuts` : cuts}]`).toBe('peer');
      }
    }

    it('SET then GET (a value with spaces)', () => everySplit('SET greeting hello, world\nGET greeting\n', 'OK\nVALUE hello, world\n', null));
    it('GET of a missing key', () => everySplit('GET nothing\n', 'NOT_FOUND\n', null));
    it('DEL of a key, then of the same key again', () => everySplit('SET k v\nDEL k\nDEL k\nGET k\n', 'OK\nDELETED\nNOT_FOUND\nNOT_FOUND\n', null));
    it('INCR counts from 0 and reads back as decimal text', () => everySplit('INCR hits\nINCR hits\nGET hits\n', '1\n2\nVALUE 2\n', null));
    it('INCR of a value that is not an integer, and past the int64 range', () =>
      everySplit('INCR name\nINCR big\n', 'ERR not an integer, or out of range\nERR not an integer, or out of range\n', null, {
        seed: { name: 'ada', big: '9223372036854775807' },
      }));
    it('INCR of a negative value prints the sign', () => everySplit('INCR t\n', '-41\n', null, { seed: { t: '-42' } }));
    it('STATS counts the commands of this connection, itself included (the state slot)', () =>
      everySplit('STATS\nGET x\nbogus\nSTATS\n', 'COMMANDS 1\nNOT_FOUND\nERR unknown command\nCOMMANDS 4\n', null));
    it('CRLF line ends', () => everySplit('SET a 1\r\nGET a\r\n', 'OK\nVALUE 1\n', null));
    it('usage errors', () =>
      everySplit('GET\nGET a b\nSET a\nDEL\nINCR\nSTATS x\n\n',
        'ERR usage: GET key\nERR usage: GET key\nERR usage: SET key value\nERR usage: DEL key\nERR usage: INCR key\nERR usage: STATS\nERR unknown command\n', null));
    it('QUIT answers BYE and closes, ignoring what follows', () => everySplit('SET a 1\nQUIT\nGET a\n', 'OK\nBYE\n', 'module'));
    it('EOF after complete lines closes as the peer; an unfinished last line is dropped', () => {
      everySplit('SET a 1\nGET a\n', 'OK\nVALUE 1\n', 'peer', { eof: true });
      everySplit('SET a 1\nGET a', 'OK\n', 'peer', { eof: true });
    });
    it('replies larger than what is left of the out region wait for the next round (progress loop)', () => {
      const big = 'v'.repeat(3000);
      everySplit('GET big\nGET big\nGET big\nSTATS\n', `VALUE ${big}\n`.repeat(3) + 'COMMANDS 4\n', null, { seed: { big } });
    });
    it('a line longer than the 4 KiB input region: ERR line too long, then close', () => {
      const long = 'SET k ' + 'x'.repeat(4200) + '\n';
      // Every byte boundary of a 4 KiB line is 4,000 runs: cut around the region's end and at a sample of the rest.
      const bytes = enc('GET k\n' + long);
      for (const cut of [1, 5, 6, 7, 100, 4095, 4096, 4097, 4101, 4102, 4103, 4200, bytes.length - 1]) {
        const c = m.connect();
        expect(dec(c.sendInPieces(bytes, { at: [cut] })), `cut at ${cut}`).toBe('NOT_FOUND\nERR line too long\n');
        expect(c.closed, `cut at ${cut}`).toBe('module');
      }
      expect(m.kv.size).toBe(0);
      everySplit('x'.repeat(4096), 'ERR line too long\n', 'module');
    });
    it('a line of exactly 4096 bytes, "\\n" included, still fits', () => {
      const value = 'y'.repeat(4096 - 'SET k \n'.length);
      const c = m.connect();
      expect(dec(c.sendInPieces(enc(`SET k ${value}\nGET k\n`), { at: [4000] }))).toBe(`OK\nVALUE ${value}\n`);
      expect(c.closed).toBeNull();
      expect(m.kv.get('k')).toBe(value);
    });
    it('connections share the store but not their command counts', () => {
      const a = m.connect();
      const b = m.connect();
      expect(a.send('SET shared 7\nSTATS\n').text).toBe('OK\nCOMMANDS 2\n');
      expect(b.send('GET shared\n').text).toBe('VALUE 7\n');
      expect(b.send('STATS\n').text).toBe('COMMANDS 2\n');
      expect(a.send('STATS\n').text).toBe('COMMANDS 3\n');
      expect(m.faults).toEqual([]);
    });
  });

  it('serves a real socket: pipelined commands, two connections, QUIT closes', async () => {
    native.kvClear();
    const srv = await serve(KV_WASM, ['--threads', '2']);
    try {
      const talk = (input: string, until: (s: string) => boolean) =>
        new Promise<{ text: string; ended: boolean }>((resolve, reject) => {
          const s = createConnection(srv.port, srv.host);
          let text = '';
          const timer = setTimeout(() => {
            s.destroy();
            reject(new Error(`no complete reply; got ${JSON.stringify(text)}`));
          }, 20_000);
          s.on('data', (d) => {
            text += d.toString('latin1');
            if (until(text)) {
              clearTimeout(timer);
              s.destroy();
              resolve({ text, ended: false });
            }
          });
          s.on('end', () => {
            clearTimeout(timer);
            resolve({ text, ended: true });
          });
          s.on('error', reject);
          // One byte at a time for the first command, the rest pipelined in one write.
          const [first, ...rest] = input.split(/(?<=\n)/);
          (async () => {
            for (const ch of first) {
              s.write(ch);
              await new Promise((r) => setTimeout(r, 5));
            }
            s.write(rest.join(''));
          })().catch(reject);
        });
      const one = await talk('SET e2e hello\nINCR n\nINCR n\nGET e2e\nSTATS\n', (t) => t.endsWith('COMMANDS 5\n'));
      expect(one.text).toBe('OK\n1\n2\nVALUE hello\nCOMMANDS 5\n');
      const two = await talk('GET n\nQUIT\n', () => false);
      expect(two).toEqual({ text: 'VALUE 2\nBYE\n', ended: true });
    } finally {
      expect(await srv.stop()).toBe(0);
      native.kvClear();
    }
  }, 60_000);
});
