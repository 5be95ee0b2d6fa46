// Descriptors for the operator (issue 20): when client connections exhaust the
// descriptor limit, the server's own endpoints keep working. A `tcpmod serve`
// child under `prlimit --nofile=1024` asked for --max-connections 5000 (more
// than the limit allows) gets 1,200 idle clients: /metrics still answers, the
// connections held stay below the limit, and when the clients leave the
// server serves again.
import { spawn, type ChildProcess } from 'node:child_process';
import { type Socket } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { open } from './net-client.js';
import { scrape } from './metrics.js';
import { requireTool } from './server-process.js';
import { until } from './wait.js';

let child: ChildProcess | null = null;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  child?.kill('SIGKILL');
  child = null;
});

/** `tcpmod serve` under prlimit; resolves with its port and its metrics port once both are announced. */
function serveLimited(args: string[]): Promise<{ port: number; metrics: number; stderr: () => string }> {
  const proc = spawn('prlimit', ['--nofile=1024', process.execPath, 'bin/tcpmod.js', 'serve', 'build/http.wasm', '--port', '0',
    '--metrics', '127.0.0.1:0', '--log-level', 'warn', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  child = proc;
  let out = '';
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  proc.stdout!.on('data', (d) => (out += d));
  return until(() => {
    if (proc.exitCode !== null) throw new Error(`server exited: ${err}`);
    const m = /listening on [^\s]+:(\d+)\n/.exec(out);
    const mm = /metrics on http:\/\/[^:]+:(\d+)\//.exec(err);
    return m && mm ? { port: Number(m[1]), metrics: Number(mm[1]), stderr: () => err } : null;
  }, 15_000, 'the server to listen');
}

async function get(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5000) });
  return `${res.status} ${await res.text()}`;
}

it('keeps /metrics and the listener working under prlimit --nofile=1024 with 1,200 idle clients, and recovers when they leave', async () => {
  await requireTool('prlimit');
  const srv = await serveLimited(['--threads', '2', '--max-connections', '5000']);
  for (let i = 0; i < 1200; i++) {
    const s = await open(srv.port);
    s.on('error', () => undefined);
    sockets.push(s);
  }
  // Every client the server could take is in; the rest were accepted and closed (reason limit).
  const held = await until(async () => {
    const m = await scrape(srv.metrics, 5000);
    const refused = m['tcpmod_connections_refused_total{reason="limit"}'] ?? 0;
    return m.tcpmod_connections + refused >= 1200 ? m : null;
  }, 20_000, 'the clients to be taken or refused');
  expect(held.tcpmod_connections).toBeGreaterThan(500);
  expect(held.tcpmod_connections).toBeLessThan(1024);
  // The operator's endpoint answers, again and again, while descriptors are short.
  for (let i = 0; i < 5; i++) expect((await scrape(srv.metrics, 5000)).tcpmod_connections).toBe(held.tcpmod_connections);
  for (const s of sockets.splice(0)) s.destroy();
  await until(async () => (await scrape(srv.metrics, 5000)).tcpmod_connections === 0, 10_000, 'the clients to be gone');
  expect(await get(srv.port)).toBe('200 Hello, World!');
  expect(srv.stderr()).toMatch(/--max-connections 5000 is more than the descriptor limit \(1024\) allows/);
});
