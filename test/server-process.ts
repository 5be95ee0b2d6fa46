// Starts `tcpmod serve` as a child process (the binary users run) and waits for
// its "listening on HOST:PORT" line. stop() sends SIGTERM and resolves with the
// exit code; every started process is killed at the end of the test file.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll } from 'vitest';
import { sleep } from './wait.js';

export interface ServedProcess {
  proc: ChildProcess;
  host: string;
  port: number;
  stderr: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const live = new Set<ChildProcess>();
afterAll(() => {
  for (const p of live) p.kill('SIGKILL');
});

export function serve(module: string, args: string[] = [], opts: { timeoutMs?: number } = {}): Promise<ServedProcess> {
  const proc = spawn(process.execPath, ['bin/tcpmod.js', 'serve', module, '--port', '0', '--log-level', 'warn', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(proc);
  let out = '';
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => {
    live.delete(proc);
    r(code);
  }));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${err}`)), opts.timeoutMs ?? 15_000);
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = /listening on (\[?[^\s\]]+\]?):(\d+)\n/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      resolve({
        proc,
        host: m[1].replace(/^\[|\]$/g, ''),
        port: Number(m[2]),
        stderr: () => err,
        stop: (signal = 'SIGTERM') => {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
          return exited;
        },
      });
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening: ${err}`));
    });
  });
}

/** SIGTERM, and SIGKILL when the child has not exited `graceMs` later. */
export async function stopChild(srv: ServedProcess, graceMs = 5000): Promise<void> {
  const exited = await Promise.race([srv.stop('SIGTERM').then(() => true), sleep(graceMs).then(() => false)]);
  if (!exited) await srv.stop('SIGKILL');
}

/** Runs a command to completion; resolves with its exit code and output. */
export function run(cmd: string, args: string[], opts: { input?: string | Buffer; timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // stdin is only a pipe when there is input: a child that exits before reading it must not
    // turn into an unhandled EPIPE in the test process.
    const p = spawn(cmd, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d) => (stdout += d));
    p.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    p.once('error', reject);
    // 'close', not 'exit': it comes after the child's stdout and stderr have been read to the end.
    p.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    if (p.stdin) {
      p.stdin.on('error', () => undefined);
      p.stdin.end(opts.input);
    }
  });
}

/** Fails (never skips) when a real client the tests need is not installed. */
export async function requireTool(name: string): Promise<void> {
  const r = await run('sh', ['-c', `command -v ${name}`]);
  if (r.code !== 0) throw new Error(`${name} is not installed: .ci/run installs it (apt); install it to run this test`);
}
