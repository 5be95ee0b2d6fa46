// The goals table's arithmetic (bench/lib/goals.mjs) on made-up results: which
// cases a goal reads, ratio direction, worst case named, met only when every
// case meets it. No server runs here; test/bench.test.ts runs a real quick bench.
import { describe, expect, it } from 'vitest';
// @ts-expect-error a plain .mjs module without types
import { evaluateGoals } from '../bench/lib/goals.mjs';

type Goal = { id: string; seen: string; met: boolean | null; worst?: number };
const goal = (w: object, id: string): Goal => (evaluateGoals(w) as Goal[]).find((g) => g.id === id)!;
const ratio = (rps: number, cpu: number) => ({ rps: { median: rps }, cpuPerRequest: { median: cpu } });

describe('bench goals', () => {
  it('a goal over several cases is met only when each is, and names the worst', () => {
    const proxy = {
      status: 'ok',
      cases: [
        { id: 'redis-proxy-set', label: 'SET', ratios: { nutcracker: ratio(1.1, 1.0) } },
        { id: 'redis-proxy-get', label: 'GET', ratios: { nutcracker: ratio(0.95, 1.3) } },
        { id: 'redis-proxy-set-p16', label: 'SET -P 16', ratios: { nutcracker: ratio(0.7, 0.8) } },
      ],
    };
    const w = { 'redis-proxy': proxy };
    expect(goal(w, 'proxy-vs-twemproxy')).toMatchObject({ met: false, worst: 0.95 });
    expect(goal(w, 'proxy-vs-twemproxy').seen).toContain('GET');
    expect(goal(w, 'proxy-cpu-vs-twemproxy')).toMatchObject({ met: false, worst: 1.3 });
    expect(goal(w, 'proxy-p16-vs-twemproxy')).toMatchObject({ met: false, worst: 0.7 });
    proxy.cases[1].ratios.nutcracker = ratio(1.0, 1.2);
    expect(goal(w, 'proxy-vs-twemproxy').met).toBe(true);
    expect(goal(w, 'proxy-cpu-vs-twemproxy').met).toBe(true);
  });

  it('memcache rows: tcpmod over memcached per case, eviction left out', () => {
    const rows = [
      { case: 'incr', server: 'memcached', opsPerSec: 100, cpuUsPerOp: 10 },
      { case: 'incr', server: 'tcpmod memcache.wasm', opsPerSec: 95, cpuUsPerOp: 12 },
      { case: 'mix', server: 'memcached', opsPerSec: 100, cpuUsPerOp: 10 },
      { case: 'mix', server: 'tcpmod memcache.wasm', opsPerSec: 80, cpuUsPerOp: 14 },
      { case: 'eviction', server: 'redis-server', opsPerSec: 1, cpuUsPerOp: 1 },
      { case: 'eviction', server: 'tcpmod resp.wasm', opsPerSec: 0.1, cpuUsPerOp: 100 },
    ];
    const w = { memcache: { status: 'ok', rows } };
    const tput = goal(w, 'memcache-vs-memcached');
    expect(tput).toMatchObject({ met: false, worst: 0.8 });
    expect(tput.seen).toContain('1 of 2 cases');
    expect(goal(w, 'memcache-cpu-vs-memcached')).toMatchObject({ met: false, worst: 1.4 });
    rows[3].opsPerSec = 90;
    rows[3].cpuUsPerOp = 13;
    expect(goal(w, 'memcache-vs-memcached').met).toBe(true);
    expect(goal(w, 'memcache-cpu-vs-memcached').met).toBe(true);
  });

  it('mqtt p99 against mosquitto from the runs, and not-run workloads', () => {
    const runs = (...p99Ms: number[]) => ({ runs: p99Ms.map((v) => ({ p99Ms: v })) });
    const c = { id: 'm', label: '1 → 100', ratios: {}, results: { tcpmod: runs(3, 1, 2), mosquitto: runs(2, 2, 2) } };
    expect(goal({ mqtt: { status: 'ok', cases: [c] } }, 'mqtt-p99-vs-mosquitto')).toMatchObject({ met: true, worst: 1 });
    c.results.tcpmod = runs(5, 6, 1);
    expect(goal({ mqtt: { status: 'ok', cases: [c] } }, 'mqtt-p99-vs-mosquitto')).toMatchObject({ met: false, worst: 2.5 });
    for (const id of ['fanout-vs-redis', 'memcache-vs-memcached', 'mqtt-p99-vs-mosquitto']) expect(goal({}, id)).toMatchObject({ met: null, seen: 'not measured (not run)' });
  });
});
