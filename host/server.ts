// The public server: owns the listening socket, the shared epoll set, the wake
// eventfd and the pool; runs the lifecycle created → starting → running →
// stopping → stopped and the graceful shutdown.
import { lookup } from 'node:dns/promises';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { createSecureContext, rootCertificates } from 'node:tls';
import type pino from 'pino';
import { CLOSE_REASONS, CloseReason, LOG_LEVELS, type CloseReasonName } from './module/abi.js';
import { chooseLogger } from './logger.js';
import { FAULT_KINDS } from './module/errors.js';
import { ModuleConfigRefused, ModuleLoadError } from './module/errors.js';
import { compileModule, type CompiledModule } from './module/load.js';
import { duration, OptionError, OPTIONS, parseOptionValue, resolveOptions, STORE_TIMEOUT_MULTIPLE, type ResolvedOptions, type ServerOptions } from './options.js';
import { Counters, G, KV_ERROR_KINDS, REFUSED_REASONS, T, TOTALS, TLS_FAILURES, TLS_HANDSHAKE_BUCKETS } from './pool/counters.js';
import { Pool, type PoolOptions } from './pool/pool.js';
import type { BusStats, BusTarget, KvTarget } from './native/native.js';
import { C, check, native, SysError } from './sys.js';
import { prepareTrialThread, trialInstance } from './startup.js';
import { createTlsContext } from './tls.js';
import { finishConnection, moduleConnId, type CloseCount } from './worker/close.js';
import type { WorkerConfig } from './worker/config.js';
import { capabilities, compatibility, type GenerationMessage, type GenerationSpec } from './worker/generations.js';
import { BATCH_BUDGET_MS, CONN_EVENTS, LISTEN_EVENTS } from './worker/loop.js';

export type ServerState = 'created' | 'starting' | 'running' | 'stopping' | 'stopped';

export interface AddressInfo { address: string; port: number; family: 'IPv4' | 'IPv6' }

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
  topics: { topics: number; patterns: number; subscriptions: number; published: number; delivered: number; overflows: number; tooBig: number };
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

export type ReloadResult = 'applied' | 'refused' | 'rolled_back';
export const RELOAD_RESULTS: readonly ReloadResult[] = ['applied', 'refused', 'rolled_back'];

export interface ReloadOptions {
  /** The new module's path (default: the current generation's). */
  module?: string;
  /** Bytes for its tcpmod_init (default: the current generation's config). */
  config?: Uint8Array | string;
}

/**
 * What a reload did: applied (a new generation), or unchanged (the same module bytes and config as
 * the current generation: nothing to do, no generation made, not counted; a SIGHUP meant for the TLS
 * files leaves the module alone). A refused one rejects (ModuleLoadError, ModuleConfigRefused, OptionError).
 */
export interface ReloadReport {
  result: 'applied' | 'unchanged';
  generation: number;
  previous: number;
  module: string;
  /** tcpmod_state_version of the new module; null: it does not say (no open connection can move to it). */
  stateVersion: number | null;
  /** Connections open on older generations when it was applied... */
  connections: number;
  /** ...of which these move to the new generation at their next event (the pair's verdict: worker/generations.ts compatibility())... */
  migrating: number;
  /** ...and these stay on their own generation until they close (or --reload-drain). */
  pinned: number;
}

/** A generation the main thread knows: the current one, and older ones while they have connections. */
interface ServerGeneration {
  spec: GenerationSpec;
  name: string;
  failed: boolean;
  /** When it stopped being current (Date.now(); 0 while current), and whether --reload-drain has acted on it. */
  retiredAt: number;
  drained: boolean;
}

/** How often the main thread looks at generations while more than one is live or a reload is watched. */
const GENERATION_TICK_MS = 100;

export interface CloseOptions {
  /** How long open connections may go on after accepting stops (default: the server's drainTimeout). */
  drainTimeout?: number | string;
}

export { CLOSE_REASONS };

/** --proxy-protocol as the native bit set of versions (proxy_protocol.h). */
const PROXY_VERSIONS = { off: 0, v1: 1, v2: 2, any: 3 } as const;

/**
 * Queued output above this stops reading a connection's input and calling its
 * module until the queue is down to half of it: a quarter of the per-connection
 * bound, at most 1 MiB (enough to keep a fast reader's socket full).
 */
function highWater(maxOutputBuffer: number): number {
  return Math.min(1 << 20, Math.floor(maxOutputBuffer / 4));
}

/**
 * Descriptors kept back from client connections for the server's own use: the
 * metrics endpoint and its scrapers, module and certificate files read on a
 * reload, the key-value store's connections, Node's own (about 30), and a few
 * per worker thread (FDS_PER_WORKER: its event loop's epoll fd, eventfds, pipes).
 * Client connections that would eat into them are refused instead, so the
 * operator's endpoints keep working when clients exhaust the limit.
 */
const FD_RESERVE = 128;
const FDS_PER_WORKER = 4;

/**
 * The connection limit in force: the one asked for (none: all the descriptors allow), within what the
 * descriptors allow. Under a tiny limit the reserve shrinks to a quarter of it: there the server meets
 * EMFILE first, and refuses the connections it cannot take the classic way (acceptRefuse's spare descriptor).
 */
function connectionLimit(asked: number | null, nofile: number, maxThreads: number): number {
  const reserve = Math.min(FD_RESERVE + FDS_PER_WORKER * maxThreads, Math.floor(nofile / 4));
  const allowed = Math.max(1, nofile - reserve);
  return Math.min(asked ?? allowed, allowed);
}

/**
 * The server's events, both opt-in (workers post them only while someone listens). `conn` is the
 * connection id modules see; `reason` is the close reason's name, as in stats().connectionsClosed and
 * the metric tcpmod_connections_closed_total{reason}.
 */
export interface ServerEvents {
  connection: [conn: number];
  close: [conn: number, reason: CloseReasonName];
}

export class TcpmodServer extends EventEmitter<ServerEvents> {
  state: ServerState = 'created';
  readonly options: ResolvedOptions;
  private pool: Pool | null = null;
  private epfd = -1;
  private listenFd = -1;
  private listenId = -1;
  private timerFd = -1;
  private maxConnections = 0;
  private nofile = { soft: 0, hard: 0 };
  private tlsContext = 0;
  private tlsReloads = 0;
  private wakeFd = -1;
  private addr: AddressInfo | null = null;
  private compiled: CompiledModule | null = null;
  /** Live reload: the generations workers may hold, the current one, the last number given. */
  private readonly gens = new Map<number, ServerGeneration>();
  private currentGen = 0;
  private lastGen = 0;
  private readonly reloadCounts: Record<ReloadResult, number> = { applied: 0, refused: 0, rolled_back: 0 };
  /** One reload at a time: each waits for the one before. */
  private reloading: Promise<unknown> = Promise.resolve();
  /** The fault watch after a reload: the generation and the one to roll back to. */
  private watch: { gen: number; previous: ServerGeneration; until: number } | null = null;
  private genTimer: NodeJS.Timeout | null = null;
  /** Live instances reported by workers: slot → generation → count. */
  private readonly instancesBySlot = new Map<number, Map<number, number>>();
  /** Workers load WASI at start only if a generation they start with imports it. */
  private workersHaveWasi = false;
  private closing: Promise<void> | null = null;
  /** Aborted by close(): a trial instance still running (listen, reload) is given up at once. */
  private readonly trials = new AbortController();
  /** The Redis server workers use (host resolved, password read), and the once-a-second check of its errors. */
  private kvTarget: KvTarget | null = null;
  private kvWatch: NodeJS.Timeout | null = null;
  private kvErrorsSeen = 0;
  /** The bus thread runs (--bus): stopped in release(); its failures are logged once a second when they grow. */
  private busOn = false;
  private busWatch: NodeJS.Timeout | null = null;
  private busFailuresSeen = 0;
  private readonly log: pino.Logger;
  /** Worker threads post their log records here, to the application's logger (host/logger.ts). */
  private readonly forwardLogs: boolean;
  /** For tests only: hooks into the pool's timing-dependent paths (see PoolOptions.testHooks). */
  testHooks: PoolOptions['testHooks'] = undefined;

  /** `logger` (a pino logger) is the same as options.logger. */
  constructor(options: ServerOptions, logger?: pino.Logger) {
    super();
    const chosen = chooseLogger(logger ? { ...options, logger } : options);
    this.options = resolveOptions(chosen.options);
    this.log = chosen.log;
    this.forwardLogs = chosen.forward === true;
    // 'connection' and 'close' events are opt-in: workers only post them while someone listens.
    (this as EventEmitter).on('newListener', (name: string | symbol) => {
      if ((name === 'connection' || name === 'close') && this.pool) this.pool.counters.set(G.WANT_EVENTS, 1);
    });
  }

  /** Checks the module, binds, starts the workers; resolves once connections are being accepted. */
  async listen(): Promise<AddressInfo> {
    if (this.state !== 'created') throw new Error(`listen() called in state ${this.state}`);
    this.state = 'starting';
    const o = this.options;
    prepareTrialThread();
    try {
      this.compiled = await compileModule(o.module, { memoryCap: o.moduleMemory, config: o.config });
      // One trial instance refuses a bad module before anything binds; its log lines are the module's too.
      this.addGeneration(this.compiled, await this.trial(this.compiled));
      this.currentGen = this.lastGen;
      this.workersHaveWasi = this.compiled.verdict.importsWasi;
      native.kvConfigure(o.kvMaxBytes, o.kvEviction);
      this.kvTarget = await this.redisTarget();
      if (o.tls) this.useTlsContext(this.makeTlsContext());
      const host = isIP(o.host) ? o.host : (await lookup(o.host)).address;
      // Use every descriptor allowed; keep a reserve for the server's own files, workers and clients it makes.
      this.nofile = native.raiseNofile();
      this.maxConnections = connectionLimit(o.maxConnections, this.nofile.soft, o.maxThreads);
      if (o.maxConnections !== null && this.maxConnections < o.maxConnections) {
        this.log.warn({ maxConnections: this.maxConnections, fileDescriptors: this.nofile.soft },
          `--max-connections ${o.maxConnections} is more than the descriptor limit (${this.nofile.soft}) allows with the server's reserve: limited to ${this.maxConnections}`);
      }
      native.spareInit();
      this.epfd = check(native.epollCreate(), 'epoll_create1');
      this.timerFd = check(native.timersConfigure(this.epfd, o.readTimeoutMs ?? 0, o.frameTimeoutMs ?? 0), 'timerfd_create');
      check(native.epollCtl(this.epfd, C.EPOLL_CTL_ADD, this.timerFd, C.EPOLLIN | C.EPOLLONESHOT, C.KIND_TIMER), 'epoll_ctl');
      check(native.queueConfigure(this.epfd, o.sendMode === 'queued' ? 1 : 0, o.sendTimeoutMs, highWater(o.maxOutputBuffer),
        o.maxOutputBuffer, o.maxOutputMemory, o.maxInputMemory), 'queueConfigure');
      check(native.lingerConfigure(this.epfd, o.lingeringTimeMs ?? 0, o.lingeringTimeoutMs), 'lingerConfigure');
      check(native.proxyConfigure(this.epfd, PROXY_VERSIONS[o.proxyProtocol]), 'proxyConfigure');
      check(native.topicsConfigure(this.epfd, o.maxMailbox), 'topicsConfigure');
      const bus = await this.busTarget();
      if (bus) this.busOn = check(native.busStart(this.epfd, bus), 'busStart') === 0;
      check(native.batchConfigure(this.epfd, CONN_EVENTS, LISTEN_EVENTS, BATCH_BUDGET_MS), 'batchConfigure');
      // Named upstreams (--upstream): what modules of this server may open; queued bytes per upstream bounded as a client's.
      check(native.upstreamsConfigure(this.epfd, o.upstreams, o.upstreamConnectTimeoutMs, o.maxOutputBuffer), 'upstreamsConfigure');
      this.wakeFd = check(native.eventfdCreate(), 'eventfd');
      // Level-triggered and never read: once written, it wakes every waiter in turn.
      check(native.epollCtl(this.epfd, C.EPOLL_CTL_ADD, this.wakeFd, C.EPOLLIN, C.KIND_WAKE), 'epoll_ctl');
      this.listenFd = check(native.listenTcp(host, o.port, o.backlog, o.reusePort ? 1 : 0), 'listen', `${o.host}:${o.port}`);
      const name = native.sockName(this.listenFd);
      if (typeof name === 'number') throw new SysError(name, 'getsockname');
      this.addr = name;
      // The listener is an entry of the connection table, handed from worker to worker like a connection.
      this.listenId = check(native.connOpen(this.listenFd, this.epfd, 0, 0, C.KIND_LISTEN), 'connOpen');
      this.pool = this.makePool();
      this.pool.counters.set(G.TLS_CTX, this.tlsContext);
      this.pool.counters.set(G.GENERATION, this.currentGen);
      if (this.listenerCount('connection') || this.listenerCount('close')) this.pool.counters.set(G.WANT_EVENTS, 1);
      await this.pool.start();
      if (this.kvTarget) this.kvWatch = setInterval(() => this.warnKv(), 1000).unref();
      if (this.busOn) this.busWatch = setInterval(() => this.warnBus(), 1000).unref();
      check(native.connAdd(this.epfd, this.listenFd, this.listenId, LISTEN_EVENTS), 'epoll_ctl');
    } catch (e) {
      await this.release();
      this.state = 'stopped';
      throw e;
    }
    this.state = 'running';
    this.log.info({
      module: this.compiled.name, address: this.addr, workers: this.options.minThreads,
      maxConnections: this.maxConnections, fileDescriptors: this.nofile.soft,
      kv: this.kvTarget ? `${this.kvTarget.tls ? 'rediss' : 'redis'} ${this.kvTarget.host}:${this.kvTarget.port}/${this.kvTarget.db}` : 'memory',
      bus: o.bus ? `redis ${o.bus.host}:${o.bus.port}` : 'off',
    }, 'listening');
    return this.addr;
  }

  private makePool(): Pool {
    const o = this.options;
    const pool = new Pool({
      min: o.minThreads,
      max: o.maxThreads,
      script: new URL('./worker/worker-main.js', import.meta.url),
      handlerTimeoutMs: o.handlerTimeoutMs,
      startupTimeoutMs: o.startupTimeoutMs,
      testHooks: this.testHooks,
      log: this.log,
      workerData: (slot): WorkerConfig => ({
        slot,
        sab: pool.counters.sab,
        epfd: this.epfd,
        listenFd: this.listenFd,
        wakeFd: this.wakeFd,
        generations: [...this.gens.values()].map((g) => g.spec),
        memoryCap: o.moduleMemory,
        idleTimeoutMs: o.workerIdleTimeoutMs,
        batch: o.batch,
        sendTimeoutMs: o.sendTimeoutMs,
        keepalive: o.keepalive,
        logLevel: o.logLevel,
        forwardLogs: this.forwardLogs,
        tls: o.tls !== null,
        proxy: o.proxyProtocol !== 'off',
        maxConnections: this.maxConnections,
        sendMode: o.sendMode,
        highWater: highWater(o.maxOutputBuffer),
        kv: this.kvTarget,
        storeCallCapMs: this.kvTarget ? o.handlerTimeoutMs * STORE_TIMEOUT_MULTIPLE : 0,
      }),
      onStuck: (slot, gen) => {
        // A stop counts toward a reload's rollback like any other fault of the watched generation.
        if (Math.abs(gen) === pool.counters.get(G.WATCH_GEN)) pool.counters.add(G.GEN_FAULTS, 1);
        // Tell its client at once; the fd stays open until the frozen thread is gone. What it
        // took in its batch and never touched goes back to epoll first, for the other workers.
        native.batchRelease(this.epfd, slot + 1);
        const held = native.connHeld(this.epfd, slot + 1);
        for (let i = 0; i < held.length; i += 3) if (held[i + 2] === C.KIND_CONN) native.connShutdown(held[i], held[i + 1], C.SHUT_RDWR);
      },
      onWorkerGone: (slot) => this.finishHeld(slot),
    });
    pool.on('connection', (conn: number) => this.emit('connection', conn));
    pool.on('close', (conn: number, reason: number) => this.emit('close', conn, CLOSE_REASONS[reason]));
    pool.on('instances', (slot: number, gen: number, n: number) => {
      let m = this.instancesBySlot.get(slot);
      if (!m) this.instancesBySlot.set(slot, (m = new Map()));
      if (n) m.set(gen, n);
      else m.delete(gen);
    });
    // A worker's instances die with its thread.
    pool.on('workerExit', (slot: number) => this.instancesBySlot.delete(slot));
    return pool;
  }

  /** How the main thread counts the connections it closes itself. */
  private mainCloses(): CloseCount {
    const pool = this.pool!;
    return { totals: pool.retired, base: 0, notify: pool.counters.get(G.WANT_EVENTS) ? (conn, reason) => this.emit('close', conn, CLOSE_REASONS[reason]) : null };
  }

  /**
   * A worker's thread has exited (stopped by the watchdog, a host error, a
   * crash): it can no longer finish what it held, so the main thread does. The
   * entries of its last batch it had not started on go back into the epoll set
   * untouched (ready sockets report again at once); the
   * listener goes back into the epoll set; a connection it had accepted but not
   * opened yet goes back too, for another worker to open; a connection the
   * module had met is closed (reason 6, no on_close: the instance died with the
   * thread).
   */
  private finishHeld(slot: number): void {
    if (this.epfd < 0) return;
    native.batchRelease(this.epfd, slot + 1);
    const held = native.connHeld(this.epfd, slot + 1);
    for (let i = 0; i < held.length; i += 3) {
      const [fd, id, kind] = [held[i], held[i + 1], held[i + 2]];
      if (kind === C.KIND_LISTEN) {
        const rc = native.connRearm(this.epfd, fd, id, LISTEN_EVENTS);
        if (rc < 0 && this.state === 'running') this.log.error({ errno: rc }, 'could not re-arm the listener a dead worker held');
      } else if (kind === C.KIND_UNOPENED && native.connRearm(this.epfd, fd, id, CONN_EVENTS | C.EPOLLOUT) === 0) {
        // Accepted but never opened: another worker opens it (reporting at once: writable).
      } else {
        finishConnection(fd, id, CloseReason.FAULT, this.mainCloses());
      }
    }
  }

  /** The Redis server of a redis:// kv option: its host resolved once here (never on a worker), its password file read. */
  private async redisTarget(): Promise<KvTarget | null> {
    const kv = this.options.kv;
    if (kv.type !== 'redis') return null;
    let password = kv.password ?? '';
    const file = this.options.kvPasswordFile;
    if (file !== null) {
      try {
        password = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
      } catch (e) {
        throw new OptionError('kvPasswordFile', `could not be read: ${(e as Error).message}`);
      }
      if (password === '') throw new OptionError('kvPasswordFile', `is empty: ${file}`);
    }
    const host = isIP(kv.host) ? kv.host : (await lookup(kv.host)).address;
    const target: KvTarget = { host, port: kv.port, db: kv.db, username: kv.username, password, timeoutMs: this.options.kvTimeoutMs };
    if (kv.tls) target.tls = { ca: this.redisCa(), servername: kv.host };
    return target;
  }

  /** The Redis of --bus: the store's own target when it defaults to --kv, else its URL's host resolved here. */
  private async busTarget(): Promise<BusTarget | null> {
    const b = this.options.bus;
    if (!b) return null;
    if (b.fromKv && this.kvTarget) return { host: this.kvTarget.host, port: b.port, username: b.username, password: this.kvTarget.password };
    return { host: isIP(b.host) ? b.host : (await lookup(b.host)).address, port: b.port, username: b.username, password: b.password ?? '' };
  }

  /** The CAs a rediss:// server is verified against: --kv-tls-ca (read and checked here), or Node's bundled roots. */
  private redisCa(): string {
    const file = this.options.kvTlsCa;
    if (file === null) return rootCertificates.join('\n');
    let pem: string;
    try {
      pem = readFileSync(file, 'utf8');
    } catch (e) {
      throw new OptionError('kvTlsCa', `could not be read: ${(e as Error).message}`);
    }
    try {
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate found');
      createSecureContext({ ca: pem });
    } catch (e) {
      throw new OptionError('kvTlsCa', `is not a PEM CA certificate file (${(e as Error).message}): ${file}`);
    }
    return pem;
  }

  /** Once a second at most: a warning when calls to the Redis store failed since the last check, with the last reason. */
  private warnKv(): void {
    const errors = this.kvErrors(this.pool!.totals());
    const total = Object.values(errors).reduce((a, b) => a + b, 0);
    if (total <= this.kvErrorsSeen) return;
    this.kvErrorsSeen = total;
    const t = this.kvTarget!;
    this.log.warn({ store: `${isIP(t.host) === 6 ? `[${t.host}]` : t.host}:${t.port}`, errors }, `key-value store unavailable (calls return -3): ${native.kvLastError() || 'refused while reconnecting'}`);
  }

  private warnBus(): void {
    const b = native.busStats(this.epfd);
    if (!b || b.failures <= this.busFailuresSeen) return;
    this.busFailuresSeen = b.failures;
    const { failures, dropped, unconfirmed } = b;
    this.log.warn({ bus: `${this.options.bus!.host}:${this.options.bus!.port}`, failures, dropped, unconfirmed },
      `bus to Redis unavailable (publishes to other processes are lost and counted): ${b.lastError}`);
  }

  private kvErrors(t: Float64Array): Record<string, number> {
    const errors: Record<string, number> = {};
    KV_ERROR_KINDS.forEach((k, i) => (errors[k] = t[T.KV_ERRORS + i]));
    return errors;
  }

  /** Reads and checks the TLS files (throws an OptionError naming the option); logs certificate warnings. */
  private makeTlsContext(): number {
    const { id, warnings } = createTlsContext(this.options.tls!);
    for (const w of warnings) this.log.warn(w.detail, w.message);
    return id;
  }

  /** New connections get context `id` from now on; open ones keep theirs (each session holds its context). */
  private useTlsContext(id: number): void {
    const old = this.tlsContext;
    this.tlsContext = id;
    this.pool?.counters.set(G.TLS_CTX, id);
    if (old) native.tlsContextFree(old);
  }

  /**
   * Re-reads the certificate, key and CA files from the same paths: new
   * handshakes use them, open connections are untouched. A bad set is refused
   * (the promise rejects with an OptionError naming the file) and the old one
   * keeps serving.
   */
  async reloadTls(): Promise<void> {
    if (!this.options.tls) throw new Error('reloadTls(): this server does not terminate TLS');
    if (this.state !== 'running') throw new Error(`reloadTls() called in state ${this.state}`);
    this.useTlsContext(this.makeTlsContext());
    this.tlsReloads++;
    this.log.info({ cert: this.options.tls.cert }, 'TLS certificate reloaded');
  }

  /**
   * One trial instance of a module (every load check, a start-up trap, tcpmod_init with its config), in a
   * thread of its own under --startup-timeout: what workers need to know of it. Rejects as listen() would
   * (ModuleLoadError, StartupTimeout, ModuleConfigRefused); this thread keeps serving meanwhile.
   */
  private async trial(compiled: CompiledModule): Promise<Omit<GenerationSpec, 'gen' | 'file' | 'bytes' | 'module' | 'config'>> {
    const { stateVersion, desc } = await trialInstance(compiled, {
      timeoutMs: this.options.startupTimeoutMs,
      log: (level, message) => this.log[LOG_LEVELS[level] ?? 'info']({ module: compiled.name }, message),
      signal: this.trials.signal,
    });
    return { stateVersion, stateSize: desc.stateSize, inCap: desc.inCap, ...capabilities(compiled) };
  }

  /** Numbers a checked module as the next generation; workers learn of it from announce() or their start-up list. */
  private addGeneration(compiled: CompiledModule, trial: Awaited<ReturnType<TcpmodServer['trial']>>): ServerGeneration {
    const gen = ++this.lastGen;
    const spec: GenerationSpec = { gen, file: compiled.file, bytes: compiled.bytes, module: compiled.module, config: compiled.config, ...trial };
    const g: ServerGeneration = { spec, name: compiled.name, failed: false, retiredAt: 0, drained: false };
    this.gens.set(gen, g);
    return g;
  }

  /** Tells every worker (they read it at their next event: the epoch cell says there is something to read). */
  private announce(msg: GenerationMessage): void {
    this.pool!.post(msg);
    this.pool!.counters.add(G.GEN_EPOCH, 1);
  }

  /** New connections get `gen` from now on (and connections of other generations move to it where they can). */
  private makeCurrent(gen: number): void {
    const old = this.gens.get(this.currentGen);
    if (old && this.currentGen !== gen) old.retiredAt = Date.now();
    this.currentGen = gen;
    this.gens.get(gen)!.retiredAt = 0;
    this.pool!.counters.set(G.GENERATION, gen);
  }

  /**
   * Replaces the module without dropping a connection (docs/abi.md §11). The
   * new module (by default the same file, read again, with the same config)
   * goes through every load check and one trial instance first (in a thread of
   * its own, under the start-up timeout); a refused one changes nothing and the
   * promise rejects with the error listen() would give. An applied one is a new
   * generation: new connections get it, open ones move to it at their next
   * event where the pair's verdict allows (compatibility(): same
   * tcpmod_state_version and state size, the capabilities the old module may
   * have used), and the others stay on their own generation until they close. If it then faults more than reloadFaultLimit times within
   * reloadWatch, the server rolls back to the previous generation.
   */
  reload(opts: ReloadOptions = {}): Promise<ReloadReport> {
    const run = this.reloading.then(() => this.reloadNow(opts));
    this.reloading = run.catch(() => undefined);
    return run;
  }

  private async reloadNow(opts: ReloadOptions): Promise<ReloadReport> {
    if (opts === null || typeof opts !== 'object') throw new OptionError('options', 'must be an object');
    if (opts.module !== undefined && (typeof opts.module !== 'string' || opts.module === '')) throw new OptionError('module', 'must be the path of a .wasm file');
    const config = opts.config === undefined ? undefined : (parseOptionValue('config', OPTIONS.config.kind, opts.config) as Uint8Array);
    if (this.state !== 'running') throw new Error(`reload() called in state ${this.state}`);
    const cur = this.gens.get(this.currentGen)!;
    const file = opts.module ?? cur.spec.file;
    let compiled: CompiledModule;
    let trial: Awaited<ReturnType<TcpmodServer['trial']>>;
    try {
      compiled = await compileModule(file, { memoryCap: this.options.moduleMemory, config: config ?? cur.spec.config });
      if (compiled.verdict.importsWasi && !this.workersHaveWasi)
        throw new ModuleLoadError(file, ['imports WASI, which the running workers have not loaded (the module the server started with does not import it): restart the server to serve it']);
      trial = await this.trial(compiled);
    } catch (e) {
      this.refused(file, e);
      throw e;
    }
    if (this.state !== 'running') throw new Error(`reload() called in state ${this.state}`);
    if (sameBytes(compiled.bytes, cur.spec.bytes) && sameBytes(compiled.config, cur.spec.config)) {
      return { result: 'unchanged', generation: cur.spec.gen, previous: cur.spec.gen, module: file, stateVersion: cur.spec.stateVersion, connections: 0, migrating: 0, pinned: 0 };
    }
    const g = this.addGeneration(compiled, trial);
    const previous = this.currentGen;
    this.announce({ type: 'generation', spec: g.spec });
    this.makeCurrent(g.spec.gen);
    this.compiled = compiled;
    this.reloadCounts.applied++;
    let connections = 0;
    let migrating = 0;
    for (const [gen, n] of this.generationCounts()) {
      const from = this.gens.get(gen);
      if (gen === g.spec.gen || !from) continue;
      connections += n;
      if (compatibility(from.spec, g.spec).move) migrating += n;
    }
    this.startWatch(g.spec.gen, this.gens.get(previous)!);
    const report: ReloadReport = {
      result: 'applied', generation: g.spec.gen, previous, module: file, stateVersion: g.spec.stateVersion,
      connections, migrating, pinned: connections - migrating,
    };
    const { result: _, ...detail } = report;
    this.log.info(detail, 'module reloaded');
    return report;
  }

  /** A refused reload: counted, and logged one problem per line; the running generation keeps serving. */
  private refused(file: string, e: unknown): void {
    this.reloadCounts.refused++;
    const problems = e instanceof ModuleLoadError ? e.problems
      : e instanceof ModuleConfigRefused ? [`tcpmod_init refused the config (returned ${e.status})`]
        : [(e as Error)?.message ?? String(e)];
    for (const p of problems) this.log.error({ module: file, generation: this.currentGen }, `reload refused: ${p}`);
  }

  /** Counts the new generation's faults for reloadWatch; a generation timer runs meanwhile. */
  private startWatch(gen: number, previous: ServerGeneration): void {
    const c = this.pool!.counters;
    c.set(G.GEN_FAULTS, 0);
    c.set(G.WATCH_GEN, gen);
    this.watch = { gen, previous, until: Date.now() + this.options.reloadWatchMs };
    this.genTimer ??= setInterval(() => this.tickGenerations(), GENERATION_TICK_MS).unref();
  }

  /** The main thread's look at generations: the fault watch, freeing idle generations, --reload-drain. */
  private tickGenerations(): void {
    if (this.state !== 'running' || !this.pool) return;
    const c = this.pool.counters;
    const w = this.watch;
    if (w && c.get(G.GEN_FAULTS) > this.options.reloadFaultLimit && this.currentGen === w.gen) this.rollback(w);
    else if (w && Date.now() >= w.until) {
      this.watch = null;
      c.set(G.WATCH_GEN, 0);
    }
    const counts = this.generationCounts();
    const now = Date.now();
    const current = this.gens.get(this.currentGen)!;
    for (const [gen, g] of this.gens) {
      if (gen === this.currentGen) continue;
      const n = counts.get(gen) ?? 0;
      // A short grace: a worker that read the old GENERATION just before the swap may still be opening a
      // connection on it (opening moves it to the current generation anyway).
      if (n === 0 && now - g.retiredAt > GENERATION_TICK_MS * 2) {
        this.gens.delete(gen);
        this.announce({ type: 'free', gen });
        this.log.debug({ generation: gen }, 'module generation has no connections left: instances freed');
      } else if (n > 0 && !g.drained && this.options.reloadDrainMs !== null && now - g.retiredAt >= this.options.reloadDrainMs && !compatibility(g.spec, current.spec).move) {
        g.drained = true;
        const marked = native.connDrainGeneration(this.epfd, gen);
        this.log.info({ generation: gen, connections: marked }, 'reload drain: closing connections pinned to an older module (reason 5)');
      }
    }
    if (!this.watch && this.gens.size <= 1 && this.genTimer) {
      clearInterval(this.genTimer);
      this.genTimer = null;
    }
  }

  /** The watched generation faulted too often: back to the previous one, loudly. */
  private rollback(w: NonNullable<TcpmodServer['watch']>): void {
    const c = this.pool!.counters;
    this.watch = null;
    c.set(G.WATCH_GEN, 0);
    const bad = this.gens.get(w.gen)!;
    bad.failed = true;
    const prev = w.previous;
    if (!this.gens.has(prev.spec.gen)) {
      // Freed meanwhile (it had no connections left): workers learn of it again.
      prev.drained = false;
      this.gens.set(prev.spec.gen, prev);
      this.announce({ type: 'generation', spec: prev.spec });
    }
    this.makeCurrent(prev.spec.gen);
    this.reloadCounts.rolled_back++;
    this.log.error({ generation: w.gen, faults: c.get(G.GEN_FAULTS), limit: this.options.reloadFaultLimit, back: prev.spec.gen, module: prev.name },
      `RELOAD ROLLED BACK: module generation ${w.gen} (${bad.name}) faulted more than ${this.options.reloadFaultLimit} times within ${this.options.reloadWatchMs} ms; generation ${prev.spec.gen} (${prev.name}) serves again`);
  }

  /** Open connections per generation, from the native table. */
  private generationCounts(): Map<number, number> {
    const out = new Map<number, number>();
    if (this.epfd < 0) return out;
    const flat = native.generationCounts(this.epfd);
    for (let i = 0; i < flat.length; i += 2) out.set(flat[i], flat[i + 1]);
    return out;
  }

  /** The module generation new connections get now. */
  get generation(): number {
    return this.currentGen;
  }

  address(): AddressInfo | null {
    return this.addr;
  }

  /** Connections the server has open now, from its own table (not a /proc scan). */
  connections(): { fd: number; conn: number }[] {
    if (this.epfd < 0) return [];
    const flat = native.connList(this.epfd);
    const out = [];
    for (let i = 0; i < flat.length; i += 3) out.push({ fd: flat[i], conn: moduleConnId(flat[i + 1]) });
    return out;
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
      bus: this.busOn ? native.busStats(this.epfd) : null,
      logDroppedBytes: t[T.LOG_DROPPED],
      ...this.memory(),
      kv: this.kvStats(t),
      tls: this.options.tls ? this.tlsStats(t) : null,
      ...this.generationStats(),
    };
  }

  private generationStats(): Pick<ServerStats, 'generation' | 'generations' | 'reloads' | 'instancesLive'> {
    const generations: Record<string, number> = {};
    for (const [gen, n] of this.generationCounts()) generations[gen] = n;
    const instancesLive: Record<string, number> = {};
    for (const m of this.instancesBySlot.values()) for (const [gen, n] of m) instancesLive[gen] = (instancesLive[gen] ?? 0) + n;
    return { generation: this.currentGen, generations, reloads: { ...this.reloadCounts }, instancesLive };
  }

  private kvStats(t: Float64Array): ServerStats['kv'] {
    const { keys, bytes, maxBytes, expired, evicted } = native.kvStats();
    const local = <T>(v: T): T | null => (this.options.kv.type === 'redis' ? null : v);
    return {
      backend: this.options.kv.type, keys: local(keys), bytes: local(bytes), maxBytes, eviction: this.options.kvEviction,
      expired: local(expired), evicted: local(evicted), errors: this.kvErrors(t),
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

  /**
   * Graceful shutdown: stop accepting now; let open connections go on until they
   * close or the drain timeout passes; then shut the rest down (close reason 5),
   * stop every worker and close every fd. Calling it again returns the same promise.
   */
  close(opts: CloseOptions = {}): Promise<void> {
    this.closing ??= this.shutdown(opts);
    return this.closing;
  }

  private async shutdown(opts: CloseOptions): Promise<void> {
    if (this.state === 'created' || this.state === 'stopped') {
      this.state = 'stopped';
      return;
    }
    // A trial instance still running (a start-up that hangs) is given up: listen() then rejects.
    this.trials.abort(new Error('the server was closed while a module was being tried'));
    while (this.state === 'starting') await new Promise((r) => setTimeout(r, 10));
    if ((this.state as ServerState) === 'stopped') return;
    this.state = 'stopping';
    const drainMs = duration('drainTimeout', opts.drainTimeout, this.options.drainTimeoutMs);
    const pool = this.pool!;
    const c = pool.counters;
    // Stop accepting at once: out of the epoll set, and no longer listening.
    native.epollCtl(this.epfd, C.EPOLL_CTL_DEL, this.listenFd, 0, 0);
    native.shutdown(this.listenFd, C.SHUT_RDWR);
    // Tell modules (tcpmod.draining), and close connections that stay idle through the grace.
    c.set(G.DRAINING, 1);
    native.timersDrain(this.epfd, this.options.drainIdleMs);
    const open = () => native.connCount(this.epfd);
    await waitFor(() => open() === 0, drainMs);
    if (open() > 0) {
      c.set(G.FORCED, 1);
      const n = native.connShutdownGroup(this.epfd, C.SHUT_RDWR);
      this.log.info({ connections: n }, 'drain timeout: shutting down the remaining connections');
      await waitFor(() => open() === 0, Math.max(1000, this.options.handlerTimeoutMs * 2));
    }
    await pool.stop(() => native.eventfdWrite(this.wakeFd));
    // Anything still in the table now had no worker to close it.
    const left = native.connList(this.epfd);
    for (let i = 0; i < left.length; i += 3) finishConnection(left[i], left[i + 1], CloseReason.SHUTDOWN, this.mainCloses());
    await this.release();
    this.state = 'stopped';
    this.log.info('stopped');
  }

  /** Stops at once (a second signal): wakes every worker and sender; the caller then exits. */
  abort(): void {
    if (!this.pool || this.epfd < 0) return;
    this.pool.counters.set(G.FORCED, 1);
    this.pool.counters.set(G.STOP, 1);
    native.connShutdownGroup(this.epfd, C.SHUT_RDWR);
    native.eventfdWrite(this.wakeFd);
  }

  private async release(): Promise<void> {
    if (this.pool && this.state === 'starting') await this.pool.stop(() => native.eventfdWrite(this.wakeFd)).catch(() => undefined);
    if (this.listenId >= 0) native.connClose(this.listenFd, this.listenId);
    else if (this.listenFd >= 0) native.close(this.listenFd);
    if (this.timerFd >= 0) native.timersForget(this.epfd);
    if (this.epfd >= 0) native.upstreamsForget(this.epfd);
    if (this.busOn) native.busStop(this.epfd);
    this.busOn = false;
    for (const fd of [this.wakeFd, this.epfd]) if (fd >= 0) native.close(fd);
    if (this.tlsContext) native.tlsContextFree(this.tlsContext);
    if (this.kvWatch) clearInterval(this.kvWatch);
    this.kvWatch = null;
    if (this.busWatch) clearInterval(this.busWatch);
    this.busWatch = null;
    if (this.genTimer) clearInterval(this.genTimer);
    this.genTimer = null;
    this.tlsContext = 0;
    this.listenFd = this.wakeFd = this.epfd = this.listenId = this.timerFd = -1;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, Math.min(20, Math.max(1, end - Date.now()))));
}

export function createServer(options: ServerOptions): TcpmodServer {
  return new TcpmodServer(options);
}
