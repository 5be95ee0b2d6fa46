// The bus (--bus, docs/abi.md §15) as the main thread runs it: the Redis it
// talks to (the store's own target when --bus follows --kv, else its URL's host
// resolved here, never on a worker), its native thread started on the epoll set
// and stopped before the set closes, and the once-a-second warning while its
// failures grow.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { BusStats, BusTarget, KvTarget } from '../native/native.js';
import { check, native } from '../sys.js';
import { caPem } from './ca.js';
import type { ServerCore } from './core.js';

export class Bus {
  /** The bus thread runs: stopped in stop(). */
  private on = false;
  private watchTimer: NodeJS.Timeout | null = null;
  private failuresSeen = 0;

  constructor(private readonly core: ServerCore) {}

  /** Starts the bus thread on the epoll set when --bus is set; `kv` is the store's Redis (for a bus that follows --kv). */
  async start(kv: KvTarget | null): Promise<void> {
    const target = await this.target(kv);
    if (target) this.on = check(native.busStart(this.core.epfd, target), 'busStart') === 0;
  }

  /** Starts the warning while publishes to other processes fail. */
  watch(): void {
    if (this.on) this.watchTimer = setInterval(() => this.warn(), 1000).unref();
  }

  /** Stops the thread and the warning (the server's release(), before the epoll set closes). */
  stop(): void {
    if (this.on) native.busStop(this.core.epfd);
    this.on = false;
    if (this.watchTimer) clearInterval(this.watchTimer);
    this.watchTimer = null;
  }

  /** What went through Redis and what was lost; null when the bus is off. */
  stats(): BusStats | null {
    return this.on ? native.busStats(this.core.epfd) : null;
  }

  /** For the 'listening' log line. */
  describe(): string {
    const b = this.core.options.bus;
    return b ? `${b.tls ? 'rediss' : 'redis'} ${b.host}:${b.port}` : 'off';
  }

  /** The Redis of --bus: the store's own target when it defaults to --kv, else its URL's host resolved here. */
  private async target(kv: KvTarget | null): Promise<BusTarget | null> {
    const b = this.core.options.bus;
    if (!b) return null;
    // rediss://: the certificate must name the URL's host; the CAs are --bus-tls-ca's, or the --kv-tls-ca of the store it follows.
    const tls = b.tls ? { tls: { ca: caPem(this.core.options.busTlsCa !== null || !b.fromKv ? 'busTlsCa' : 'kvTlsCa', this.core.options.busTlsCa ?? (b.fromKv ? this.core.options.kvTlsCa : null)), servername: b.host } } : {};
    if (b.fromKv && kv) return { host: kv.host, port: b.port, username: b.username, password: kv.password, ...tls };
    return { host: isIP(b.host) ? b.host : (await lookup(b.host)).address, port: b.port, username: b.username, password: b.password ?? '', ...tls };
  }

  private warn(): void {
    const b = native.busStats(this.core.epfd);
    if (!b || b.failures <= this.failuresSeen) return;
    this.failuresSeen = b.failures;
    const { failures, dropped, unconfirmed } = b;
    const o = this.core.options.bus!;
    this.core.log.warn({ bus: `${o.host}:${o.port}`, failures, dropped, unconfirmed },
      `bus to Redis unavailable (publishes to other processes are lost and counted): ${b.lastError}`);
  }
}
