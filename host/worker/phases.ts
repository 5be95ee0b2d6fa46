// A connection's phases before and around the module: accepted -> PROXY
// header -> TLS handshake -> open (on_open), each step's result deciding the
// next (wait re-armed, go on, or dropped without on_close); and the events
// that are not client input (the module's timer, pub/sub messages, upstream
// events), each claimed as the current connection first.
import { CloseReason } from '../module/abi.js';
import { FAULTED, KEEP } from '../module/driver.js';
import type { ModuleInstance } from '../module/instance.js';
import { G, REFUSED_REASONS, T, TLS_HANDSHAKE_BUCKETS } from '../pool/counters.js';
import { ENOTCONN, EPROTO, native } from '../sys.js';
import { moduleConnId } from './close.js';
import { CONN_EVENTS, FRAMES_PER_EVENT, MESSAGES_PER_EVENT, REFUSED_PROXY, UPSTREAM_EVENTS_PER_WAKE } from './events.js';
import { LoopResults } from './results.js';

/** connPhase's out cells (one per worker thread: each has its own copy of this module). */
const phaseOut = new Float64Array(2);

export abstract class LoopPhases extends LoopResults {
  /**
   * The start of an event that is not client input (timer, messages, upstream
   * events): a forced shutdown closes the connection, a connection whose
   * instance cannot be had is finished; otherwise the connection becomes the
   * current one (the imports act on this.fd/this.id) and its instance is
   * returned. Null means the connection was dealt with: nothing more to do.
   */
  protected claim(fd: number, id: number): ModuleInstance | null {
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
  protected timer(fd: number, id: number): void {
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
   * is not reading (queued output above its mark). Frames of direct
   * subscriptions (§19) in the mailbox are staged in order with no module
   * call, up to FRAMES_PER_EVENT entries in all.
   */
  protected message(fd: number, id: number): void {
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
    for (let n = 0, calls = 0; ; n++) {
      const got = inst.hasOnMessage ? native.connMessage(fd, id, inst.buffer, d.inPtr + inLen, d.inCap - inLen, this.lens) : 0;
      if (got === 2) {
        // A direct subscription's frame that could not be written at publish (docs/abi.md §19): it goes
        // out behind this claim's earlier output, in mailbox order, with no module call.
        drv.stageFrame(inst.buffer, d.inPtr + inLen, this.lens[2]);
        if (n + 1 >= FRAMES_PER_EVENT || this.congested(0)) return save();
        continue;
      }
      // None left (or one too big for the room left: dropped, counted): keep the carry-over and state, re-arm.
      if (got !== 1) {
        if (n === 0) {
          drv.holding = false;
          return this.rearm(fd, id);
        }
        return save();
      }
      const l = this.lens;
      const r = drv.message(inst, moduleConnId(id), inLen, l[0], l[1], l[2]);
      if (r !== KEEP || ++calls >= MESSAGES_PER_EVENT || n + 1 >= FRAMES_PER_EVENT) {
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
  protected upstreams(fd: number, id: number): void {
    const inst = this.claim(fd, id);
    if (!inst) return;
    const d = inst.desc;
    let resumed = false;
    this.clientResume = 0;
    try {
      for (let n = 0; n < UPSTREAM_EVENTS_PER_WAKE; n++) {
        const got = native.upstreamNext(fd, id, inst.buffer, d.inPtr, d.inCap, d.statePtr, this.upOut);
        if (got < 0) return this.close(fd, id, CloseReason.SOCKET_ERROR);
        if (got === 0) break;
        // UPSTREAM_LAST: nothing else was flagged, so no further call (what is flagged meanwhile marks it due at the re-arm).
        const last = (got & native.UPSTREAM_LAST) !== 0;
        const event = got & ~native.UPSTREAM_LAST;
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
        if (last) break;
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

  /** Counts a refusal (REFUSED_REASONS index; -1 counts nothing) and warns once a second at most, server-wide. */
  protected refused(reason: number, warnCell: number, message: string): void {
    if (reason >= 0) this.ctr.f64[this.t + T.REFUSED + reason]++;
    this.warnOnce(warnCell, message, { reason: REFUSED_REASONS[reason] });
  }

  /** A new connection (its socket options set at accept): the PROXY header and the TLS handshake where there are ones, then on_open. */
  protected begin(fd: number, id: number): void {
    if (this.ctr.get(G.WANT_EVENTS)) this.hooks.notify('connection', moduleConnId(id), 0);
    if (this.cfg.proxy || this.tls) this.phase(fd, id);
    else this.open(fd, id, false);
  }

  /**
   * An event of a connection the module has not met: its PROXY header step,
   * then its TLS handshake step, then on_open, decided natively in one call
   * (connPhase), which also re-arms a connection that must wait (the frame
   * timeout bounds it, no worker does) and moves a ready one on to open when
   * nothing can fail before on_open (this worker has the instance it needs).
   * Here only what to count: a completed handshake's time, or why it was
   * closed without the module ever seeing it -- a connection that is not the
   * balancer's (no valid header) as refused (reason proxy), a failed handshake
   * with reason 8 under its failure's label.
   */
  protected phase(fd: number, id: number): void {
    if (this.ctr.get(G.FORCED)) return this.drop(fd, id, CloseReason.SHUTDOWN);
    const out = phaseOut;
    const gens = this.gens;
    const cur = gens.current;
    // As open() finds it: one generation known and its instance made already, so on_open follows at once.
    const ready = gens.only() === cur && gens.ready(cur) !== null;
    const rc = native.connPhase(fd, id, this.cfg.epfd, CONN_EVENTS, this.cfg.sendTimeoutMs, ready ? 1 : 0, out);
    if (rc === 0) return;
    const f = this.ctr.f64;
    if (rc > 0) {
      if (out[0] >= 0) {
        const s = out[0] / 1e6;
        f[this.t + T.TLS_HANDSHAKES]++;
        f[this.t + T.TLS_HANDSHAKE_SECONDS] += s;
        let b = 0;
        while (b < TLS_HANDSHAKE_BUCKETS.length && s > TLS_HANDSHAKE_BUCKETS[b]) b++;
        f[this.t + T.TLS_BUCKETS + b]++;
      }
      return this.open(fd, id, ready);
    }
    // Closed before its first byte (a TCP health check): the peer closed, nothing was refused, no TLS failure.
    if (rc === ENOTCONN) return this.drop(fd, id, CloseReason.PEER);
    if (out[1] >= 0) {
      f[this.t + T.TLS_FAILURES + out[1]]++;
      return this.drop(fd, id, CloseReason.TLS);
    }
    if (rc === EPROTO) this.refusedProxy();
    this.drop(fd, id, CloseReason.SOCKET_ERROR);
  }

  protected refusedProxy(): void {
    this.refused(REFUSED_PROXY, G.WARNED_PROXY, 'a connection did not start with a valid PROXY protocol header in time: closing it (--proxy-protocol)');
  }

  /** The module meets a connection: on_open with a zeroed state slot (`opened`: connPhase moved it to open already). */
  protected open(fd: number, id: number, opened: boolean): void {
    const conn = moduleConnId(id);
    const inst = this.openOn(fd, id);
    if (!inst) return this.unavailable(fd, id);
    const d = inst.desc;
    if (d.stateSize) new Uint8Array(inst.buffer, d.statePtr, d.stateSize).fill(0);
    this.fd = fd;
    this.id = id;
    if (!opened) native.connOpened(fd, id);
    this.after(fd, id, this.driver.open(inst, conn));
  }
}
