// The hot path: wait → recv → call the module → send → re-arm, where the
// send, save and re-arm of one event are made by the wait for the next
// (waitNext: one native call per event in the steady state). A wait takes up
// to cfg.batch ready items (maxevents) and hands them to this loop one at a
// time; every connection is EPOLLONESHOT, and the native table records which
// worker holds it from the moment epoll_wait hands it over until the re-arm, so
// between the two this worker alone owns the connection — and if this thread
// dies at any instant, the main thread knows what to finish (and gives back the
// batch entries it had not started on).
// The ABI itself (carry-over, progress loop, output order, faults) is the
// driver's (module/driver.ts); this file only moves bytes and connections.
// What an event leads to lives one concern a file, a class chain read bottom
// up: instances.ts (state, instances, call marks) <- transport.ts (the sender)
// <- results.ts (keep/fault/close) <- phases.ts (PROXY, TLS, open; timer,
// messages, upstreams) <- accept.ts <- this file (wait and dispatch).
import { CloseReason } from '../module/abi.js';
import { KEEP } from '../module/driver.js';
import type { ModuleInstance } from '../module/instance.js';
import { G, T } from '../pool/counters.js';
import { C, EAGAIN, EPROTO, native } from '../sys.js';
import { moduleConnId } from './close.js';
import { IDLE_CHECK_MS, SEND_TIMEOUT_WARNING, STALE_CHECK_MS } from './events.js';
import { LoopAccept } from './accept.js';

export { BATCH_BUDGET_MS, CONN_EVENTS, LISTEN_EVENTS, MESSAGES_PER_EVENT } from './events.js';
export type { LoopHooks } from './instances.js';

/** step()'s results: the worker goes on, was told to stop, or retires for idleness. */
const STEP_ON = 0;
const STEP_STOPPED = 1;
const STEP_RETIRED = 2;

export class EventLoop extends LoopAccept {
  /** Runs until told to stop (returns false) or retired for idleness (returns true). */
  run(): boolean {
    const { epfd, batch } = this.cfg;
    // The wait's per-worker arguments, bound once (one native call per event: waitNext).
    native.waitBind(epfd, this.holder, G.WORKERS, G.BUSY, this.cell.busy, batch, this.t + T.BYTES_OUT, this.ev, this.cells, this.pending, this.ctr.f64);
    this.bind(null, -1);
    this.idle = 0;
    // One wait and its event per call of step(): this frame never returns while the worker serves, so V8
    // would run a loop body written here in its interpreter (a function is optimized when called again,
    // a running frame only by on-stack replacement, which V8 may give up on): ~1,300 instructions per
    // event in the steady state (bench/results/ceiling-profile.md). step() is an ordinary hot function.
    for (;;) {
      const r = this.step();
      if (r !== STEP_ON) return r === STEP_RETIRED;
    }
  }

  /** ms waited without an event, in short waits (step()). */
  private idle = 0;

  /** One wait and what it returned: STEP_ON, or that the worker leaves (STEP_STOPPED, STEP_RETIRED). */
  private step(): number {
    const { idleTimeoutMs } = this.cfg;
    const ctr = this.ctr;
    const flags = ctr.i32;
    const ev = this.ev;
    // An idle worker looks at its port at least every IDLE_CHECK_MS (a reload may happen while it
    // waits), and every STALE_CHECK_MS while it holds an instance of an older generation, so that
    // the instance goes soon after the generation's last connection.
    const wait = Math.min(idleTimeoutMs, this.gens.stale() ? STALE_CHECK_MS : IDLE_CHECK_MS);
    // With one generation, current, and its instance made: the wait also loads a plain input event's
    // bytes into that instance (one native call instead of two per event). Bound again only when the
    // instance or its memory changed (a call into it may have grown the memory, detaching the old buffer).
    // The generation as last read (the previous event's check): a reload since is seen by loaded()'s own read.
    const only = this.gens.only();
    const pre = only !== -1 && only === this.gens.lastRead ? this.gens.ready(only) : null;
    if (pre !== this.target || (pre !== null && (pre.buffer !== this.targetBuf || only !== this.targetGen))) {
      const rc = this.bind(pre, only);
      // The save still pending (made with the memory bound before) did not complete: finished as after() does.
      if (rc !== 0) {
        this.unsaved(this.pending[0], this.pending[1], rc);
        return STEP_ON;
      }
    }
    const n = native.waitNext(wait);
    if (n === 0) {
      if (ctr.get(G.STOP)) return this.unbind(STEP_STOPPED);
      this.gens.sync();
      // A module that flooded the log and went quiet still gets its summary line.
      if (this.inst && !this.inst.isDisposed) this.inst.flushLogSummary();
      this.idle += wait;
      if (this.idle < idleTimeoutMs) return STEP_ON;
      this.idle = 0;
      if (this.retire()) return this.unbind(STEP_RETIRED);
      return STEP_ON;
    }
    this.idle = 0;
    if (n < 0) throw new Error(`epoll_wait failed: ${n}`);
    const kind = ev[1];
    if (kind === C.KIND_WAKE) {
      if (ctr.get(G.STOP)) return this.unbind(STEP_STOPPED);
      return STEP_ON;
    }
    const fd = ev[0];
    const id = ev[3];
    if (kind === native.KIND_SAVE) {
      this.unsaved(fd, id, ev[6]);
      return STEP_ON;
    }
    // Plain reads of the shared cells (tear-free for an Int32Array): a heuristic needs no ordering, and each
    // Atomics.load is a call into a V8 builtin of ~100 instructions (bench/results/ceiling-profile.md).
    // The pool at its max (a saturated server, one thread) is not asked (grow() reads the cells again, with Atomics).
    if (flags[G.BUSY] >= flags[G.WORKERS] && flags[G.WORKERS] < flags[G.MAX]) this.hooks.grow();
    ctr.f64[this.t + T.EVENTS]++;
    try {
      if (kind === C.KIND_LISTEN) this.accept(fd, id);
      else {
        // The event's save may be left to the next wait (results.ts after()): nothing else runs before it.
        this.fusable = true;
        if (pre && ev[5] === 1) {
          this.eventMs = ev[8];
          this.loaded(fd, id, pre, only, ev[6], ev[7]);
        } else this.handle(fd, id, ev[4]);
      }
    } catch (e) {
      if (kind === C.KIND_LISTEN) this.listenerFailed(fd, id, e);
      else this.escaped(fd, id, e);
    }
    this.fusable = false;
    this.eventMs = 0; // an event that made no call leaves no stamp for a later one
    return STEP_ON;
  }

  /**
   * Binds the wait's load target (`inst`, of generation `gen`, or none) after
   * making a save still pending; 0, or that save's result when it did not complete.
   */
  private bind(inst: ModuleInstance | null, gen: number): number {
    const buf = inst ? inst.buffer : null;
    const d = inst?.desc;
    const rc = buf && d ? native.waitTarget(buf, d.inPtr, d.inCap, d.statePtr, gen) : native.waitTarget();
    // Held here while bound: native code has a pointer into it.
    this.target = inst;
    this.targetBuf = buf;
    this.targetGen = inst ? gen : -1;
    return rc;
  }

  /** Leaving run() (with its result): the memory is no longer bound. Nothing is pending: the wait just made it. */
  private unbind(result: number): number {
    this.bind(null, -1);
    return result;
  }

  /** The save of (fd, id) that the wait was to make did not complete (`rc`): finished as after() would have. */
  private unsaved(fd: number, id: number, rc: number): void {
    try {
      this.after(fd, id, KEEP, rc);
    } catch (e) {
      this.escaped(fd, id, e);
    }
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
      // Its PROXY header, its handshake (connPhase), or, for one whose acceptor died before opening it, on_open here.
      if (unopened) return due & native.DUE_OPEN ? this.open(fd, id, false) : this.phase(fd, id);
      // Its input and output both ended (half-close, docs/abi.md §20) and no upstream is left: the peer is done.
      if (due & native.DUE_PEER_DONE) return this.close(fd, id, CloseReason.PEER);
      if (due & native.DUE_TIMER) return this.timer(fd, id);
      if (due & native.DUE_MESSAGE) return this.message(fd, id);
      if (due & native.DUE_UPSTREAM) return this.upstreams(fd, id); // a mark left waiting is queued again at the re-arm
    }
    // Past the drain timeout every connection the server still has is shut down (set once: a plain read sees it soon enough).
    if (this.ctr.i32[G.FORCED]) return this.close(fd, id, CloseReason.SHUTDOWN);
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
    if (this.ctr.i32[G.FORCED]) {
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

}
