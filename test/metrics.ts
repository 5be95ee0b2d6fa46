// A `tcpmod serve` child's /metrics endpoint, as the e2e tests read it.
import { until } from './wait.js';

/**
 * The port of the child's --metrics endpoint, from the "metrics on
 * http://HOST:PORT/…" line it writes to stderr; waits up to `ms` for the line.
 */
export async function metricsPort(srv: { stderr(): string }, ms: number): Promise<number> {
  const m = await until(() => /metrics on http:\/\/[^:]+:(\d+)\//.exec(srv.stderr()), ms, 'the metrics line');
  return Number(m[1]);
}

/** Scrapes http://127.0.0.1:`port`/metrics into name{labels} → value; gives up after `timeoutMs`. */
export async function scrape(port: number, timeoutMs = 5000): Promise<Record<string, number>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
  const out: Record<string, number> = {};
  for (const line of (await res.text()).split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}
