// vitest globalSetup: fails the run when its tests leave a process behind.
// A server a test starts and stops badly outlives it: nginx's workers after a
// SIGKILL of the master, a redis-server whose parent forgot it. Such a process
// either still hangs below this vitest process (a child of a pool worker) or,
// once its parent died, was re-parented to PID 1.
//
// The machine may be shared (other checkouts run their own suites and servers
// at the same time), so an orphan counts as this run's only when it started
// after this run did AND either its working directory is this checkout (most
// tests and the bench start their servers from it: vitest's cwd, or
// `cwd: root`) or its environment carries this run's mark (set here, inherited
// by whatever the tests spawn with the environment they were given).
// The check only reports: it kills nothing, whosever it is.
// TCPMOD_STRAY_CHECK=0 turns it off (e.g. for a run that leaves something on purpose).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = realpathSync(fileURLToPath(new URL('..', import.meta.url)));

interface Proc {
  pid: number;
  ppid: number;
  comm: string;
  /** Clock ticks after boot. */
  start: number;
}

function stat(pid: number): Proc | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = s.lastIndexOf(')');
    const f = s.slice(close + 2).split(' ');
    if (f[0] === 'Z' || f[0] === 'X') return null; // exited, only its entry is left
    return { pid, ppid: Number(f[1]), comm: s.slice(s.indexOf('(') + 1, close), start: Number(f[19]) };
  } catch {
    return null; // gone meanwhile
  }
}

function all(): Proc[] {
  const out: Proc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const p = stat(Number(name));
    if (p) out.push(p);
  }
  return out;
}

function cwdOf(pid: number): string {
  try {
    return readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    return '';
  }
}

/** Whether the process's environment (as it was at its exec) holds `mark`. */
function marked(pid: number, mark: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(mark);
  } catch {
    return false;
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    return '';
  }
}

function ticksNow(): number {
  let hz = 100;
  try {
    hz = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    // the usual USER_HZ
  }
  return Math.floor(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * hz);
}

/**
 * This run's strays: orphans started since `since` that carry `mark` in their environment or work
 * in this checkout, and anything still below `self` but vitest's own workers.
 */
export function strays(self: number, since: number, mark: string, root = ROOT): string[] {
  const procs = all();
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const below = (p: Proc): boolean => {
    for (let q: Proc | undefined = p, n = 0; q && n < 64; q = byPid.get(q.ppid), n++) if (q.ppid === self) return true;
    return false;
  };
  const found: string[] = [];
  for (const p of procs) {
    if (p.pid === self) continue;
    const cmd = cmdline(p.pid);
    const cwd = cwdOf(p.pid);
    const orphan = p.ppid === 1 && p.start >= since && (cwd === root || cwd.startsWith(`${root}/`) || marked(p.pid, mark));
    // vitest's pool workers (and what they run for it: esbuild) are still up while globalSetup's teardown runs.
    const ours = below(p) && !/vitest|tinypool|esbuild/.test(cmd) && !/^(esbuild|node \(vitest)/.test(p.comm);
    if (orphan || ours) found.push(`pid ${p.pid} ppid ${p.ppid} (${p.comm}) ${cmd.slice(0, 200)} [cwd ${cwd}]`);
  }
  return found;
}

export default function setup(): (() => Promise<void>) | void {
  if (process.env.TCPMOD_STRAY_CHECK === '0') return;
  const since = ticksNow() - 1; // a tick of slack: uptime and starttime round differently
  // Inherited by the pool's workers and what they spawn (unless a test gives a child an environment
  // of its own): a second way to know this run's orphans, for those started in another directory.
  // nginx rewrites the memory /proc/PID/environ shows (its process titles), so the cwd test stays.
  process.env.TCPMOD_STRAY_MARK = `${process.pid}.${since}`;
  const mark = `TCPMOD_STRAY_MARK=${process.env.TCPMOD_STRAY_MARK}`;
  return async function teardown(): Promise<void> {
    // A server stopped in the last afterAll may still be exiting: give it a moment.
    let left = strays(process.pid, since, mark);
    for (let i = 0; i < 50 && left.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      left = strays(process.pid, since, mark);
    }
    if (left.length > 0) {
      // vitest reports an error thrown here ("error during close") but keeps the run's exit status: set it.
      process.exitCode = 1;
      throw new Error(`the tests left ${left.length} process(es) running (stop each server with its children; see test/global-strays.ts):\n  ${left.join('\n  ')}`);
    }
  };
}
