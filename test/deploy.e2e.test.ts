// The deployment recipes in deploy/, run as far as this machine can run them.
// deploy/haproxy.cfg runs for real in test/proxy.e2e.test.ts. Here: the tcpmod
// command lines of the systemd unit and of the Kubernetes Deployment start a
// server (with local paths and free ports), it answers, its /metrics (the
// readiness probe) answers, SIGTERM makes it exit 0; and the timings that must
// agree do (stop timeout and grace period above --drain-timeout). systemd and
// Kubernetes themselves are not run: on paper, checked here.
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseDuration } from '../host/duration.js';
import { scratchFile } from './fixtures.js';
import { run, serve } from './server-process.js';
import { metricsPort } from './metrics.js';

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

  it('is a valid unit for systemd-analyze verify, where that tool is installed', async () => {
    const has = await run('sh', ['-c', 'command -v systemd-analyze']);
    if (has.code !== 0) return; // a lint on top of the checks above; not every CI image has systemd
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
