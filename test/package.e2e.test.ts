// The published package as a new user meets it: `npm pack` this repository,
// install the tarball into a fresh project (its install script takes the
// prebuilt native shim: no compiler may run, which stand-ins for cc, c++ and
// make on PATH would record), then use it the ways the README says: the `tcpmod`
// binary, the API from a `node -e` one-liner (worker threads must not inherit
// its flags), the typings under a strict `tsc` without skipLibCheck, and the
// socket-free harness from 'tcpmod/testing'. The fallback is forced once
// (compiled from source, and served from); a prebuilt that does not load is
// refused; and the prebuilt serves TLS (Node's own OpenSSL) under Node 20 and
// under the newest Node the npm registry offers (the `node` package via npx).
//
// Slow (a pack, two npm installs, one node-gyp build): a few minutes here.
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compilerTrap, echoOnce, explain, installInto, killAll, killGroup, live, packRepo, refused, repo, run, serveCommand, serveWithNpx, type Ran } from './package-helpers.js';
import { makeTestCerts, type TestCerts } from './tls-certs.js';

/** The newest Node the npm registry's `node` package offers (its dist-tag latest when this was written: 26). */
const NEWEST_NODE = 'node@26';

const tsc = join(repo, 'node_modules', 'typescript', 'bin', 'tsc');

let tmp = '';
let app = '';
let tarball = '';
let installed = '';
let install: Ran;
let trap: { path: string; calls: string };
const timings: Record<string, number> = {};

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'tcpmod-package-'));
  tarball = await packRepo(join(tmp, 'pack'), timings);
  app = join(tmp, 'app');
  trap = compilerTrap(join(tmp, 'no-compilers'));
  install = await installInto(app, tarball, timings, {}, '', { PATH: trap.path });
  installed = join(app, 'node_modules', 'tcpmod');
}, 330_000);

afterAll(() => {
  killAll();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  console.log(`package.e2e timings (ms): ${JSON.stringify(timings)}`);
});

describe('the npm tarball', () => {
  it('ships the build, the addon sources, the SDK and docs, and no tests or benchmarks', async () => {
    const list = await run('tar', ['-tzf', tarball], { cwd: tmp, timeoutMs: 30_000 });
    expect(list.code, explain('tar', list)).toBe(0);
    const files = list.stdout.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
    for (const f of [
      'package.json',
      'README.md',
      'bin/tcpmod.js',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/testing.js',
      'dist/testing.d.ts',
      'dist/native/native.d.ts',
      'dist/worker/worker-main.js',
      'build/echo.wasm',
      'build/http.wasm',
      'build/resp.wasm',
      'host/native/binding.gyp',
      'host/native/src/addon.cc',
      'scripts/build-native.mjs',
      'prebuilds/linux-x64/tcpmod_native.node',
      'prebuilds/linux-x64/tcpmod_native.json',
      'assembly/sdk/index.ts',
      'asconfig.json',
      'docs/abi.md',
    ]) {
      expect(files, f).toContain(f);
    }
    const unwanted = files.filter((f) => /^(test|bench|\.ci)\/|^host\/native\/build\/|^assembly\/[^/]+\.ts$|^host\/.*\.ts$|^(?!prebuilds\/).*\.node$/.test(f));
    expect(unwanted).toEqual([]);
    const manifest = JSON.parse((await run('tar', ['-xzOf', tarball, 'package/prebuilds/linux-x64/tcpmod_native.json'], { cwd: tmp, timeoutMs: 30_000 })).stdout);
    expect(manifest).toMatchObject({ napi: 8, platform: 'linux', arch: 'x64', libc: 'glibc' });
  });

  it('installs with the prebuilt native shim: no compiler runs, nothing is built', () => {
    expect(install.stdout).toContain('tcpmod: using the prebuilt native shim (linux-x64, Node-API 8); nothing compiled');
    expect(existsSync(trap.calls), existsSync(trap.calls) ? readFileSync(trap.calls, 'utf8') : '').toBe(false);
    expect(existsSync(join(installed, 'host', 'native', 'build'))).toBe(false);
    expect(existsSync(join(installed, 'dist', 'index.js'))).toBe(true);
    console.log(`package.e2e: npm install of the tarball with the prebuilt took ${timings.installOffline ?? timings.installPreferOffline} ms`);
  });

  it('compiles from source when asked (the fallback), and then serves from the compiled shim', async () => {
    const app2 = join(tmp, 'app-from-source');
    // CXXFLAGS=-O0 (make puts it after binding.gyp's -O2): what is checked is that the fallback compiles
    // the shipped sources with the user's toolchain and serves from the result, not the optimiser's
    // output; unoptimised, the compile takes a fraction of the time. The repository's own builds stay -O2.
    const r = await installInto(app2, tarball, timings, {}, 'FromSource', { TCPMOD_BUILD_FROM_SOURCE: '1', CXXFLAGS: '-O0' });
    expect(r.stdout).toContain('tcpmod: compiling the native shim: the prebuilt does not serve here (building from source was asked for');
    expect(r.stdout).toMatch(/tcpmod: built the native shim in \d+ ms/);
    const pkg2 = join(app2, 'node_modules', 'tcpmod');
    expect(existsSync(join(pkg2, 'host', 'native', 'build', 'Release', 'tcpmod_native.node'))).toBe(true);
    const which = await run(process.execPath, ['--input-type=module', '-e', "import('./node_modules/tcpmod/dist/sys.js').then((m) => console.log(m.nativePath))"], { cwd: app2, timeoutMs: 30_000 });
    expect(which.stdout.trim()).toBe(join(pkg2, 'host', 'native', 'build', 'Release', 'tcpmod_native.node'));
    const { pid, port } = await serveWithNpx(app2, join(pkg2, 'build', 'echo.wasm'));
    try {
      expect(await echoOnce(port, 'compiled\n')).toBe('compiled\n');
    } finally {
      killGroup(pid, 'SIGKILL');
    }
  }, 330_000);

  it('refuses a prebuilt that does not load, saying why, and falls back to compiling', async () => {
    const copy = join(tmp, 'broken-prebuilt');
    cpSync(installed, copy, { recursive: true });
    writeFileSync(join(copy, 'prebuilds', 'linux-x64', 'tcpmod_native.node'), 'not an ELF file');
    const r = await run(process.execPath, ['scripts/build-native.mjs'], { cwd: copy, timeoutMs: 60_000, env: { PATH: trap.path } });
    expect(r.stdout).toMatch(/tcpmod: compiling the native shim: the prebuilt does not serve here \(it does not load in this Node: .*tcpmod_native\.node/);
    // The compile it falls back to meets the stand-in compilers (or no node-gyp) and fails, saying so.
    expect(r.code).not.toBe(0);
  });

  describe('the prebuilt serves TLS with Node\'s own OpenSSL', () => {
    let certs: TestCerts;
    beforeAll(() => {
      certs = makeTestCerts();
    });
    afterAll(() => certs?.remove());

    /** Serves echo over TLS from the installed package with `node` (a command and its leading args), and echoes once. */
    async function tlsEcho(node: string[]): Promise<string> {
      const args = [join(installed, 'bin', 'tcpmod.js'), 'serve', join(installed, 'build', 'echo.wasm'), '--host', '127.0.0.1', '--port', '0',
        '--tls-cert', certs.serverChain, '--tls-key', certs.serverKey, '--log-level', 'warn'];
      const { pid, port, stderr } = await serveCommand(app, node[0], [...node.slice(1), ...args]);
      try {
        return await new Promise<string>((resolve, reject) => {
          const s = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: readFileSync(certs.caCert) }, () => s.write('over tls\n'));
          let got = '';
          s.setEncoding('utf8');
          s.on('data', (d: string) => {
            got += d;
            if (got.endsWith('\n')) {
              s.end();
              resolve(got);
            }
          });
          s.on('error', (e) => reject(new Error(`${e.message}; server: ${stderr()}`)));
        });
      } finally {
        killGroup(pid, 'SIGKILL');
      }
    }

    it(`under this Node (${process.version})`, async () => {
      expect(await tlsEcho([process.execPath])).toBe('over tls\n');
    });

    it(`under the newest Node from the npm registry (${NEWEST_NODE})`, async () => {
      const version = await run('npx', ['--prefer-offline', '-y', NEWEST_NODE, '-p', 'process.version + " napi " + process.versions.napi + " openssl " + process.versions.openssl'], { cwd: app, timeoutMs: 240_000 });
      expect(version.code, explain(`npx ${NEWEST_NODE}`, version)).toBe(0);
      console.log(`package.e2e: prebuilt checked under ${version.stdout.trim()}`);
      expect(await tlsEcho(['npx', '--prefer-offline', '-y', NEWEST_NODE])).toBe('over tls\n');
    }, 300_000);
  });

  it('npx tcpmod --help works', async () => {
    const r = await run('npx', ['tcpmod', '--help'], { cwd: app, timeoutMs: 30_000 });
    expect(r.code, explain('npx tcpmod --help', r)).toBe(0);
    expect(r.stdout).toMatch(/Usage: tcpmod/);
    expect(r.stdout).toMatch(/serve/);
    expect(r.stdout).toMatch(/inspect/);
  });

  it('npx tcpmod serve answers an echo over a socket and stops on SIGTERM', async () => {
    const { pid, port, exited, stderr: err } = await serveWithNpx(app, join(installed, 'build', 'echo.wasm'));
    expect(await echoOnce(port, 'hello tcpmod\n')).toBe('hello tcpmod\n');

    // SIGTERM to the process group, as a terminal's Ctrl-C or a service manager does: npx
    // runs the bin through `sh -c`, which does not pass a signal sent to npx alone on.
    const t0 = performance.now();
    killGroup(pid, 'SIGTERM');
    const stop = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), 15_000))]);
    expect(stop, `serve did not stop on SIGTERM: ${err()}`).not.toBeNull();
    // The group is gone (the server itself exited, not only npx), and so is the listener.
    let groupAlive = true;
    for (let i = 0; i < 50 && groupAlive; i++) {
      try {
        process.kill(-pid, 0);
        await new Promise((r) => setTimeout(r, 100));
      } catch {
        groupAlive = false;
      }
    }
    expect(groupAlive, 'a process of `npx tcpmod serve` outlived SIGTERM').toBe(false);
    live.delete(pid);
    expect(await refused(port)).toBe(true);
    expect(err()).not.toMatch(/"level":(50|60)/); // no error or fatal log line
    timings.serveStop = Math.round(performance.now() - t0);
  });

  it('the installed bin exits 0 on SIGTERM', async () => {
    const bin = join(app, 'node_modules', '.bin', 'tcpmod');
    const p = await serveCommand(app, bin, ['serve', join(installed, 'build', 'echo.wasm'), '--host', '127.0.0.1', '--port', '0', '--log-level', 'warn']);
    process.kill(p.pid, 'SIGTERM'); // to the bin itself, not its group
    const stop = await Promise.race([p.exited, new Promise<null>((r) => setTimeout(() => r(null), 15_000))]);
    expect(stop, p.stderr()).toEqual({ code: 0, signal: null });
    live.delete(p.pid);
  });

  it('works from `node --input-type=module -e` (workers do not inherit its flags)', async () => {
    const code = `
      import { createServer } from 'tcpmod';
      import { connect } from 'node:net';
      const server = createServer({ module: 'node_modules/tcpmod/build/echo.wasm', host: '127.0.0.1', port: 0, minThreads: 2 });
      const { port } = await server.listen();
      const reply = await new Promise((resolve, reject) => {
        const s = connect({ port, host: '127.0.0.1' }, () => s.write('one line\\n'));
        let got = '';
        s.setEncoding('utf8');
        s.on('data', (d) => { got += d; if (got.endsWith('\\n')) { s.end(); resolve(got); } });
        s.on('error', reject);
      });
      await server.close();
      console.log('reply=' + JSON.stringify(reply));
    `;
    const r = await run(process.execPath, ['--input-type=module', '-e', code], { cwd: app, timeoutMs: 30_000 });
    expect(r.code, explain('node -e', r)).toBe(0);
    expect(r.stdout).toContain('reply="one line\\n"');
    expect(r.stdout + r.stderr).not.toMatch(/ERR_INPUT_TYPE_NOT_ALLOWED|worker failed/);
  });

  it('type-checks a consumer under strict tsc without skipLibCheck', async () => {
    writeFileSync(
      join(app, 'consumer.ts'),
      [
        "import { createServer, OptionError, SysError, type AddressInfo, type ServerOptions } from 'tcpmod';",
        "import { loadModule, type LoadedModule, type SendResult } from 'tcpmod/testing';",
        '',
        "const options: ServerOptions = { module: 'node_modules/tcpmod/build/echo.wasm', port: 0 };",
        'export async function main(): Promise<string> {',
        '  const server = createServer(options);',
        '  const address: AddressInfo = await server.listen();',
        '  await server.close();',
        "  const m: LoadedModule = await loadModule('node_modules/tcpmod/build/echo.wasm', { now: 0 });",
        "  const r: SendResult = m.connect().send('hi', { eof: true });",
        "  const out: Uint8Array = m.connect().sendInPieces('hi', { at: 'random', seed: 7, count: 3 });",
        "  m.kv.unavailable = (op, key) => op === 'set' && key === 'k';",
        '  return `${address.port} ${out.length} ${r.text} ${r.closed ?? \'open\'} ${OptionError.name} ${SysError.name}`;',
        '}',
        '',
      ].join('\n'),
    );
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          skipLibCheck: false,
          noEmit: true,
          // Node's types, as any Node project has them (tcpmod's typings use node:events, Buffer...).
          types: ['node'],
          typeRoots: [join(repo, 'node_modules', '@types')],
        },
        files: ['consumer.ts'],
      }),
    );
    const r = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: app, timeoutMs: 90_000 });
    expect(r.code, explain('tsc --noEmit', r)).toBe(0);
  });

  it("drives build/echo.wasm socket-free through 'tcpmod/testing'", async () => {
    const code = `
      import { loadModule, SplitMismatchError } from 'tcpmod/testing';
      const m = await loadModule('node_modules/tcpmod/build/echo.wasm');
      const conn = m.connect();
      const r = conn.send('hi');
      console.log('out=' + JSON.stringify(r.text) + ' closed=' + r.closed + ' fault=' + r.fault);
      const end = conn.send('', { eof: true });
      console.log('eof closed=' + end.closed + ' conn=' + conn.closed);
      const c = m.connect();
      const pieces = new TextDecoder().decode(c.sendInPieces('hello, world\\n', { eof: true }));
      console.log('pieces=' + JSON.stringify(pieces) + ' closed=' + c.closed + ' faults=' + m.faults.length);
      console.log('mismatch=' + (typeof SplitMismatchError));
    `;
    const r = await run(process.execPath, ['--input-type=module', '-e', code], { cwd: app, timeoutMs: 30_000 });
    expect(r.code, explain('harness', r)).toBe(0);
    expect(r.stdout).toContain('out="hi" closed=null fault=null');
    expect(r.stdout).toContain('eof closed=peer conn=peer');
    expect(r.stdout).toContain('pieces="hello, world\\n" closed=peer faults=0');
    expect(r.stdout).toContain('mismatch=function');
  });

  it('exposes only its entry points', async () => {
    const code = `
      for (const spec of ['tcpmod/dist/sys.js', 'tcpmod/host/native/build/Release/tcpmod_native.node']) {
        try { await import(spec); console.log(spec + ' imported'); } catch (e) { console.log(spec + ' ' + e.code); }
      }
      const { default: pkg } = await import('tcpmod/package.json', { with: { type: 'json' } });
      console.log('version=' + pkg.version);
    `;
    const r = await run(process.execPath, ['--input-type=module', '-e', code], { cwd: app, timeoutMs: 30_000 });
    expect(r.code, explain('exports', r)).toBe(0);
    expect(r.stdout).toContain('tcpmod/dist/sys.js ERR_PACKAGE_PATH_NOT_EXPORTED');
    expect(r.stdout).toMatch(/version=\d+\.\d+\.\d+/);
  });
});
