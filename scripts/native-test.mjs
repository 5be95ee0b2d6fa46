#!/usr/bin/env node
// Builds and runs the C++ unit tests of the native core, without Node's
// headers: every host/native/test/*_test.cc is a standalone program with a
// main(). Its first line names the host/native/src files it links:
//     // sources: timers.cc conn_state.cc
// and an optional second line extra linker flags:
//     // libs: -lssl -lcrypto
// Each is compiled with TCPMOD_TEST defined (whole-structure invariant checks)
// into a temporary directory, run, and must exit 0; its last line of output is
// `N passed, M failed`. Every source file is compiled once per run into an
// object shared by the programs that list it, and as many compiles and programs
// run at once as there are cores (the C++ tests were a twelfth of npm test's time
// built one after the other); a program's lines are printed together when it ends.
//
// Usage: node scripts/native-test.mjs [--sanitize=address|thread] [name ...]
//   --sanitize=address  AddressSanitizer + UndefinedBehaviorSanitizer
//   --sanitize=thread   ThreadSanitizer
//   name                only the tests whose file name contains it
// The compiler is $CXX, else g++, else clang++.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'host', 'native', 'src');
const testDir = join(root, 'host', 'native', 'test');

const SANITIZERS = {
  address: ['-fsanitize=address,undefined', '-fno-omit-frame-pointer', '-fno-sanitize-recover=undefined'],
  thread: ['-fsanitize=thread'],
};

function usage(message) {
  console.error(`native-test: ${message}`);
  console.error('usage: node scripts/native-test.mjs [--sanitize=address|thread] [name ...]');
  process.exit(2);
}

let sanitize = null;
const names = [];
for (const arg of process.argv.slice(2)) {
  if (arg.startsWith('--sanitize=')) {
    sanitize = arg.slice('--sanitize='.length);
    if (!(sanitize in SANITIZERS)) usage(`--sanitize must be address or thread, not '${sanitize}'`);
  } else if (arg.startsWith('-')) usage(`unknown option '${arg}'`);
  else names.push(arg);
}

function compiler() {
  for (const cxx of [process.env.CXX, 'g++', 'clang++'].filter(Boolean)) {
    if (spawnSync(cxx, ['--version'], { stdio: 'ignore' }).status === 0) return cxx;
  }
  usage('no C++ compiler found (set CXX, or install g++ or clang++)');
}

/** The `// sources:` and `// libs:` header lines of a test file. */
function header(file) {
  const lines = readFileSync(file, 'utf8').split('\n');
  const m = /^\/\/\s*sources:\s*(.*)$/.exec(lines[0] ?? '');
  if (!m) throw new Error(`${file}: the first line must be '// sources: a.cc b.cc'`);
  const sources = m[1].split(/\s+/).filter(Boolean).map((s) => join(srcDir, s));
  const l = /^\/\/\s*libs:\s*(.*)$/.exec(lines[1] ?? '');
  return { sources, libs: l ? l[1].split(/\s+/).filter(Boolean) : [] };
}

const tests = readdirSync(testDir)
  .filter((f) => f.endsWith('_test.cc') && (names.length === 0 || names.some((n) => f.includes(n))))
  .sort();
if (tests.length === 0) usage(names.length ? `no test matches ${names.join(', ')}` : `no *_test.cc in ${testDir}`);

const cxx = compiler();
const out = mkdtempSync(join(tmpdir(), `tcpmod-native-test-${sanitize ?? 'plain'}-`));
const env = { ...process.env };
if (sanitize === 'address') env.ASAN_OPTIONS = `detect_leaks=1:abort_on_error=0:${env.ASAN_OPTIONS ?? ''}`;
if (sanitize === 'thread') env.TSAN_OPTIONS = `halt_on_error=1:second_deadlock_stack=1:${env.TSAN_OPTIONS ?? ''}`;

const label = sanitize ? ` (${sanitize} sanitizer)` : '';
const flags = ['-std=c++17', '-g', '-O1', '-Wall', '-Wextra', '-Werror', '-DTCPMOD_TEST', `-I${srcDir}`,
  ...(sanitize ? SANITIZERS[sanitize] : [])];

/** Runs a command to its end: its status (or signal) and its output. */
function run(cmd, args, opts = {}) {
  return new Promise((done) => {
    const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = opts.timeout ? setTimeout(() => child.kill('SIGKILL'), opts.timeout) : null;
    child.on('close', (status, signal) => {
      if (timer) clearTimeout(timer);
      done({ status, signal, stdout, stderr });
    });
  });
}

/** At most `cores` commands at once: each call waits for a free slot. */
const cores = Math.max(1, availableParallelism());
let running = 0;
const waiting = [];
async function slot(fn) {
  if (running >= cores) await new Promise((r) => waiting.push(r));
  running++;
  try {
    return await fn();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/** One object per source file and run, shared by every program that lists it: the compile's result. */
const objects = new Map();
function object(file) {
  let p = objects.get(file);
  if (!p) {
    const obj = join(out, `${objects.size}-${file.split('/').pop().replace(/\.cc$/, '.o')}`);
    p = slot(() => run(cxx, [...flags, '-c', file, '-o', obj])).then((r) => ({ ...r, obj, file }));
    objects.set(file, p);
  }
  return p;
}

let failures = 0;
async function test(t) {
  const file = join(testDir, t);
  const bin = join(out, t.replace(/\.cc$/, ''));
  const { sources, libs } = header(file);
  const built = await Promise.all([file, ...sources].map(object));
  const bad = built.find((b) => b.status !== 0);
  const link = bad ? null : await slot(() => run(cxx, [...flags, ...built.map((b) => b.obj), '-o', bin, '-lpthread', ...libs]));
  if (bad || link.status !== 0) {
    console.log(`FAIL ${t}${label}: does not build${bad ? ` (${bad.file})` : ''}\n${(bad ?? link).stderr}`);
    failures++;
    return;
  }
  const r = await slot(() => run(bin, [], { env, timeout: 300_000 }));
  const last = r.stdout.trim().split('\n').pop() ?? '';
  const ok = r.status === 0 && /^\d+ passed, 0 failed$/.test(last);
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${t}${label}: ${last || `exit ${r.status ?? r.signal}`}${ok ? '' : `\n${r.stdout}${r.stderr}`}`);
  if (!ok) failures++;
}

try {
  await Promise.all(tests.map(test));
} finally {
  rmSync(out, { recursive: true, force: true });
}
// The last line in the plain 'N passed, M failed' form, counting programs, so a CI log that ends here says what it ran.
console.log(`${sanitize ? `native-${sanitize}` : 'native'}: ${tests.length - failures} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
