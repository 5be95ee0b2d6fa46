// The public server: owns the listening socket, the shared epoll set, the wake
// eventfd and the pool; runs the lifecycle created → starting → running →
// stopping → stopped and the graceful shutdown.
import { lookup } from 'node:dns/promises';
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import type pino from 'pino';
import { CLOSE_REASONS, type CloseReasonName } from './module/abi.js';
import { chooseLogger } from './logger.js';
import { compileModule, type CompiledModule } from './module/load.js';
import { resolveOptions, STORE_TIMEOUT_MULTIPLE, type ResolvedOptions, type ServerOptions } from './options.js';
import { G } from './pool/counters.js';
import { Pool, type PoolOptions } from './pool/pool.js';
import { check, native } from './sys.js';
import { prepareTrialThread } from './startup.js';
import { createTlsContext } from './tls.js';
import { moduleConnId } from './worker/close.js';
import type { WorkerConfig } from './worker/config.js';
import { LISTEN_EVENTS } from './worker/events.js';
import type { ServerCore, ServerState } from './server/core.js';
import { highWater, Listener, type AddressInfo } from './server/listener.js';
import { WorkerRecovery } from './server/recovery.js';
import { KvStore } from './server/kv-store.js';
import { Bus } from './server/bus.js';
import { Shutdown, type CloseOptions } from './server/shutdown.js';
import { StatsAggregator, type ServerStats } from './server/stats.js';
import { ReloadController, RELOAD_RESULTS, type ReloadOptions, type ReloadReport, type ReloadResult } from './server/reload.js';

export type { CloseOptions, ServerState, ServerStats };
export { RELOAD_RESULTS, type ReloadOptions, type ReloadReport, type ReloadResult };

export type { AddressInfo };

export { CLOSE_REASONS };

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
  /** The listener and the epoll set (server/listener.ts); its fds read through the getters below. */
  private readonly listener = new Listener();
  private maxConnections = 0;
  private nofile = { soft: 0, hard: 0 };
  private tlsContext = 0;
  private tlsReloads = 0;
  private compiled: CompiledModule | null = null;
  /** Aborted by close(): a trial instance still running (listen, reload) is given up at once. */
  private readonly trials = new AbortController();
  private readonly log: pino.Logger;
  /** Worker threads post their log records here, to the application's logger (host/logger.ts). */
  private readonly forwardLogs: boolean;
  /** For tests only: hooks into the pool's timing-dependent paths (see PoolOptions.testHooks). */
  testHooks: PoolOptions['testHooks'] = undefined;
  /** What the server's parts see of it (server/core.ts). */
  private readonly core: ServerCore = this.coreView();
  private readonly reloads = new ReloadController(this.core);
  private readonly recovery = new WorkerRecovery(this.core);
  private readonly store = new KvStore(this.core);
  private readonly bus = new Bus(this.core);
  private readonly aggregate = new StatsAggregator(this.core, this.reloads, this.store, this.bus);
  private readonly shutdown = new Shutdown(this.core, this.recovery);

  private get epfd() { return this.listener.epfd; }
  private get listenFd() { return this.listener.listenFd; }
  private get listenId() { return this.listener.listenId; }
  private get wakeFd() { return this.listener.wakeFd; }
  private get addr() { return this.listener.addr; }

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
      this.reloads.addGeneration(this.compiled, await this.reloads.trial(this.compiled));
      this.reloads.currentGen = this.reloads.lastGen;
      this.reloads.workersHaveWasi = this.compiled.verdict.importsWasi;
      native.kvConfigure(o.kvMaxBytes, o.kvEviction);
      this.store.kvTarget = await this.store.redisTarget();
      if (o.tls) this.useTlsContext(this.makeTlsContext());
      const host = isIP(o.host) ? o.host : (await lookup(o.host)).address;
      // Use every descriptor allowed; keep a reserve for the server's own files, workers and clients it makes.
      this.nofile = native.raiseNofile();
      this.maxConnections = connectionLimit(o.maxConnections, this.nofile.soft, o.maxThreads);
      if (o.maxConnections !== null && this.maxConnections < o.maxConnections) {
        this.log.warn({ maxConnections: this.maxConnections, fileDescriptors: this.nofile.soft },
          `--max-connections ${o.maxConnections} is more than the descriptor limit (${this.nofile.soft}) allows with the server's reserve: limited to ${this.maxConnections}`);
      }
      this.listener.open(o, host);
      await this.bus.start(this.store.kvTarget);
      this.pool = this.makePool();
      this.pool.counters.set(G.TLS_CTX, this.tlsContext);
      this.pool.counters.set(G.GENERATION, this.reloads.currentGen);
      if (this.listenerCount('connection') || this.listenerCount('close')) this.pool.counters.set(G.WANT_EVENTS, 1);
      await this.pool.start();
      this.store.watch();
      this.bus.watch();
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
      kv: this.store.kvTarget ? `${this.store.kvTarget.tls ? 'rediss' : 'redis'} ${this.store.kvTarget.host}:${this.store.kvTarget.port}/${this.store.kvTarget.db}` : 'memory',
      bus: this.bus.describe(),
    }, 'listening');
    return this.addr!;
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
        generations: [...this.reloads.gens.values()].map((g) => g.spec),
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
        kv: this.store.kvTarget,
        storeCallCapMs: this.store.kvTarget ? o.handlerTimeoutMs * STORE_TIMEOUT_MULTIPLE : 0,
      }),
      onStuck: (slot, gen) => this.recovery.stuck(slot, gen),
      onWorkerGone: (slot) => this.recovery.finishHeld(slot),
    });
    pool.on('connection', (conn: number) => this.emit('connection', conn));
    pool.on('close', (conn: number, reason: number) => this.emit('close', conn, CLOSE_REASONS[reason]));
    pool.on('instances', (slot: number, gen: number, n: number) => this.aggregate.instances(slot, gen, n));
    // A worker's instances die with its thread.
    pool.on('workerExit', (slot: number) => this.aggregate.workerExit(slot));
    return pool;
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
   * Replaces the module without dropping a connection (docs/abi.md §11): see
   * ReloadController.reload() (server/reload.ts).
   */
  reload(opts: ReloadOptions = {}): Promise<ReloadReport> {
    return this.reloads.reload(opts);
  }

  /** The narrow view of this server its parts get: they read its fields through it, never this object. */
  private coreView(): ServerCore {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const server = this;
    return {
      get state() { return server.state; },
      set state(v) { server.state = v; },
      get options() { return server.options; },
      get log() { return server.log; },
      get pool() { return server.pool; },
      get epfd() { return server.epfd; },
      get listenFd() { return server.listenFd; },
      get wakeFd() { return server.wakeFd; },
      get maxConnections() { return server.maxConnections; },
      get tlsReloads() { return server.tlsReloads; },
      get trials() { return server.trials; },
      get compiled() { return server.compiled; },
      set compiled(c) { server.compiled = c; },
      emit: (event, conn, reason) => server.emit(event, conn, reason),
      release: () => server.release(),
    };
  }

  /** The module generation new connections get now. */
  get generation(): number {
    return this.reloads.currentGen;
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
    return this.aggregate.stats();
  }

  /**
   * Graceful shutdown: see Shutdown.close() (server/shutdown.ts). Calling it
   * again returns the same promise.
   */
  close(opts: CloseOptions = {}): Promise<void> {
    return this.shutdown.close(opts);
  }

  /** Stops at once (a second signal): wakes every worker and sender; the caller then exits. */
  abort(): void {
    this.shutdown.abort();
  }

  private async release(): Promise<void> {
    if (this.pool && this.state === 'starting') await this.pool.stop(() => native.eventfdWrite(this.wakeFd)).catch(() => undefined);
    this.bus.stop();
    this.listener.close();
    if (this.tlsContext) native.tlsContextFree(this.tlsContext);
    this.store.stopWatch();
    this.reloads.stopTick();
    this.tlsContext = 0;
  }
}

export function createServer(options: ServerOptions): TcpmodServer {
  return new TcpmodServer(options);
}
