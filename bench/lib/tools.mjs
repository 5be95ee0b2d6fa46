// What the bench needs on the machine: commands (installed with apt when
// missing, saying so on stderr), the C programs (compiled with gcc into
// bench/bin/) and a description of the machine for the results.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

export function hasCommand(cmd) {
  if (cmd.includes('/')) return existsSync(cmd);
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Makes sure `cmd` exists; installs apt package `pkg` (apt-get install -y) only
 * when it does not. Throws when it still is not there afterwards.
 */
export function ensureCommand(cmd, pkg, log) {
  if (hasCommand(cmd)) return false;
  log(`bench: ${cmd} is missing: installing it with apt-get install -y ${pkg}`);
  const asRoot = process.getuid?.() === 0 ? [] : ['sudo', '-n'];
  const apt = (args) => spawnSync(asRoot[0] ?? 'apt-get', [...asRoot.slice(1), ...(asRoot.length ? ['apt-get'] : []), ...args], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  let r = apt(['install', '-y', pkg]);
  if (r.status !== 0) {
    log(`bench: apt-get install failed; running apt-get update and trying again`);
    apt(['update']);
    r = apt(['install', '-y', pkg]);
  }
  if (!hasCommand(cmd)) throw new Error(`${cmd} is missing and apt-get install -y ${pkg} did not provide it`);
  return true;
}

/**
 * Compiles bench/<name>.c to bench/bin/<name> with gcc when the binary is missing or older than
 * the source or than any bench/*.h (the headers the clients share, e.g. load-common.h).
 */
export function buildC(benchDir, name, log) {
  const src = join(benchDir, `${name}.c`);
  const binDir = join(benchDir, 'bin');
  const out = join(binDir, name);
  mkdirSync(binDir, { recursive: true });
  const inputs = [src, ...readdirSync(benchDir).filter((f) => f.endsWith('.h')).map((f) => join(benchDir, f))];
  const newest = Math.max(...inputs.map((f) => statSync(f).mtimeMs));
  if (existsSync(out) && statSync(out).mtimeMs >= newest) return out;
  log(`bench: compiling ${name}.c → bench/bin/${name}`);
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-o', out, src], { stdio: ['ignore', 'inherit', 'inherit'] });
  return out;
}

/** The machine the numbers come from. */
export function machineInfo() {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpuModel = m[1].trim();
  } catch {
    // keep os.cpus()
  }
  // First line of a tool's version banner (nginx prints it on stderr, wrk exits 1).
  const version = (cmd, args) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] || null;
  };
  return {
    cpuModel,
    cores: os.cpus().length,
    kernel: `${os.type()} ${os.release()}`,
    arch: os.arch(),
    memoryMiB: Math.round(os.totalmem() / 2 ** 20),
    node: process.version,
    loadAverageAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
    tools: {
      gcc: version('gcc', ['--version']),
      wrk: version('wrk', ['--version']),
      'redis-benchmark': version('redis-benchmark', ['--version']),
      'redis-server': version('redis-server', ['--version']),
      nginx: version('nginx', ['-v']),
    },
  };
}
