// The goals of issue 6, checked against a run's results. A goal over several
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
    ratioGoal({ id: 'http-vs-nginx', goal: 'HTTP ≥ 0.8× nginx (same worker count), req/s', workload: w.http, peer: 'nginx', atLeast: 0.8 }),
    ratioGoal({
      id: 'https-vs-nginx',
      goal: 'HTTPS keep-alive ≥ 0.8× nginx (same worker count, same certificate), req/s',
      workload: w.https,
      peer: 'nginx',
      filter: (c) => !c.params.connectionClose,
      atLeast: 0.8,
    }),
    ratioGoal({
      id: 'https-vs-node',
      goal: 'HTTPS keep-alive ≥ 2× Node `https` (one process), req/s',
      workload: w.https,
      peer: 'node-https',
      filter: (c) => !c.params.connectionClose,
      atLeast: 2,
    }),
    ratioGoal({
      id: 'resp-vs-redis',
      goal: 'RESP ≥ 0.9× redis-server, req/s',
      workload: w.resp,
      peer: 'redis-server',
      filter: (c) => c.params.pipeline === 1,
      atLeast: 0.9,
    }),
    ratioGoal({
      id: 'resp-p16-vs-redis',
      goal: 'RESP with -P 16 ≥ 0.5× redis-server, req/s',
      workload: w.resp,
      peer: 'redis-server',
      filter: (c) => c.params.pipeline > 1,
      atLeast: 0.5,
    }),
    ratioGoal({ id: 'mqtt-vs-mosquitto', goal: 'MQTT fan-out ≥ 1.0× mosquitto, delivered msgs/s', workload: w.mqtt, peer: 'mosquitto', atLeast: 1 }),
    ratioGoal({ id: 'mqtt-vs-aedes', goal: 'MQTT fan-out ≥ 3× aedes, delivered msgs/s', workload: w.mqtt, peer: 'aedes', atLeast: 3 }),
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
