#!/usr/bin/env node
// Behind HAProxy (issue 13): wrk GET / through HAProxy (mode tcp,
// send-proxy-v2, deploy/haproxy.cfg with its ports filled in) to two tcpmod
// processes sharing a port with --reuse-port, to one tcpmod process, and to
// tcpmod directly (no balancer), in interleaved rounds; medians as a Markdown
// table. Report only: nothing is asserted. On a machine with few cores the
// balancer competes with tcpmod and the client for the same CPUs, so read the
// ratios as the cost of the extra hop, not as what several machines would give.
//
//   node bench/haproxy.mjs [--rounds 3] [--duration 3] [--connections 50]
//
// Needs build/http.wasm (npm run build), haproxy and wrk.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { wrk } from './lib/clients.mjs';
import { freePort, installCleanup, startServer } from './lib/proc.mjs';

const benchDir = dirname(fileURLToPath(import.meta.url));
const root = resolve(benchDir, '..');
const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '3' },
    connections: { type: 'string', default: '50' },
  },
});
installCleanup();
const cpus = os.availableParallelism();
const tmp = mkdtempSync(join(os.tmpdir(), 'tcpmod-bench-haproxy-'));

/** tcpmod serving http.wasm on `port`. */
function tcpmod(name, port, threads, extra = []) {
  return startServer({
    name, cmd: process.execPath, port, cwd: root, readyLine: /listening on/,
    args: ['bin/tcpmod.js', 'serve', 'build/http.wasm', '--port', String(port), '--threads', String(threads), '--log-level', 'warn', ...extra],
  });
}

/** HAProxy running deploy/haproxy.cfg, listening on a free port, sending to `backendPort`. */
async function haproxy(name, backendPort) {
  const port = await freePort();
  const cfg = readFileSync(join(root, 'deploy', 'haproxy.cfg'), 'utf8')
    .replace(/bind :7000/, `bind 127.0.0.1:${port}`)
    .replace(/server local 127\.0\.0\.1:7001/, `server local 127.0.0.1:${backendPort}`);
  const file = join(tmp, `${name}.cfg`);
  writeFileSync(file, cfg);
  return startServer({ name, cmd: 'haproxy', port, args: ['-db', '-f', file] });
}

// Two processes with a thread per core between them, against one with all of them.
const shared = await freePort();
const pair = [
  await tcpmod('tcpmod-a', shared, Math.max(1, cpus / 2), ['--reuse-port', '--proxy-protocol', 'v2']),
  await tcpmod('tcpmod-b', shared, Math.max(1, cpus / 2), ['--reuse-port', '--proxy-protocol', 'v2']),
];
const single = await tcpmod('tcpmod-one', await freePort(), cpus, ['--proxy-protocol', 'v2']);
const direct = await tcpmod('tcpmod-direct', await freePort(), cpus);
const targets = [
  { name: `tcpmod directly (1 process, ${cpus} workers)`, port: direct.port },
  { name: `HAProxy → 1 tcpmod process (${cpus} workers)`, port: (await haproxy('haproxy-one', single.port)).port },
  { name: `HAProxy → 2 tcpmod processes on one port (--reuse-port, ${Math.max(1, cpus / 2)} workers each)`, port: (await haproxy('haproxy-two', shared)).port },
];

const results = targets.map(() => []);
for (let round = 1; round <= Number(opt.rounds); round++) {
  for (const [i, t] of targets.entries()) {
    const r = await wrk(benchDir, { port: t.port, connections: Number(opt.connections), threads: 2, seconds: Number(opt.duration) });
    if (r.errors) throw new Error(`${t.name}: ${r.errors} socket errors or non-2xx responses`);
    results[i].push(r.rps);
    process.stderr.write(`round ${round}: ${t.name}: ${Math.round(r.rps)} req/s\n`);
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`wrk GET / -c ${opt.connections} -d ${opt.duration}s; median of ${opt.rounds} interleaved rounds; ` +
  `${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), Node ${process.version}\n`);
console.log('| path | req/s | vs direct |');
console.log('| --- | ---: | ---: |');
for (const [i, t] of targets.entries()) {
  const m = median(results[i]);
  console.log(`| ${t.name} | ${Math.round(m).toLocaleString('en-US')} | ${(m / median(results[0])).toFixed(2)}× |`);
}
rmSync(tmp, { recursive: true, force: true });
process.exit(0);
