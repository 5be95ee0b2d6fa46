#!/usr/bin/env node
// Builds and runs the C++ unit tests of the native core, without Node's
// headers: every host/native/test/*_test.cc is a standalone program with a
// main(). Its first line names the host/native/src files it links:
//     // sources: timers.cc conn_state.cc
// and an optional second line extra linker flags:
//     // libs: -lssl -lcrypto
// Each is compiled with TCPMOD_TEST defined (whole-structure invariant checks)
// into a temporary directory, run, and must exit 0; its last line of output is
// `N passed, M failed`.
//
// Usage: node scripts/native-test.mjs [--sanitize=address|thread] [name ...]
//   --sanitize=address  AddressSanitizer + UndefinedBehaviorSanitizer
//   --sanitize=thread   ThreadSanitizer
//   name                only the tests whose file name contains it
// The compiler is $CXX, else g++, else clang++.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
let failures = 0;
try {
  for (const t of tests) {
    const file = join(testDir, t);
    const bin = join(out, t.replace(/\.cc$/, ''));
    const { sources, libs } = header(file);
    const flags = ['-std=c++17', '-g', '-O1', '-Wall', '-Wextra', '-Werror', '-DTCPMOD_TEST', `-I${srcDir}`,
      ...(sanitize ? SANITIZERS[sanitize] : [])];
    const build = spawnSync(cxx, [...flags, file, ...sources, '-o', bin, '-lpthread', ...libs], { encoding: 'utf8' });
    if (build.status !== 0) {
      console.log(`FAIL ${t}${label}: does not build\n${build.stderr}`);
      failures++;
      continue;
    }
    const run = spawnSync(bin, [], { encoding: 'utf8', env, timeout: 300_000 });
    const output = `${run.stdout}${run.stderr}`;
    const last = run.stdout.trim().split('\n').pop() ?? '';
    const ok = run.status === 0 && /^\d+ passed, 0 failed$/.test(last);
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${t}${label}: ${last || `exit ${run.status ?? run.signal}`}`);
    if (!ok) {
      console.log(output);
      failures++;
    }
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
// The last line in the plain 'N passed, M failed' form, counting programs, so a CI log that ends here says what it ran.
console.log(`${sanitize ? `native-${sanitize}` : 'native'}: ${tests.length - failures} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
