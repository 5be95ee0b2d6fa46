// Prometheus text at /metrics, served from the main thread. Every value is read
// from server.stats() at scrape time (the pool's shared counters), so metrics
// cost nothing on the hot path.
import { createServer as createHttpServer, type Server } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import type { ServerStats, TcpmodServer } from './server.js';
import { native } from './sys.js';

/**
 * The registry, and `scrape()` for its text. Every metric reads one stats()
 * snapshot taken per scrape: stats() sums all workers' totals and counts the
 * store's keys under every shard lock, which one scrape must not do 18 times.
 */
export function metricsRegistry(server: TcpmodServer): { registry: Registry; scrape(): Promise<string> } {
  const registry = new Registry();
  let snapshot: ServerStats | null = null;
  const s = () => (snapshot ??= server.stats());
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
  // prom-client counters only go up through inc(); raise them to the absolute
  // totals read at scrape time by the difference from the last scrape.
  const counter = (name: string, help: string, read: () => number) => {
    let last = 0;
    return new Counter({ name, help, registers: [registry], collect() {
      const now = read();
      if (now > last) this.inc(now - last);
      last = Math.max(last, now);
    } });
  };
  const labelled = (name: string, help: string, label: string, read: () => Record<string, number>) => {
    const last = new Map<string, number>();
    return new Counter({ name, help, labelNames: [label], registers: [registry], collect() {
      for (const [k, v] of Object.entries(read())) {
        const prev = last.get(k) ?? 0;
        this.inc({ [label]: k }, Math.max(0, v - prev));
        last.set(k, Math.max(prev, v));
      }
    } });
  };
  // Gauges whose label values come and go (module generations): reset, then set, at every scrape.
  const labelledGauge = (name: string, help: string, label: string, read: () => Record<string, number>) =>
    new Gauge({ name, help, labelNames: [label], registers: [registry], collect() {
      this.reset();
      for (const [k, v] of Object.entries(read())) this.set({ [label]: k }, v);
    } });
  gauge('tcpmod_workers', 'Worker threads in the pool', () => s().workers);
  gauge('tcpmod_workers_busy', 'Workers handling an event right now', () => s().workersBusy);
  gauge('tcpmod_connections', 'Open connections', () => s().connections);
  // With Redis this process cannot know the store's size (DBSIZE would count other clients' keys too): no gauges.
  if (server.options.kv.type === 'memory') {
    gauge('tcpmod_kv_keys', 'Keys in the shared key-value store', () => s().kv.keys!);
    gauge('tcpmod_kv_bytes', 'Bytes the key-value store has allocated (entries, tables, TTL index), against --kv-max-bytes', () => s().kv.bytes!);
    counter('tcpmod_kv_expired_keys_total', 'Keys the key-value store deleted because their TTL passed', () => s().kv.expired!);
    counter('tcpmod_kv_evicted_keys_total', 'Keys the key-value store evicted to stay within --kv-max-bytes', () => s().kv.evicted!);
  }
  if (server.options.bus) {
    gauge('tcpmod_bus_connected', '1 while both connections of the bus to Redis (--bus) are up', () => (s().bus?.connected ? 1 : 0));
    counter('tcpmod_bus_published_total', 'Publishes Redis acknowledged (--bus)', () => s().bus?.published ?? 0);
    counter('tcpmod_bus_received_total', 'Messages from other processes delivered here through Redis (--bus)', () => s().bus?.received ?? 0);
    labelled('tcpmod_bus_lost_total', 'Publishes lost on the way to Redis (--bus): never sent (Redis down or 16 MiB waiting), or sent and unacknowledged when the connection failed', 'why',
      () => ({ dropped: s().bus?.dropped ?? 0, unconfirmed: s().bus?.unconfirmed ?? 0 }));
    counter('tcpmod_bus_failures_total', 'Bus connections to Redis lost or refused (--bus)', () => s().bus?.failures ?? 0);
  }
  labelled('tcpmod_kv_errors_total', 'Key-value calls that returned -3 (store unavailable), by why', 'kind', () => s().kv.errors);
  counter('tcpmod_connections_accepted_total', 'Connections accepted', () => s().connectionsAccepted);
  labelled('tcpmod_connections_closed_total', 'Connections closed, by reason', 'reason', () => s().connectionsClosed);
  counter('tcpmod_events_total', 'epoll events handled', () => s().events);
  counter('tcpmod_bytes_received_total', 'Bytes received from clients', () => s().bytesReceived);
  counter('tcpmod_bytes_sent_total', 'Bytes sent to clients', () => s().bytesSent);
  counter('tcpmod_send_timeouts_total', 'Connections closed because a send timed out', () => s().sendTimeouts);
  counter('tcpmod_workers_started_total', 'Worker threads started', () => s().workersStarted);
  counter('tcpmod_workers_stopped_total', 'Worker threads stopped', () => s().workersStopped);
  labelled('tcpmod_module_faults_total', 'Module faults, by kind', 'kind', () => s().moduleFaults);
  gauge('tcpmod_module_fault_storm', '1 while a module faults more than 20 times in 10 s', () => (s().moduleFaultStorm ? 1 : 0));
  counter('tcpmod_instances_created_total', 'Module instances created', () => s().instancesCreated);
  labelled('tcpmod_connections_refused_total', 'Connections accepted and closed at once: over the connection limit (limit), out of descriptors (fd), without a valid PROXY protocol header (proxy)', 'reason', () => s().connectionsRefused);
  gauge('tcpmod_module_generation', 'The module generation new connections get (1 at start, one more per applied reload; a rollback goes back)', () => s().generation);
  // Not a label of tcpmod_connections: that family keeps its one unlabelled series, so sums over it stay right.
  labelledGauge('tcpmod_generation_connections', 'Open connections per module generation', 'generation', () => s().generations);
  labelledGauge('tcpmod_instances_live', 'Live module instances per generation, over all workers', 'generation', () => s().instancesLive);
  labelled('tcpmod_reloads_total', 'Module reloads, by result: applied, refused (the running module kept serving), rolled_back (faulted past --reload-fault-limit)', 'result', () => s().reloads);
  gauge('tcpmod_max_connections', 'The connection limit in force', () => s().maxConnections);
  gauge('tcpmod_output_queued_bytes', 'Bytes waiting in connections\' output queues (queued send mode)', () => s().outputQueuedBytes);
  gauge('tcpmod_input_buffered_bytes', 'Bytes of unconsumed input the server holds for its connections', () => s().inputBufferedBytes);
  gauge('tcpmod_timers_armed', 'Connections whose module timer is armed', () => s().timersArmed);
  gauge('tcpmod_timer_heap_items', 'Items in the timer heap: at most one per open connection with a deadline', () => s().timerHeapSize);
  counter('tcpmod_timers_fired_total', 'Module timers fired (tcpmod_on_timer calls)', () => s().timersFired);
  counter('tcpmod_log_dropped_bytes_total', 'Bytes of module log messages dropped by the log limit (per connection and per instance, each second)', () => s().logDroppedBytes);
  let upstreams: ReturnType<typeof native.upstreamStats> | null = null;
  if (server.options.upstreams.length > 0) {
    // The native core's counters (upstream.cc): per process, which is one server for the CLI.
    const u = () => (upstreams ??= native.upstreamStats());
    gauge('tcpmod_upstream_open', 'Upstream connections open (connecting or connected)', () => u().open);
    counter('tcpmod_upstream_connects_total', 'Connects started to upstream addresses', () => u().connects);
    labelled('tcpmod_upstream_connect_failures_total', 'Upstream addresses that did not connect, by reason (refused, timeout, tls_verify: certificate or name, tls_handshake)', 'reason', () => ({ refused: u().refused, timeout: u().timeouts, tls_verify: u().tlsVerify, tls_handshake: u().tlsHandshake }));
    counter('tcpmod_upstream_too_many_total', 'upstream_open calls refused as too many (-2): 8 on the connection, or --max-upstreams in the process', () => u().tooMany);
    counter('tcpmod_upstream_read_timeouts_total', 'Open upstreams closed by --upstream-read-timeout: sent bytes, nothing received since (also counted in tcpmod_upstream_closed_total)', () => u().readTimeouts);
    counter('tcpmod_upstream_frame_timeouts_total', 'Open upstreams closed by --upstream-frame-timeout: a reply left incomplete that long (also counted in tcpmod_upstream_closed_total)', () => u().frameTimeouts);
    counter('tcpmod_upstream_failed_total', 'Upstreams none of whose addresses connected (FAILED events)', () => u().failed);
    counter('tcpmod_upstream_closed_total', 'Upstreams that closed or reset (CLOSED events)', () => u().closed);
    counter('tcpmod_upstream_bytes_received_total', 'Bytes received from upstreams', () => u().bytesIn);
    counter('tcpmod_upstream_bytes_sent_total', 'Bytes sent to upstreams', () => u().bytesOut);
  }
  if (server.options.tls) {
    counter('tcpmod_tls_handshakes_total', 'TLS handshakes completed', () => s().tls!.handshakes);
    labelled('tcpmod_tls_handshake_failures_total', 'TLS handshakes that failed (the connection closed with reason tls), by cause', 'reason', () => s().tls!.handshakeFailures);
    counter('tcpmod_tls_certificate_reloads_total', 'Certificate reloads applied', () => s().tls!.certificateReloads);
  }
  return {
    registry,
    async scrape() {
      snapshot = null;
      upstreams = null;
      const text = await registry.metrics();
      return server.options.tls ? text + handshakeHistogram(s().tls!.handshakeSeconds) : text;
    },
  };
}

/**
 * The handshake time histogram in exposition format. Workers count into fixed
 * buckets on the hot path; prom-client's Histogram only takes single
 * observations, so the pre-counted buckets are written out here.
 */
function handshakeHistogram(h: NonNullable<ServerStats['tls']>['handshakeSeconds']): string {
  const name = 'tcpmod_tls_handshake_seconds';
  const lines = [`# HELP ${name} Time from the first handshake byte to a completed TLS handshake`, `# TYPE ${name} histogram`];
  for (const b of h.buckets) lines.push(`${name}_bucket{le="${b.le}"} ${b.count}`);
  lines.push(`${name}_bucket{le="+Inf"} ${h.count}`, `${name}_sum ${h.sum}`, `${name}_count ${h.count}`);
  return `${lines.join('\n')}\n`;
}

/** Serves /metrics on host:port; resolves with the bound port. */
export async function serveMetrics(server: TcpmodServer, host: string, port: number): Promise<{ http: Server; port: number }> {
  const { registry, scrape } = metricsRegistry(server);
  const http = createHttpServer(async (req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('not found\n');
      return;
    }
    try {
      const body = await scrape();
      res.writeHead(200, { 'content-type': registry.contentType }).end(body);
    } catch (e) {
      res.writeHead(500).end(String(e));
    }
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(port, host, () => resolve());
  });
  const addr = http.address();
  return { http, port: typeof addr === 'object' && addr ? addr.port : port };
}
