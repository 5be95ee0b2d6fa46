// The timer heap holds at most one item per open connection: whatever a module
// does with set_timer (issue 26, defect 3: re-arming with ever earlier
// deadlines added an item per call, ~40 MiB/s of RSS), and however many
// connections have come and gone (issue 20, defect 6: each closed connection
// left its read-deadline item for the 5 minutes of --read-timeout). Against a
// `tcpmod serve` child, so that its RSS is the server's alone; the heap's size
// is read from /metrics (tcpmod_timer_heap_items, stats().timerHeapSize).
import { connect, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixture, ROOT } from './fixtures.js';
import { metricsPort, scrape } from './metrics.js';
import { open, readBytes } from './net-client.js';
import { serve, type ServedProcess } from './server-process.js';
import { sleep, until } from './wait.js';

const MiB = 1 << 20;
const children: ServedProcess[] = [];
const sockets = new Set<Socket>();
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(children.splice(0).map((c) => c.stop('SIGKILL')));
});

const debug = (...a: unknown[]) => process.env.TIMER_HEAP_DEBUG && console.log(...a);

/** VmRSS of `pid`, in bytes. */
function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

async function start(module: string): Promise<{ srv: ServedProcess; metrics: () => Promise<Record<string, number>> }> {
  // The default --read-timeout (5 min) stays on: every connection has a deadline, hence a heap item.
  const srv = await serve(module, ['--threads', '2', '--metrics', '127.0.0.1:0']);
  children.push(srv);
  const port = await metricsPort(srv, 5000);
  return { srv, metrics: () => scrape(port) };
}

/** Heap items and open connections, as the server reports them. */
async function heapAndOpen(metrics: () => Promise<Record<string, number>>): Promise<{ heap: number; open: number }> {
  const m = await metrics();
  return { heap: m.tcpmod_timer_heap_items, open: m.tcpmod_connections };
}

describe('timer heap', () => {
  it('a module re-arming set_timer with falling deadlines keeps one item per connection, and RSS flat', async () => {
    const { srv, metrics } = await start(await fixture('rearm'));
    const pid = srv.proc.pid!;
    const CONNS = 20;
    const ROUNDS = 50; // each round: every connection's on_data calls set_timer 2,000 times, each earlier
    const WARMUP = 10;
    const conns: Socket[] = [];
    for (let i = 0; i < CONNS; i++) {
      const s = await open(srv.port);
      sockets.add(s);
      conns.push(s);
    }
    let rssBase = 0;
    let heapMax = 0;
    for (let round = 0; round < ROUNDS; round++) {
      await Promise.all(conns.map(async (s) => {
        const reply = readBytes(s, 1, 20_000);
        s.write('x');
        expect((await reply).toString()).toBe('k');
      }));
      if (round + 1 === WARMUP) rssBase = rssBytes(pid);
      if ((round + 1) % 10 === 0) {
        const { heap, open } = await heapAndOpen(metrics);
        debug(`round ${round + 1}: heap ${heap}, open ${open}, rss ${(rssBytes(pid) / MiB).toFixed(1)} MiB`);
        expect(open).toBe(CONNS);
        heapMax = Math.max(heapMax, heap);
      }
    }
    const grew = rssBytes(pid) - rssBase;
    debug(`${CONNS * (ROUNDS - WARMUP) * 2000} set_timer calls after the warm-up: rss +${(grew / MiB).toFixed(1)} MiB`);
    // One item per connection (its timer and read deadline share it): 2 million set_timer calls change nothing.
    expect(heapMax).toBeLessThanOrEqual(CONNS);
    // 1.6 M calls after the warm-up: one heap item each would be ~38 MiB.
    expect(grew).toBeLessThan(16 * MiB);
    for (const s of conns) s.destroy();
    // Closed connections leave nothing behind.
    await until(async () => {
      const { heap, open } = await heapAndOpen(metrics);
      return open === 0 && heap === 0;
    }, 10_000, 'the heap to empty once every connection closed');
  }, 180_000);

  it('100,000 connect/close cycles leave the heap at the open connections and RSS flat', async () => {
    const { srv, metrics } = await start(join(ROOT, 'build', 'echo.wasm'));
    const pid = srv.proc.pid!;
    const TOTAL = 100_000;
    const FIRST = 10_000;
    const PARALLEL = 16;
    const deadline = Date.now() + 240_000;
    let started = 0;
    let errors = 0;
    /** One cycle: connect, then close as soon as connected. */
    const cycle = () =>
      new Promise<void>((resolve) => {
        const s = connect({ port: srv.port, host: '127.0.0.1' });
        s.once('connect', () => s.destroy());
        s.once('error', () => {
          errors++;
          s.destroy();
        });
        s.once('close', () => resolve());
      });
    /** Runs cycles on PARALLEL clients until `upTo` have been started (bounded by the deadline). */
    const churn = async (upTo: number) => {
      await Promise.all(Array.from({ length: PARALLEL }, async () => {
        while (started < upTo && Date.now() < deadline) {
          started++;
          await cycle();
        }
      }));
    };
    /** Waits until the server has closed every connection it accepted. */
    const settled = () => until(async () => (await heapAndOpen(metrics)).open === 0, 20_000, 'every connection closed by the server');
    /**
     * The server's RSS once idle: the least of samples over 1.5 s, so that garbage its threads' JS heaps
     * have not collected yet (a fast churn leaves several MiB of it) is not taken for memory kept; what
     * the server really keeps stays in every sample.
     */
    const idleRss = async () => {
      let least = rssBytes(pid);
      for (let i = 0; i < 15; i++) {
        await sleep(100);
        least = Math.min(least, rssBytes(pid));
      }
      return least;
    };

    const t0 = Date.now();
    await churn(FIRST);
    await settled();
    const rssFirst = await idleRss();
    await churn(TOTAL);
    expect(started, 'cycles done within the time bound').toBe(TOTAL);
    await settled();
    const { heap, open } = await heapAndOpen(metrics);
    const rssEnd = await idleRss();
    const secs = (Date.now() - t0) / 1000;
    console.log(`timer-heap churn: ${TOTAL} connect/close cycles in ${secs.toFixed(1)} s (${errors} client errors); ` +
      `server RSS ${(rssFirst / MiB).toFixed(1)} MiB after ${FIRST}, ${(rssEnd / MiB).toFixed(1)} MiB after ${TOTAL}; heap ${heap}, open ${open}`);
    expect(errors).toBeLessThan(TOTAL / 100);
    expect((await metrics()).tcpmod_connections_accepted_total).toBeGreaterThanOrEqual(TOTAL - errors);
    expect(open).toBe(0);
    expect(heap).toBe(open);
    expect(rssEnd - rssFirst).toBeLessThan(8 * MiB);
  }, 300_000);
});
