// Process control for the bench: every server and load client is spawned in a
// process group of its own and remembered until it is gone, so that stopping
// one stops its workers too (cluster, nginx), and so that any way out of the
// run (normal end, error, Ctrl-C, SIGTERM) kills whatever is still alive.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { groupPids } from './procfs.mjs';

/** pgid → name, for every group started and not yet known to be gone. */
const live = new Map();

/** Kills every group still alive, at once (SIGKILL). Safe to call repeatedly. */
export function killAll() {
  for (const pgid of live.keys()) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

let installed = false;
/** Makes every exit path of this process kill what it started. */
export function installCleanup() {
  if (installed) return;
  installed = true;
  process.on('exit', killAll);
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}: stopping ${live.size} process group(s) and exiting\n`);
      killAll();
      process.exit(code);
    });
  }
}

/** A command as one shell-quoted string, for the record. */
export function commandLine(cmd, args) {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${String(a).replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** Wraps a command so it runs with RLIMIT_NOFILE raised (same PID: bash execs it). */
function withNofile(cmd, args, nofile) {
  if (!nofile) return [cmd, args];
  const script = `ulimit -n ${nofile} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"`;
  return ['bash', ['-c', script, 'bash', cmd, ...args]];
}

/** An unused TCP port on 127.0.0.1 (bound and released by the kernel's choice). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Resolves true once a TCP connect to the port succeeds (the connection is closed at once). */
export function canConnect(port, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The promise's outcome, or a rejection with `message` after ms (the timer is cleared either way). */
export function withTimeout(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Starts a long-running process (a server) in its own process group.
 * spec: { name, cmd, args, port, readyLine?: RegExp, nofile?, cwd?, env?, readyTimeoutMs? }
 * Resolves when readyLine has been printed (if given) and the port accepts connections.
 */
export async function startServer(spec) {
  const [cmd, args] = withNofile(spec.cmd, spec.args, spec.nofile);
  const child = spawn(cmd, args, {
    cwd: spec.cwd,
    env: spec.env ?? process.env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pgid = child.pid;
  if (pgid === undefined) throw new Error(`${spec.name}: could not spawn ${spec.cmd}`);
  live.set(pgid, spec.name);
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out = (out + d).slice(-65536)));
  child.stderr.on('data', (d) => (err = (err + d).slice(-65536)));
  let exitInfo = null;
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal, at: new Date().toISOString() };
      resolve(exitInfo);
    }),
  );
  const server = {
    name: spec.name,
    pid: child.pid,
    pgid,
    port: spec.port,
    command: commandLine(spec.cmd, spec.args),
    stdout: () => out,
    stderr: () => err,
    alive: () => exitInfo === null,
    exitInfo: () => exitInfo,
    stop: () => stopGroup(pgid, child, exited),
  };
  const deadline = Date.now() + (spec.readyTimeoutMs ?? 20_000);
  try {
    while (true) {
      if (exitInfo) throw new Error(`${spec.name} exited (${exitInfo.signal ?? exitInfo.code}) before it was ready: ${err.trim().slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`${spec.name} was not ready within ${spec.readyTimeoutMs ?? 20_000} ms: ${err.trim().slice(-2000)}`);
      const printed = !spec.readyLine || spec.readyLine.test(out);
      if (printed && (await canConnect(spec.port))) break;
      await sleep(printed ? 20 : 5);
    }
  } catch (e) {
    await server.stop();
    throw e;
  }
  return server;
}

/** SIGTERM to the group; SIGKILL after graceMs; then makes sure no member of the group is left. */
async function stopGroup(pgid, child, exited, graceMs = 6000) {
  const signal = (sig) => {
    try {
      process.kill(-pgid, sig);
    } catch {
      // group already empty
    }
  };
  if (child.exitCode === null && child.signalCode === null) {
    signal('SIGTERM');
    const timer = setTimeout(() => signal('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
  // The leader is gone; its workers (if any) get a moment, then are killed.
  for (let i = 0; i < 100 && groupPids(pgid).length > 0; i++) await sleep(20);
  if (groupPids(pgid).length > 0) signal('SIGKILL');
  for (let i = 0; i < 100 && groupPids(pgid).length > 0; i++) await sleep(20);
  live.delete(pgid);
  return child.exitCode ?? child.signalCode;
}

/**
 * Spawns a process in its own group, tracked for cleanup, without waiting for
 * anything; stop() is as for servers. Used where the caller times the start itself.
 */
export function spawnTracked(name, cmd0, args0, opts = {}) {
  const [cmd, args] = withNofile(cmd0, args0, opts.nofile);
  const child = spawn(cmd, args, { cwd: opts.cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error(`${name}: could not spawn ${cmd0}`);
  live.set(child.pid, name);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { child, pid: child.pid, pgid: child.pid, command: commandLine(cmd0, args0), stop: () => stopGroup(child.pid, child, exited) };
}

/**
 * Runs a command (a load client) to completion in its own process group.
 * Resolves { code, signal, stdout, stderr, seconds, command }; kills it past timeoutMs.
 * opts: { nofile?, timeoutMs?, cwd?, stdin?: true to get a pipe, started?(child), onStdout?(all, child) }
 */
export function runClient(cmd0, args0, opts = {}) {
  const [cmd, args] = withNofile(cmd0, args0, opts.nofile);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const env = opts.env ? { ...process.env, ...opts.env } : undefined; // opts.env: variables added to this process's
    const child = spawn(cmd, args, { cwd: opts.cwd, env, detached: true, stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    const pgid = child.pid;
    if (pgid === undefined) return reject(new Error(`could not spawn ${cmd0}`));
    live.set(pgid, cmd0);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      opts.onStdout?.(stdout, child);
    });
    child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-65536)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // gone
      }
    }, opts.timeoutMs ?? 120_000);
    opts.started?.(child);
    child.once('error', (e) => {
      clearTimeout(timer);
      live.delete(pgid);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (groupPids(pgid).length > 0) {
        try {
          process.kill(-pgid, 'SIGKILL'); // anything it left behind in its group
        } catch {
          // gone meanwhile
        }
      }
      live.delete(pgid);
      resolve({ code, signal, timedOut, stdout, stderr, seconds: (performance.now() - t0) / 1000, command: commandLine(cmd0, args0) });
    });
  });
}

export { sleep };
