// The hot path: wait → recv → call the module → send → re-arm. A wait takes up
// to cfg.batch ready items (maxevents) and hands them to this loop one at a
// time; every connection is EPOLLONESHOT, and the native table records which
// worker holds it from the moment epoll_wait hands it over until the re-arm, so
// between the two this worker alone owns the connection — and if this thread
// dies at any instant, the main thread knows what to finish (and gives back the
// batch entries it had not started on).
// The ABI itself (carry-over, progress loop, output order, faults) is the
// driver's (module/driver.ts); this file only moves bytes and connections.
import { CloseReason } from '../module/abi.js';
import { AbiDriver, FAULTED, KEEP, type Transport } from '../module/driver.js';
import { FAULT_KINDS, ModuleConfigRefused, ModuleFault } from '../module/errors.js';
import type { InstanceHooks, ModuleInstance } from '../module/instance.js';
import type { CompiledModule } from '../module/load.js';
import { CALL_KILLED, clockMs, Counters, G, REFUSED_REASONS, S, T, TLS_FAILURES, TLS_HANDSHAKE_BUCKETS } from '../pool/counters.js';
import { C, EAGAIN, ECANCELED, EINVAL, EMFILE, ENFILE, ENOBUFS, ENOTCONN, EPROTO, ETIMEDOUT, native } from '../sys.js';
import { countClose, finishConnection, moduleConnId, type CloseCount } from './close.js';
import type { WorkerConfig } from './config.js';
import { WorkerGenerations, type GenerationSpec } from './generations.js';

/** Connections wait for input, edge-triggered, one thread at a time. */
export const CONN_EVENTS = C.EPOLLIN | C.EPOLLET | C.EPOLLONESHOT;
/** A new connection is in epoll before on_open, but reports only errors until its first re-arm. */
const OPENING_EVENTS = C.EPOLLET | C.EPOLLONESHOT;
export const LISTEN_EVENTS = C.EPOLLIN | C.EPOLLONESHOT;
const REFUSED_PROXY = REFUSED_REASONS.indexOf('proxy');
/**
 * How long the rest of a batch may wait behind the event being handled before
 * the server's timer gives it back to epoll for another worker. Handling an
 * event costs microseconds, so a batch of 8 is done in well under this and is
 * never split; only a slow callback (a module doing real work, a blocking send)
 * runs past it, and then the connections behind it wait at most this long (plus
 * a timer tick and another worker's wake-up) — the latency a client of the
 * seed's one-event loop could already see from scheduling alone.
 */
export const BATCH_BUDGET_MS = 2;
/** How often an idle worker reads its port (live reload): holding an older generation's instance, and otherwise. */
const STALE_CHECK_MS = 250;
/** Connections one listener event accepts at most (see accept()). */
import { MAX_ACCEPTS_PER_WAKE } from '../limits.js';
/** Upstream events one claim of a connection delivers at most: a chatty upstream never keeps its connection from its client's input. */
const UPSTREAM_EVENTS_PER_WAKE = 16;
const SEND_TIMEOUT_WARNING = 'send timeout: closing connections whose clients stopped reading';
const IDLE_CHECK_MS = 1000;

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

/** Messages one claim of a subscriber delivers at most (one on_message call each) before it re-arms. */
export const MESSAGES_PER_EVENT = 32;

/** A topic call's native result as the ABI gives it: -EBADF (no such connection) is -1. */
function topicResult(r: number): number {
  return r < -4 ? -1 : r;
}

export class EventLoop implements Transport {
  /** The instance of the connection being handled (instFor), and its generation. */
  private inst!: ModuleInstance;
  private instGen = 0;
  readonly gens: WorkerGenerations;
  private readonly driver: AbiDriver;
  private readonly cells: Int32Array;
  /** epollWait's out: [fd, kind, events, id, due, loaded, load result, received]. */
  private readonly ev = new Float64Array(8);
  private readonly received = new Int32Array(1);
  /** connMessage's topic, pattern and message lengths. */
  private readonly lens = new Int32Array(3);
  /** upstreamNext's out: [handle, in_len]. */
  private readonly upOut = new Int32Array(2);
  /** upstream_resume(conn, 0): -1 outside on_upstream calls (refused), 0 not asked, 1 asked in this claim. */
  private clientResume = -1;
  private readonly waited = new Int32Array(1);
  private readonly accepted: number[] = [];
  private readonly holder: number;
  private readonly t: number;
  private readonly closeCount: CloseCount;
  /** The connection being handled, for sends from the module. */
  private fd = -1;
  private id = 0;
  private readonly tls: boolean;
  /** The last write of a kept event goes with its save and re-arm (after()); TLS output takes OpenSSL's own path. */
  readonly deferFinal: boolean;
  private readonly queued: boolean;
  /** Output queued on the connection being handled, as of its last write (queued mode). */
  private backlog = 0;
  private readonly highWater: number;
  /** When this worker last warned (warnThrottled: an instance that could not be made, an escaped error), in ms. */
  private instanceWarnedAt = 0;
  /** The odd CALL_SEQ value of the callback running now, or 0; and its CALL_GEN (below 0: a start-up). */
  private callSeq = 0;
  private callGen = 0;
  private readonly cell: { seq: number; start: number; excluded: number; gen: number; sendSeq: number; sendStart: number; busy: number };

  constructor(private readonly cfg: WorkerConfig, private readonly ctr: Counters, private readonly hooks: LoopHooks) {
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

  /** Runs until told to stop (returns false) or retired for idleness (returns true). */
  run(): boolean {
    const { epfd, idleTimeoutMs, batch } = this.cfg;
    const ctr = this.ctr;
    const ev = this.ev;
    let idle = 0; // ms waited without an event, in short waits (below)
    for (;;) {
      // An idle worker looks at its port at least every IDLE_CHECK_MS (a reload may happen while it
      // waits), and every STALE_CHECK_MS while it holds an instance of an older generation, so that
      // the instance goes soon after the generation's last connection.
      const wait = Math.min(idleTimeoutMs, this.gens.stale() ? STALE_CHECK_MS : IDLE_CHECK_MS);
      // With one generation, current, and its instance made: the wait also loads a plain input event's
      // bytes into that instance (one native call instead of two per event).
      const only = this.gens.only();
      const pre = only !== -1 && only === this.gens.current ? this.gens.ready(only) : null;
      const n = pre
        ? native.epollWait(epfd, wait, ev, this.holder, this.cells, G.BUSY, this.cell.busy, batch,
          pre.buffer, pre.desc.inPtr, pre.desc.inCap, pre.desc.statePtr, only)
        : native.epollWait(epfd, wait, ev, this.holder, this.cells, G.BUSY, this.cell.busy, batch);
      if (n === 0) {
        if (ctr.get(G.STOP)) return false;
        this.gens.sync();
        // A module that flooded the log and went quiet still gets its summary line.
        if (this.inst && !this.inst.isDisposed) this.inst.flushLogSummary();
        idle += wait;
        if (idle < idleTimeoutMs) continue;
        idle = 0;
        if (this.retire()) return true;
        continue;
      }
      idle = 0;
      if (n < 0) throw new Error(`epoll_wait failed: ${n}`);
      const kind = ev[1];
      if (kind === C.KIND_WAKE) {
        if (ctr.get(G.STOP)) return false;
        continue;
      }
      if (ctr.get(G.BUSY) >= ctr.get(G.WORKERS)) this.hooks.grow();
      ctr.f64[this.t + T.EVENTS]++;
      const fd = ev[0];
      const id = ev[3];
      try {
        if (kind === C.KIND_LISTEN) this.accept(fd, id);
        else if (pre && ev[5] === 1) this.loaded(fd, id, pre, only, ev[6], ev[7]);
        else this.handle(fd, id, ev[4]);
      } catch (e) {
        if (kind === C.KIND_LISTEN) this.listenerFailed(fd, id, e);
        else this.escaped(fd, id, e);
      }
    }
  }

  /**
   * Whatever a connection's handling threw (a native check refusing a region,
   * a host bug) ends that connection, never the worker: it closes with reason
   * 6 without on_close (the module's view of it is in doubt), and the instance
   * that was handling it is dropped and made again at next use. Logged at most
   * once a second per worker.
   */
  private escaped(fd: number, id: number, e: unknown): void {
    if (this.callSeq) this.leave();
    const inst = this.inst;
    if (inst && this.gens.ready(this.instGen) === inst) {
      inst.dispose();
      this.gens.discard(this.instGen);
    }
    finishConnection(fd, id, CloseReason.FAULT, this.closeCount);
    this.warnThrottled(`an error in the handling of connection ${moduleConnId(id)} closed it (reason fault): ${(e as Error)?.message ?? e}`);
  }

  /** As escaped(), for the listener: it stays open and is armed again so that accepting goes on. */
  private listenerFailed(fd: number, id: number, e: unknown): void {
    this.warnThrottled(`an error while accepting: ${(e as Error)?.message ?? e}`);
    native.connRearm(this.cfg.epfd, fd, id, LISTEN_EVENTS);
  }

  /** A warning of this worker's, at most once a second. */
  private warnThrottled(message: string, detail?: object): void {
    const now = Date.now();
    if (now - this.instanceWarnedAt < 1000) return;
    this.instanceWarnedAt = now;
    this.hooks.warn(message, detail);
  }

  /** A worker whose wait timed out leaves when nobody is busy and more than min remain. */
  private retire(): boolean {
    const ctr = this.ctr;
    if (ctr.get(G.BUSY) !== 0) return false;
    const w = ctr.get(G.WORKERS);
    return w > ctr.get(G.MIN) && Atomics.compareExchange(ctr.i32, G.WORKERS, w, w - 1) === w;
  }

  /**
   * An event of a connection this worker now holds: input, EOF or an error,
   * or what `due` says came with it (a timeout, the drain grace, the module's
   * timer, a TLS handshake still going on).
   */
  private handle(fd: number, id: number, due: number): void {
    if (due !== 0) {
      if (due & native.DUE_CLOSING) return this.closing(fd, id, due);
      if (due & native.DUE_OVERFLOW) {
        this.warnOnce(G.WARNED_BOUND, 'a memory bound was passed: closing the connections that hold most (reason overflow)');
        return due & (native.DUE_HANDSHAKE | native.DUE_OPEN | native.DUE_PROXY) ? this.drop(fd, id, CloseReason.OVERFLOW) : this.close(fd, id, CloseReason.OVERFLOW);
      }
      if (due & native.DUE_SEND_TIMEOUT) {
        this.warnOnce(G.WARNED_SEND_TIMEOUT, SEND_TIMEOUT_WARNING);
        return this.close(fd, id, CloseReason.SEND_TIMEOUT);
      }
      const unopened = (due & (native.DUE_HANDSHAKE | native.DUE_OPEN | native.DUE_PROXY)) !== 0; // the module has not met it: no on_close
      if (due & (native.DUE_TIMEOUT | native.DUE_DRAIN_IDLE)) {
        const reason = due & native.DUE_TIMEOUT ? CloseReason.TIMEOUT : CloseReason.SHUTDOWN;
        if (due & native.DUE_PROXY && reason === CloseReason.TIMEOUT) this.refusedProxy();
        return unopened ? this.drop(fd, id, reason) : this.close(fd, id, reason);
      }
      if (due & native.DUE_PROXY) return this.proxied(fd, id, native.connProxy(fd, id));
      // A connection whose acceptor died before opening it: open it here.
      if (due & native.DUE_OPEN) return this.open(fd, id);
      if (unopened) return this.handshaken(fd, id, native.connHandshake(fd, id, this.cfg.sendTimeoutMs));
      if (due & native.DUE_TIMER) return this.timer(fd, id);
      if (due & native.DUE_MESSAGE) return this.message(fd, id);
      if (due & native.DUE_UPSTREAM) return this.upstreams(fd, id); // a mark left waiting is queued again at the re-arm
    }
    // Past the drain timeout every connection the server still has is shut down.
    if (this.ctr.get(G.FORCED)) return this.close(fd, id, CloseReason.SHUTDOWN);
    const inst = this.instFor(fd, id, true);
    if (!inst) return this.unavailable(fd, id);
    const d = inst.desc;
    const len = native.connLoad(fd, id, inst.buffer, d.inPtr, d.inCap, d.statePtr, this.received);
    this.input(fd, id, inst, len, this.received[0]);
  }

  /**
   * An input event whose bytes the wait already loaded into `inst` (of
   * generation `gen`): as handle() after its connLoad. When a reload came
   * while this worker waited, the connection may have to move first (at this
   * event, docs/abi.md §11): the loaded input is kept as its carry-over and
   * the event goes the long way (the EOF a read saw is seen again by the next).
   */
  private loaded(fd: number, id: number, inst: ModuleInstance, gen: number, len: number, received: number): void {
    if (len >= 0 && (this.gens.current !== gen || this.gens.only() !== gen)) {
      this.ctr.f64[this.t + T.BYTES_IN] += received;
      const d = inst.desc;
      if (native.connSave(fd, id, inst.buffer, d.inPtr, len & ~native.LOAD_EOF, d.statePtr) === 0) return this.handle(fd, id, 0);
      return this.close(fd, id, CloseReason.SOCKET_ERROR);
    }
    this.inst = inst;
    this.instGen = gen;
    if (this.ctr.get(G.FORCED)) {
      this.ctr.f64[this.t + T.BYTES_IN] += received; // read by the wait all the same
      return this.close(fd, id, CloseReason.SHUTDOWN);
    }
    this.input(fd, id, inst, len, received);
  }

  /** The module gets the loaded input (connLoad's result `len`), unless there is nothing to call it for. */
  private input(fd: number, id: number, inst: ModuleInstance, len: number, received: number): void {
    this.fd = fd;
    this.id = id;
    this.backlog = 0;
    this.ctr.f64[this.t + T.BYTES_IN] += received;
    if (len < 0) {
      // EAGAIN: queued output is still above its mark, or a frame the module asked to wait for is incomplete.
      if (len === EAGAIN) return this.rearm(fd, id);
      return this.close(fd, id, len === EPROTO ? CloseReason.TLS : CloseReason.SOCKET_ERROR);
    }
    const eof = (len & native.LOAD_EOF) !== 0;
    len &= ~native.LOAD_EOF;
    if (len === 0 && !eof) return this.rearm(fd, id);
    this.after(fd, id, this.driver.data(inst, moduleConnId(id), len, eof));
  }

  /**
   * The start of an event that is not client input (timer, messages, upstream
   * events): a forced shutdown closes the connection, a connection whose
   * instance cannot be had is finished; otherwise the connection becomes the
   * current one (the imports act on this.fd/this.id) and its instance is
   * returned. Null means the connection was dealt with: nothing more to do.
   */
  private claim(fd: number, id: number): ModuleInstance | null {
    if (this.ctr.get(G.FORCED)) {
      this.close(fd, id, CloseReason.SHUTDOWN);
      return null;
    }
    const inst = this.instFor(fd, id, true);
    if (!inst) {
      this.unavailable(fd, id);
      return null;
    }
    this.fd = fd;
    this.id = id;
    return inst;
  }

  /** The module's timer fired: on_timer with the carry-over (nothing is received here; the re-arm reports new input). */
  private timer(fd: number, id: number): void {
    const inst = this.claim(fd, id);
    if (!inst) return;
    // Never happens while connections move only where compatibility() allows (a module that can arm a
    // timer has on_timer); if it did, the timer is dropped: nothing to call, the connection goes on.
    if (!inst.hasOnTimer) return this.rearm(fd, id);
    const d = inst.desc;
    const len = native.connLoad(fd, id, inst.buffer, d.inPtr, d.inCap, d.statePtr, this.received, 1);
    if (len < 0) return this.close(fd, id, CloseReason.SOCKET_ERROR);
    this.ctr.f64[this.t + T.TIMERS_FIRED]++;
    this.after(fd, id, this.driver.timer(inst, moduleConnId(id), len & ~native.LOAD_EOF));
  }

  /**
   * Its mailbox holds messages (docs/abi.md §15): on_message with the
   * carry-over, then the topic, pattern and message after it, for up to
   * MESSAGES_PER_EVENT messages in this one claim (each call's output sent
   * before the next call reuses the out region); the re-arm marks the
   * connection due again while its mailbox is not empty, so a subscriber's
   * messages interleave fairly with other work. Stops early when the client
   * is not reading (queued output above its mark).
   */
  private message(fd: number, id: number): void {
    const inst = this.claim(fd, id);
    if (!inst) return;
    const d = inst.desc;
    this.backlog = 0;
    const len = native.connLoad(fd, id, inst.buffer, d.inPtr, d.inCap, d.statePtr, this.received, 1);
    if (len < 0) return this.close(fd, id, CloseReason.SOCKET_ERROR);
    let inLen = len & ~native.LOAD_EOF;
    const drv = this.driver;
    // The claim's outputs are staged and leave in one write, before the save (or the close).
    drv.holding = true;
    const save = (): void => {
      const w = drv.release();
      if (w >= 0) return this.close(fd, id, w);
      if (native.connSave(fd, id, inst.buffer, d.inPtr, inLen, d.statePtr, this.cfg.epfd, CONN_EVENTS) < 0) this.close(fd, id, CloseReason.SOCKET_ERROR);
    };
    for (let k = 0; ; k++) {
      const got = inst.hasOnMessage ? native.connMessage(fd, id, inst.buffer, d.inPtr + inLen, d.inCap - inLen, this.lens) : 0;
      // None left (or one too big for the room left: dropped, counted): keep the carry-over and state, re-arm.
      if (got !== 1) {
        if (k === 0) {
          drv.holding = false;
          return this.rearm(fd, id);
        }
        return save();
      }
      const l = this.lens;
      const r = drv.message(inst, moduleConnId(id), inLen, l[0], l[1], l[2]);
      if (r !== KEEP || k + 1 >= MESSAGES_PER_EVENT) {
        const w = drv.release();
        return this.after(fd, id, r === KEEP && w >= 0 ? w : r);
      }
      // The carry-over the call left goes back to in_ptr for the next message.
      if (drv.restPtr !== d.inPtr && drv.restLen > 0) new Uint8Array(inst.buffer).copyWithin(d.inPtr, drv.restPtr, drv.restPtr + drv.restLen);
      inLen = drv.restLen;
      if (this.congested(0)) return save();
    }
  }

  /**
   * Events of the connection's upstreams (docs/abi.md, Upstreams), taken under
   * its ownership: on_upstream for each, at most UPSTREAM_EVENTS_PER_WAKE of
   * them (what is left stays flagged and marks the connection due again at its re-arm).
   */
  private upstreams(fd: number, id: number): void {
    const inst = this.claim(fd, id);
    if (!inst) return;
    const d = inst.desc;
    let resumed = false;
    this.clientResume = 0;
    try {
      for (let n = 0; n < UPSTREAM_EVENTS_PER_WAKE; n++) {
        const event = native.upstreamNext(fd, id, inst.buffer, d.inPtr, d.inCap, d.statePtr, this.upOut);
        if (event < 0) return this.close(fd, id, CloseReason.SOCKET_ERROR);
        if (event === 0) break;
        const up = this.upOut[0];
        const len = this.upOut[1];
        const r = this.driver.upstream(inst, moduleConnId(id), up, event, len);
        if (r === FAULTED) return this.faulted(fd, id, this.driver.fault!);
        if (r !== KEEP) return this.close(fd, id, r, this.driver.linger);
        // As for client input: a full input region the module took nothing of is an overflow.
        // (A module that can resume held input holds it: the host reads no more of that upstream until it is resumed.)
        if (this.driver.restLen === d.inCap && !inst.holdsInput) return this.close(fd, id, CloseReason.OVERFLOW);
        if (native.upstreamKeep(fd, id, up, inst.buffer, this.driver.restPtr, this.driver.restLen, d.statePtr) < 0)
          return this.close(fd, id, CloseReason.SOCKET_ERROR);
      }
      resumed = this.clientResume === 1;
    } finally {
      this.clientResume = -1;
    }
    if (!resumed) return this.rearm(fd, id);
    // upstream_resume(conn, 0): the client's held input again, in on_data, nothing new received (as on_timer gets it).
    const len = native.connLoad(fd, id, inst.buffer, d.inPtr, d.inCap, d.statePtr, this.received, 1);
    if (len < 0) return this.close(fd, id, CloseReason.SOCKET_ERROR);
    this.backlog = 0;
    this.after(fd, id, this.driver.data(inst, moduleConnId(id), len & ~native.LOAD_EOF, false));
  }

  /**
   * Accepts until EAGAIN, or MAX_ACCEPTS_PER_WAKE (Redis's MAX_ACCEPTS_PER_CALL):
   * the listener is then re-armed with connections still waiting, so it reports
   * again at once and another worker (or this one, after these) takes the rest --
   * a burst never keeps one worker accepting while its new connections' on_open
   * waits and the other workers idle. Every accepted socket is in the table (held by this
   * worker) and in epoll before any on_open runs, and the listener is re-armed
   * before them too, so a slow on_open never holds up accepting and a worker
   * dying in one strands nothing.
   */
  private accept(lfd: number, lid: number): void {
    const { epfd } = this.cfg;
    const list = this.accepted;
    list.length = 0;
    const gen = this.gens.current; // reads the port first if a reload moved the epoch
    const stateSize = this.gens.spec(gen)?.stateSize ?? 0; // open() sets it again, for the generation current then
    for (let taken = 0; taken < MAX_ACCEPTS_PER_WAKE; taken++) {
      const fd = native.accept(lfd);
      if (fd < 0) {
        if ((fd === EMFILE || fd === ENFILE) && this.refuseAtFdLimit(lfd)) continue;
        if (fd !== EAGAIN && fd !== EMFILE && fd !== ENFILE && !this.ctr.get(G.STOP)) this.hooks.warn('accept failed', { errno: fd });
        break;
      }
      // Socket options before the connection is in the table, so that no one (connections(), another
      // worker) ever sees it without them.
      this.socketOptions(fd);
      if (native.connCount(epfd) >= this.cfg.maxConnections) {
        // Never left in the backlog to hang: accepted and closed at once.
        native.close(fd);
        this.refused(0, G.WARNED_LIMIT, `connection limit (${this.cfg.maxConnections}) reached: closing new connections`);
        continue;
      }
      let id = native.connOpen(fd, epfd, stateSize, this.holder, C.KIND_CONN, this.tls ? this.ctr.get(G.TLS_CTX) : 0, gen);
      // A certificate reload freed the context just read: the cell holds its successor.
      if (id === EINVAL && this.tls) id = native.connOpen(fd, epfd, stateSize, this.holder, C.KIND_CONN, this.ctr.get(G.TLS_CTX), gen);
      if (id < 0) {
        // The table still has an entry for this fd number: a host bug, never a reason to leak the socket.
        this.hooks.warn('connection table refused an accepted socket; closing it', { fd, errno: id });
        native.close(fd);
        continue;
      }
      this.ctr.f64[this.t + T.ACCEPTED]++;
      if (native.connAdd(epfd, fd, id, OPENING_EVENTS) < 0) {
        finishConnection(fd, id, CloseReason.SOCKET_ERROR, this.closeCount);
        continue;
      }
      list.push(fd, id);
    }
    if (native.connRearm(epfd, lfd, lid, LISTEN_EVENTS) < 0 && !this.ctr.get(G.STOP)) {
      // Only when the server has taken the listener out of the set (it is stopping).
      this.hooks.warn('listener re-arm failed');
    }
    for (let i = 0; i < list.length; i += 2) {
      // One connection's failure must not strand the others accepted with it.
      try {
        this.begin(list[i], list[i + 1]);
      } catch (e) {
        this.escaped(list[i], list[i + 1], e);
      }
    }
  }

  /**
   * Out of descriptors: frees the reserve, accepts the waiting connection and
   * closes it (so it is told, not left hanging), and takes the reserve back.
   * False when there is no reserve to spend: then the listener waits 10 ms
   * before it is re-armed, so a full table never turns into a busy loop.
   */
  private refuseAtFdLimit(lfd: number): boolean {
    const rc = native.acceptRefuse(lfd);
    if (rc === 1) {
      this.refused(1, G.WARNED_FD, 'out of file descriptors: closing new connections');
      return true;
    }
    if (rc < 0) {
      this.refused(-1, G.WARNED_FD, 'out of file descriptors: new connections wait');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
    return false;
  }

  /** Counts a refusal (REFUSED_REASONS index; -1 counts nothing) and warns once a second at most, server-wide. */
  private refused(reason: number, warnCell: number, message: string): void {
    if (reason >= 0) this.ctr.f64[this.t + T.REFUSED + reason]++;
    this.warnOnce(warnCell, message, { reason: REFUSED_REASONS[reason] });
  }

  /** A warning logged at most once a second server-wide: `cell` holds the second of the last one. */
  private warnOnce(cell: number, message: string, detail?: object): void {
    const now = (Date.now() / 1000) | 0;
    const last = Atomics.load(this.cells, cell);
    if (last !== now && Atomics.compareExchange(this.cells, cell, last, now) === last) this.hooks.warn(message, detail);
  }

  /** --keepalive's SO_KEEPALIVE and TCP_KEEPIDLE/INTVL/CNT, and TCP_NODELAY, on an accepted socket. */
  private socketOptions(fd: number): void {
    const ka = this.cfg.keepalive;
    if (ka) {
      native.setsockoptInt(fd, C.SOL_SOCKET, C.SO_KEEPALIVE, 1);
      native.setsockoptInt(fd, C.IPPROTO_TCP, C.TCP_KEEPIDLE, ka[0]);
      native.setsockoptInt(fd, C.IPPROTO_TCP, C.TCP_KEEPINTVL, ka[1]);
      native.setsockoptInt(fd, C.IPPROTO_TCP, C.TCP_KEEPCNT, ka[2]);
    }
    native.setsockoptInt(fd, C.IPPROTO_TCP, C.TCP_NODELAY, 1);
  }

  /** A new connection (its socket options set at accept): the PROXY header and the TLS handshake where there are ones, then on_open. */
  private begin(fd: number, id: number): void {
    if (this.ctr.get(G.WANT_EVENTS)) this.hooks.notify('connection', moduleConnId(id), 0);
    if (this.cfg.proxy) this.proxied(fd, id, native.connProxy(fd, id));
    else this.afterProxy(fd, id);
  }

  /** Where a connection goes once its PROXY header, if any, is read: the TLS handshake where there is one, then on_open. */
  private afterProxy(fd: number, id: number): void {
    if (this.tls) this.handshaken(fd, id, native.connHandshake(fd, id, this.cfg.sendTimeoutMs));
    else this.open(fd, id);
  }

  /**
   * After a PROXY header step (connProxy's result): once it is read the
   * connection goes on as if just accepted; while it is incomplete the
   * connection waits (the frame timeout bounds it, no worker does); a
   * connection that is not the balancer's (no valid header) is closed without
   * the module ever seeing it, and counted as refused (reason proxy).
   */
  private proxied(fd: number, id: number, rc: number): void {
    const stopping = this.ctr.get(G.FORCED);
    if (rc >= 1 && !stopping) return this.afterProxy(fd, id);
    if (rc === 0 && !stopping && native.connRearm(this.cfg.epfd, fd, id, CONN_EVENTS) === 0) return;
    if (stopping) return this.drop(fd, id, CloseReason.SHUTDOWN);
    // Closed before its first byte (a TCP health check): the peer closed, nothing was refused.
    if (rc === ENOTCONN) return this.drop(fd, id, CloseReason.PEER);
    if (rc === EPROTO) this.refusedProxy();
    this.drop(fd, id, CloseReason.SOCKET_ERROR);
  }

  private refusedProxy(): void {
    this.refused(REFUSED_PROXY, G.WARNED_PROXY, 'a connection did not start with a valid PROXY protocol header in time: closing it (--proxy-protocol)');
  }

  /**
   * After a handshake step (connHandshake's result): on completion the module
   * meets the connection (on_open); while it needs input the connection waits;
   * on failure it is closed with reason 8 without the module ever seeing it.
   */
  private handshaken(fd: number, id: number, rc: number): void {
    const stopping = this.ctr.get(G.FORCED);
    if (rc === 1 && !stopping) {
      const info = native.connTlsInfo(fd, id);
      const s = typeof info === 'number' ? 0 : info.micros / 1e6;
      const f = this.ctr.f64;
      f[this.t + T.TLS_HANDSHAKES]++;
      f[this.t + T.TLS_HANDSHAKE_SECONDS] += s;
      let b = 0;
      while (b < TLS_HANDSHAKE_BUCKETS.length && s > TLS_HANDSHAKE_BUCKETS[b]) b++;
      f[this.t + T.TLS_BUCKETS + b]++;
      return this.open(fd, id);
    }
    if (rc === 0 && !stopping && native.connRearm(this.cfg.epfd, fd, id, CONN_EVENTS) === 0) return;
    let reason: number = CloseReason.SHUTDOWN;
    // Closed before its first byte (a TCP health check): the peer closed, no TLS failure.
    if (rc === ENOTCONN && !stopping) return this.drop(fd, id, CloseReason.PEER);
    if (!stopping) {
      reason = CloseReason.TLS;
      const info = native.connTlsInfo(fd, id);
      const label = typeof info === 'number' || !info.failure ? 'other' : info.failure;
      const k = TLS_FAILURES.indexOf(label as (typeof TLS_FAILURES)[number]);
      this.ctr.f64[this.t + T.TLS_FAILURES + (k < 0 ? TLS_FAILURES.indexOf('other') : k)]++;
    }
    this.drop(fd, id, reason);
  }

  /** Closes a connection the module has not met (a PROXY header or TLS handshake that did not complete): no on_close. */
  private drop(fd: number, id: number, reason: number): void {
    finishConnection(fd, id, reason, this.closeCount);
  }

  /** The module meets a connection: on_open with a zeroed state slot. */
  private open(fd: number, id: number): void {
    const conn = moduleConnId(id);
    const inst = this.openOn(fd, id);
    if (!inst) return this.unavailable(fd, id);
    const d = inst.desc;
    if (d.stateSize) new Uint8Array(inst.buffer, d.statePtr, d.stateSize).fill(0);
    this.fd = fd;
    this.id = id;
    native.connOpened(fd, id);
    this.after(fd, id, this.driver.open(inst, conn));
  }

  /** What the driver's result leads to: keep (save and re-arm), a fault, or a close. */
  private after(fd: number, id: number, r: number): void {
    if (r === KEEP) {
      const inst = this.inst;
      const d = this.driver;
      const { epfd } = this.cfg;
      // A full region held (upstream_resume, docs/abi.md §16): no input is read until the module resumes it or an upstream event comes.
      const events = d.restLen === inst.desc.inCap && inst.holdsInput ? CONN_EVENTS & ~C.EPOLLIN : CONN_EVENTS;
      let out = d.outLen;
      if (out > 0) {
        // The event's last output (deferred by the driver), sent, saved and re-armed in one native call
        // when the socket takes it all at once and it lies in module memory (not staged).
        let ptr = d.outPtr;
        const mem = d.outMem;
        if (mem === inst.buffer) {
          const left = native.connSave(fd, id, mem, d.restPtr, d.restLen, inst.desc.statePtr, epfd, events, ptr, out);
          if (left < 0) return this.close(fd, id, this.failure(left));
          this.ctr.f64[this.t + T.BYTES_OUT] += out - left;
          if (left === 0) return;
          ptr += out - left;
          out = left;
        }
        // The rest the blocking or queued way, then saved without it.
        const reason = this.send(mem, ptr, out);
        if (reason >= 0) return this.close(fd, id, reason);
      }
      // Saved and re-armed in one native call.
      if (native.connSave(fd, id, inst.buffer, d.restPtr, d.restLen, inst.desc.statePtr, epfd, events) < 0) {
        this.close(fd, id, CloseReason.SOCKET_ERROR);
      }
      return;
    }
    if (r === FAULTED) return this.faulted(fd, id, this.driver.fault!);
    this.close(fd, id, r, this.driver.linger);
  }

  private rearm(fd: number, id: number): void {
    if (native.connRearm(this.cfg.epfd, fd, id, CONN_EVENTS) < 0) this.close(fd, id, CloseReason.SOCKET_ERROR);
  }

  /**
   * Runs on_close, then the one close path; `linger` (the module closed after
   * its reply) keeps the reply from being reset: the connection is counted
   * closed now and enters its close phase (close_phase.h) -- a reply still
   * queued goes out first, then it lingers, discarding what the client still
   * sends -- and its socket closes at the end of it (closing()).
   */
  private close(fd: number, id: number, reason: number, linger = false): void {
    // The connection on_close is about (a topic call made from it names this one).
    this.fd = fd;
    this.id = id;
    if ((reason === CloseReason.PEER || reason === CloseReason.SOCKET_ERROR) && this.ctr.get(G.FORCED)) reason = CloseReason.SHUTDOWN;
    const inst = this.instFor(fd, id, false);
    const fault = inst ? this.driver.close(inst, moduleConnId(id), reason) : null;
    if (fault) return this.faulted(fd, id, fault);
    const keep = linger && !this.ctr.get(G.FORCED) && reason !== CloseReason.SEND_TIMEOUT;
    if (keep && native.connLinger(fd, id) > 0) {
      countClose(id, reason, this.closeCount);
      if (native.connRearm(this.cfg.epfd, fd, id, CONN_EVENTS) === 0) return;
    }
    // Counted with the close, so that a reader of the stats never sees the one without the other.
    if (finishConnection(fd, id, reason, this.closeCount, linger) && reason === CloseReason.SEND_TIMEOUT) this.ctr.f64[this.t + T.SEND_TIMEOUTS]++;
  }

  /**
   * An event of a connection in its close phase (counted closed already): its
   * queued reply goes on, or its lingering; the socket closes when that is over,
   * or on an error, its send timeout (counted as one), a memory bound, or a forced shutdown.
   */
  private closing(fd: number, id: number, due: number): void {
    const rc = this.ctr.get(G.FORCED) ? ECANCELED : native.connCloseStep(fd, id, due);
    if (rc > 0 && native.connRearm(this.cfg.epfd, fd, id, CONN_EVENTS) === 0) return;
    if (rc === ETIMEDOUT) this.warnOnce(G.WARNED_SEND_TIMEOUT, SEND_TIMEOUT_WARNING);
    if (finishConnection(fd, id, CloseReason.MODULE, this.closeCount, rc === 0) && rc === ETIMEDOUT) this.ctr.f64[this.t + T.SEND_TIMEOUTS]++;
  }

  /** The module faulted on this connection: close it (reason 6, no on_close) and renew the instance. */
  private faulted(fd: number, id: number, fault: ModuleFault): void {
    finishConnection(fd, id, CloseReason.FAULT, this.closeCount);
    this.ctr.f64[this.t + T.FAULTS + FAULT_KINDS.indexOf(fault.kind)]++;
    const gen = this.instGen;
    if (gen === this.ctr.get(G.WATCH_GEN)) this.ctr.add(G.GEN_FAULTS, 1);
    this.hooks.faulted(fault, moduleConnId(id), this.gens.name(gen));
    // The faulted instance is disposed. The current generation's is renewed now, as a fault has always
    // done, so the next event does not wait for it; an older generation's only when next used (its
    // connections are going, and the generation may be freed first).
    if (gen === this.gens.current && this.gens.spec(gen)) this.make(gen);
    else this.gens.discard(gen);
  }

  /**
   * This worker's instance of `gen`, made if it has none; null when it cannot
   * be made now (tcpmod_init refused or trapped: e.g. the store it reads at
   * start is unavailable), warned about at most once a second per worker.
   * The next use tries again.
   */
  private make(gen: number): ModuleInstance | null {
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
  private unavailable(fd: number, id: number): void {
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
  private instFor(fd: number, id: number, move: boolean): ModuleInstance | null {
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
  private use(gen: number): ModuleInstance | null {
    const inst = this.make(gen);
    if (inst) {
      this.instGen = gen;
      this.inst = inst;
    }
    return inst;
  }

  /** A connection the module meets now starts on the current generation, whatever it was accepted on (its slot is empty). */
  private openOn(fd: number, id: number): ModuleInstance | null {
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
  private newInstance(compiled: CompiledModule, spec: GenerationSpec): ModuleInstance {
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

  private instantiate(compiled: CompiledModule): ModuleInstance {
    const name = compiled.name;
    const inst = this.hooks.instantiate(compiled, {
      send: (_conn, mem, ptr, len) => this.driver.moduleSend(mem, ptr, len),
      log: (level, message, conn) => this.hooks.log(level, message, conn, name),
      connInfo: (key) => this.connInfo(key),
      setTimer: (ms) => (native.timerSet(this.fd, this.id, ms) === 0 ? 0 : -2),
      draining: () => this.ctr.get(G.DRAINING),
      // -EBADF (no such connection) is the ABI's -1, as for every call about the connection being handled.
      subscribe: (kind, mem, ptr, len) => topicResult(native.topicSubscribe(this.fd, this.id, kind, mem, ptr, len)),
      unsubscribe: (kind, mem, ptr, len) => topicResult(native.topicUnsubscribe(this.fd, this.id, kind, mem, ptr, len)),
      publish: (mem, tp, tl, mp, ml) => native.topicPublish(this.cfg.epfd, mem, tp, tl, mem, mp, ml),
      topicCount: (kind, mem, ptr, len) => native.topicCount(this.cfg.epfd, kind, mem, ptr, len),
      topicsList: (mem, gp, gl, skip, op, cap) => native.topicsList(this.cfg.epfd, mem, gp, gl, skip, mem, op, cap),
      want: (n) => (native.connWant(this.fd, this.id, n) === 0 ? 0 : -1),
      upstreamOpen: (mem, ptr, len) => native.upstreamOpen(this.fd, this.id, this.cfg.epfd, mem, ptr, len),
      upstreamSend: (up, mem, ptr, len) => native.upstreamSend(this.fd, this.id, up, mem, ptr, len),
      upstreamClose: (up) => native.upstreamClose(this.fd, this.id, up),
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
  private storeCall(): void {
    if (this.callSeq === 0 || this.callGen < 0) return; // start-up (tcpmod_init): not a callback (the start-up timeout bounds it)
    const spent = (clockMs() - Atomics.load(this.cells, this.cell.start)) | 0;
    if (spent > this.cfg.storeCallCapMs) {
      throw new ModuleFault('timeout', `callback ran ${spent} ms, store waits included (capped at ${this.cfg.storeCallCapMs} ms, a multiple of --handler-timeout)`);
    }
  }

  // ---- Transport (for the driver) ----

  /**
   * Sends in order, plain or TLS alike (the native sender, sender.h): queued
   * mode hands the bytes to the connection's queue (the socket takes what it
   * can now, nothing waits); blocking mode waits up to the send timeout.
   * -1, or the close reason.
   */
  send(mem: ArrayBuffer, ptr: number, len: number): number {
    const rc = this.queued
      ? native.connWrite(this.fd, this.id, mem, ptr, len)
      : this.blocking(() => native.connSend(this.fd, this.id, mem, ptr, len, this.cfg.sendTimeoutMs, this.waited));
    if (rc >= 0) {
      if (this.queued) this.backlog = rc;
      this.ctr.f64[this.t + T.BYTES_OUT] += len;
      return -1;
    }
    if (rc === ENOBUFS) return CloseReason.OVERFLOW;
    return this.failure(rc);
  }

  /**
   * The one way to make a native call that may wait for a slow reader inside a
   * module callback: the call is marked (SEND_SEQ odd, SEND_START) while it runs
   * and the time it reports in `waited` is excluded from the callback's, so the
   * watchdog leaves a slow reader to the send timeout (host/pool, checkStuck).
   */
  private blocking(call: () => number): number {
    const cells = this.cells;
    const c = this.cell;
    this.waited[0] = 0;
    Atomics.store(cells, c.sendStart, clockMs());
    Atomics.add(cells, c.sendSeq, 1); // odd while sending: the pool tells a blocked sender from a busy one
    const rc = call();
    if (this.callSeq) Atomics.add(cells, c.excluded, this.waited[0]);
    Atomics.add(cells, c.sendSeq, 1);
    return rc;
  }

  /** The close reason for a failed send. */
  private failure(rc: number): number {
    if (rc === ETIMEDOUT) return CloseReason.SEND_TIMEOUT;
    if (this.ctr.get(G.FORCED)) return CloseReason.SHUTDOWN;
    return rc === EPROTO ? CloseReason.TLS : CloseReason.SOCKET_ERROR;
  }

  /** tcpmod.conn_info for the connection being handled: 0 transport, 1 ALPN protocol, 2 client certificate. */
  private connInfo(key: number): number | string | null {
    if (key === 0) return this.tls ? 1 : 0;
    if (key !== 1 && key !== 2) return null;
    const info = this.tls ? native.connTlsInfo(this.fd, this.id) : null;
    const ok = info !== null && typeof info !== 'number';
    if (key === 1) return ok ? info.alpn : '';
    return ok && info.peerCert ? 1 : 0;
  }

  congested(staged: number): boolean {
    return this.backlog + staged > this.highWater;
  }


  /** A module callback starts: the watchdog's clock runs from here (CALL_SEQ odd). */
  enter(_conn: number): void {
    this.startCall(this.instGen);
  }

  /** A call into the module starts: `gen` is its generation, negated for a start-up (the watchdog's limit and fault count). */
  private startCall(gen: number): void {
    const cells = this.cells;
    this.callGen = gen;
    Atomics.store(cells, this.cell.gen, gen);
    Atomics.store(cells, this.cell.start, clockMs());
    Atomics.store(cells, this.cell.excluded, 0);
    this.callSeq = Atomics.add(cells, this.cell.seq, 1) + 1;
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
