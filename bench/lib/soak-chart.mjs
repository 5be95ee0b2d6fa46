// The soak's chart: per server, RSS, open descriptors, threads and CPU over
// the run, one panel per quantity, as a Vega-Lite spec rendered to SVG by
// vega's headless view (as bench/lib/chart.mjs does for the main bench).
import * as vega from 'vega';
import * as vl from 'vega-lite';

export const PANELS = [
  { key: 'rssKiB', title: 'RSS (MiB)', scale: 1 / 1024 },
  { key: 'fds', title: 'open descriptors', scale: 1 },
  { key: 'threads', title: 'threads', scale: 1 },
  { key: 'cpuPercent', title: 'CPU (% of one core)', scale: 1 },
];

export function soakChartSpec(soak) {
  const rows = [];
  for (const s of soak.samples) {
    for (const [server, v] of Object.entries(s.servers)) {
      if (!v) continue;
      for (const p of PANELS) {
        if (v[p.key] === null || v[p.key] === undefined) continue;
        rows.push({ panel: p.title, server, minutes: s.t / 60, value: v[p.key] * p.scale });
      }
    }
  }
  const servers = Object.keys(soak.servers);
  const m = soak.machine;
  const verdicts = soak.verdicts
    .filter((v) => v.metric !== 'cpuPercent')
    .map((v) => `${v.server} ${v.metric}: ${v.verdict}`)
    .join(', ');
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `tcpmod soak: ${soak.settings.durationSeconds} s, samples every ${soak.settings.sampleSeconds} s, three servers under load and hostile clients at once`,
      subtitle: [`${m.cpuModel}, ${m.cores} cores shared with the clients, ${m.kernel}, Node ${m.node}`, verdicts],
      anchor: 'start',
    },
    data: { values: rows },
    facet: {
      row: { field: 'panel', type: 'nominal', title: null, sort: PANELS.map((p) => p.title), header: { labelFontSize: 12, labelFontWeight: 'bold', labelAngle: 0, labelAlign: 'left' } },
    },
    spec: {
      width: 720,
      height: 150,
      mark: { type: 'line', point: { size: 12 }, tooltip: true },
      encoding: {
        x: { field: 'minutes', type: 'quantitative', title: 'minutes since the load started' },
        y: { field: 'value', type: 'quantitative', title: null },
        color: { field: 'server', type: 'nominal', scale: { domain: servers, scheme: 'tableau10' }, legend: { title: 'server', orient: 'bottom' } },
      },
    },
    resolve: { scale: { y: 'independent' } },
    config: { font: 'sans-serif' },
  };
}

/** The chart as an SVG document (string). */
export async function renderSoakChart(soak) {
  const spec = vl.compile(soakChartSpec(soak), { logger: vega.logger(vega.None) }).spec;
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
