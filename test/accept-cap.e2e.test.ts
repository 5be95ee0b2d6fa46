// The accept loop's cap per wake (issue 20, defect 8; Redis's MAX_ACCEPTS_PER_CALL):
// a listener event accepts at most 128 connections, then re-arms the listener,
// which reports again at once for the rest. Observed through the events counter
// on a one-worker `tcpmod serve` child: while its worker is held in a blocking
// send, 600 clients queue in the backlog; when it comes back, taking them all
// costs at least 600 / 128 listener events, where an uncapped loop took one.
import { type Socket } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { open, pattern } from './net-client.js';
import { metricsPort, scrape } from './metrics.js';
import { serve, type ServedProcess } from './server-process.js';
import { sleep, until } from './wait.js';

const sockets: Socket[] = [];
let srv: ServedProcess | null = null;
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await srv?.stop('SIGKILL');
  srv = null;
});

it('takes a backlog of 600 connections 128 at most per listener event', async () => {
  srv = await serve('build/http.wasm', ['--threads', '1', '--send-mode', 'blocking', '--send-timeout', '3s', '--handler-timeout', '10s',
    '--metrics', '127.0.0.1:0']);
  const metrics = await metricsPort(srv, 5000);
  const value = pattern(1 << 20, 11);
  const putter = await open(srv.port);
  sockets.push(putter);
  putter.write(`PUT /kv/big HTTP/1.1\r\nHost: a\r\nContent-Length: ${value.length}\r\n\r\n`);
  putter.write(value);
  await until(() => putter.read() !== null, 5000, 'the PUT response');
  // The one worker blocks sending 8 MiB to a client that does not read, until the send timeout.
  const stuck = await open(srv.port);
  stuck.on('error', () => undefined);
  sockets.push(stuck);
  stuck.pause();
  stuck.write('GET /kv/big HTTP/1.1\r\nHost: a\r\n\r\n'.repeat(8));
  await sleep(300);
  const before = await scrape(metrics);
  for (let i = 0; i < 600; i++) {
    const s = await open(srv.port); // completed by the kernel: it waits in the backlog
    s.on('error', () => undefined);
    sockets.push(s);
  }
  const after = await until(async () => {
    const m = await scrape(metrics);
    return m.tcpmod_connections_accepted_total - before.tcpmod_connections_accepted_total >= 600 ? m : null;
  }, 20_000, 'the 600 connections to be accepted');
  // Every event between the two scrapes: the listener's, the stuck client's close, nothing from the idle 600.
  const events = after.tcpmod_events_total - before.tcpmod_events_total;
  expect(events).toBeGreaterThanOrEqual(Math.ceil(600 / 128));
});
