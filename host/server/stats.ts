// Stats aggregation: what stats() reports, gathered from the pool's counters
// and totals, the native table (connections, timers, memory, topics), the
// reload controller and the key-value store; and the live instances workers
// report, per worker slot.
import { CLOSE_REASONS } from '../module/abi.js';
import { FAULT_KINDS } from '../module/errors.js';
import { Counters, G, REFUSED_REASONS, T, TOTALS, TLS_FAILURES, TLS_HANDSHAKE_BUCKETS } from '../pool/counters.js';
import type { BusStats } from '../native/native.js';
import { native } from '../sys.js';
import type { ServerCore, ServerState } from './core.js';
import type { Bus } from './bus.js';
import type { KvStore } from './kv-store.js';
import type { ReloadController, ReloadResult } from './reload.js';

export interface ServerStats {
  state: ServerState;
  workers: number;
  workersBusy: number;
  connections: number;
  connectionsAccepted: number;
  connectionsClosed: Record<string, number>;
  events: number;
  bytesReceived: number;
  bytesSent: number;
  sendTimeouts: number;
  workersStarted: number;
  workersStopped: number;
  moduleFaults: Record<string, number>;
  /** More than 20 module faults within the last 10 s. */
  moduleFaultStorm: boolean;
  instancesCreated: number;
  /** Connections accepted and closed at once: over maxConnections (limit), out of descriptors (fd), no valid PROXY header (proxy). */
  connectionsRefused: Record<string, number>;
  /** The connection limit in force (maxConnections, or its default from the descriptor limit). */
  maxConnections: number;
  /** Connections whose module timer is armed, and module timers fired so far. */
  timersArmed: number;
  timersFired: number;
  /** Items in the timer heap: at most one per open connection with a deadline, whatever its module does. */
  timerHeapSize: number;
  /** Pub/sub (docs/abi.md §15): distinct exact topics and pattern subscriptions in the table, all
   *  subscriptions, publishes, messages put in mailboxes, subscribers closed over --max-mailbox, messages
   *  dropped for not fitting a subscriber's input region. */
  topics: { topics: number; patterns: number; subscriptions: number; published: number; delivered: number; overflows: number; tooBig: number; direct: number };
  /** --bus (docs/abi.md §15): null when off; else what went through Redis and what was lost (BusStats). */
  bus: BusStats | null;
  /** Bytes of module log messages dropped by the log limit. */
  logDroppedBytes: number;
  /** Bytes waiting in connections' output queues, and held as unconsumed input. */
  outputQueuedBytes: number;
  inputBufferedBytes: number;
  /** Memory those buffers hold, what --max-output-memory and --max-input-memory bound (at least the bytes in use). */
  outputAllocatedBytes: number;
  inputAllocatedBytes: number;
  /** The key-value store. With Redis, keys and bytes are null (this process cannot know them) and errors count
   *  the calls that returned -3, by why (KV_ERROR_KINDS; 'backoff': refused untried while reconnecting). */
  /** expired, evicted: keys the in-process store removed since start (null with Redis). */
  kv: {
    backend: 'memory' | 'redis'; keys: number | null; bytes: number | null; maxBytes: number; eviction: string;
    expired: number | null; evicted: number | null; errors: Record<string, number>;
  };
  /** TLS termination, null when the server speaks plain TCP. */
  tls: null | {
    handshakes: number;
    handshakeFailures: Record<string, number>;
    handshakeSeconds: { sum: number; count: number; buckets: { le: number; count: number }[] };
    certificateReloads: number;
  };
  /** The module generation new connections get (1 at start, one more per applied reload; a rollback goes back). */
  generation: number;
  /** Open connections per generation (generations with none are absent). */
  generations: Record<string, number>;
  /** Reloads by result. */
  reloads: Record<ReloadResult, number>;
  /** Live module instances per generation, over all workers. */
  instancesLive: Record<string, number>;
}

export class StatsAggregator {
  /** Live instances reported by workers: slot → generation → count. */
  private readonly instancesBySlot = new Map<number, Map<number, number>>();

  constructor(private readonly core: ServerCore, private readonly reloads: ReloadController, private readonly store: KvStore, private readonly bus: Bus) {}

  private get state() { return this.core.state; }
  private get options() { return this.core.options; }
  private get pool() { return this.core.pool; }
  private get epfd() { return this.core.epfd; }
  private get maxConnections() { return this.core.maxConnections; }
  private get tlsReloads() { return this.core.tlsReloads; }

  /** A worker reports it has `n` instances of generation `gen` (the pool's 'instances' event). */
  instances(slot: number, gen: number, n: number): void {
    let m = this.instancesBySlot.get(slot);
    if (!m) this.instancesBySlot.set(slot, (m = new Map()));
    if (n) m.set(gen, n);
    else m.delete(gen);
  }

  /** A worker's instances die with its thread. */
  workerExit(slot: number): void {
    this.instancesBySlot.delete(slot);
  }

  stats(): ServerStats {
    const c = this.pool?.counters ?? new Counters();
    const t = this.pool?.totals() ?? new Float64Array(TOTALS);
    const closed: Record<string, number> = {};
    CLOSE_REASONS.forEach((r, i) => (closed[r] = t[T.CLOSED + i]));
    const refused: Record<string, number> = {};
    REFUSED_REASONS.forEach((r, i) => (refused[r] = t[T.REFUSED + i]));
    const faults: Record<string, number> = {};
    FAULT_KINDS.forEach((k, i) => (faults[k] = t[T.FAULTS + i]));
    return {
      state: this.state,
      workers: c.get(G.WORKERS),
      workersBusy: c.get(G.BUSY),
      connections: this.epfd >= 0 ? native.connCount(this.epfd) : 0,
      connectionsAccepted: t[T.ACCEPTED],
      connectionsClosed: closed,
      events: t[T.EVENTS],
      bytesReceived: t[T.BYTES_IN],
      bytesSent: t[T.BYTES_OUT],
      sendTimeouts: t[T.SEND_TIMEOUTS],
      workersStarted: this.pool?.workersStarted ?? 0,
      workersStopped: this.pool?.workersStopped ?? 0,
      moduleFaults: faults,
      moduleFaultStorm: this.pool?.faultStorm ?? false,
      instancesCreated: t[T.INSTANCES],
      connectionsRefused: refused,
      maxConnections: this.maxConnections,
      timersArmed: this.epfd >= 0 ? native.timersArmed(this.epfd) : 0,
      timersFired: t[T.TIMERS_FIRED],
      timerHeapSize: this.epfd >= 0 ? native.timerHeapSize(this.epfd) : 0,
      topics: native.topicsStats(this.epfd),
      bus: this.bus.stats(),
      logDroppedBytes: t[T.LOG_DROPPED],
      ...this.memory(),
      kv: this.kvStats(t),
      tls: this.options.tls ? this.tlsStats(t) : null,
      ...this.generationStats(),
    };
  }

  private generationStats(): Pick<ServerStats, 'generation' | 'generations' | 'reloads' | 'instancesLive'> {
    const generations: Record<string, number> = {};
    for (const [gen, n] of this.reloads.generationCounts()) generations[gen] = n;
    const instancesLive: Record<string, number> = {};
    for (const m of this.instancesBySlot.values()) for (const [gen, n] of m) instancesLive[gen] = (instancesLive[gen] ?? 0) + n;
    return { generation: this.reloads.currentGen, generations, reloads: { ...this.reloads.reloadCounts }, instancesLive };
  }

  private kvStats(t: Float64Array): ServerStats['kv'] {
    const { keys, bytes, maxBytes, expired, evicted } = native.kvStats();
    const local = <T>(v: T): T | null => (this.options.kv.type === 'redis' ? null : v);
    return {
      backend: this.options.kv.type, keys: local(keys), bytes: local(bytes), maxBytes, eviction: this.options.kvEviction,
      expired: local(expired), evicted: local(evicted), errors: this.store.kvErrors(t),
    };
  }

  private memory(): { outputQueuedBytes: number; inputBufferedBytes: number; outputAllocatedBytes: number; inputAllocatedBytes: number } {
    const m = this.epfd >= 0 ? native.groupMemory(this.epfd) : { output: 0, input: 0, outputAllocated: 0, inputAllocated: 0 };
    return { outputQueuedBytes: m.output, inputBufferedBytes: m.input, outputAllocatedBytes: m.outputAllocated, inputAllocatedBytes: m.inputAllocated };
  }

  private tlsStats(t: Float64Array): NonNullable<ServerStats['tls']> {
    const failures: Record<string, number> = {};
    TLS_FAILURES.forEach((k, i) => (failures[k] = t[T.TLS_FAILURES + i]));
    let cumulative = 0;
    const buckets = TLS_HANDSHAKE_BUCKETS.map((le, i) => ({ le, count: (cumulative += t[T.TLS_BUCKETS + i]) }));
    return {
      handshakes: t[T.TLS_HANDSHAKES],
      handshakeFailures: failures,
      handshakeSeconds: { sum: t[T.TLS_HANDSHAKE_SECONDS], count: t[T.TLS_HANDSHAKES], buckets },
      certificateReloads: this.tlsReloads,
    };
  }
}
