// The deployment recipes in deploy/, run as far as this machine can run them.
// deploy/haproxy.cfg runs for real in test/proxy.e2e.test.ts, and here as the
// whole third recipe: HAProxy (send-proxy-v2) over two tcpmod processes on one
// port that share one redis-server through --kv redis://. Here too: the tcpmod
// command lines of the systemd unit and of the Kubernetes Deployment start a
// server (with local paths and free ports), it answers, its /metrics (the
// readiness probe) answers, SIGTERM makes it exit 0; and the timings that must
// agree do (stop timeout and grace period above --drain-timeout). systemd and
// Kubernetes themselves are not run: on paper, checked here.
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDuration } from '../host/duration.js';
import { scratchFile } from './fixtures.js';
import { requireTool, run, serve, type ServedProcess } from './server-process.js';
import { metricsPort, scrape } from './metrics.js';
import { RedisServer, runHaproxyRecipe, type Haproxy } from './services.js';

/** The value after `flag` in an argument list. */
function flag(args: string[], name: string): string {
  const i = args.indexOf(name);
  if (i < 0 || i + 1 >= args.length) throw new Error(`${name} not in ${args.join(' ')}`);
  return args[i + 1];
}

/**
 * Runs `tcpmod serve` with a recipe's arguments after the module (the module,
 * the ports and the listening host replaced by local ones), checks it echoes,
 * that /metrics answers, and that SIGTERM stops it with exit code 0.
 */
async function runRecipe(args: string[]): Promise<void> {
  const local = args.map((a, i) => {
    const prev = args[i - 1];
    if (prev === '--port') return '0';
    if (prev === '--host') return '127.0.0.1';
    if (prev === '--metrics') return '127.0.0.1:0';
    return a;
  });
  const p = await serve('build/echo.wasm', local);
  try {
    const port = await metricsPort(p, 10_000);
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
    expect(res.status).toBe(200);
    const reply = await new Promise<string>((resolve, reject) => {
      const s = connect({ port: p.port, host: '127.0.0.1' });
      s.on('connect', () => s.write('ping\n'));
      s.on('data', (d) => {
        s.destroy();
        resolve(String(d));
      });
      s.on('error', reject);
    });
    expect(reply).toBe('ping\n');
  } finally {
    expect(await p.stop('SIGTERM')).toBe(0);
  }
}

describe('deploy/tcpmod.service', () => {
  const unit = readFileSync('deploy/tcpmod.service', 'utf8');
  const setting = (key: string) => {
    const m = new RegExp(`^${key}=(.*)$`, 'm').exec(unit);
    if (!m) throw new Error(`no ${key}= in the unit`);
    return m[1];
  };
  // ExecStart's continuation lines joined, then split into words (the unit uses no quotes).
  const exec = setting('ExecStart').endsWith('\\')
    ? /^ExecStart=((?:.*\\\n)*.*)$/m.exec(unit)![1].replace(/\\\n\s*/g, ' ').split(/\s+/).filter(Boolean)
    : setting('ExecStart').split(/\s+/);

  it('stops with SIGTERM, and waits longer than the drain before SIGKILL; raises the descriptor limit', () => {
    expect(setting('KillSignal')).toBe('SIGTERM');
    const drainMs = parseDuration(flag(exec, '--drain-timeout'));
    const stopMs = parseDuration(setting('TimeoutStopSec'));
    expect(stopMs).toBeGreaterThan(drainMs);
    expect(Number(setting('LimitNOFILE'))).toBeGreaterThanOrEqual(65536);
  });

  it('runs its ExecStart: the server starts, answers, serves /metrics and exits 0 on SIGTERM', async () => {
    expect(exec.slice(0, 3)).toEqual(['/usr/bin/node', '/opt/tcpmod/node_modules/tcpmod/bin/tcpmod.js', 'serve']);
    await runRecipe(exec.slice(4));
  });

  it('is a valid unit for systemd-analyze verify', async () => {
    await requireTool('systemd-analyze'); // .ci/run installs systemd for it
    // Verified with this machine's node in ExecStart (verify checks that the program exists).
    const copy = scratchFile('tcpmod.service', unit.replace('/usr/bin/node', process.execPath).replace('/opt/tcpmod/node_modules/tcpmod/bin/tcpmod.js', `${process.cwd()}/bin/tcpmod.js`));
    const r = await run('systemd-analyze', ['verify', copy]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});

describe('deploy/kubernetes.yaml', () => {
  const yaml = readFileSync('deploy/kubernetes.yaml', 'utf8');
  const num = (re: RegExp) => Number(re.exec(yaml)![1]);
  // The container's args: the "- value" lines under `args:`, comments skipped, quotes removed.
  const args = /^\s+args:\n((?:\s+(?:- .*|#.*)\n)+)/m.exec(yaml)![1]
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('- '))
    .map((l) => l.slice(2).replace(/^"(.*)"$/, '$1'));

  it('gives a stopping pod its preStop pause plus --drain-timeout before SIGKILL', () => {
    const grace = num(/terminationGracePeriodSeconds: (\d+)/);
    const preStop = num(/command: \["sleep", "(\d+)"\]/);
    const drain = parseDuration(flag(args, '--drain-timeout')) / 1000;
    expect(grace).toBeGreaterThan(preStop + drain);
  });

  it('probes readiness on the port --metrics serves', () => {
    const metricsPort = Number(flag(args, '--metrics').split(':').pop());
    expect(num(/- name: metrics\n\s+containerPort: (\d+)/)).toBe(metricsPort);
    expect(/readinessProbe:\n\s+httpGet:\n\s+path: \/metrics\n\s+port: metrics/.test(yaml)).toBe(true);
    expect(num(/- name: tcp\n\s+containerPort: (\d+)/)).toBe(Number(flag(args, '--port')));
  });

  it('runs its container args: the server starts, answers, serves /metrics and exits 0 on SIGTERM', async () => {
    expect(args.slice(0, 1)).toEqual(['serve']);
    await runRecipe(args.slice(2));
  });
});

/** A RESP command as a client sends it: an array of bulk strings. */
function command(...args: string[]): Buffer {
  return Buffer.from(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
}

/**
 * Sends `commands` pipelined on one connection from `localAddress` and reads
 * one reply each: simple strings and errors as `+OK`/`-ERR …`, integers as
 * `:n`, bulk strings as their text (null as `(nil)`).
 */
function session(port: number, localAddress: string, commands: Buffer[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress }, () => s.write(Buffer.concat(commands)));
    let buf = Buffer.alloc(0);
    const replies: string[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`${replies.length} of ${commands.length} replies in 10 s: ${JSON.stringify(replies)}`));
    }, 10_000);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const eol = buf.indexOf('\r\n');
        if (eol < 0) break;
        const head = buf.subarray(0, eol).toString('latin1');
        if (head[0] !== '$') {
          replies.push(head);
          buf = buf.subarray(eol + 2);
          continue;
        }
        const n = Number(head.slice(1));
        if (n < 0) {
          replies.push('(nil)');
          buf = buf.subarray(eol + 2);
          continue;
        }
        if (buf.length < eol + 2 + n + 2) break;
        replies.push(buf.subarray(eol + 2, eol + 2 + n).toString('latin1'));
        buf = buf.subarray(eol + 2 + n + 2);
      }
      if (replies.length === commands.length) {
        clearTimeout(timer);
        s.end();
        resolve(replies);
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

describe('deploy/haproxy.cfg over two tcpmod processes sharing one redis-server', () => {
  const redis = new RedisServer();
  let tcpmods: ServedProcess[] = [];
  let haproxy: Haproxy | null = null;

  beforeAll(async () => {
    for (const tool of ['haproxy', 'redis-server', 'redis-cli']) await requireTool(tool);
    await redis.start();
    const args = ['--threads', '1', '--reuse-port', '--proxy-protocol', 'v2', '--kv', `redis://127.0.0.1:${redis.port}`, '--metrics', '127.0.0.1:0'];
    const a = await serve('build/resp.wasm', args);
    const b = await serve('build/resp.wasm', [...args, '--port', String(a.port)]);
    tcpmods = [a, b];
    haproxy = await runHaproxyRecipe(a.port);
  }, 60_000);

  afterAll(async () => {
    await haproxy?.stop();
    await Promise.all(tcpmods.map((p) => p.stop()));
    await redis.kill();
  });

  it('counts exactly across both processes, shows each module the real client, and Redis holds the keys', async () => {
    const ports = await Promise.all(tcpmods.map((p) => metricsPort(p, 10_000)));
    const before = await Promise.all(ports.map((p) => scrape(p)));
    // 20 clients from 127.0.0.2, 10 INCRs each, through HAProxy: every value handed out once.
    const clients = await Promise.all(Array.from({ length: 20 }, () =>
      session(haproxy!.port, '127.0.0.2', [...Array.from({ length: 10 }, () => command('INCR', 'recipe:hits')), command('CLIENT', 'INFO')])));
    const values = clients.flatMap((r) => r.slice(0, 10)).map((v) => Number(v.slice(1))).sort((x, y) => x - y);
    expect(values).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    // CLIENT INFO names the client HAProxy passed on in its PROXY v2 header, not HAProxy.
    for (const r of clients) expect(r[10]).toMatch(/(^| )addr=127\.0\.0\.2:\d+ /);
    expect((await redis.cli('GET', 'recipe:hits')).stdout).toBe('200\n');
    // A key set through the balancer is Redis' own, and one set in Redis is read through it.
    expect(await session(haproxy!.port, '127.0.0.2', [command('SET', 'recipe:who', 'tcpmod')])).toEqual(['+OK']);
    expect((await redis.cli('GET', 'recipe:who')).stdout).toBe('tcpmod\n');
    await redis.cli('SET', 'recipe:from-redis', 'yes');
    expect(await session(haproxy!.port, '127.0.0.2', [command('GET', 'recipe:from-redis')])).toEqual(['yes']);
    // Both processes took some of the clients (HAProxy's health checks count as accepted too).
    const after = await Promise.all(ports.map((p) => scrape(p)));
    const took = after.map((m, i) => m.tcpmod_connections_accepted_total - before[i].tcpmod_connections_accepted_total);
    expect(took[0]).toBeGreaterThan(0);
    expect(took[1]).toBeGreaterThan(0);
    expect(took[0] + took[1]).toBeGreaterThanOrEqual(22);
  }, 60_000);
});
