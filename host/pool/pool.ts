// The worker pool: spawns, grows on request, notices retirements, replaces
// crashed or stuck workers, and sums the counters. It knows no protocol: the
// worker script and its data are opaque to it.
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import type pino from 'pino';
import { forwardedRecord } from '../logger.js';
import { FAULT_KINDS } from '../module/errors.js';
import { CALL_KILLED, clockMs, Counters, G, MAX_WORKERS, S, T, TOTALS } from './counters.js';

/** More faults than this within FAULT_WINDOW_S seconds is a storm, reported loudly. */
const FAULT_STORM = 20;
const FAULT_WINDOW_S = 10;
/** How long a growth request must stay true (with a worker stalled) before the pool grows. */
const GROW_CHECK_MS = 20;

/**
 * The Node flags a worker thread starts with. By default a Worker inherits the
 * parent's execArgv, which breaks as soon as the embedding process was started
 * with flags about its own entry point: `node --input-type=module -e '…'`
 * hands `--input-type` to a worker whose entry is a file, and the worker dies
 * at start. So workers get only flags that change how errors and warnings are
 * reported, never what code runs:
 * - entry-point and loader flags (-e, -p, --input-type, --import, --require,
 *   --loader, --watch, --test, --conditions) are dropped: the worker script is
 *   plain JavaScript in dist/ and needs no preload or hook; a preload written
 *   for the main thread may not be safe to run again in every worker;
 * - V8 flags (--expose-gc, --max-old-space-size, --stack-trace-limit…) are
 *   dropped because they are process-wide: V8 already applies them to every
 *   thread (gc() exists in workers of `node --expose-gc`), and a Worker
 *   refuses them in execArgv (ERR_WORKER_INVALID_EXEC_ARGV);
 * - --inspect and friends are dropped: the inspector belongs to the process,
 *   and the main thread's session already lists each worker as a target;
 * - NODE_OPTIONS is not affected: workers read it from their env as before.
 */
const WORKER_FLAGS = new Set([
  '--enable-source-maps',
  '--no-warnings',
  '--no-deprecation',
  '--trace-warnings',
  '--trace-deprecation',
  '--throw-deprecation',
  '--pending-deprecation',
  '--trace-uncaught',
  '--trace-exit',
  '--unhandled-rejections',
  '--disable-warning',
]);
/** The flags of WORKER_FLAGS that take a value (`--flag=value` or `--flag value`). */
const WORKER_FLAG_VALUES = new Set(['--unhandled-rejections', '--disable-warning']);

/** The part of a parent's execArgv that a worker keeps (see WORKER_FLAGS), values joined as `--flag=value`. */
export function workerExecArgv(parent: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < parent.length; i++) {
    const arg = parent[i];
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg : arg.slice(0, eq);
    if (!WORKER_FLAGS.has(name)) continue;
    if (!WORKER_FLAG_VALUES.has(name)) out.push(name);
    else if (eq >= 0) out.push(arg);
    else if (i + 1 < parent.length) out.push(`${name}=${parent[++i]}`);
  }
  return out;
}

export interface PoolOptions {
  min: number;
  max: number;
  script: URL;
  /** workerData for the worker in `slot`; must include the counters' SharedArrayBuffer. */
  workerData(slot: number): object;
  /** A module callback whose own time (not counting waits for writability) passes this is stopped by terminating its worker. */
  handlerTimeoutMs: number;
  /** The same for an instance's start-up in a worker (a CALL_GEN below 0). */
  startupTimeoutMs: number;
  /**
   * A worker's callback was stopped (its thread is frozen until terminated): tell its peer at once.
   * `gen` is the call's CALL_GEN (the module generation; negated: a start-up).
   */
  onStuck(slot: number, gen: number): void;
  /** A worker's thread has exited, for whatever reason: finish whatever it held. Runs before the slot is reused. */
  onWorkerGone(slot: number): void;
  /** Test hooks: beforeStop runs after the watchdog decided a callback is too slow, before it acts. */
  testHooks?: { beforeStop?(slot: number): void };
  /** The server's logger; worker threads' forwarded records are logged through it too. */
  log: pino.BaseLogger;
}

interface Member {
  worker: Worker;
  slot: number;
  ready: boolean;
  retired: boolean;
  /** The watchdog stopped its callback... */
  stuck: boolean;
  /** ...or an instance's start-up: replaced with the crash backoff, since a start-up that hangs may hang again at once. */
  startupStuck: boolean;
}

export class Pool extends EventEmitter {
  readonly counters = new Counters();
  workersStarted = 0;
  workersStopped = 0;
  /** Totals of workers that have exited, and of events counted on the main thread. */
  readonly retired = new Float64Array(TOTALS);
  private readonly members = new Map<number, Member>();
  private stopping = false;
  private watchdog: NodeJS.Timeout | null = null;
  private crashes: number[] = [];
  /** Fault totals sampled once a second over the last window, to tell a fault storm. */
  private faultSamples: number[] = [];
  /** True while more than FAULT_STORM faults happened within the last FAULT_WINDOW_S seconds. */
  faultStorm = false;
  private stormTimer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: PoolOptions) {
    super();
    this.counters.set(G.MIN, opts.min);
    this.counters.set(G.MAX, opts.max);
  }

  /** Starts min workers and resolves when all of them are serving. */
  async start(): Promise<void> {
    const ready: Promise<void>[] = [];
    for (let i = 0; i < this.opts.min; i++) {
      this.counters.add(G.WORKERS, 1);
      ready.push(this.spawn());
    }
    const period = Math.max(5, Math.min(250, Math.floor(Math.min(this.opts.handlerTimeoutMs, this.opts.startupTimeoutMs) / 4)));
    this.watchdog = setInterval(() => this.checkStuck(), period);
    this.watchdog.unref();
    this.stormTimer = setInterval(() => this.checkFaultRate(), 1000);
    this.stormTimer.unref();
    await Promise.all(ready);
  }

  /** Spawns a worker into a free slot; the WORKERS cell was already raised for it. */
  private spawn(): Promise<void> {
    let slot = 0;
    while (this.members.has(slot)) slot++;
    if (slot >= MAX_WORKERS) {
      this.counters.add(G.WORKERS, -1);
      return Promise.resolve();
    }
    this.counters.f64.fill(0, this.counters.totalsBase(slot), this.counters.totalsBase(slot) + TOTALS);
    for (const f of [S.CALL_SEQ, S.SEND_SEQ, S.BUSY, S.CALL_GEN]) this.counters.set(this.counters.slotCell(slot, f), 0);
    const worker = new Worker(this.opts.script, { workerData: this.opts.workerData(slot), execArgv: workerExecArgv(process.execArgv) });
    const m: Member = { worker, slot, ready: false, retired: false, stuck: false, startupStuck: false };
    this.members.set(slot, m);
    this.workersStarted++;
    return new Promise<void>((resolve, reject) => {
      worker.on('message', (msg: { type: string; conn?: number; reason?: number; retired?: boolean; gen?: number; n?: number; line?: string }) => {
        if (msg.type === 'ready') {
          m.ready = true;
          resolve();
        } else if (msg.type === 'grow') {
          this.considerGrowth();
        } else if (msg.type === 'leaving') {
          m.retired = msg.retired === true;
        } else if (msg.type === 'connection' || msg.type === 'close') {
          this.emit(msg.type, msg.conn, msg.reason);
        } else if (msg.type === 'instances') {
          this.emit('instances', slot, msg.gen, msg.n);
        } else if (msg.type === 'log') {
          forwardedRecord(this.opts.log, msg.line!);
        }
      });
      worker.on('error', (err) => {
        this.opts.log.error({ worker: slot, err }, 'worker failed');
        if (!m.ready) reject(err);
      });
      worker.on('exit', () => {
        // Stopped before it was ready (its first instance's start-up hung): its replacement serves instead.
        if (!m.ready) resolve();
        this.onExit(m);
      });
    });
  }

  /**
   * A worker asked for one more worker because all were busy. Granting that at
   * once would, under CPU-bound load, fill the pool with threads that only
   * compete for the same cores (on 2 cores, 8 workers served echo 25% slower
   * than 2). So the pool grows by one only if every worker is still busy and at
   * least one stayed blocked in the same send, or in the same module callback,
   * for all of GROW_CHECK_MS: more workers are for exactly those. While all are
   * busy but moving, it keeps looking, since a worker that blocks later in the
   * same event will not ask again.
   */
  private considerGrowth(): void {
    const c = this.counters;
    const cells = (slot: number) => [c.slotCell(slot, S.SEND_SEQ), c.slotCell(slot, S.CALL_SEQ)];
    const before = new Map<number, number[]>();
    for (const slot of this.members.keys()) before.set(slot, cells(slot).map((cell) => Atomics.load(c.i32, cell)));
    setTimeout(() => {
      const stalled = [...this.members.keys()].some((slot) => cells(slot).some((cell, i) => {
        const seq = Atomics.load(c.i32, cell);
        return (seq & 1) === 1 && seq === before.get(slot)?.[i];
      }));
      const w = c.get(G.WORKERS);
      const allBusy = !this.stopping && c.get(G.BUSY) >= w && w < this.opts.max;
      if (allBusy && stalled) {
        c.add(G.WORKERS, 1);
        this.spawn().catch(() => undefined); // a worker failing at start is logged by its 'error' handler
      } else if (allBusy) {
        return this.considerGrowth();
      }
      c.set(G.GROW, 0);
    }, GROW_CHECK_MS);
  }

  private onExit(m: Member): void {
    const c = this.counters;
    // First what it held, while its slot cannot be taken by another worker.
    this.opts.onWorkerGone(m.slot);
    // A worker that died inside an event leaves its busy mark behind.
    if (Atomics.exchange(c.i32, c.slotCell(m.slot, S.BUSY), 0) === 1) c.add(G.BUSY, -1);
    this.members.delete(m.slot);
    this.workersStopped++;
    const base = c.totalsBase(m.slot);
    for (let i = 0; i < TOTALS; i++) this.retired[i] += c.f64[base + i];
    c.f64.fill(0, base, base + TOTALS);
    c.set(c.slotCell(m.slot, S.ALIVE), 0);
    if (!m.retired) c.add(G.WORKERS, -1); // a retiring worker lowered it itself
    this.emit('workerExit', m.slot);
    if (this.stopping || m.retired) return;
    if (c.get(G.WORKERS) < this.opts.min) this.replace(m.stuck && !m.startupStuck);
  }

  /**
   * Keeps min workers alive after a crash or a kill, backing off when crashes
   * repeat. A worker the watchdog stopped is replaced at once: that was the
   * host's decision, it cost the module one connection, and delaying the
   * replacement would cost every other client their service. One stopped in
   * an instance's start-up counts as a crash: its replacement makes the same
   * instance first, which may hang again, so repeats back off.
   */
  private replace(stopped: boolean): void {
    const now = Date.now();
    this.crashes = this.crashes.filter((t) => now - t < 10_000);
    if (!stopped) this.crashes.push(now);
    const delay = !stopped && this.crashes.length > 3 ? Math.min(5000, 100 * 2 ** (this.crashes.length - 3)) : 0;
    if (delay) this.opts.log.error({ crashes: this.crashes.length, delay }, 'workers keep dying; backing off');
    this.counters.add(G.WORKERS, 1);
    setTimeout(() => {
      if (this.stopping) this.counters.add(G.WORKERS, -1);
      else this.spawn().catch(() => undefined);
    }, delay);
  }

  /**
   * Stops any worker whose module callback has run past the handler timeout.
   * The callback's own time is now - start - time it waited for writability
   * (the send timeout governs a slow reader). The snapshot is read between two
   * reads of CALL_SEQ, and the decision is a compare-and-swap of the odd value
   * seen: if the worker ended that callback meanwhile, its own swap won and
   * nothing happens; if the watchdog won, the worker can never leave the
   * callback, so what it holds stays exactly what it held.
   */
  private checkStuck(): void {
    const c = this.counters;
    const i = c.i32;
    for (const m of this.members.values()) {
      if (m.stuck) continue;
      const seqCell = c.slotCell(m.slot, S.CALL_SEQ);
      const seq = Atomics.load(i, seqCell);
      if (!(seq & 1)) continue;
      const start = Atomics.load(i, c.slotCell(m.slot, S.CALL_START));
      const excluded = Atomics.load(i, c.slotCell(m.slot, S.CALL_EXCLUDED));
      const sendSeq = Atomics.load(i, c.slotCell(m.slot, S.SEND_SEQ));
      const sendStart = Atomics.load(i, c.slotCell(m.slot, S.SEND_START));
      const gen = Atomics.load(i, c.slotCell(m.slot, S.CALL_GEN));
      if (Atomics.load(i, seqCell) !== seq) continue;
      const now = clockMs();
      let own = ((now - start) | 0) - excluded;
      if (sendSeq & 1) own -= (now - sendStart) | 0;
      const startup = gen < 0;
      if (own < (startup ? this.opts.startupTimeoutMs : this.opts.handlerTimeoutMs)) continue;
      this.opts.testHooks?.beforeStop?.(m.slot);
      if (Atomics.compareExchange(i, seqCell, seq, CALL_KILLED) !== seq) continue;
      m.stuck = true;
      m.startupStuck = startup;
      this.retired[T.FAULTS + FAULT_KINDS.indexOf('timeout')]++;
      this.opts.log.error({ worker: m.slot, ms: own, generation: Math.abs(gen) },
        startup ? 'module start-up (a new instance) exceeded the start-up timeout; terminating its worker'
          : 'module callback exceeded the handler timeout; terminating its worker');
      this.opts.onStuck(m.slot, gen);
      void m.worker.terminate();
    }
  }

  /** Says loudly, once per storm, when a module keeps faulting; individual faults are logged rate-limited by workers. */
  private checkFaultRate(): void {
    const t = this.totals();
    let faults = 0;
    for (let k = 0; k < FAULT_KINDS.length; k++) faults += t[T.FAULTS + k];
    this.faultSamples.push(faults);
    if (this.faultSamples.length > FAULT_WINDOW_S + 1) this.faultSamples.shift();
    const recent = faults - this.faultSamples[0];
    const storm = recent > FAULT_STORM;
    if (storm && !this.faultStorm) {
      this.opts.log.error({ faults: recent, windowSeconds: FAULT_WINDOW_S }, `MODULE FAULT STORM: ${recent} faults in the last ${FAULT_WINDOW_S} s; every fault costs a connection and a new instance`);
    } else if (!storm && this.faultStorm) {
      this.opts.log.warn({ faults: recent, windowSeconds: FAULT_WINDOW_S }, 'module fault storm over');
    }
    this.faultStorm = storm;
  }

  /** Sums every total: exited workers, live workers, and the main thread's own. */
  totals(): Float64Array {
    const out = Float64Array.from(this.retired);
    const c = this.counters;
    for (const slot of this.members.keys()) {
      const base = c.totalsBase(slot);
      for (let i = 0; i < TOTALS; i++) out[i] += c.f64[base + i];
    }
    return out;
  }

  /** Posts `msg` to every worker's port (workers read it synchronously when told to through a shared cell). */
  post(msg: unknown): void {
    for (const m of this.members.values()) m.worker.postMessage(msg);
  }

  get size(): number {
    return this.members.size;
  }

  /** Tells every worker to leave (the caller wakes them) and resolves when all have exited. */
  async stop(wake: () => void, timeoutMs = 5000): Promise<void> {
    this.stopping = true;
    if (this.watchdog) clearInterval(this.watchdog);
    if (this.stormTimer) clearInterval(this.stormTimer);
    this.counters.set(G.STOP, 1);
    wake();
    const exits = [...this.members.values()].map((m) => new Promise<void>((r) => m.worker.once('exit', () => r())));
    const timer = setTimeout(() => {
      for (const m of this.members.values()) void m.worker.terminate();
    }, timeoutMs);
    await Promise.all(exits);
    clearTimeout(timer);
  }
}
