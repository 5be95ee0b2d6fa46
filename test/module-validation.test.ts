// Module validation as users meet it: `tcpmod inspect <module>` describes a
// good module and exits 0, or prints one line per problem and exits 1; `tcpmod
// serve` runs the same checks and refuses to start. Every refusal has its own
// purpose-made fixture (test/fixtures/*.wat, compiled by ./fixtures.ts), and
// each test asserts the exit code of both commands and that the message names
// the offending import, export or limit, without a stack trace. A refusal with
// a usual cause says how to fix it at the end of the same line ("; fix: ...").
import { readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixture, ROOT, scratchFile } from './fixtures.js';
import { run, serve } from './server-process.js';

const BIN = join(ROOT, 'bin', 'tcpmod.js');

function tcpmod(args: string[]) {
  return run(process.execPath, [BIN, ...args], { timeoutMs: 20_000 });
}

/** The problem lines of a refusal (the CLI prints each as "  - problem"). */
function problemLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('  - '));
}

interface Refusal {
  what: string;
  module: () => Promise<string>;
  args?: string[];
  /** One pattern per expected problem line (or, for a refused config, for the one message). */
  says: RegExp[];
  /** False when the refusal is a single message rather than a list of problems. */
  listed?: boolean;
  /** Each matches one whole problem line: the problem, then "; fix: " and how to fix it. */
  fixes?: RegExp[];
}

const refusals: Refusal[] = [
  {
    what: 'a file that is not WebAssembly at all',
    module: async () => scratchFile('notes.wasm', 'these are my notes, not a module\n'),
    says: [/not a WebAssembly module/],
  },
  {
    what: 'a truncated WebAssembly file',
    module: async () => scratchFile('truncated.wasm', readFileSync(await fixture('kv')).subarray(0, 40)),
    says: [/malformed WebAssembly/],
  },
  {
    what: 'imports outside the allow-list (env.abort, env.seed), each named',
    module: () => fixture('bad-imports'),
    says: [/import env\.abort is not allowed/, /import env\.seed is not allowed/],
    fixes: [
      /^import env\.abort is not allowed by ABI v1; fix: point AssemblyScript's abort at tcpmod\.abort: build with `tcpmod build`, .*"extends": "tcpmod\/asconfig\.json".*--lib node_modules\/tcpmod\/assembly\/sdk\/abort\.ts --use abort=tcpmod_abort$/,
      /^import env\.seed is not allowed by ABI v1; fix: AssemblyScript imports it for Math\.random: .*random_get$/,
    ],
  },
  {
    what: 'a module that opens files through WASI (path_open, fd_read)',
    module: () => fixture('wasi-open'),
    says: [/import wasi_snapshot_preview1\.path_open is not allowed/, /import wasi_snapshot_preview1\.fd_read is not allowed/],
    fixes: [/^import wasi_snapshot_preview1\.path_open is not allowed by ABI v1; fix: .*libc stdio and files \(printf, fopen\).*log with tcpmod\.log$/],
  },
  {
    what: 'the WASI imports libc stdio pulls in (fd_seek, fd_close), with the fix',
    module: () => fixture('wasi-stdio'),
    says: [/import wasi_snapshot_preview1\.fd_seek is not allowed/, /import wasi_snapshot_preview1\.fd_close is not allowed/],
    fixes: [
      /^import wasi_snapshot_preview1\.fd_seek is not allowed by ABI v1; fix: WASI functions beyond fd_write, clock_time_get, random_get and proc_exit come from libc stdio .*clang --target=wasm32 -nostdlib.*do not use printf\/stdio, and log with tcpmod\.log$/,
      /^import wasi_snapshot_preview1\.fd_close is not allowed by ABI v1; fix: .*do not use printf\/stdio/,
    ],
  },
  {
    what: 'host functions imported from env or under a name the host lacks',
    module: () => fixture('env-host-functions'),
    says: [/import env\.send is not allowed/, /import env\.tcpmod_log is not allowed/, /import env\.helper is not allowed/, /import tcpmod\.frobnicate is not allowed/, /import tcpmod\.constructor is not allowed/],
    fixes: [
      /^import env\.send is not allowed by ABI v1; fix: a host function declared without its import module: in C use __attribute__\(\(import_module\("tcpmod"\), import_name\("send"\)\)\)/,
      /^import env\.tcpmod_log is not allowed by ABI v1; fix: .*import_name\("log"\).*@external\("tcpmod", "log"\)/,
      /^import env\.helper is not allowed by ABI v1; fix: a function the module declares but never defines/,
      /^import tcpmod\.frobnicate is not allowed by ABI v1; fix: this host's tcpmod imports are send, log, now_ms, .*peer_addr, kv_get_ver, .*kv_del_prefix, kv_get_range, kv_send, kv_expire_ex, kv_incr_at, subscribe, unsubscribe, publish, topic_count, topics_list, publish_frame, upstream_open, upstream_send, upstream_close, upstream_resume, upstream_addr, upstream_shutdown, shutdown_output$/,
    ],
  },
  {
    what: 'an allowed import with the wrong signature',
    module: () => fixture('import-signature'),
    says: [/import tcpmod\.kv_incr has signature \(i32, i32, i32, i32\) -> i32; ABI v1 says \(i32, i32, i64, i32\) -> i32/],
    fixes: [
      /^import tcpmod\.kv_incr has signature \(i32, i32, i32, i32\) -> i32; ABI v1 says \(i32, i32, i64, i32\) -> i32; fix: declare it in C as int32_t tcpmod_kv_incr\(const void \*key, int32_t key_len, int64_t delta, int64_t \*out\) \(include\/tcpmod\.h\), in AssemblyScript as @external\("tcpmod", "kv_incr"\) declare function kv_incr\(key: usize, key_len: i32, delta: i64, out: usize\): i32$/,
    ],
  },
  {
    what: 'a v1.2 store import with the wrong signature, named as v1.2 with its declarations',
    module: () => fixture('import-signature-v12'),
    says: [/import tcpmod\.kv_cas has signature \(i32, i32, i32, i32, i32, i64, i32\) -> i32; ABI v1\.2 says \(i32, i32, i32, i32, i32, i64, i64\) -> i32/],
    fixes: [
      /; fix: declare it in C as int32_t tcpmod_kv_cas\(const void \*key, int32_t key_len, const void \*val, int32_t val_len, int32_t flags, int64_t ttl_ms, uint64_t version\) \(include\/tcpmod\.h\), in AssemblyScript as @external\("tcpmod", "kv_cas"\) declare function kv_cas\(.*version: u64\): i32$/,
    ],
  },
  {
    what: 'a missing required export',
    module: () => fixture('missing-export'),
    says: [/missing export tcpmod_on_data/],
    fixes: [/^missing export tcpmod_on_data \(i32, i32, i32\) -> i32; fix: export it: in C define it with TCPMOD_EXPORT\(tcpmod_on_data\) .*-Wl,--export=tcpmod_on_data.*in AssemblyScript export it from the entry file$/],
  },
  {
    what: 'required exports of the wrong kind and signature',
    module: () => fixture('export-signature'),
    says: [/export tcpmod_io_desc must be a function, not a global/, /export tcpmod_on_data has signature \(i32, i32\) -> i32/],
  },
  {
    what: 'its own memory without a maximum',
    module: () => fixture('memory-no-max'),
    says: [/memory declares no maximum/],
    fixes: [/^memory declares no maximum; a module-defined memory must declare a maximum of at most 512 pages \(33554432 bytes\); fix: declare a maximum of at most 512 pages: asc --maximumMemory 512 \(asconfig "maximumMemory"\), clang -Wl,--max-memory=33554432, Rust -C link-arg=--max-memory=33554432$/],
  },
  {
    what: 'its own memory with a maximum above the default 32 MiB cap',
    module: () => fixture('memory-over-cap'),
    says: [/memory maximum 1024 pages exceeds the host cap of 512 pages/],
    fixes: [/^memory maximum 1024 pages exceeds the host cap of 512 pages \(33554432 bytes\); fix: declare a maximum of at most 512 pages: .*clang -Wl,--max-memory=33554432.*; or raise the host's cap with --module-memory$/],
  },
  {
    what: 'its own memory with a maximum above a lowered --module-memory',
    module: () => fixture('iodesc-caps'),
    args: ['--module-memory', '1MiB'],
    says: [/memory maximum 160 pages exceeds the host cap of 16 pages \(1048576 bytes\)/],
    fixes: [/; fix: declare a maximum of at most 16 pages: asc --maximumMemory 16 .*clang -Wl,--max-memory=1048576, Rust -C link-arg=--max-memory=1048576; or raise/],
  },
  {
    what: 'an imported memory whose initial size is above the cap',
    module: () => fixture('memory-import-over-cap'),
    says: [/import env\.memory: initial size 600 pages exceeds the memory cap of 512 pages/],
    fixes: [/^import env\.memory: initial size 600 pages exceeds the memory cap of 512 pages; fix: declare a smaller initial memory \(asc --initialMemory PAGES, clang -Wl,--initial-memory=BYTES\) or raise the host's --module-memory$/],
  },
  {
    what: 'IoDesc regions that overlap',
    module: () => fixture('iodesc-overlap'),
    says: [/IoDesc input region \[1024, 2048\) and output region \[1536, 2560\) overlap/],
  },
  {
    what: 'an IoDesc region outside memory',
    module: () => fixture('iodesc-outside'),
    says: [/IoDesc output region \[65000, 66024\) lies outside memory/],
  },
  {
    what: 'IoDesc capacities outside the ABI bounds',
    module: () => fixture('iodesc-caps'),
    says: [/IoDesc in_cap 100 is outside 1024\.\.4194304/, /IoDesc out_cap 8388608 is outside 1024\.\.4194304/],
  },
  {
    what: 'a state slot larger than 256 bytes',
    module: () => fixture('iodesc-state'),
    says: [/IoDesc state_size 300 exceeds 256/],
  },
  {
    what: 'a trap in _initialize',
    module: () => fixture('initialize-trap'),
    says: [/trap during start-up: unreachable/],
  },
  {
    what: 'a trap in the WebAssembly start function',
    module: () => fixture('start-trap'),
    says: [/trap during start-up: unreachable/],
  },
  {
    what: 'a data segment outside memory',
    module: () => fixture('data-outside'),
    says: [/trap during start-up: .*data segment is out of bounds/],
  },
  {
    what: 'a --config STRING that tcpmod_init refuses, with its code',
    module: () => fixture('config'),
    args: ['--config', 'nope'],
    says: [/tcpmod_init refused the config \(returned 42\)/],
    listed: false,
  },
  {
    what: 'a --config @file that tcpmod_init refuses',
    module: () => fixture('config'),
    args: ['--config', `@${scratchFile('refused.cfg', 'mode=strict\n')}`],
    says: [/tcpmod_init refused the config \(returned 42\)/],
    listed: false,
  },
];

describe('refused modules: inspect and serve both exit 1 naming the problem', () => {
  for (const r of refusals) {
    it(r.what, async () => {
      const file = await r.module();
      const [inspect, served] = await Promise.all([
        tcpmod(['inspect', file, ...(r.args ?? [])]),
        tcpmod(['serve', file, '--port', '0', ...(r.args ?? [])]),
      ]);
      for (const [cmd, res] of [['inspect', inspect], ['serve', served]] as const) {
        expect(res.code, `${cmd} exit code; stderr:\n${res.stderr}`).toBe(1);
        expect(res.stdout, `${cmd} prints nothing on stdout`).toBe('');
        expect(res.stderr).toContain(file);
        for (const pattern of r.says) expect(res.stderr, cmd).toMatch(pattern);
        if (r.listed !== false) expect(problemLines(res.stderr), `${cmd}: one line per problem`).toHaveLength(r.says.length);
        const problems = problemLines(res.stderr).map((l) => l.slice(4));
        for (const fix of r.fixes ?? []) expect(problems.filter((p) => fix.test(p)), `${cmd}: one problem line matches ${fix}`).toHaveLength(1);
        expect(res.stderr, `${cmd}: no stack trace`).not.toMatch(/^\s+at /m);
      }
    });
  }
});

describe('accepted modules: inspect describes them and exits 0', () => {
  it('reports ABI version, imports, exports, IoDesc regions, memory and state size', async () => {
    const file = await fixture('faulty');
    const r = await tcpmod(['inspect', file, '--module-memory', '1MiB']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const out = r.stdout;
    expect(out).toContain('tcpmod ABI v1 module');
    // env.memory declared 1..65536 pages: the host creates it with maximum min(cap, declared) = 16 pages.
    expect(out).toMatch(/imports env\.memory; the host creates it with 1\.\.16 pages \(declared 1\.\.65536 pages, cap 16 pages\)/);
    expect(out).toMatch(/in\s+\[1024, 2048\)\s+1024 bytes/);
    expect(out).toMatch(/out\s+\[2048, 3072\)\s+1024 bytes/);
    expect(out).toMatch(/result\s+\[64, 72\)/);
    expect(out).toMatch(/state:\s+0 bytes per connection/);
    for (const name of ['tcpmod.abort', 'wasi_snapshot_preview1.fd_write', 'wasi_snapshot_preview1.proc_exit', 'env.memory'])
      expect(out).toContain(name);
    expect(out).toMatch(/tcpmod_on_data \(i32, i32, i32\) -> i32/);
    expect(out).toMatch(/tcpmod_abi_v1 \(\) -> \(\)/);
  });

  it('an imported memory declaring a maximum below the cap keeps its own maximum', async () => {
    const r = await tcpmod(['inspect', await fixture('counter')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/the host creates it with 1\.\.4 pages \(declared 1\.\.4 pages, cap 512 pages\)/);
  });

  it('a raised --module-memory admits a larger own maximum', async () => {
    const r = await tcpmod(['inspect', await fixture('memory-over-cap'), '--module-memory', '64MiB']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/defines its own: 1\.\.1024 pages \(cap 1024 pages\)/);
  });

  it('a config tcpmod_init accepts, as a string and from a file', async () => {
    const file = await fixture('config');
    const cfg = scratchFile('accepted.cfg', 'ok, from a file\n');
    const [str, fromFile, none] = await Promise.all([
      tcpmod(['inspect', file, '--config', 'okay']),
      tcpmod(['inspect', file, '--config', `@${cfg}`]),
      tcpmod(['inspect', file]),
    ]);
    expect(str.code, str.stderr).toBe(0);
    expect(str.stdout).toMatch(/config:\s+4 bytes, accepted by tcpmod_init/);
    expect(fromFile.code, fromFile.stderr).toBe(0);
    expect(fromFile.stdout).toMatch(/config:\s+16 bytes, accepted by tcpmod_init/);
    expect(none.code, none.stderr).toBe(0);
    expect(none.stdout).toMatch(/config:\s+0 bytes, accepted by tcpmod_init/);
  });

  it('serve hands the --config @file bytes to tcpmod_init unchanged', async () => {
    const cfg = scratchFile('served.cfg', Buffer.from('ok\u0000\u00ff binary config\n', 'latin1'));
    const srv = await serve(await fixture('config'), ['--threads', '1', '--config', `@${cfg}`]);
    try {
      const reply = await new Promise<Buffer>((resolve, reject) => {
        const s = createConnection(srv.port, srv.host);
        const chunks: Buffer[] = [];
        s.on('data', (d) => {
          chunks.push(d);
          if (Buffer.concat(chunks).length >= readFileSync(cfg).length) {
            s.destroy();
            resolve(Buffer.concat(chunks));
          }
        });
        s.on('error', reject);
        s.write('?');
      });
      expect(reply.equals(readFileSync(cfg))).toBe(true);
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  });
});
