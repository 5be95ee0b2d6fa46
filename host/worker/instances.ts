// A worker's module instances and its calls into them: the loop's state (the
// connection being handled, the counters' cells), the instance of each
// generation (made, checked, renewed after a fault, moved to with its
// connection), the host imports an instance gets, and the watchdog's marks
// around every call (enter/leave, start-up calls). The phases above it
// (transport, results, phases, accept, loop.ts) use this state.
import { CloseReason } from '../module/abi.js';
import { AbiDriver, type Transport } from '../module/driver.js';
import { FAULT_KINDS, ModuleConfigRefused, ModuleFault } from '../module/errors.js';
import { importsHalfClose, type InstanceHooks, type ModuleInstance } from '../module/instance.js';
import type { CompiledModule } from '../module/load.js';
import { CALL_KILLED, clockMs, Counters, G, S, T } from '../pool/counters.js';
import { native } from '../sys.js';
import { finishConnection, type CloseCount } from './close.js';
import type { WorkerConfig } from './config.js';
import { WorkerGenerations, type GenerationSpec } from './generations.js';

export interface LoopHooks {
  /** Makes an instance of a module (a generation's) whose imports call these hooks. */
  instantiate(compiled: CompiledModule, hooks: InstanceHooks): ModuleInstance;
  /** A module fault on `conn` (module-visible id); the loop has counted it. `module`: the module's name. */
  faulted(fault: ModuleFault, conn: number, module: string): void;
  log(level: number, message: string, conn: number, module: string): void;
  /** This worker now has `n` instances (0 or 1) of generation `gen`. */
  instances(gen: number, n: number): void;
  /** A warning of the host's own (accept failures). */
  warn(message: string, detail?: object): void;
  /** Asks the main thread for one more worker (every worker is busy). */
  grow(): void;
  /** Posts connection events when the main thread listens for them. */
  notify(type: 'connection' | 'close', conn: number, reason: number): void;
}

/** A topic call's native result as the ABI gives it: -EBADF (no such connection) is -1. */
function topicResult(r: number): number {
  return r < -4 ? -1 : r;
}

export abstract class LoopInstances implements Transport {
  /** The instance of the connection being handled (instFor), and its generation. */
  protected inst!: ModuleInstance;
  protected instGen = 0;
  readonly gens: WorkerGenerations;
  protected readonly driver: AbiDriver;
  protected readonly cells: Int32Array;
  /** epollWait's out: [fd, kind, events, id, due, loaded, load result, received, ms when loaded]. */
  protected readonly ev = new Float64Array(9);
  /**
   * When the wait loaded the event being handled (ms on Date.now's clock, taken natively as the wait
   * returned; 0: none): the start of that event's first callback (startCall), which follows with no
   * wait in between. Reset by the loop after every event.
   */
  protected eventMs = 0;
  protected readonly received = new Int32Array(1);
  /** connMessage's topic, pattern and message lengths. */
  protected readonly lens = new Int32Array(3);
  /** upstreamNext's out: [handle, in_len]. */
  protected readonly upOut = new Int32Array(2);
  /** upstream_resume(conn, 0): -1 outside on_upstream calls (refused), 0 not asked, 1 asked in this claim. */
  protected clientResume = -1;
  protected readonly waited = new Int32Array(1);
  protected readonly accepted: number[] = [];
  protected readonly holder: number;
  protected readonly t: number;
  protected readonly closeCount: CloseCount;
  /** The connection being handled, for sends from the module. */
  protected fd = -1;
  protected id = 0;
  protected readonly tls: boolean;
  /** The last write of a kept event goes with its save and re-arm (after()); TLS output takes OpenSSL's own path. */
  readonly deferFinal: boolean;
  protected readonly queued: boolean;
  /** Output queued on the connection being handled, as of its last write (queued mode). */
  protected backlog = 0;
  protected readonly highWater: number;
  /** When this worker last warned (warnThrottled: an instance that could not be made, an escaped error), in ms. */
  protected instanceWarnedAt = 0;
  /** The odd CALL_SEQ value of the callback running now, or 0; and its CALL_GEN (below 0: a start-up). */
  protected callSeq = 0;
  protected callGen = 0;
  protected readonly cell: { seq: number; start: number; excluded: number; gen: number; sendSeq: number; sendStart: number; busy: number };

  constructor(protected readonly cfg: WorkerConfig, protected readonly ctr: Counters, protected readonly hooks: LoopHooks) {
    this.cells = ctr.i32;
    this.tls = cfg.tls;
    this.deferFinal = !cfg.tls;
    this.queued = cfg.sendMode === 'queued';
    this.highWater = cfg.highWater;
    this.holder = cfg.slot + 1;
    this.t = ctr.totalsBase(cfg.slot);
    const at = (f: number) => ctr.slotCell(cfg.slot, f);
    this.cell = {
      seq: at(S.CALL_SEQ), start: at(S.CALL_START), excluded: at(S.CALL_EXCLUDED), gen: at(S.CALL_GEN),
      sendSeq: at(S.SEND_SEQ), sendStart: at(S.SEND_START), busy: at(S.BUSY),
    };
    this.closeCount = {
      totals: ctr.f64, base: this.t,
      notify: (conn, reason) => ctr.get(G.WANT_EVENTS) && hooks.notify('close', conn, reason),
    };
    this.driver = new AbiDriver(this);
    this.gens = new WorkerGenerations(ctr, cfg.memoryCap, (compiled, spec) => this.newInstance(compiled, spec), (gen, n) => hooks.instances(gen, n),
      (from, to, move, spec) => native.generationVerdict(cfg.epfd, from, to, move ? 1 : 0, spec.stateSize, spec.inCap),
      (gen) => native.generationForget(cfg.epfd, gen));
  }

  abstract send(mem: ArrayBuffer, ptr: number, len: number): number;
  abstract congested(staged: number): boolean;
  /** tcpmod.conn_info for the connection being handled (transport.ts). */
  protected abstract connInfo(key: number): number | string | null;

  /** A warning of this worker's, at most once a second. */
  protected warnThrottled(message: string, detail?: object): void {
    const now = Date.now();
    if (now - this.instanceWarnedAt < 1000) return;
    this.instanceWarnedAt = now;
    this.hooks.warn(message, detail);
  }

  /** A warning logged at most once a second server-wide: `cell` holds the second of the last one. */
  protected warnOnce(cell: number, message: string, detail?: object): void {
    const now = (Date.now() / 1000) | 0;
    const last = Atomics.load(this.cells, cell);
    if (last !== now && Atomics.compareExchange(this.cells, cell, last, now) === last) this.hooks.warn(message, detail);
  }

  /**
   * This worker's instance of `gen`, made if it has none; null when it cannot
   * be made now (tcpmod_init refused or trapped: e.g. the store it reads at
   * start is unavailable), warned about at most once a second per worker.
   * The next use tries again.
   */
  protected make(gen: number): ModuleInstance | null {
    try {
      return this.gens.instance(gen);
    } catch (e) {
      if (!(e instanceof ModuleFault || e instanceof ModuleConfigRefused || e instanceof WebAssembly.RuntimeError || e instanceof RangeError)) throw e;
      this.gens.discard(gen);
      // A watched generation whose instances cannot be made is rolled back like one that faults.
      if (gen === this.ctr.get(G.WATCH_GEN)) this.ctr.add(G.GEN_FAULTS, 1);
      this.warnThrottled(`cannot make an instance of ${this.gens.name(gen) || 'the module'}: ${(e as Error).message}; closing the connections that need it (reason fault) until it can`, { generation: gen });
      return null;
    }
  }

  /**
   * A connection whose module instance cannot be made now: closed with reason
   * 6 (fault) without on_close (there is no instance to call), counted as a
   * close, not as a module fault.
   */
  protected unavailable(fd: number, id: number): void {
    finishConnection(fd, id, CloseReason.FAULT, this.closeCount);
  }

  /** Makes the current generation's instance before the first event, if it can be made now (else at first use). */
  prepare(): void {
    this.make(this.gens.current);
  }

  /**
   * The instance that handles connection (fd, id): that of its generation.
   * With `move`, a connection whose generation is not the current one moves to
   * it first where docs/abi.md §11 allows (the pair's verdict, compatibility()
   * in generations.ts, and its carry-over fitting in_cap): its carry-over and
   * state slot continue there.
   * A rollback makes an older generation current, so the same rule moves
   * connections back. Otherwise it stays pinned to its own generation.
   */
  protected instFor(fd: number, id: number, move: boolean): ModuleInstance | null {
    const gens = this.gens;
    const cur = gens.current;
    // With one generation known (no reload in flight: the usual case) every open connection is on it,
    // and the event costs no extra native call.
    const only = gens.only();
    if (only === cur) return this.use(cur);
    // Moving is decided natively in the same call, by the pair's verdict handed over when the generation was added.
    let gen = move ? native.connMoveTo(fd, id, cur) : native.connGeneration(fd, id);
    if (!gens.spec(gen)) gen = cur; // closed meanwhile (the load that follows fails), never a live connection's
    return this.use(gen);
  }

  /** The instance of `gen` becomes the one in use (this.inst), or null when it cannot be made. */
  protected use(gen: number): ModuleInstance | null {
    const inst = this.make(gen);
    if (inst) {
      this.instGen = gen;
      this.inst = inst;
    }
    return inst;
  }

  /** A connection the module meets now starts on the current generation, whatever it was accepted on (its slot is empty). */
  protected openOn(fd: number, id: number): ModuleInstance | null {
    const gens = this.gens;
    const cur = gens.current;
    // One generation known: the connection is on it already (no native call, as in instFor).
    if (gens.only() === cur) return this.use(cur);
    const to = gens.spec(cur)!;
    if (native.connMigrate(fd, id, cur, to.stateSize, to.inCap) === 0) return this.use(cur);
    return this.instFor(fd, id, false);
  }

  /**
   * A new instance of a generation (a worker's first, or a fresh one after a
   * fault), checked like the trial instance was: its IoDesc passed the same
   * rules (readIoDesc), and it must describe what the connection table holds
   * for the generation's connections — the state slot's size and in_cap. One
   * that does not is a load fault of that instance (counted as a fault of kind
   * result, logged); make() then closes the connection that needed it with
   * reason 6 and the worker goes on. Its start-up (_initialize, the start
   * function, tcpmod_io_desc, tcpmod_init) is watched like a callback, under the
   * start-up timeout: a module that hangs there has its worker stopped and
   * replaced, counted as a timeout fault of its generation.
   */
  protected newInstance(compiled: CompiledModule, spec: GenerationSpec): ModuleInstance {
    let inst: ModuleInstance;
    this.startCall(-spec.gen);
    try {
      inst = this.instantiate(compiled);
    } finally {
      this.leave();
    }
    const d = inst.desc;
    if (d.stateSize !== spec.stateSize || d.inCap !== spec.inCap) {
      inst.dispose();
      const fault = new ModuleFault('result', `tcpmod_io_desc of a new instance describes state_size ${d.stateSize} and in_cap ${d.inCap}, ` +
        `where the module's connections have state_size ${spec.stateSize} and in_cap ${spec.inCap} (an IoDesc must not change between instances)`);
      this.ctr.f64[this.t + T.FAULTS + FAULT_KINDS.indexOf('result')]++;
      this.hooks.faulted(fault, 0, compiled.name); // toward a reload's rollback: make() counts every instance it cannot make
      throw fault;
    }
    return inst;
  }

  protected instantiate(compiled: CompiledModule): ModuleInstance {
    const name = compiled.name;
    const half = importsHalfClose(compiled.module); // its upstreams report their EOF apart (docs/abi.md §20)
    const inst = this.hooks.instantiate(compiled, {
      send: (_conn, mem, ptr, len) => this.driver.moduleSend(mem, ptr, len),
      sendStored: (_conn, write) => this.driver.moduleSendStored(write),
      log: (level, message, conn) => this.hooks.log(level, message, conn, name),
      connInfo: (key) => this.connInfo(key),
      setTimer: (ms) => (native.timerSet(this.fd, this.id, ms) === 0 ? 0 : -2),
      draining: () => this.ctr.get(G.DRAINING),
      // -EBADF (no such connection) is the ABI's -1, as for every call about the connection being handled.
      subscribe: (kind, mem, ptr, len) => topicResult(native.topicSubscribe(this.fd, this.id, kind, mem, ptr, len)),
      unsubscribe: (kind, mem, ptr, len) => topicResult(native.topicUnsubscribe(this.fd, this.id, kind, mem, ptr, len)),
      publish: (mem, tp, tl, mp, ml) => native.topicPublish(this.cfg.epfd, mem, tp, tl, mem, mp, ml),
      publishFrame: (mem, tp, tl, mp, ml, fp, fl) => native.topicPublish(this.cfg.epfd, mem, tp, tl, mem, mp, ml, mem, fp, fl),
      topicCount: (kind, mem, ptr, len) => native.topicCount(this.cfg.epfd, kind, mem, ptr, len),
      topicsList: (mem, gp, gl, skip, op, cap) => native.topicsList(this.cfg.epfd, mem, gp, gl, skip, mem, op, cap),
      want: (n) => (native.connWant(this.fd, this.id, n) === 0 ? 0 : -1),
      upstreamOpen: (mem, ptr, len) => native.upstreamOpen(this.fd, this.id, this.cfg.epfd, mem, ptr, len, half),
      upstreamAddr: (name, index) => {
        const a = native.upstreamAddr(this.cfg.epfd, name, index);
        return typeof a === 'string' ? a : null;
      },
      upstreamSend: (up, mem, ptr, len) => native.upstreamSend(this.fd, this.id, up, mem, ptr, len),
      upstreamClose: (up) => native.upstreamClose(this.fd, this.id, up),
      upstreamShutdown: (up) => native.upstreamShutdown(this.fd, this.id, up),
      shutdownOutput: () => (native.connEndOutput(this.fd, this.id) === 0 ? 0 : -1),
      upstreamResume: (up) => {
        if (up !== 0) return native.upstreamResume(this.fd, this.id, up);
        if (this.clientResume < 0) return -1;
        this.clientResume = 1;
        return 0;
      },
      peerAddr: () => {
        const p = native.connPeer(this.fd, this.id);
        return typeof p === 'string' ? p : '';
      },
      logDropped: (bytes) => {
        this.ctr.f64[this.t + T.LOG_DROPPED] += bytes;
      },
      storeCall: this.cfg.storeCallCapMs > 0 ? () => this.storeCall() : undefined,
    });
    this.ctr.f64[this.t + T.INSTANCES]++;
    return inst;
  }

  /**
   * Before a kv call with a Redis-backed store: the watchdog leaves out the
   * time spent waiting on the store, so a callback looping over kv calls
   * would never be stopped by it; past the cap on its whole time the call
   * faults the callback instead (timeout).
   */
  protected storeCall(): void {
    if (this.callSeq === 0 || this.callGen < 0) return; // start-up (tcpmod_init): not a callback (the start-up timeout bounds it)
    const spent = (clockMs() - Atomics.load(this.cells, this.cell.start)) | 0;
    if (spent > this.cfg.storeCallCapMs) {
      throw new ModuleFault('timeout', `callback ran ${spent} ms, store waits included (capped at ${this.cfg.storeCallCapMs} ms, a multiple of --handler-timeout)`);
    }
  }

  /** A module callback starts: the watchdog's clock runs from here (CALL_SEQ odd). */
  enter(_conn: number): void {
    this.startCall(this.instGen);
  }

  /** A call into the module starts: `gen` is its generation, negated for a start-up (the watchdog's limit and fault count). */
  protected startCall(gen: number): void {
    const cells = this.cells;
    const c = this.cell;
    this.callGen = gen;
    // Plain stores (an Atomics.store is a call into a V8 builtin, ~110 instructions each): the Atomics.add
    // below publishes them. The watchdog reads them only after an Atomics.load of CALL_SEQ that saw this
    // call's odd value, so by the memory model it sees these values or later ones; a later call's values
    // read while this one ends are discarded by its second read of CALL_SEQ (pool.ts checkStuck).
    cells[c.gen] = gen;
    // A Date.now() is a call into V8's runtime (~250 instructions): the wait's stamp serves the event's first call.
    const t = this.eventMs;
    this.eventMs = 0;
    cells[c.start] = t !== 0 ? t | 0 : clockMs();
    cells[c.excluded] = 0;
    this.callSeq = Atomics.add(cells, c.seq, 1) + 1;
  }

  /**
   * The callback is over, unless the watchdog stopped it first: then the main
   * thread finishes what this worker holds, and this thread must touch nothing
   * more — it waits to be terminated.
   */
  leave(): void {
    const seq = this.callSeq;
    this.callSeq = 0;
    if (Atomics.compareExchange(this.cells, this.cell.seq, seq, seq + 1) === seq) return;
    for (;;) Atomics.wait(this.cells, this.cell.seq, CALL_KILLED);
  }
}
