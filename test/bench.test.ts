// The benchmark harness end to end: `npm run bench -- --quick --only echo --duration 300ms` as
// a child process, then its output files (bench/results/quick.*): the JSON has
// every field, the Markdown has its tables, the SVG is a well-formed chart.
// Nothing here is about speed.
import { spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const RESULTS = 'bench/results';

function runBench(args: string[], timeoutMs: number): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('npm', ['run', '--silent', 'bench', '--', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    // SIGINT lets the bench kill the servers it started before it exits.
    const timer = setTimeout(() => p.kill('SIGINT'), timeoutMs);
    p.once('error', reject);
    p.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

/** Tag balance of an XML document: every element closed, in order, under one <svg> root. */
function checkWellFormed(xml: string): void {
  const body = xml.replace(/<!--[\s\S]*?-->/g, '').replace(/<!\[CDATA\[[\s\S]*?\]\]>/g, '').replace(/<\?[\s\S]*?\?>/g, '');
  const stack: string[] = [];
  let roots = 0;
  let elements = 0;
  const tag = /<(\/?)([A-Za-z_][\w:.-]*)((?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/g;
  let last = 0;
  for (let m = tag.exec(body); m; m = tag.exec(body)) {
    const between = body.slice(last, m.index);
    expect(between, 'stray "<" or ">" between tags').not.toMatch(/[<>]/);
    last = tag.lastIndex;
    const [, closing, name, , selfClosing] = m;
    elements++;
    if (closing) {
      expect(stack.pop(), `closing </${name}>`).toBe(name);
    } else {
      if (stack.length === 0) roots++;
      if (!selfClosing) stack.push(name);
    }
  }
  expect(body.slice(last).trim()).toBe('');
  expect(stack).toEqual([]);
  expect(roots).toBe(1);
  expect(elements).toBeGreaterThan(10);
}

const summary = expect.objectContaining({ median: expect.any(Number), min: expect.any(Number), max: expect.any(Number), n: expect.any(Number) });

describe('npm run bench -- --quick --only echo', () => {
  it('writes quick.json / quick.md / quick.svg with every field', { timeout: 150_000 }, async () => {
    const started = Date.now();
    // 300 ms a run instead of --quick's 1 s: the files' fields are checked, not the numbers (and
    // --duration is seen to reach the record).
    const { code, stderr } = await runBench(['--quick', '--only', 'echo', '--duration', '300ms'], 120_000);
    expect(code, stderr.slice(-3000)).toBe(0);
    // Progress on stderr names the workload, the servers and the rounds.
    expect(stderr).toMatch(/\[echo\] echo 16 B × 50 conn · round 1\/1 · tcpmod/);

    for (const ext of ['json', 'md', 'svg']) expect(statSync(`${RESULTS}/quick.${ext}`).mtimeMs).toBeGreaterThanOrEqual(started - 1000);

    const r = JSON.parse(readFileSync(`${RESULTS}/quick.json`, 'utf8'));
    expect(r).toMatchObject({
      schema: 'tcpmod-bench/1',
      command: expect.stringContaining('--quick'),
      startedAt: expect.any(String),
      finishedAt: expect.any(String),
      options: { quick: true, rounds: 1, seconds: 0.3, only: ['echo'], threads: expect.any(Number) },
      machine: { cpuModel: expect.any(String), cores: expect.any(Number), kernel: expect.any(String), node: process.version },
      commands: { echo: { servers: expect.any(Object), clients: expect.any(Array) } },
    });
    expect(r.commands.echo.clients[0]).toMatch(/echo-load 127\.0\.0\.1 \d+ 50 (16|4096) 0\.3/);

    const echo = r.workloads.echo;
    expect(echo.status).toBe('ok');
    const ids = ['tcpmod', 'node-net', 'node-net-cluster', 'c-epoll'];
    expect(Object.keys(echo.servers).sort()).toEqual([...ids].sort());
    for (const id of ids) expect(echo.servers[id].command, id).toEqual(expect.any(String));
    expect(echo.cases.map((c: { id: string }) => c.id)).toEqual(['echo-16B-50c', 'echo-4096B-50c']);
    for (const c of echo.cases) {
      expect(c.params).toEqual({ size: expect.any(Number), connections: 50 });
      for (const id of ids) {
        const res = c.results[id];
        expect(res.runs, `${c.id} ${id}`).toHaveLength(1);
        expect(res.runs[0], `${c.id} ${id}`).toMatchObject({
          round: 1,
          requests: expect.any(Number),
          seconds: expect.any(Number),
          rps: expect.any(Number),
          errors: 0,
          cpuSeconds: expect.any(Number),
          cpuPerRequestUs: expect.any(Number),
          command: expect.any(String),
        });
        expect(res.runs[0].requests).toBeGreaterThan(0);
        expect(res.rps).toEqual(summary);
        expect(res.cpuPerRequestUs).toEqual(summary);
      }
      for (const peer of ids.slice(1)) {
        expect(c.ratios[peer].rps).toEqual(expect.objectContaining({ perRound: [expect.any(Number)], median: expect.any(Number) }));
        expect(c.ratios[peer].cpuPerRequest).toEqual(expect.objectContaining({ perRound: [expect.any(Number)], median: expect.any(Number) }));
      }
    }
    expect(r.goals.map((g: { id: string }) => g.id)).toEqual([
      'echo-vs-node', 'echo-vs-c', 'echo-cpu-vs-c', 'http-vs-node', 'http-vs-nginx', 'http-cpu-vs-nginx', 'https-vs-nginx', 'https-cpu-vs-nginx', 'https-vs-node',
      'resp-vs-redis', 'resp-cpu-vs-redis', 'resp-p16-vs-redis', 'mqtt-vs-mosquitto', 'mqtt-vs-aedes', 'mqtt-p99-vs-mosquitto', 'fanout-vs-redis',
      'proxy-vs-twemproxy', 'proxy-cpu-vs-twemproxy', 'proxy-p16-vs-twemproxy', 'memcache-vs-memcached', 'memcache-cpu-vs-memcached', 'idle-memory', 'ready',
    ]);
    for (const g of r.goals) expect(g).toMatchObject({ goal: expect.any(String), seen: expect.any(String) });
    expect(r.goals.slice(0, 3).every((g: { met: unknown }) => typeof g.met === 'boolean')).toBe(true);
    expect(r.goals.slice(3).every((g: { met: unknown }) => g.met === null)).toBe(true);

    const md = readFileSync(`${RESULTS}/quick.md`, 'utf8');
    expect(md).toMatch(/^# tcpmod benchmarks/);
    expect(md).toContain('| goal | seen (median of per-round ratios) | met? |');
    expect(md).toMatch(/\| echo 16 B × 50 conn \| tcpmod ×\d+ \| [\d,]+ \|/);
    expect(md).toContain('| C epoll (ceiling) |');

    const svg = readFileSync(`${RESULTS}/quick.svg`, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    checkWellFormed(svg);
    expect(svg).toContain('echo 16 B × 50 conn');
  });
});
