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
import type { ModuleInstance } from '../module/instance.js';
import { G, T } from '../pool/counters.js';
import { C, EAGAIN, EINVAL, EMFILE, ENFILE, EPROTO, native } from '../sys.js';
import { finishConnection, moduleConnId } from './close.js';
import { IDLE_CHECK_MS, LISTEN_EVENTS, MAX_ACCEPTS_PER_WAKE, OPENING_EVENTS, SEND_TIMEOUT_WARNING, STALE_CHECK_MS } from './events.js';
import { LoopPhases } from './phases.js';

export { BATCH_BUDGET_MS, CONN_EVENTS, LISTEN_EVENTS, MESSAGES_PER_EVENT } from './events.js';
export type { LoopHooks } from './instances.js';

export class EventLoop extends LoopPhases {
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

}
