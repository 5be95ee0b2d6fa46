// The hot path: wait → recv → call the module → send → re-arm. One event per
// wait (maxevents = 1); every connection is EPOLLONESHOT, so between its wait
// and its re-arm this worker alone owns the connection.
import { Action, CloseReason, FLAG_EOF } from '../module/abi.js';
import { ModuleFault } from '../module/errors.js';
import type { ModuleInstance } from '../module/instance.js';
import { Counters, G, S, T } from '../pool/counters.js';
import { C, ETIMEDOUT, native } from '../sys.js';
import { TAG_LISTEN, TAG_WAKE, type WorkerConfig } from './config.js';

export const CONN_EVENTS = C.EPOLLIN | C.EPOLLET | C.EPOLLONESHOT;
const LINGER_DRAIN_BYTES = 1 << 20;

export interface LoopHooks {
  /** Makes a fresh instance (after a fault). */
  renew(fault: ModuleFault, conn: number): ModuleInstance;
  accept(): void;
  /** Asks the main thread for one more worker (every worker is busy). */
  grow(): void;
  /** Posts connection events when the main thread listens for them. */
  notify(type: 'connection' | 'close', conn: number, reason: number): void;
}

export class EventLoop {
  fd = -1;
  sendFailure = 0;
  private readonly ev = new Int32Array(3);
  private readonly received = new Int32Array(1);
  private readonly t: number;
  private readonly seqCell: number;
  private readonly sendCell: number;

  constructor(public inst: ModuleInstance, private readonly cfg: WorkerConfig, readonly ctr: Counters, private readonly hooks: LoopHooks) {
    this.t = ctr.totalsBase(cfg.slot);
    this.seqCell = ctr.slotCell(cfg.slot, S.CALL_SEQ);
    this.sendCell = ctr.slotCell(cfg.slot, S.SEND_SEQ);
  }

  /** Runs until told to stop (returns false) or retired for idleness (returns true). */
  run(): boolean {
    const { epfd, idleTimeoutMs } = this.cfg;
    const ctr = this.ctr;
    for (;;) {
      const n = native.epollWait(epfd, idleTimeoutMs, this.ev);
      if (n === 0) {
        if (ctr.get(G.STOP)) return false;
        if (this.retire()) return true;
        continue;
      }
      if (n < 0) throw new Error(`epoll_wait failed: ${n}`);
      const tag = this.ev[1];
      if (tag === TAG_WAKE) {
        if (ctr.get(G.STOP)) return false;
        continue;
      }
      const busy = ctr.add(G.BUSY, 1);
      if (busy >= ctr.get(G.WORKERS)) this.hooks.grow();
      ctr.f64[this.t + T.EVENTS]++;
      try {
        if (tag === TAG_LISTEN) this.hooks.accept();
        else this.handle(this.ev[0], tag);
      } finally {
        ctr.add(G.BUSY, -1); // exact even when a host error ends this worker
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

  handle(fd: number, conn: number): void {
    // Past the drain timeout every connection the server still has is shut down.
    if (this.ctr.get(G.FORCED)) return this.close(fd, conn, CloseReason.SHUTDOWN);
    const d = this.inst.desc;
    this.fd = fd;
    let len = native.connLoad(fd, this.inst.buffer, d.inPtr, d.inCap, d.statePtr, this.received);
    if (len < 0) return this.close(fd, conn, CloseReason.SOCKET_ERROR);
    this.ctr.f64[this.t + T.BYTES_IN] += this.received[0];
    const eof = (len & native.LOAD_EOF) !== 0;
    len &= ~native.LOAD_EOF;
    if (len === 0 && !eof) return this.rearm(fd, conn);
    for (;;) {
      let action: number;
      try {
        this.enterCall(fd, conn);
        action = this.inst.onData(conn, len, eof ? FLAG_EOF : 0);
      } catch (e) {
        this.leaveCall();
        return this.fault(e, fd, conn);
      }
      this.leaveCall();
      if (!this.settle(fd, conn, action)) return;
      const inst = this.inst;
      const consumed = inst.consumed;
      const rest = len - consumed;
      if (consumed > 0 && rest > 0) {
        new Uint8Array(inst.buffer).copyWithin(d.inPtr, d.inPtr + consumed, d.inPtr + len);
        len = rest;
        continue; // progress with input left: call again before re-arming
      }
      if (eof) return this.close(fd, conn, CloseReason.PEER);
      if (rest === d.inCap) return this.close(fd, conn, CloseReason.OVERFLOW);
      native.connSave(fd, inst.buffer, d.inPtr + consumed, rest, d.statePtr);
      return this.rearm(fd, conn);
    }
  }

  /** Runs on_open for a newly accepted connection; returns false when the connection is gone. */
  open(fd: number, conn: number): boolean {
    const inst = this.inst;
    if (!inst.hasOnOpen) return true;
    this.fd = fd;
    let action: number;
    try {
      this.enterCall(fd, conn);
      action = inst.onOpen(conn);
    } catch (e) {
      this.leaveCall();
      this.fault(e, fd, conn);
      return false;
    }
    this.leaveCall();
    return this.settle(fd, conn, action);
  }

  /**
   * What a callback's result leads to, the same after on_open and on_data: a
   * send that failed during the call (tcpmod.send), ABORT, the out region, CLOSE.
   * Returns false when the connection is gone.
   */
  private settle(fd: number, conn: number, action: number): boolean {
    if (this.sendFailure) return this.close(fd, conn, this.failureReason()), false;
    if (action === Action.ABORT) return this.close(fd, conn, CloseReason.MODULE), false;
    const inst = this.inst;
    if (inst.outLen > 0 && !this.send(fd, inst.buffer, inst.desc.outPtr, inst.outLen)) return this.close(fd, conn, this.failureReason()), false;
    if (action === Action.CLOSE) return this.close(fd, conn, CloseReason.MODULE, true), false;
    return true;
  }

  /** Sends a region in full (blocking up to the send timeout); false records why it failed. */
  send(fd: number, mem: ArrayBuffer, ptr: number, len: number): boolean {
    const i32 = this.ctr.i32;
    i32[this.sendCell]++; // odd while sending: the pool tells a blocked sender from a busy one
    const rc = native.send(fd, mem, ptr, len, this.cfg.sendTimeoutMs);
    i32[this.sendCell]++;
    if (rc < 0) {
      this.sendFailure = rc;
      return false;
    }
    this.ctr.f64[this.t + T.BYTES_OUT] += len;
    return true;
  }

  private failureReason(): number {
    const rc = this.sendFailure;
    this.sendFailure = 0;
    if (rc === ETIMEDOUT) {
      this.ctr.f64[this.t + T.SEND_TIMEOUTS]++;
      return CloseReason.SEND_TIMEOUT;
    }
    return this.ctr.get(G.FORCED) ? CloseReason.SHUTDOWN : CloseReason.SOCKET_ERROR;
  }

  rearm(fd: number, conn: number): void {
    if (native.epollCtl(this.cfg.epfd, C.EPOLL_CTL_MOD, fd, CONN_EVENTS, conn) < 0) this.close(fd, conn, CloseReason.SOCKET_ERROR);
  }

  /** Marks the start of a module callback for the watchdog (odd sequence number). */
  enterCall(fd: number, conn: number): void {
    const i = this.ctr.i32;
    i[this.seqCell + (S.FD - S.CALL_SEQ)] = fd;
    i[this.seqCell + (S.CONN - S.CALL_SEQ)] = conn;
    Atomics.add(i, this.seqCell, 1);
  }

  leaveCall(): void {
    const i = this.ctr.i32;
    if (i[this.seqCell] & 1) Atomics.add(i, this.seqCell, 1);
  }

  /** Closes a connection; `linger` (the module closed after its reply) keeps the reply from being reset. */
  close(fd: number, conn: number, reason: number, linger = false): void {
    if (reason === CloseReason.PEER || reason === CloseReason.SOCKET_ERROR) {
      if (this.ctr.get(G.FORCED)) reason = CloseReason.SHUTDOWN;
    }
    try {
      this.enterCall(fd, conn);
      this.inst.onClose(conn, reason);
    } catch (e) {
      this.leaveCall();
      return this.fault(e, fd, conn);
    }
    this.leaveCall();
    this.forget(fd, conn, reason, linger);
  }

  /** The module faulted on this connection: close it (reason 6, no on_close) and renew the instance. */
  fault(e: unknown, fd: number, conn: number): void {
    if (!(e instanceof ModuleFault)) {
      // A host bug, not the module's: still never leave the connection open and unarmed.
      this.forget(fd, conn, CloseReason.FAULT);
      throw e;
    }
    this.sendFailure = 0;
    this.forget(fd, conn, CloseReason.FAULT);
    this.inst = this.hooks.renew(e, conn);
  }

  private forget(fd: number, conn: number, reason: number, linger = false): void {
    native.connClose(fd, linger ? LINGER_DRAIN_BYTES : 0);
    this.ctr.add(G.CONNECTIONS, -1);
    this.ctr.f64[this.t + T.CLOSED + reason]++;
    if (this.ctr.get(G.WANT_EVENTS)) this.hooks.notify('close', conn, reason);
  }
}
