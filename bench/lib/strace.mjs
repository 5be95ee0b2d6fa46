// Syscalls per request, in a separate short run: `strace -c -f -p PID` counts
// every syscall of every thread of the server while the load runs. strace slows
// the server down a lot, so this run's throughput is not reported; the count
// per request is what it is for.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { hasCommand } from './tools.mjs';

/**
 * Runs load(seconds) (→ { requests, ... }) with strace attached to pid.
 * Returns { requests, syscalls, perRequest, bySyscall: { name: per request } },
 * or null when strace is not installed.
 */
export async function syscallsPerRequest(pid, seconds, load) {
  if (!hasCommand('strace')) return null;
  const dir = mkdtempSync(join(os.tmpdir(), 'tcpmod-bench-strace-'));
  const out = join(dir, 'counts.txt');
  const tracer = spawn('strace', ['-c', '-f', '-q', '-o', out, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  tracer.stderr.on('data', (d) => (err += d));
  const exited = new Promise((r) => tracer.once('exit', r));
  try {
    // Attaching to every thread takes a moment; counts before the load starts are few (an idle server sleeps).
    await new Promise((r) => setTimeout(r, 300));
    if (tracer.exitCode !== null) throw new Error(`strace exited: ${err.trim()}`);
    const r = await load(seconds);
    tracer.kill('SIGINT');
    await exited;
    const { total, by } = parseCounts(readFileSync(out, 'utf8'));
    const per = (n) => (r.requests > 0 ? n / r.requests : null);
    return {
      requests: r.requests,
      syscalls: total,
      perRequest: per(total),
      bySyscall: Object.fromEntries(Object.entries(by).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, per(v)])),
    };
  } finally {
    if (tracer.exitCode === null) {
      tracer.kill('SIGKILL');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** strace -c's table: calls per syscall, and the total line. */
export function parseCounts(text) {
  const by = {};
  let total = 0;
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    // % time, seconds, usecs/call, calls, [errors,] syscall
    if (f.length < 5 || !/^\d+(\.\d+)?$/.test(f[0]) || !/^\d+$/.test(f[3])) continue;
    const name = f[f.length - 1];
    if (name === 'total') total = Number(f[3]);
    else by[name] = Number(f[3]);
  }
  return { total, by };
}
