// The goals (issues 6, 21, 22, 23, 25), checked against a run's results. A goal over several
// cases is met only when every case meets it; `seen` names the worst case.
// met is null when the workload was not run (skipped, or failed).

const x = (v) => (v === null || v === undefined ? '–' : `${v.toFixed(2)}×`);

function ratioGoal({ id, goal, workload, filter = () => true, peer, metric = 'rps', atLeast, atMost }) {
  const w = workload;
  const base = { id, goal };
  if (!w || w.status !== 'ok') return { ...base, seen: w ? `not measured (${w.status}${w.reason ? `: ${w.reason}` : ''})` : 'not measured (not run)', met: null, cases: [] };
  const cases = w.cases.filter(filter).map((c) => {
    const value = c.ratios?.[peer]?.[metric]?.median ?? null;
    const met = value === null ? null : atLeast !== undefined ? value >= atLeast : value <= atMost;
    return { case: c.label, value, met };
  });
  const known = cases.filter((c) => c.value !== null);
  if (known.length === 0) return { ...base, seen: 'no data', met: null, cases };
  const worst = known.reduce((a, b) => (atLeast !== undefined ? (b.value < a.value ? b : a) : b.value > a.value ? b : a));
  const best = known.reduce((a, b) => (atLeast !== undefined ? (b.value > a.value ? b : a) : b.value < a.value ? b : a));
  const failing = known.filter((c) => !c.met).length;
  const seen =
    known.length === 1
      ? `${x(worst.value)} (${worst.case})`
      : `worst ${x(worst.value)} (${worst.case}), best ${x(best.value)} (${best.case}); ${known.length - failing} of ${known.length} cases meet it`;
  return { ...base, seen, worst: worst.value, met: failing === 0 && known.length === cases.length, cases };
}

/**
 * A latency goal: each case's median p99 (over the rounds) against the peer's,
 * from the runs' p99Ms; met when tcpmod's is at most the peer's in every case.
 */
function latencyGoal({ id, goal, workload, peer }) {
  const w = workload;
  const base = { id, goal };
  if (!w || w.status !== 'ok') return { ...base, seen: `not measured (${w ? w.status : 'not run'})`, met: null, cases: [] };
  const p99 = (r) => {
    const v = (r?.runs ?? []).filter((x) => !x.error && Number.isFinite(x.p99Ms)).map((x) => x.p99Ms).sort((a, b) => a - b);
    return v.length ? v[(v.length - 1) >> 1] : null;
  };
  const cases = w.cases.map((c) => {
    const mine = p99(Object.values(c.results)[0]);
    const theirs = p99(c.results[peer]);
    const value = mine === null || theirs === null ? null : theirs === 0 ? null : mine / theirs;
    return { case: c.label, value, met: value === null ? null : value <= 1 };
  });
  const known = cases.filter((c) => c.value !== null);
  if (known.length === 0) return { ...base, seen: 'no data', met: null, cases };
  const worst = known.reduce((a, b) => (b.value > a.value ? b : a));
  return { ...base, seen: `worst ${x(worst.value)} of the peer’s p99 (${worst.case})`, worst: worst.value, met: known.every((c) => c.met) && known.length === cases.length, cases };
}

/**
 * memcache.wasm against memcached (issue 21): ≥ 0.9× ops/s and ≤ 1.3× CPU per
 * operation in every case of bench/memcache.mjs but eviction (a memory figure
 * against redis-server); its rows are per-server medians, so the ratio is of medians.
 */
function memcacheGoals(w) {
  const defs = [
    { id: 'memcache-vs-memcached', goal: 'memcache.wasm ≥ 0.9× memcached, ops/s', key: 'opsPerSec', atLeast: 0.9 },
    { id: 'memcache-cpu-vs-memcached', goal: 'memcache.wasm CPU per operation ≤ 1.3× memcached’s', key: 'cpuUsPerOp', atMost: 1.3 },
  ];
  if (!w || w.status !== 'ok') return defs.map(({ id, goal }) => ({ id, goal, seen: `not measured (${w ? w.status : 'not run'})`, met: null, cases: [] }));
  const byCase = new Map();
  for (const r of w.rows ?? []) if (r.case !== 'eviction') byCase.set(r.case, { ...byCase.get(r.case), [r.server.startsWith('tcpmod') ? 'mine' : 'theirs']: r });
  return defs.map(({ id, goal, key, atLeast, atMost }) => {
    const cases = [...byCase].map(([kase, { mine, theirs }]) => {
      const value = mine && theirs && theirs[key] > 0 ? mine[key] / theirs[key] : null;
      return { case: kase, value, met: value === null ? null : atLeast !== undefined ? value >= atLeast : value <= atMost };
    });
    const known = cases.filter((c) => c.value !== null);
    if (known.length === 0) return { id, goal, seen: 'no data', met: null, cases };
    const worst = known.reduce((a, b) => (atLeast !== undefined ? (b.value < a.value ? b : a) : b.value > a.value ? b : a));
    const failing = known.filter((c) => !c.met).length;
    return { id, goal, seen: `worst ${x(worst.value)} (${worst.case}); ${known.length - failing} of ${known.length} cases meet it (ratio of medians)`, worst: worst.value, met: failing === 0, cases };
  });
}

/** The list of goals with what the run saw. */
export function evaluateGoals(w) {
  const goals = [
    ratioGoal({ id: 'echo-vs-node', goal: 'echo ≥ 2× Node `net` (one process), req/s', workload: w.echo, peer: 'node-net', atLeast: 2 }),
    ratioGoal({ id: 'echo-vs-c', goal: 'echo ≥ 0.85× the C epoll ceiling, req/s', workload: w.echo, peer: 'c-epoll', atLeast: 0.85 }),
    ratioGoal({
      id: 'echo-cpu-vs-c',
      goal: 'echo CPU per request ≤ 1.3× the C ceiling’s',
      workload: w.echo,
      peer: 'c-epoll',
      metric: 'cpuPerRequest',
      atMost: 1.3,
    }),
    ratioGoal({ id: 'http-vs-node', goal: 'HTTP ≥ 3× Node `http` (one process), req/s', workload: w.http, peer: 'node-http', atLeast: 3 }),
    ratioGoal({ id: 'http-vs-nginx', goal: 'HTTP ≥ 0.95× nginx (same worker count), req/s', workload: w.http, peer: 'nginx', atLeast: 0.95 }),
    ratioGoal({ id: 'http-cpu-vs-nginx', goal: 'HTTP CPU per request ≤ 1.2× nginx’s', workload: w.http, peer: 'nginx', metric: 'cpuPerRequest', atMost: 1.2 }),
    ...[
      { id: 'https-vs-nginx', goal: 'HTTPS keep-alive ≥ 0.9× nginx (same worker count, same certificate), req/s', atLeast: 0.9 },
      { id: 'https-cpu-vs-nginx', goal: 'HTTPS keep-alive CPU per request ≤ 1.3× nginx’s', metric: 'cpuPerRequest', atMost: 1.3 },
    ].map((g) => ratioGoal({ ...g, workload: w.https, peer: 'nginx', filter: (c) => !c.params.connectionClose })),
    ratioGoal({
      id: 'https-vs-node',
      goal: 'HTTPS keep-alive ≥ 2× Node `https` (one process), req/s',
      workload: w.https,
      peer: 'node-https',
      filter: (c) => !c.params.connectionClose,
      atLeast: 2,
    }),
    ...[
      { id: 'resp-vs-redis', goal: 'RESP ≥ 1.0× redis-server, req/s', atLeast: 1 },
      { id: 'resp-cpu-vs-redis', goal: 'RESP CPU per request ≤ 1.1× redis-server’s', metric: 'cpuPerRequest', atMost: 1.1 },
    ].map((g) => ratioGoal({ ...g, workload: w.resp, peer: 'redis-server', filter: (c) => c.params.pipeline === 1 })),
    ratioGoal({
      id: 'resp-p16-vs-redis',
      goal: 'RESP with -P 16 ≥ 0.9× redis-server, req/s',
      workload: w.resp,
      peer: 'redis-server',
      filter: (c) => c.params.pipeline > 1,
      atLeast: 0.9,
    }),
    ratioGoal({ id: 'mqtt-vs-mosquitto', goal: 'MQTT fan-out ≥ 1.0× mosquitto, delivered msgs/s', workload: w.mqtt, peer: 'mosquitto', atLeast: 1 }),
    ratioGoal({ id: 'mqtt-vs-aedes', goal: 'MQTT fan-out ≥ 3× aedes, delivered msgs/s', workload: w.mqtt, peer: 'aedes', atLeast: 3 }),
    latencyGoal({ id: 'mqtt-p99-vs-mosquitto', goal: 'MQTT fan-out delivery p99 ≤ mosquitto’s', workload: w.mqtt, peer: 'mosquitto' }),
    ratioGoal({ id: 'fanout-vs-redis', goal: 'PUBLISH fan-out ≥ 0.9× redis-server, delivered msgs/s', workload: w.fanout, peer: 'redis-server', atLeast: 0.9 }),
    ...[
      { id: 'proxy-vs-twemproxy', goal: 'sharding proxy ≥ 1.0× twemproxy, req/s', atLeast: 1, filter: (c) => !/-p\d+$/.test(c.id) },
      { id: 'proxy-cpu-vs-twemproxy', goal: 'sharding proxy CPU per request ≤ 1.2× twemproxy’s', metric: 'cpuPerRequest', atMost: 1.2, filter: (c) => !/-p\d+$/.test(c.id) },
      { id: 'proxy-p16-vs-twemproxy', goal: 'sharding proxy with -P 16 ≥ 0.8× twemproxy, req/s', atLeast: 0.8, filter: (c) => /-p\d+$/.test(c.id) },
    ].map((g) => ratioGoal({ ...g, workload: w['redis-proxy'], peer: 'nutcracker' })),
    ...memcacheGoals(w.memcache),
  ];

  const scale = w.scale;
  const mem = { id: 'idle-memory', goal: '≤ 1 KiB of host memory (RSS) per idle connection' };
  if (!scale || scale.status !== 'ok') goals.push({ ...mem, seen: `not measured (${scale?.status ?? 'not run'})`, met: null });
  else {
    const v = scale.results.tcpmod?.bytesPerConnection?.median ?? null;
    goals.push({
      ...mem,
      seen: v === null ? 'no data' : `${Math.round(v).toLocaleString('en-US')} B per connection (${scale.connections.toLocaleString('en-US')} held)`,
      worst: v,
      met: v === null ? null : v <= 1024,
    });
  }

  const st = w.startup;
  const ready = { id: 'ready', goal: 'ready (“listening on”) ≤ 300 ms after launch' };
  if (!st || st.status !== 'ok') goals.push({ ...ready, seen: `not measured (${st?.status ?? 'not run'})`, met: null });
  else {
    const v = st.results.tcpmod?.listeningMs?.median ?? null;
    const echo = st.results.tcpmod?.firstEchoMs?.median ?? null;
    goals.push({
      ...ready,
      seen: v === null ? 'no data' : `${v.toFixed(0)} ms median (first echo ${echo?.toFixed(0) ?? '–'} ms)`,
      worst: v,
      met: v === null ? null : v <= 300,
    });
  }
  return goals;
}
