// The public server: owns the listening socket, the shared epoll set, the wake
// eventfd and the pool; runs the lifecycle created → starting → running →
// stopping → stopped and the graceful shutdown.
import { lookup } from 'node:dns/promises';
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import pino from 'pino';
import { CloseReason, LOG_LEVELS } from './module/abi.js';
import { compileModule, probeModule, type CompiledModule } from './module/load.js';
import { duration, resolveOptions, type ResolvedOptions, type ServerOptions } from './options.js';
import { Counters, FAULT_KINDS, G, T } from './pool/counters.js';
import { Pool } from './pool/pool.js';
import { C, check, native, SysError } from './sys.js';
import { TAG_LISTEN, TAG_WAKE, type WorkerConfig } from './worker/config.js';

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
  kv: { keys: number; bytes: number; maxBytes: number };
}

export interface CloseOptions {
  /** How long open connections may go on after accepting stops (default: the server's drainTimeout). */
  drainTimeout?: number | string;
}

export const CLOSE_REASONS = ['peer', 'module', 'socket_error', 'overflow', 'send_timeout', 'shutdown', 'fault'] as const;

export class TcpmodServer extends EventEmitter {
  state: ServerState = 'created';
  readonly options: ResolvedOptions;
  private pool: Pool | null = null;
  private epfd = -1;
  private listenFd = -1;
  private wakeFd = -1;
  private addr: AddressInfo | null = null;
  private compiled: CompiledModule | null = null;
  private closing: Promise<void> | null = null;
  private readonly log: pino.Logger;

  constructor(options: ServerOptions, logger?: pino.Logger) {
    super();
    this.options = resolveOptions(options);
    this.log = logger ?? pino({ level: this.options.logLevel }, pino.destination({ fd: 2, sync: true }));
    // 'connection' and 'close' events are opt-in: workers only post them while someone listens.
    this.on('newListener', (name) => {
      if ((name === 'connection' || name === 'close') && this.pool) this.pool.counters.set(G.WANT_EVENTS, 1);
    });
  }

  /** Checks the module, binds, starts the workers; resolves once connections are being accepted. */
  async listen(): Promise<AddressInfo> {
    if (this.state !== 'created') throw new Error(`listen() called in state ${this.state}`);
    this.state = 'starting';
    const o = this.options;
    try {
      this.compiled = await compileModule(o.module, { memoryCap: o.moduleMemory, config: o.config });
      // One trial instance refuses a bad module before anything binds; its log lines are the module's too.
      probeModule(this.compiled, {
        send: () => -1,
        log: (level, message) => this.log[LOG_LEVELS[level] ?? 'info']({ module: this.compiled!.name }, message),
      }).dispose();
      native.kvConfigure(o.kvMaxBytes);
      const host = isIP(o.host) ? o.host : (await lookup(o.host)).address;
      this.epfd = check(native.epollCreate(), 'epoll_create1');
      this.wakeFd = check(native.eventfdCreate(), 'eventfd');
      // Level-triggered and never read: once written, it wakes every waiter in turn.
      check(native.epollCtl(this.epfd, C.EPOLL_CTL_ADD, this.wakeFd, C.EPOLLIN, TAG_WAKE), 'epoll_ctl');
      this.listenFd = check(native.listenTcp(host, o.port, o.backlog), 'listen', `${o.host}:${o.port}`);
      const name = native.sockName(this.listenFd);
      if (typeof name === 'number') throw new SysError(name, 'getsockname');
      this.addr = name;
      this.pool = this.makePool();
      if (this.listenerCount('connection') || this.listenerCount('close')) this.pool.counters.set(G.WANT_EVENTS, 1);
      await this.pool.start();
      check(native.epollCtl(this.epfd, C.EPOLL_CTL_ADD, this.listenFd, C.EPOLLIN | C.EPOLLONESHOT, TAG_LISTEN), 'epoll_ctl');
    } catch (e) {
      await this.release();
      this.state = 'stopped';
      throw e;
    }
    this.state = 'running';
    this.log.info({ module: this.compiled.name, address: this.addr, workers: this.options.minThreads }, 'listening');
    return this.addr;
  }

  private makePool(): Pool {
    const o = this.options;
    const compiled = this.compiled!;
    const pool = new Pool({
      min: o.minThreads,
      max: o.maxThreads,
      script: new URL('./worker/worker-main.js', import.meta.url),
      handlerTimeoutMs: o.handlerTimeoutMs,
      log: this.log,
      workerData: (slot): WorkerConfig => ({
        slot,
        sab: pool.counters.sab,
        epfd: this.epfd,
        listenFd: this.listenFd,
        wakeFd: this.wakeFd,
        module: compiled.module,
        moduleBytes: compiled.bytes,
        moduleFile: compiled.file,
        moduleConfig: compiled.config,
        memoryCap: o.moduleMemory,
        idleTimeoutMs: o.workerIdleTimeoutMs,
        sendTimeoutMs: o.sendTimeoutMs,
        keepalive: o.keepalive,
        logLevel: o.logLevel,
      }),
      onStuck: (fd) => {
        // Tell the client at once; the fd itself stays open until the stuck thread is gone.
        native.shutdown(fd, C.SHUT_RDWR);
      },
      onStuckGone: (fd, conn) => {
        // The stuck worker is gone, its instance with it: close the connection it held.
        if (native.connClose(fd) === 0) {
          pool.counters.add(G.CONNECTIONS, -1);
          pool.retired[T.CLOSED + CloseReason.FAULT]++;
          if (pool.counters.get(G.WANT_EVENTS)) this.emit('close', conn, CloseReason.FAULT);
        }
      },
    });
    pool.on('connection', (conn: number) => this.emit('connection', conn));
    pool.on('close', (conn: number, reason: number) => this.emit('close', conn, reason));
    return pool;
  }

  address(): AddressInfo | null {
    return this.addr;
  }

  /** Connections the server has open now, from its own table (not a /proc scan). */
  connections(): { fd: number; conn: number }[] {
    if (this.epfd < 0) return [];
    const flat = native.connList(this.epfd);
    const out = [];
    for (let i = 0; i < flat.length; i += 2) out.push({ fd: flat[i], conn: flat[i + 1] });
    return out;
  }

  stats(): ServerStats {
    const c = this.pool?.counters ?? new Counters();
    const t = this.pool?.totals() ?? new Float64Array(32);
    const closed: Record<string, number> = {};
    CLOSE_REASONS.forEach((r, i) => (closed[r] = t[T.CLOSED + i]));
    const faults: Record<string, number> = {};
    FAULT_KINDS.forEach((k, i) => (faults[k] = t[T.FAULTS + i]));
    return {
      state: this.state,
      workers: c.get(G.WORKERS),
      workersBusy: c.get(G.BUSY),
      connections: c.get(G.CONNECTIONS),
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
      kv: native.kvStats(),
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
    while (this.state === 'starting') await new Promise((r) => setTimeout(r, 10));
    this.state = 'stopping';
    const drainMs = duration('drainTimeout', opts.drainTimeout, this.options.drainTimeoutMs);
    const pool = this.pool!;
    const c = pool.counters;
    // Stop accepting at once: out of the epoll set, and no longer listening.
    native.epollCtl(this.epfd, C.EPOLL_CTL_DEL, this.listenFd, 0, 0);
    native.shutdown(this.listenFd, C.SHUT_RDWR);
    await waitFor(() => c.get(G.CONNECTIONS) === 0, drainMs);
    if (c.get(G.CONNECTIONS) > 0) {
      c.set(G.FORCED, 1);
      const n = native.connShutdownGroup(this.epfd, C.SHUT_RDWR);
      this.log.info({ connections: n }, 'drain timeout: shutting down the remaining connections');
      await waitFor(() => c.get(G.CONNECTIONS) === 0, Math.max(1000, this.options.handlerTimeoutMs * 2));
    }
    await pool.stop(() => native.eventfdWrite(this.wakeFd));
    // Anything still in the table now had no worker to close it.
    const left = native.connList(this.epfd);
    for (let i = 0; i < left.length; i += 2) {
      native.connClose(left[i]);
      c.add(G.CONNECTIONS, -1);
      pool.retired[T.CLOSED + CloseReason.SHUTDOWN]++;
    }
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
    for (const fd of [this.listenFd, this.wakeFd, this.epfd]) if (fd >= 0) native.close(fd);
    this.listenFd = this.wakeFd = this.epfd = -1;
  }
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, Math.min(20, Math.max(1, end - Date.now()))));
}

export function createServer(options: ServerOptions): TcpmodServer {
  return new TcpmodServer(options);
}
