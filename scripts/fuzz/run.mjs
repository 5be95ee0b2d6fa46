// One round of the sandbox fuzzer (issue 26): serves a generated hostile module
// (generate.mjs) with the real binary, keeps a well-behaved client exchanging
// echoes beside it, and sends hostile commands from several connections at
// once until the round's time is up. Then it checks what must hold whatever
// the module does: the process lives, no worker failed, the well-behaved
// client got exactly its bytes back throughout, every fault a command must
// cause was counted, and descriptors and RSS came back near their baseline.
// Used by test/fuzz.e2e.test.ts (bounded) and scripts/fuzz.mjs (long runs).
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { watToWasm } from '../../bench/lib/wat.mjs';
import { CASES, generateModule, rng } from './generate.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Where a case runs (generate.mjs's command bytes), weighted toward on_data. */
const WHERE = ['d', 'd', 'd', 'd', 'o', 't', 'c', 'i', 'D'];
/**
 * Without i and D: with several workers, a store key set for "the next
 * instance" is taken by whichever worker makes one first, and that may be for
 * the well-behaved connection, which then rightly closes (reason 6) when the
 * instance is refused. Rounds with one worker run them (no other taker).
 */
const WHERE_SHARED = WHERE.filter((w) => w !== 'i' && w !== 'D');
/** Fds and RSS may end this far above their baseline. */
const FD_SLACK = 8;
/** How long a round's end waits for fds and RSS to settle back within their slack. */
const SETTLE_MS = 20_000;
const RSS_SLACK = 96 * 1024 * 1024;

function fdCount(pid) {
  return readdirSync(`/proc/${pid}/fd`).length;
}
function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

async function scrape(port) {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
  const out = {};
  for (const line of (await res.text()).split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}
const sumOf = (m, prefix) => Object.entries(m).filter(([k]) => k.startsWith(prefix)).reduce((a, [, v]) => a + v, 0);

function startServer(file, args) {
  const proc = spawn(process.execPath, ['bin/tcpmod.js', 'serve', file, '--port', '0', '--log-level', 'warn', ...args], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let tail = '';
  const seen = { workerFailed: 0, lines: 0 };
  proc.stderr.on('data', (d) => {
    const s = String(d);
    seen.lines += s.split('\n').length - 1;
    seen.workerFailed += (s.match(/worker failed/g) ?? []).length;
    tail = (tail + s).slice(-200_000); // the last lines, for the report of a failed round
  });
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${tail}`)), 20_000);
    // "listening on" comes on stdout, "metrics on" on stderr, in either order.
    const check = () => {
      const m = /listening on \S+:(\d+)\n/.exec(out);
      const mm = /metrics on http:\/\/[^:]+:(\d+)\//.exec(tail);
      if (!m || !mm) return;
      clearTimeout(timer);
      resolvePromise({ proc, port: Number(m[1]), metricsPort: Number(mm[1]), seen, tail: () => tail });
    };
    proc.stdout.on('data', (d) => {
      out += d;
      check();
    });
    proc.stderr.on('data', check);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening: ${tail}`));
    });
  });
}

/** The well-behaved client: random digit strings, each echoed exactly, until stopped. */
function goodClient(port, r) {
  const state = { exchanges: 0, error: null, stop: false, done: null };
  state.done = (async () => {
    const s = connect({ port, host: '127.0.0.1', noDelay: true });
    await new Promise((res, rej) => (s.once('connect', res), s.once('error', rej)));
    let buf = '';
    let wake = null;
    let closed = false;
    s.on('data', (d) => { buf += d; wake?.(); });
    s.on('error', () => undefined);
    s.on('close', () => { closed = true; wake?.(); });
    while (!state.stop) {
      const n = 1 + r.int(200);
      let msg = '';
      for (let i = 0; i < n; i++) msg += String(r.int(10));
      s.write(msg);
      const until = Date.now() + 10_000;
      while (buf.length < n && !closed && Date.now() < until) await new Promise((res) => { wake = res; setTimeout(res, 500); });
      wake = null;
      if (buf.length < n) {
        state.error = closed ? `well-behaved connection closed after ${state.exchanges} exchanges` : `no echo within 10 s after ${state.exchanges} exchanges`;
        break;
      }
      const got = buf.slice(0, n);
      buf = buf.slice(n);
      if (got !== msg) {
        state.error = `wrong echo after ${state.exchanges} exchanges: sent ${msg.slice(0, 40)}…, got ${got.slice(0, 40)}…`;
        break;
      }
      state.exchanges++;
      await sleep(5);
    }
    s.destroy();
  })().catch((e) => { state.error = `well-behaved client: ${e.message}`; });
  return state;
}

/** One hostile connection: sends `command` (possibly split), waits for the close or a while, then goes. */
async function hostile(port, command, r) {
  const s = connect({ port, host: '127.0.0.1', noDelay: true });
  s.on('error', () => undefined);
  s.on('data', () => undefined);
  const closed = new Promise((res) => s.once('close', () => res(true)));
  await new Promise((res) => (s.once('connect', res), s.once('close', res)));
  if (r() < 0.3) {
    // split between the two bytes of the command: the module must wait for the second
    s.write(command.slice(0, 1));
    await sleep(2);
    s.write(command.slice(1));
  } else s.write(command);
  const wasClosed = await Promise.race([closed, sleep(200 + r.int(600)).then(() => false)]);
  s.destroy();
  return wasClosed;
}

/**
 * Runs one round; resolves with its report ({ ok, problems, ... }). Options:
 * seed, durationMs (hostile traffic), threads, parallel (hostile connections at
 * once), loops (cases may end in endless loops), log (progress lines).
 */
export async function fuzzRound({ seed, durationMs = 20_000, threads = 2, parallel = 4, loops = true, log = () => undefined }) {
  const r = rng(seed ^ 0x5bd1e995);
  const { wat, terminals } = generateModule(seed, { loops });
  const dir = mkdtempSync(join(tmpdir(), 'tcpmod-fuzz-'));
  const file = join(dir, `fuzz-${seed}.wasm`);
  writeFileSync(join(dir, `fuzz-${seed}.wat`), wat);
  writeFileSync(file, await watToWasm(`fuzz-${seed}.wat`, wat));
  const srv = await startServer(file, ['--threads', String(threads), '--handler-timeout', '300ms', '--metrics', '127.0.0.1:0']);
  const problems = [];
  const report = { seed, commands: 0, byWhere: {}, byTerminal: {}, expectedFaults: 0, problems };
  const good = goodClient(srv.port, rng(seed ^ 0x1234567));
  try {
    const places = threads === 1 ? WHERE : WHERE_SHARED;
    let swept = CASES; // the warm-up is random; the measured run first sweeps every case
    const run = async (until) => {
      const lanes = Array.from({ length: parallel }, async () => {
        while (Date.now() < until && !good.error) {
          // The sweep: case k from the place k (mod places), so every case (and so every terminal and
          // call kind the generator put in the module) and every place runs in any round, however short.
          const sweep = swept < CASES ? swept++ : -1;
          const k = sweep >= 0 ? sweep : r.int(CASES);
          let where = sweep >= 0 ? places[sweep % places.length] : r.pick(places);
          // An endless loop in tcpmod_init would hang a worker's start-up (timed start-up is issue 26 item 2, not this fuzzer's).
          if (where === 'i' && terminals[k] !== 'none' && terminals[k] === 'loop') where = 'd';
          const command = where + String.fromCharCode(0x41 + k);
          report.commands++;
          report.byWhere[where] = (report.byWhere[where] ?? 0) + 1;
          report.byTerminal[terminals[k]] = (report.byTerminal[terminals[k]] ?? 0) + 1;
          // Faults these commands must cause: a case ending in a fault, run now; the trap after i and D.
          if ((where === 'd' && terminals[k] !== 'none') || where === 'i' || where === 'D') report.expectedFaults++;
          await hostile(srv.port, command, r);
        }
      });
      await Promise.all(lanes);
    };
    // Warm-up, then the baseline: every worker has made instances, the pool has its size.
    await run(Date.now() + Math.min(3000, durationMs / 4));
    await sleep(1000);
    const base = { fds: fdCount(srv.proc.pid), rss: rssBytes(srv.proc.pid) };
    log(`seed ${seed}: baseline ${base.fds} fds, ${(base.rss / 2 ** 20).toFixed(1)} MiB RSS`);
    swept = 0;
    await run(Date.now() + durationMs);
    // Let closes, stuck-worker replacements and timers settle: a stopped worker's connections keep
    // their fds until its frozen thread is gone, and commands queued behind a stuck worker (their
    // clients gone, their bytes still in the socket) run and fault only once its replacement starts,
    // which a loaded machine can take seconds to finish. So wait (at least 1.5 s, at most SETTLE_MS)
    // for fds and RSS to come back within their slack and for the faults the commands must cause to
    // be counted; a leak or a missing fault never comes, and is reported from the last sample.
    const settleEnd = Date.now() + SETTLE_MS;
    await sleep(1500);
    const sample = async () => ({ fds: fdCount(srv.proc.pid), rss: rssBytes(srv.proc.pid), m: await scrape(srv.metricsPort) });
    let end = await sample();
    const settled = (e) => e.fds <= base.fds + FD_SLACK && e.rss <= base.rss + RSS_SLACK && sumOf(e.m, 'tcpmod_module_faults_total{') >= report.expectedFaults;
    while (!settled(end) && Date.now() < settleEnd) {
      await sleep(250);
      end = await sample();
    }
    const m = end.m;
    report.faults = sumOf(m, 'tcpmod_module_faults_total{');
    report.faultsByKind = Object.fromEntries(Object.entries(m).filter(([k]) => k.startsWith('tcpmod_module_faults_total{')).map(([k, v]) => [/"(\w+)"/.exec(k)[1], v]));
    report.closedByReason = Object.fromEntries(Object.entries(m).filter(([k]) => k.startsWith('tcpmod_connections_closed_total{')).map(([k, v]) => [/"(\w+)"/.exec(k)[1], v]));
    report.logDroppedBytes = m.tcpmod_log_dropped_bytes_total ?? 0;
    report.instances = m.tcpmod_instances_created_total;
    report.good = good.exchanges;
    report.fds = [base.fds, end.fds];
    report.rssMiB = [+(base.rss / 2 ** 20).toFixed(1), +(end.rss / 2 ** 20).toFixed(1)];
    if (srv.proc.exitCode !== null || srv.proc.signalCode !== null) problems.push(`the server exited (${srv.proc.exitCode ?? srv.proc.signalCode})`);
    if (srv.seen.workerFailed) problems.push(`${srv.seen.workerFailed} "worker failed" lines`);
    if (good.error) problems.push(good.error);
    if (good.exchanges === 0) problems.push('the well-behaved client exchanged nothing');
    if (report.faults < report.expectedFaults) problems.push(`${report.faults} faults counted, at least ${report.expectedFaults} expected`);
    if (end.fds > base.fds + FD_SLACK) problems.push(`fds ${base.fds} -> ${end.fds}`);
    if (end.rss > base.rss + RSS_SLACK) problems.push(`RSS ${report.rssMiB[0]} -> ${report.rssMiB[1]} MiB`);
  } finally {
    good.stop = true;
    await good.done;
    srv.proc.kill('SIGTERM');
    await Promise.race([new Promise((res) => srv.proc.once('exit', res)), sleep(10_000)]);
    if (srv.proc.exitCode === null && srv.proc.signalCode === null) srv.proc.kill('SIGKILL');
    if (problems.length) {
      report.stderrTail = srv.tail().split('\n').slice(-30).join('\n');
      report.module = file.replace(/\.wasm$/, '.wat');
    } else rmSync(dir, { recursive: true, force: true });
  }
  report.ok = problems.length === 0;
  return report;
}
