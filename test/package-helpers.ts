// Helpers of the tests that use the published package as a new user would
// (package.e2e, sdk-package.e2e): pack this repository, install the tarball
// offline into a fresh project, run commands there in their own process
// groups, and talk to a served module over a socket. Every process started
// here is killed by killAll() (call it in afterAll), whatever happened.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
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

/** `npm pack`s this repository into `dir` exactly as `npm publish` would (prepare runs first); the tarball's path. */
export async function packRepo(dir: string, timings: Record<string, number>): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const pack = await run('npm', ['pack', '--pack-destination', dir], { cwd: repo, timeoutMs: 120_000 });
  timings.pack = pack.ms;
  expect(pack.code, explain('npm pack', pack)).toBe(0);
  const tgz = readdirSync(dir).filter((f) => f.endsWith('.tgz'));
  expect(tgz).toHaveLength(1);
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
