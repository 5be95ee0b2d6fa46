// Helpers of the tests that use the published package as a new user would
// (package.e2e, sdk-package.e2e): pack this repository, install the tarball
// offline into a fresh project, run commands there in their own process
// groups, and talk to a served module over a socket. Every process started
// here is killed by killAll() (call it in afterAll), whatever happened.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

export const repo = fileURLToPath(new URL('..', import.meta.url));

export interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Processes started here, by pid (each leads its own process group). */
export const live = new Set<number>();

export function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** Kills every process group started here; for afterAll. */
export function killAll(): void {
  for (const pid of live) killGroup(pid, 'SIGKILL');
  live.clear();
}

/** npm settings passed on from an `npm test` running this file: where the cache and Node's headers are. */
const KEPT_NPM_ENV = new Set(['npm_config_cache', 'npm_config_nodedir', 'npm_config_registry', 'npm_config_userconfig', 'npm_config_globalconfig']);

/**
 * The environment of a user's shell: without the other npm_* variables of an `npm test`
 * that may be running this file (npm_config_local_prefix, npm_package_json... a child npm
 * would take them for its own).
 */
export function userEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if ((!/^npm_/i.test(k) || KEPT_NPM_ENV.has(k.toLowerCase())) && k !== 'INIT_CWD') env[k] = v;
  }
  return env;
}

/** Runs a command in its own process group (with `env` over the user's environment); past timeoutMs the whole group is killed. */
export function run(cmd: string, args: string[], opts: { cwd: string; timeoutMs: number; env?: NodeJS.ProcessEnv }): Promise<Ran> {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const p = spawn(cmd, args, { cwd: opts.cwd, env: { ...userEnv(), ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d) => (stdout += d));
    p.stderr!.on('data', (d) => (stderr += d));
    if (p.pid) live.add(p.pid);
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${opts.timeoutMs} ms]`;
      if (p.pid) killGroup(p.pid, 'SIGKILL');
    }, opts.timeoutMs);
    p.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    p.once('close', (code, signal) => {
      clearTimeout(timer);
      if (p.pid) {
        killGroup(p.pid, 'SIGKILL'); // nothing it started outlives it
        live.delete(p.pid);
      }
      resolvePromise({ code, signal, stdout, stderr, ms: Math.round(performance.now() - t0) });
    });
  });
}

export function explain(what: string, r: Ran): string {
  return `${what}: exit ${r.code ?? r.signal} after ${r.ms} ms\n--- stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`;
}

/** Sends `line` over a real socket and resolves with the first `want` bytes that come back (default line.length). */
export function echoOnce(port: number, line: string, timeoutMs = 10_000, want = line.length): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const s = connect({ port, host: '127.0.0.1' }, () => s.write(line));
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`echo timed out with ${JSON.stringify(got)}`));
    }, timeoutMs);
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      got += d;
      if (got.length >= want) {
        clearTimeout(timer);
        s.end();
        resolvePromise(got);
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** Resolves true when nothing accepts on the port any more. */
export function refused(port: number): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolvePromise(false);
    });
    s.once('error', () => resolvePromise(true));
  });
}

/**
 * What the tarball is made from: every file of the repository git knows of (tracked, or new and not
 * ignored) outside test/, and the compiled addon prepack ships as the prebuilt; a hash of their paths
 * and contents. Two packs of the same inputs give the same package.
 */
function packInputsKey(): string {
  const listed = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: repo, encoding: 'utf8' });
  const files = [...new Set(listed.split('\0').filter((f) => f && !f.startsWith('test/')))].sort();
  files.push('host/native/build/Release/tcpmod_native.node');
  const h = createHash('sha256');
  for (const f of files) {
    h.update(`${f}\0`);
    h.update(existsSync(join(repo, f)) ? readFileSync(join(repo, f)) : '(missing)');
    h.update('\0');
  }
  return h.digest('hex').slice(0, 20);
}

/** One pack per content, shared by the test files that install the package (package.e2e, sdk-package.e2e). */
const PACK_CACHE_PREFIX = 'tcpmod-pack-';
const PACK_CACHE_MAX_AGE_MS = 3_600_000;

/**
 * `npm pack`s this repository exactly as `npm publish` would (prepare runs first) and puts the tarball
 * in `dir`; its path. The pack is cached by the hash of its inputs (packInputsKey) in the system's temp
 * directory, so the files that need the package share one `npm pack` (which builds the host and the
 * modules: most of a pack's time) in a run and across runs while nothing it is made from changed.
 * Concurrent callers wait for the one that packs (a lock directory). timings.pack is the pack's time,
 * or the time it took to find it in the cache (timings.packCached set).
 */
export async function packRepo(dir: string, timings: Record<string, number>): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const t0 = performance.now();
  const cache = join(tmpdir(), `${PACK_CACHE_PREFIX}${packInputsKey()}`);
  const lock = `${cache}.lock`;
  const cached = () => (existsSync(cache) ? readdirSync(cache).filter((f) => f.endsWith('.tgz')) : []);
  const deadline = Date.now() + 240_000;
  while (cached().length === 0) {
    try {
      mkdirSync(lock);
    } catch {
      // Another file is packing these inputs: wait for its tarball (or for its lock to go, if it failed;
      // a lock older than any pack may take was left by a process that died: take it over).
      try {
        if (Date.now() - statSync(lock).mtimeMs > 300_000) rmSync(lock, { recursive: true, force: true });
      } catch {
        // gone meanwhile
      }
      if (Date.now() > deadline) throw new Error(`waited 240 s for another pack of the same inputs (${lock})`);
      await new Promise((r) => setTimeout(r, 500));
      continue;
    }
    try {
      if (cached().length) break;
      const staging = `${cache}.${process.pid}`;
      rmSync(staging, { recursive: true, force: true });
      mkdirSync(staging);
      const pack = await run('npm', ['pack', '--pack-destination', staging], { cwd: repo, timeoutMs: 120_000 });
      timings.pack = pack.ms;
      expect(pack.code, explain('npm pack', pack)).toBe(0);
      expect(readdirSync(staging).filter((f) => f.endsWith('.tgz'))).toHaveLength(1);
      renameSync(staging, cache); // whole or not at all
      // Packs of older inputs (a content key no one has used for an hour) go.
      for (const old of readdirSync(tmpdir()).filter((f) => f.startsWith(PACK_CACHE_PREFIX) && !f.endsWith('.lock'))) {
        const path = join(tmpdir(), old);
        if (path !== cache && Date.now() - statSync(path).mtimeMs > PACK_CACHE_MAX_AGE_MS) rmSync(path, { recursive: true, force: true });
      }
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
  }
  const tgz = cached();
  expect(tgz).toHaveLength(1);
  if (timings.pack === undefined) {
    timings.pack = Math.round(performance.now() - t0);
    timings.packCached = 1;
  }
  utimesSync(cache, new Date(), new Date()); // in use: not an old pack
  copyFileSync(join(cache, tgz[0]), join(dir, tgz[0]));
  return join(dir, tgz[0]);
}

/** Makes `app` a fresh ES-module project (npm init, plus `extra` package.json fields) and installs `tarball` into it offline; what npm install printed. */
export async function installInto(app: string, tarball: string, timings: Record<string, number>, extra: Record<string, unknown> = {}, label = '', env: NodeJS.ProcessEnv = {}): Promise<Ran> {
  mkdirSync(app, { recursive: true });
  const init = await run('npm', ['init', '-y'], { cwd: app, timeoutMs: 30_000 });
  expect(init.code, explain('npm init', init)).toBe(0);
  const pkg = JSON.parse(readFileSync(join(app, 'package.json'), 'utf8'));
  writeFileSync(join(app, 'package.json'), JSON.stringify({ ...pkg, type: 'module', ...extra }, null, 2));
  return installTarball(app, tarball, timings, label, env);
}

/**
 * Installs `tarball` offline into the project at `app` (its package.json exists), with the
 * project's other dependencies. allowScripts is what `npm install-scripts approve tcpmod`
 * writes: npm 11.19 warns about (and later npms may skip) install scripts nobody approved.
 */
export async function installTarball(app: string, tarball: string, timings: Record<string, number>, label = '', env: NodeJS.ProcessEnv = {}): Promise<Ran> {
  const pkg = JSON.parse(readFileSync(join(app, 'package.json'), 'utf8'));
  writeFileSync(join(app, 'package.json'), JSON.stringify({ ...pkg, allowScripts: { [`file:${tarball}`]: true } }, null, 2));
  return npmInstall(app, [tarball], timings, label, env);
}

/**
 * `npm install [specs]` in `app`, offline: every tarball is in the npm cache since `npm ci`.
 * npm 11 resolves a new dependency range from the registry's full packument, which `npm ci`
 * (lockfile only) never fetches; on a cache without them --offline fails with ENOTCACHED, and
 * --prefer-offline fetches just those documents (tarballs still come from the cache).
 * Nothing named tcpmod is ever fetched: the specs and the project name tarballs.
 */
export async function npmInstall(app: string, specs: string[], timings: Record<string, number>, label = '', env: NodeJS.ProcessEnv = {}): Promise<Ran> {
  const args = ['install', ...specs, '--no-audit', '--no-fund', '--foreground-scripts'];
  let install = await run('npm', [...args, '--offline'], { cwd: app, timeoutMs: 180_000, env });
  timings[`installOffline${label}`] = install.ms;
  if (install.code !== 0 && /ENOTCACHED/.test(install.stdout + install.stderr)) {
    console.warn('package e2e: npm cache lacks full packuments; installing with --prefer-offline');
    install = await run('npm', [...args, '--prefer-offline'], { cwd: app, timeoutMs: 180_000, env });
    timings[`installPreferOffline${label}`] = install.ms;
  }
  expect(install.code, explain('npm install', install)).toBe(0);
  return install;
}

/**
 * A directory of stand-ins for the C/C++ toolchain (cc, c++, g++, gcc, clang, clang++, make) that
 * record each call in `<dir>/calls` and fail: put it first on PATH, and `calls` existing afterwards
 * means something tried to compile.
 */
export function compilerTrap(dir: string): { path: string; calls: string } {
  mkdirSync(dir, { recursive: true });
  const calls = join(dir, 'calls');
  for (const tool of ['cc', 'c++', 'g++', 'gcc', 'clang', 'clang++', 'make']) {
    writeFileSync(join(dir, tool), `#!/bin/sh\necho "${tool} $*" >> '${calls}'\nexit 1\n`, { mode: 0o755 });
  }
  return { path: `${dir}:${process.env.PATH}`, calls };
}

export interface Served {
  pid: number;
  port: number;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `npx tcpmod serve <module> --host 127.0.0.1 --port 0` in `app`, in its own process group; resolves once it listens. */
export function serveWithNpx(app: string, module: string, args: string[] = []): Promise<Served> {
  return serveCommand(app, 'npx', ['tcpmod', 'serve', module, '--host', '127.0.0.1', '--port', '0', '--log-level', 'warn', ...args]);
}

/** Runs a command that starts a tcpmod server on 127.0.0.1 (e.g. `npm start -- --port 0`) in its own process group; resolves once it listens. */
export function serveCommand(app: string, cmd: string, args: string[]): Promise<Served> {
  const p = spawn(cmd, args, {
    cwd: app,
    env: userEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  live.add(p.pid!);
  let out = '';
  let err = '';
  p.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    p.once('close', (code, signal) => r({ code, signal })),
  );
  return new Promise<Served>((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${err}`)), 20_000);
    p.stdout!.on('data', (d) => {
      out += d;
      const m = /listening on 127\.0\.0\.1:(\d+)\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolvePromise({ pid: p.pid!, port: Number(m[1]), stderr: () => err, exited });
      }
    });
    p.once('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code} before listening: ${err}`));
    });
  });
}
