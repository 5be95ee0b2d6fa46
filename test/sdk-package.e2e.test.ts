// The AssemblyScript SDK from the installed package, as a module author meets
// it: `npm pack` this repository, install the tarball offline into a fresh
// module project whose module imports the SDK by its documented path
// ("tcpmod/assembly/sdk", and the exports helper "tcpmod/assembly/sdk/exports"),
// build it with `npx tcpmod build` (no build script of the project's own) and
// with plain `asc` under a config that extends the package's preset, check the
// results with `npx tcpmod inspect`, serve one and exchange lines over a socket.
// A module that breaks the ABI fails the build with one problem a line.
// Then `tcpmod new` for each language, as the README says: with tcpmod installed
// from a tarball (no registry copy of tcpmod exists), the scaffold depends on a
// tarball `tcpmod new` wrote beside it, so a plain `npm install` (offline) then
// its own `npm test`, `npm run build` and `npm start` work, the module answering
// over a real socket.
//
// Slow (a pack, an npm install with a node-gyp build, two compiles): a minute or two.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echoOnce, explain, installInto, killAll, killGroup, npmInstall, packRepo, run, serveCommand, serveWithNpx } from './package-helpers.js';

// A line protocol: every line comes back numbered by a counter in the key-value store.
const MODULE = `import { Conn, Action, configure, kv_incr, KV_UNAVAILABLE } from "tcpmod/assembly/sdk";
export * from "tcpmod/assembly/sdk/exports";

const KEY = memory.data<u8>([0x6C, 0x69, 0x6E, 0x65, 0x73]); // "lines"
const COUNT = memory.data(8, 8);

configure(4096, 4096, 0, onData);

function onData(c: Conn): Action {
  let start = 0;
  for (let nl = c.indexOf(0x0A); nl >= 0; nl = c.indexOf(0x0A, start)) {
    if (kv_incr(KEY, 5, 1, COUNT) == KV_UNAVAILABLE) c.writeString("?");
    else c.writeInt(load<i64>(COUNT));
    c.writeByte(0x20);
    c.write(c.input + <usize>start, nl + 1 - start);
    start = nl + 1;
  }
  c.consume(start);
  return c.eof ? Action.Close : Action.Continue;
}
`;

// Not an ABI v1 module: no SDK exports, and a data export of the wrong signature.
const BAD_MODULE = `export function tcpmod_on_data(): void {}
`;

let tmp = '';
let app = '';
let tarball = '';
const timings: Record<string, number> = {};

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'tcpmod-sdk-package-'));
  tarball = await packRepo(join(tmp, 'pack'), timings);
  app = join(tmp, 'my-module');
  await installInto(app, tarball, timings, { private: true });
  mkdirSync(join(app, 'assembly'));
  writeFileSync(join(app, 'assembly', 'index.ts'), MODULE);
  writeFileSync(join(app, 'assembly', 'bad.ts'), BAD_MODULE);
  // The preset route: plain asc picks this up.
  writeFileSync(join(app, 'asconfig.json'), JSON.stringify({ extends: 'tcpmod/asconfig.json' }, null, 2));
}, 330_000);

afterAll(() => {
  killAll();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  console.log(`sdk-package.e2e timings (ms): ${JSON.stringify(timings)}`);
});

describe('a module project that depends on tcpmod', () => {
  it('builds its module with `npx tcpmod build` and with asc extending the preset, inspects and serves it', async () => {
    // The two compiles (one process each, each to its own file) run side by side.
    const [built, plain] = await Promise.all([
      run('npx', ['tcpmod', 'build'], { cwd: app, timeoutMs: 120_000 }),
      run('npx', ['asc', 'assembly/index.ts', '-o', 'build/plain.wasm'], { cwd: app, timeoutMs: 120_000 }),
    ]);
    timings.tcpmodBuild = built.ms;
    expect(built.code, explain('npx tcpmod build', built)).toBe(0);
    expect(built.stdout).toMatch(/^built build\/index\.wasm \(\d+ bytes; imports: [^)]*tcpmod\.abort[^)]*tcpmod\.kv_incr[^)]*\)\n$/);
    expect(built.stdout).not.toMatch(/env\.abort/);

    timings.ascWithPreset = plain.ms;
    expect(plain.code, explain('npx asc (extends tcpmod/asconfig.json)', plain)).toBe(0);

    const inspected = await Promise.all(['build/index.wasm', 'build/plain.wasm'].map((file) => run('npx', ['tcpmod', 'inspect', file], { cwd: app, timeoutMs: 60_000 })));
    for (const [i, file] of ['build/index.wasm', 'build/plain.wasm'].entries()) {
      const inspect = inspected[i];
      expect(inspect.code, explain(`npx tcpmod inspect ${file}`, inspect)).toBe(0);
      expect(inspect.stdout).toContain(`${file}: tcpmod ABI v1 module`);
      expect(inspect.stdout).toMatch(/defines its own: 1\.\.256 pages/);
      expect(inspect.stdout).toMatch(/tcpmod\.abort/);
    }

    const { pid, port } = await serveWithNpx(app, 'build/index.wasm');
    try {
      expect(await echoOnce(port, 'hello\n', 10_000, 8)).toBe('1 hello\n');
      expect(await echoOnce(port, 'a\nb\n', 10_000, 8)).toBe('2 a\n3 b\n');
    } finally {
      killGroup(pid, 'SIGKILL');
    }
  }, 300_000);

  it('refuses a module that breaks the ABI, one problem a line', async () => {
    const r = await run('npx', ['tcpmod', 'build', 'assembly/bad.ts', '-o', 'build/bad.wasm'], { cwd: app, timeoutMs: 120_000 });
    expect(r.code, explain('npx tcpmod build assembly/bad.ts', r)).toBe(1);
    const problems = r.stderr.split('\n').filter((l) => l.startsWith('  - '));
    expect(problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/^ {2}- missing export tcpmod_abi_v1 \(\) -> \(\); fix: /),
      expect.stringMatching(/^ {2}- missing export tcpmod_io_desc \(\) -> i32; fix: /),
      '  - export tcpmod_on_data has signature () -> (); ABI v1 says (i32, i32, i32) -> i32',
    ]));
  }, 180_000);
});

describe('tcpmod new', () => {
  it('refuses a directory that is not empty, in one line, writing nothing', async () => {
    const dir = join(tmp, 'occupied');
    mkdirSync(dir);
    writeFileSync(join(dir, 'keep.txt'), 'mine\n');
    const r = await run('npx', ['tcpmod', 'new', dir], { cwd: app, timeoutMs: 60_000 });
    expect(r.code, explain('npx tcpmod new <non-empty>', r)).toBe(1);
    expect(r.stderr).toBe(`tcpmod: ${dir} is not empty: tcpmod new writes only into a new or empty directory\n`);
    expect(readdirSync(dir)).toEqual(['keep.txt']);
    const lang = await run('npx', ['tcpmod', 'new', join(tmp, 'rusty'), '--lang', 'rust'], { cwd: app, timeoutMs: 60_000 });
    expect(lang.code).toBe(1);
    expect(lang.stderr).toBe('tcpmod: --lang must be one of assemblyscript, c; got "rust"\n');
  }, 120_000);

  for (const lang of ['assemblyscript', 'c'] as const) {
    it(`--lang ${lang}: npm install, npm test, npm run build and npm start work, and the module answers over a socket`, async () => {
      const dir = join(tmp, `proto-${lang}`);
      const made = await run('npx', ['tcpmod', 'new', dir, '--lang', lang], { cwd: app, timeoutMs: 60_000 });
      expect(made.code, explain('npx tcpmod new', made)).toBe(0);
      expect(made.stdout).toMatch(/^wrote \d+ files in /);
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
      expect(pkg.name).toBe(`proto-${lang}`);
      expect(Object.keys(pkg.scripts).sort()).toEqual(['build', 'start', 'test']);
      // tcpmod came from a tarball here, so the project carries one and depends on it by path.
      expect(pkg.dependencies.tcpmod).toBe(`file:tcpmod-${pkg.version}.tgz`);
      expect(existsSync(join(dir, `tcpmod-${pkg.version}.tgz`))).toBe(true);
      expect(made.stdout).toContain(`  tcpmod-${pkg.version}.tgz\n`);
      const readme = readFileSync(join(dir, 'README.md'), 'utf8');
      expect(readme).toContain('```sh\nnpm install\nnpm test ');
      expect(readme).toContain(`\`tcpmod-${pkg.version}.tgz\` is the tcpmod this project was made with`);
      expect(readme).not.toMatch(/npmjs\.com/);

      // A plain `npm install`, as the README says: nothing named tcpmod can come from a registry
      // (none has it), and the rest (vitest) comes from the npm cache that installed this repository.
      const install = await npmInstall(dir, [], timings, `-${lang}`);
      expect(install.stdout).toContain('tcpmod: using the prebuilt native shim');
      expect(install.stdout + install.stderr).not.toMatch(/not yet covered by allowScripts/);
      const test = await run('npm', ['test'], { cwd: dir, timeoutMs: 240_000 });
      timings[`test-${lang}`] = test.ms;
      expect(test.code, explain('npm test (scaffold)', test)).toBe(0);
      // vitest colours its summary when the parent's environment asks for colour.
      expect(test.stdout.replace(/\x1b\[[0-9;]*m/g, '')).toMatch(/Tests\s+6 passed \(6\)/);
      const build = await run('npm', ['run', 'build'], { cwd: dir, timeoutMs: 120_000 });
      timings[`build-${lang}`] = build.ms;
      expect(build.code, explain('npm run build (scaffold)', build)).toBe(0);
      expect(existsSync(join(dir, 'build', 'module.wasm'))).toBe(true);

      // The start script's fixed port is overridden the way a user would: the last --port wins.
      const { pid, port } = await serveCommand(dir, 'npm', ['start', '--', '--port', '0', '--log-level', 'warn']);
      try {
        expect(await echoOnce(port, 'PING\n', 10_000, 5)).toBe('PONG\n');
        expect(await echoOnce(port, 'SET who tcp\r\nGET who\nSEEN\n', 10_000, 9)).toBe('OK\ntcp\n3\n');
        expect(await echoOnce(port, 'INCR n\nINCR n\n', 10_000, 4)).toBe('1\n2\n');
      } finally {
        killGroup(pid, 'SIGKILL');
      }
    }, 420_000);
  }
});
