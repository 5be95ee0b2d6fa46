// The Markdown report: how and where the run was made, the goals with what
// was seen, then one table per workload (medians, min–max, ratios).

const num = (v, d = 0) =>
  v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
const range = (s, d = 0) => (s && s.n > 1 ? `${num(s.min, d)}–${num(s.max, d)}` : s && s.n === 1 ? num(s.min, d) : '–');
const times = (s) => (s && s.median !== null ? `${s.median.toFixed(2)}× (${s.min.toFixed(2)}–${s.max.toFixed(2)})` : '–');
const esc = (s) => String(s).replace(/\|/g, '\\|');

export const WORKLOAD_TITLES = {
  echo: 'Echo (closed loop, bench/bin/echo-load)',
  http: 'HTTP (wrk, GET /)',
  https: 'HTTPS (wrk, GET / over TLS)',
  resp: 'RESP (redis-benchmark)',
  hostile: 'Hostile clients: a fresh client beside non-readers, slowloris and trickle uploads',
  scale: 'Scale: idle connections',
  startup: 'Start-up',
  workers: 'Workers (tcpmod echo, by worker threads)',
  mqtt: 'MQTT fan-out (bench/mqtt-load.c, native client; delivered messages/s)',
  percore: 'One core each: server CPU per request (server on CPU 0, client on CPU 1)',
  memcache: 'memcache.wasm vs memcached; the store under eviction vs redis-server',
  fanout: 'Pub/sub fan-out: resp.wasm PUBLISH/SUBSCRIBE vs redis-server (delivered messages/s)',
  'redis-proxy': 'Sharding proxy: redis-proxy.wasm vs nutcracker (twemproxy) over the same shards',
};

/** Rows "skipped: …" for a workload that did not run, one per planned case. */
function skippedTable(w) {
  const reason = w.status === 'skipped' ? `skipped: ${w.reason}` : `error: ${w.error}`;
  const cases = w.plannedCases?.length ? w.plannedCases : ['(all cases)'];
  return ['| case | result |', '|---|---|', ...cases.map((c) => `| ${esc(c)} | ${esc(reason)} |`)].join('\n');
}

function compareTable(w, subject) {
  const hasRatios = subject !== null;
  const head = hasRatios
    ? ['| case | server | req/s (median) | req/s min–max | server CPU µs/req (median, min–max) | context switches/req (median) | syscalls/req (strace run) | tcpmod ÷ server: req/s | tcpmod ÷ server: CPU/req |', '|---|---|--:|--:|--:|--:|--:|--:|--:|']
    : ['| case | server | req/s (median) | req/s min–max | server CPU µs/req (median, min–max) | context switches/req (median) | syscalls/req (strace run) |', '|---|---|--:|--:|--:|--:|--:|'];
  const rows = [];
  for (const c of w.cases) {
    let first = true;
    for (const [id, r] of Object.entries(c.results)) {
      const startErr = w.servers[id]?.error;
      const caseCell = first ? esc(c.label) : '';
      first = false;
      if (startErr || r.rps.n === 0) {
        const why = startErr ?? r.runs.find((x) => x.error)?.error ?? 'no data';
        rows.push(`| ${caseCell} | ${esc(r.label)} | error: ${esc(why.split('\n')[0].slice(0, 120))} | | | | |${hasRatios ? ' | |' : ''}`);
        continue;
      }
      const cpu = `${num(r.cpuPerRequestUs.median, 2)} (${range(r.cpuPerRequestUs, 2)})`;
      const errs = r.errors ? ` ⚠ ${num(r.errors)} client errors` : '';
      const sys = r.syscalls?.perRequest !== undefined ? num(r.syscalls.perRequest, 2) : '–';
      const cells = [caseCell, esc(r.label) + errs, num(r.rps.median), range(r.rps), cpu, num(r.switchesPerRequest?.median, 2), sys];
      if (hasRatios) {
        const q = c.ratios[id];
        cells.push(id === subject ? '—' : times(q?.rps), id === subject ? '—' : times(q?.cpuPerRequest));
      }
      rows.push(`| ${cells.join(' | ')} |`);
    }
  }
  return [...head, ...rows].join('\n');
}

function scaleTable(w) {
  const rows = ['| server | connections held | RSS before (KiB) | RSS after (KiB) | RSS growth per connection (B) | time until all accepted (s) |', '|---|--:|--:|--:|--:|--:|'];
  for (const r of Object.values(w.results)) {
    const ok = r.runs.filter((x) => !x.error);
    if (!ok.length) {
      rows.push(`| ${esc(r.label)} | error: ${esc((r.runs[0]?.error ?? 'no data').slice(0, 120))} | | | | |`);
      continue;
    }
    const held = Math.min(...ok.map((x) => x.connected));
    rows.push(
      `| ${esc(r.label)} | ${num(held)} | ${num(r.rssBeforeKiB.median)} | ${num(r.rssAfterKiB.median)} | ` +
        `${num(r.bytesPerConnection.median)} (${range(r.bytesPerConnection)}) | ${num(r.acceptSeconds.median, 3)} (${range(r.acceptSeconds, 3)}) |`,
    );
  }
  return rows.join('\n');
}

function hostileTable(w) {
  const lat = (f) => (f?.latencyMs?.n ? `${num(f.latencyMs.p50, 2)} / ${num(f.latencyMs.p99, 2)} / ${num(f.latencyMs.max, 1)}` : '–');
  const fails = (f) => (f ? `${num(f.failures)} of ${num(f.requests)}` : '–');
  const closed = (a, k) => (a?.[k] ? `${num(a[k].closedByServer)} of ${num(a[k].opened)}` : '–');
  const rows = [
    '| protocol | server | fresh latency, no attack: p50 / p99 / max (ms) | fresh latency under attack: p50 / p99 / max (ms) | fresh failures: no attack; attack | server CPU µs per fresh request: no attack → attack | closed by the server: non-readers | slowloris | trickle | server RSS at the end of the attack (MiB) |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of Object.values(w.results)) {
    const run = r.runs.find((x) => !x.error);
    if (!run) {
      rows.push(`| ${esc(r.protocol)} | ${esc(r.label)} | ${esc((r.runs[0]?.error ?? 'no data').split('\n')[0].slice(0, 120))} | | | | | | | |`);
      continue;
    }
    const a = run.attackers;
    rows.push(
      `| ${esc(r.protocol)} | ${esc(r.label)} | ${lat(run.baseline)} | ${lat(run.attack)} | ${fails(run.baseline)}; ${fails(run.attack)} | ` +
        `${num(run.baseline.cpuPerRequestUs, 0)} → ${num(run.attack.cpuPerRequestUs, 0)} | ${closed(a, 'nonReaders')} | ${closed(a, 'slowloris')} | ${closed(a, 'trickle')} | ${num(run.rssEndOfAttackKiB / 1024, 0)} |`,
    );
  }
  return rows.join('\n');
}

function startupTable(w) {
  const rows = ['| server | launch → “listening on” (ms, median, min–max) | launch → first echo reply (ms, median, min–max) |', '|---|--:|--:|'];
  for (const r of Object.values(w.results)) {
    if (r.listeningMs.n === 0 && r.firstEchoMs.n === 0) {
      rows.push(`| ${esc(r.label)} | error: ${esc((r.runs[0]?.error ?? 'no data').slice(0, 120))} | |`);
      continue;
    }
    rows.push(`| ${esc(r.label)} | ${num(r.listeningMs.median, 1)} (${range(r.listeningMs, 1)}) | ${num(r.firstEchoMs.median, 1)} (${range(r.firstEchoMs, 1)}) |`);
  }
  return rows.join('\n');
}

export function goalsTable(goals) {
  const mark = (m) => (m === true ? '✅ yes' : m === false ? '❌ no' : '– not measured');
  return ['| goal | seen (median of per-round ratios) | met? |', '|---|---|---|', ...goals.map((g) => `| ${esc(g.goal)} | ${esc(g.seen)} | ${mark(g.met)} |`)].join('\n');
}

/** The results tables alone (goals + workloads), also used for the README section. */
export function resultTables(results, { headingLevel = 2 } = {}) {
  const h = '#'.repeat(headingLevel);
  const out = [`${h} Goals`, '', goalsTable(results.goals), ''];
  for (const [name, w] of Object.entries(results.workloads)) {
    out.push(`${h} ${WORKLOAD_TITLES[name] ?? name}`, '');
    if (w.status !== 'ok') {
      out.push(skippedTable(w), '');
      continue;
    }
    if (name === 'scale') out.push(scaleTable(w));
    else if (name === 'startup') out.push(startupTable(w));
    else if (name === 'hostile') out.push(hostileTable(w));
    else if (name === 'memcache') out.push(w.table);
    else out.push(compareTable(w, name === 'workers' ? null : 'tcpmod'));
    if (w.client) out.push('', `Client: \`${w.client}\`.`);
    for (const note of w.notes ?? []) out.push('', note);
    out.push('');
  }
  return out.join('\n');
}

export function machineLine(m) {
  return `${m.cpuModel}, ${m.cores} cores (shared by load client and server), ${m.kernel}, Node ${m.node}, loopback`;
}

export function renderMarkdown(results) {
  const o = results.options;
  return [
    `# tcpmod benchmarks${o.quick ? ' (quick smoke run: not for comparison)' : ''}`,
    '',
    `- Command: \`${results.command}\``,
    `- When: ${results.startedAt} → ${results.finishedAt}`,
    `- Machine: ${machineLine(results.machine)}; load average at start ${results.machine.loadAverageAtStart.join(' / ')}`,
    `- ${o.rounds} round(s) of ${o.seconds} s per case and server, interleaved (A B C … A B C …) after a ${o.warmupSeconds} s warm-up; tcpmod and the multi-process peers run ${o.threads} workers`,
    '- req/s: the client’s count over its run. Server CPU µs/req: user + system CPU of all the server’s processes (/proc/PID/stat, utime+stime incl. reaped children) over the run ÷ requests. Ratios: tcpmod ÷ peer per round, median (min–max) over rounds.',
    `- Raw figures, commands and the machine: \`bench/results/${o.quick ? 'quick' : 'latest'}.json\`; chart: \`bench/results/${o.quick ? 'quick' : 'latest'}.svg\``,
    '',
    resultTables(results),
  ].join('\n');
}

/** The section for the project README: how the numbers were made, the chart, the tables. */
export function renderReadmeSection(results) {
  const o = results.options;
  return [
    '## Benchmarks',
    '',
    'tcpmod side by side with the servers users would pick instead, on loopback, all in one interleaved run',
    `(A B C … per round, ${o.rounds} rounds of ${o.seconds} s per case and server; medians, min–max and per-round ratios tcpmod ÷ peer).`,
    `Machine: ${machineLine(results.machine)}. tcpmod and the multi-process peers (Node cluster, nginx) run ${o.threads} workers.`,
    '“Server CPU µs/req” is the server’s user + system CPU time (all its processes, from /proc) over the run divided by the requests.',
    '',
    `Produced by \`${results.command}\` (${results.finishedAt.slice(0, 10)}); raw figures, exact commands and the machine in`,
    '[bench/results/latest.json](bench/results/latest.json), the same tables in [bench/results/latest.md](bench/results/latest.md).',
    '',
    '![Throughput per workload and server](bench/results/latest.svg)',
    '',
    resultTables(results, { headingLevel: 3 }),
  ].join('\n');
}
