// A flood of publishes to a topic whose 2,000 subscribers read nothing (issue
// 22, "Bad input and limits"): the server's memory stays bounded (each
// subscriber holds at most its socket buffers, its output bound and its
// --max-mailbox before it is closed with reason 3), every such close is
// counted, and a fresh client is answered all along. The subscribers are
// bench/idle-conns (compiled here): it sends SUBSCRIBE on each connection and
// never reads, with a small SO_RCVBUF so that their kernel buffers fill soon.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { metricsPort, scrape } from './metrics.js';
import { open } from './net-client.js';
import { cmd } from './resp-client.js';
import { serve, stopChild, type ServedProcess } from './server-process.js';
import { sleep, until } from './wait.js';

const SUBSCRIBERS = 2000;
const MESSAGES = 1000;
const PAYLOAD = 'x'.repeat(1024);
const dir = mkdtempSync(join(tmpdir(), 'tcpmod-flood-'));
let srv: ServedProcess | null = null;
let holder: ChildProcess | null = null;
afterAll(async () => {
  holder?.kill('SIGKILL');
  if (srv) await stopChild(srv);
  rmSync(dir, { recursive: true, force: true });
});

const rssBytes = (pid: number): number => Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

/** One PING on a fresh connection: ms until +PONG, or null when none came within 5 s. */
async function ping(port: number): Promise<number | null> {
  const t0 = performance.now();
  const s = await open(port);
  try {
    s.write('PING\r\n');
    return await new Promise<number | null>((resolve) => {
      let got = '';
      const t = setTimeout(() => resolve(null), 5000);
      s.on('data', (d) => {
        got += d.toString();
        if (got.includes('+PONG\r\n')) {
          clearTimeout(t);
          resolve(performance.now() - t0);
        }
      });
    });
  } finally {
    s.destroy();
  }
}

/** PUBSUB NUMSUB flood on a fresh connection: the subscriptions this server holds. */
async function numSubscribed(port: number): Promise<number> {
  const q = await open(port);
  try {
    let got = '';
    q.on('data', (d) => (got += d.toString()));
    q.write(cmd('PUBSUB', 'NUMSUB', 'flood'));
    await until(() => /:(\d+)\r\n$/.test(got), 5000, 'the NUMSUB reply');
    return Number(/:(\d+)\r\n$/.exec(got)![1]);
  } finally {
    q.destroy();
  }
}

describe('a publish flood to 2,000 subscribers that read nothing', () => {
  it('keeps memory bounded, closes each of them with reason 3 (counted), and serves a fresh client throughout', async () => {
    const bin = join(dir, 'idle-conns');
    const cc = spawnSync('cc', ['-O2', '-o', bin, 'bench/idle-conns.c'], { encoding: 'utf8' });
    expect(cc.status, cc.stderr).toBe(0);
    let line = '';
    let closedNow = 0;
    let subscribedNow = -1;
    onTestFailed(() => console.error(`server stderr:\n${srv?.stderr().slice(-3000)}\nidle-conns: ${line}\noverflow closes ${closedNow}, still subscribed ${subscribedNow}`));
    srv = await serve('build/resp.wasm', ['--threads', '2', '--max-mailbox', '64KiB', '--max-output-buffer', '64KiB', '--metrics', '127.0.0.1:0']);
    const mport = await metricsPort(srv, 5000);
    const port = srv.port;
    expect(await ping(port)).not.toBeNull();
    await sleep(300);
    const rssBefore = rssBytes(srv.proc.pid!);

    holder = spawn(bin, ['127.0.0.1', String(port), String(SUBSCRIBERS)], {
      env: { ...process.env, IDLE_CONNS_SEND: cmd('SUBSCRIBE', 'flood'), IDLE_CONNS_RCVBUF: '4096' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    holder.stdout!.on('data', (d) => (line += d));
    await until(() => line.includes('\n'), 60_000, 'idle-conns connected');
    expect(JSON.parse(line).connected).toBe(SUBSCRIBERS);
    // Every subscription made (PUBSUB NUMSUB counts this server's).
    await until(async () => (await numSubscribed(port)) === SUBSCRIBERS, 30_000, `${SUBSCRIBERS} subscriptions`);

    // The flood: MESSAGES × 1 KiB to each subscriber, 1,000 KiB each, far more than a 4 KiB window,
    // 64 KiB of output and a 64 KiB mailbox hold; pipelined 50 at a time, each reply read.
    const pub = await open(port);
    let replies = 0;
    pub.on('data', (d) => (replies += d.toString().split('\r\n').length - 1));
    let rssMax = rssBefore;
    const probes: (number | null)[] = [];
    let flooding = true;
    const sampler = (async () => {
      while (flooding) {
        rssMax = Math.max(rssMax, rssBytes(srv!.proc.pid!));
        probes.push(await ping(port));
        await sleep(100);
      }
    })();
    // Each subscriber is either closed for overflow (counted under that reason) or still subscribed:
    // nothing else ends them, and the counts agree once the server has settled.
    const overflow = async () => (await scrape(mport, 2000))['tcpmod_connections_closed_total{reason="overflow"}'] ?? 0;
    try {
      for (let sent = 0; sent < MESSAGES; sent += 50) {
        pub.write(Array.from({ length: 50 }, () => cmd('PUBLISH', 'flood', PAYLOAD)).join(''));
        await until(() => replies >= sent + 50, 30_000, `the replies to ${sent + 50} publishes`);
      }
      await until(async () => {
        closedNow = await overflow();
        subscribedNow = await numSubscribed(port);
        return closedNow + subscribedNow === SUBSCRIBERS;
      }, 60_000, `overflow closes + subscribers still subscribed = ${SUBSCRIBERS}`);
    } finally {
      flooding = false;
      await sampler;
      pub.destroy();
    }
    // 1,000 KiB cannot wait anywhere for a reader with a 4 KiB window: (nearly) all of them are closed.
    expect(closedNow).toBeGreaterThanOrEqual(SUBSCRIBERS * 0.9);
    // Bounded: well under what 2,000 × 400 KiB queued would be (781 MiB); each subscriber may hold 64 KiB
    // of output and 64 KiB of mailbox (frames shared among them) before it is closed.
    expect(rssMax - rssBefore).toBeLessThan(256 * 1024 * 1024);
    expect(probes.length).toBeGreaterThan(0);
    expect(probes.filter((p) => p === null)).toEqual([]);
    expect(await ping(port)).not.toBeNull();
  }, 180_000);
});
