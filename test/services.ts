// Real services the multi-process tests run beside tcpmod: a redis-server of
// their own and HAProxy running the deploy/haproxy.cfg recipe. Each is a child
// process the test stops in afterAll; a missing binary fails the test (.ci/run
// installs them), it never skips.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { expect } from 'vitest';
import { scratchFile } from './fixtures.js';
import { run } from './server-process.js';
import { sleep, until } from './wait.js';

/**
 * A port that was free a moment ago. redis-server and HAProxy cannot bind port
 * 0 and report it, so the test binds a socket to port 0, reads the port, closes
 * it and hands the number on; another process could take it in between (a small
 * race that only fails a test with EADDRINUSE in the service's output, never
 * passes it wrongly).
 */
export async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  s.close();
  await once(s, 'close');
  return port;
}

/** A server started in a process group of its own (detached), with every process it forks. */
export interface Group {
  proc: ChildProcess;
  /** Its stdout and stderr so far. */
  output(): string;
  /** Stops the whole group: `signal` (the server's own orderly stop), then SIGKILL to the group after graceMs; resolves once no member is left. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Spawns a server that forks (nginx's master and its workers) as the leader of a new process
 * group, so that stop() reaches the workers too: a SIGKILL to nginx's master alone leaves its
 * workers running with PPID 1 (test/global-strays.ts fails the run on such a process).
 */
export function spawnGroup(cmd: string, args: string[]): Group {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const pgid = proc.pid!;
  const signalGroup = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pgid, sig);
    } catch {
      // the group is empty
    }
  };
  return {
    proc,
    output: () => out,
    async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5_000) {
      signalGroup(signal);
      const end = Date.now() + graceMs;
      while (groupAlive(pgid) && Date.now() < end) await sleep(20);
      if (!groupAlive(pgid)) return;
      signalGroup('SIGKILL');
      await until(() => !groupAlive(pgid), 5_000, `process group ${pgid} (${cmd}) to be gone after SIGKILL`);
    },
  };
}

/** SIGKILL to a child (a server that does not fork) and its exit awaited; nothing when it is gone already. */
async function killAndWait(p: ChildProcess | null): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const gone = once(p, 'exit');
  p.kill('SIGKILL');
  await gone;
}

/** A redis-server of the test's own (no persistence). start() again after kill() reuses the port. */
export class RedisServer {
  port = 0;
  proc: ChildProcess | null = null;

  /** Starts it (on a free port the first time) and waits until it answers PING. */
  async start(): Promise<void> {
    if (this.port === 0) this.port = await freePort();
    const proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    let out = '';
    proc.stdout!.on('data', (d) => (out += d));
    proc.stderr!.on('data', (d) => (out += d));
    for (let i = 0; i < 200; i++) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited: ${out}`);
      const r = await this.cli('PING');
      if (r.stdout.trim() === 'PONG') return;
      await sleep(50);
    }
    throw new Error(`redis-server did not answer: ${out}`);
  }

  async kill(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    await killAndWait(p);
  }

  cli(...args: string[]) {
    return run('redis-cli', ['-p', String(this.port), ...args], { timeoutMs: 10_000 });
  }
}

/** A redis-server serving TLS with the test certificates (see startTlsRedis). */
export interface TlsRedis {
  tlsPort: number;
  /** redis-cli over TLS, trusting the test CA (with the password, when there is one). */
  cli(...args: string[]): ReturnType<typeof run>;
  kill(): Promise<void>;
}

/**
 * Starts a redis-server (no persistence) whose --tls-port (a free port) presents the test server
 * certificate, plain on `plainPort` (default 0: none), bound to `bind`, with `password` (requirepass)
 * if given; resolves once it answers PING over TLS.
 */
export async function startTlsRedis(certs: { caCert: string; serverChain: string; serverKey: string }, opts: { bind?: string; plainPort?: number; password?: string } = {}): Promise<TlsRedis> {
  const tlsPort = await freePort(); // the same small race as for RedisServer's port
  const proc = spawn('redis-server', ['--port', String(opts.plainPort ?? 0), '--tls-port', String(tlsPort), '--bind', opts.bind ?? '127.0.0.1',
    ...(opts.password ? ['--requirepass', opts.password] : []),
    '--tls-cert-file', certs.serverChain, '--tls-key-file', certs.serverKey, '--tls-auth-clients', 'no',
    '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const auth = opts.password ? ['-a', opts.password, '--no-auth-warning'] : [];
  const cli = (...args: string[]) => run('redis-cli', ['--tls', '--cacert', certs.caCert, ...auth, '-p', String(tlsPort), ...args], { timeoutMs: 10_000 });
  const kill = () => killAndWait(proc);
  try {
    await until(async () => (await cli('PING')).stdout.trim() === 'PONG', 20_000, 'PONG over TLS', 100);
  } catch (e) {
    await kill();
    throw e;
  }
  return { tlsPort, cli, kill };
}

/** HAProxy running a configuration file in the foreground. */
export interface Haproxy {
  port: number;
  stop(): Promise<void>;
}

/**
 * Runs deploy/haproxy.cfg — the recipe itself — with its front port replaced by
 * a free one and its backend by `backendPort`, sending `send` (send-proxy-v2 as
 * written, or send-proxy); resolves once it accepts connections.
 */
export async function runHaproxyRecipe(backendPort: number, send: 'send-proxy-v2' | 'send-proxy' = 'send-proxy-v2'): Promise<Haproxy> {
  const recipe = readFileSync('deploy/haproxy.cfg', 'utf8');
  const front = await freePort();
  const cfg = recipe
    .replace(/^(\s*bind) :7000$/m, `$1 127.0.0.1:${front}`)
    .replace(/^(\s*server local) 127\.0\.0\.1:7001 send-proxy-v2/m, `$1 127.0.0.1:${backendPort} ${send}`);
  // The recipe is what runs: fail loudly if its lines moved rather than test something else.
  expect(cfg).toContain(`bind 127.0.0.1:${front}`);
  expect(cfg).toContain(`server local 127.0.0.1:${backendPort} ${send} check`);
  const file = scratchFile(`haproxy-${send}-${front}.cfg`, cfg);
  const p = spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (out += d));
  const stop = () => killAndWait(p);
  try {
    await until(async () => {
      if (p.exitCode !== null) throw new Error(`haproxy exited: ${out}`);
      const s = connect({ port: front, host: '127.0.0.1' });
      const up = await once(s, 'connect').then(() => true, () => false);
      s.destroy();
      return up;
    }, 10_000, 'haproxy to listen');
  } catch (e) {
    await stop();
    throw e;
  }
  return { port: front, stop };
}
