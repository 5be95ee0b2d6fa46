// The chart: throughput (median req/s, with the min–max range) per case and
// server, one panel per case, as a Vega-Lite spec compiled with vega-lite and
// rendered to SVG by vega's headless view (no canvas needed).
import * as vega from 'vega';
import * as vl from 'vega-lite';

const THROUGHPUT_WORKLOADS = ['echo', 'http', 'https', 'resp', 'workers', 'mqtt'];

/** One row per (case, server) with a median. */
export function chartRows(results) {
  const rows = [];
  for (const name of THROUGHPUT_WORKLOADS) {
    const w = results.workloads[name];
    if (!w || w.status !== 'ok') continue;
    for (const c of w.cases) {
      Object.values(c.results).forEach((r, order) => {
        if (r.rps.median === null) return;
        rows.push({ workload: name, case: c.label, server: r.label, order, median: r.rps.median, min: r.rps.min, max: r.rps.max });
      });
    }
  }
  return rows;
}

export function chartSpec(results) {
  const rows = chartRows(results);
  const servers = [...new Set(rows.map((r) => r.server))];
  const m = results.machine;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `tcpmod vs peers: throughput (median req/s, bar; min–max over ${results.options.rounds} round(s), line)`,
      subtitle: `${m.cpuModel}, ${m.cores} cores shared with the load client, ${m.kernel}, Node ${m.node}${results.options.quick ? ' — quick smoke run' : ''}`,
      anchor: 'start',
    },
    data: { values: rows },
    facet: { field: 'case', type: 'nominal', title: null, sort: rows.map((r) => r.case).filter((c, i, a) => a.indexOf(c) === i), header: { labelFontSize: 12, labelFontWeight: 'bold' } },
    columns: 3,
    spec: {
      width: 260,
      height: { step: 18 },
      layer: [
        {
          mark: { type: 'bar', tooltip: true },
          encoding: {
            y: { field: 'server', type: 'nominal', title: null, sort: servers },
            x: { field: 'median', type: 'quantitative', title: 'req/s', axis: { format: '~s' } },
            color: { field: 'server', type: 'nominal', scale: { domain: servers, scheme: 'tableau20' }, legend: { title: 'server', orient: 'bottom', columns: 4, labelLimit: 300 } },
          },
        },
        {
          mark: { type: 'rule', color: 'black' },
          encoding: {
            y: { field: 'server', type: 'nominal', sort: servers },
            x: { field: 'min', type: 'quantitative' },
            x2: { field: 'max' },
          },
        },
        {
          mark: { type: 'text', align: 'left', dx: 4, fontSize: 10 },
          encoding: {
            y: { field: 'server', type: 'nominal', sort: servers },
            x: { field: 'max', type: 'quantitative' },
            text: { field: 'median', type: 'quantitative', format: ',.0f' },
          },
        },
      ],
    },
    resolve: { scale: { x: 'independent', y: 'independent' } },
    config: { view: { stroke: null }, font: 'sans-serif', axisY: { minExtent: 175, maxExtent: 175, labelLimit: 175 } },
  };
}

/** The chart as an SVG document (string). */
export async function renderChart(results) {
  // Layers share each panel's x scale on purpose (bar = median, rule = min–max); vega-lite warns about that.
  const spec = vl.compile(chartSpec(results), { logger: vega.logger(vega.None) }).spec;
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
