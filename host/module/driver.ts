// The one ABI driver: the host's side of ABI v1 for one connection, without
// sockets. The worker loop and tcpmod/testing's harness both run every
// callback through it, so carry-over, the progress loop, the order of output
// (tcpmod.send bytes, then the out region), ABORT, CLOSE, EOF, overflow and
// faults have a single implementation.
//
// The caller owns the bytes around a call: it places the connection's input at
// in_ptr and its state slot at state_ptr before data()/timer(), and after KEEP
// it saves `restLen` bytes at `restPtr` and the state slot. Output goes through
// the Transport, which a socket (the worker) or an array (the harness) backs.
import { Action, CloseReason, FLAG_EOF } from './abi.js';
import { ModuleFault } from './errors.js';
import type { ModuleInstance } from './instance.js';

/** data()/open() result: the connection stays open; its unconsumed input is [restPtr, restPtr + restLen). */
export const KEEP = -1;
/** data()/open() result: the module faulted (`fault`); close with reason 6 without calling on_close, and renew the instance. */
export const FAULTED = -2;

export interface Transport {
  /** Sends len bytes at ptr of mem, in full and in order; returns -1, or the close reason when the connection cannot take them. */
  send(mem: ArrayBuffer, ptr: number, len: number): number;
  /** A call into the module starts (the handler clock runs) / ends. */
  enter(conn: number): void;
  leave(): void;
  /** True while the connection's queued output is above its high-water mark: call the module no more now. */
  congested(): boolean;
}

export class AbiDriver {
  /** After KEEP: where the unconsumed input lies in module memory, and how long it is. */
  restPtr = 0;
  restLen = 0;
  /** After a close reason: the module closed after its reply (do not reset it). */
  linger = false;
  /** After FAULTED: what the module did. */
  fault: ModuleFault | null = null;
  /** A tcpmod.send that failed during the current call: the close reason, or -1. */
  private failure = -1;

  constructor(private readonly transport: Transport) {}

  /** The instance's tcpmod.send hook: queue bytes ahead of the out region (sent at once here). 0 or -1. */
  moduleSend(mem: ArrayBuffer, ptr: number, len: number): number {
    if (this.failure >= 0) return -1;
    const r = this.transport.send(mem, ptr, len);
    if (r < 0) return 0;
    this.failure = r;
    return -1;
  }

  /**
   * on_data with `len` input bytes already at in_ptr: calls again while the
   * module makes progress and input remains. Returns KEEP, FAULTED, or the
   * reason to close with (the caller then runs close()).
   */
  data(inst: ModuleInstance, conn: number, len: number, eof: boolean): number {
    const d = inst.desc;
    this.linger = false;
    for (;;) {
      let action: number;
      this.transport.enter(conn);
      try {
        action = inst.onData(conn, len, eof ? FLAG_EOF : 0);
      } catch (e) {
        this.transport.leave();
        return this.faulted(e);
      }
      this.transport.leave();
      const r = this.settle(inst, action, eof);
      if (r !== KEEP) return r;
      const consumed = inst.consumed;
      const rest = len - consumed;
      if (consumed > 0 && rest > 0 && !this.transport.congested()) {
        new Uint8Array(inst.buffer).copyWithin(d.inPtr, d.inPtr + consumed, d.inPtr + len);
        len = rest;
        continue; // progress with input left: call again before waiting for more
      }
      // (A client that does not read its replies gets no more of them now: the
      // rest waits as carry-over until its queued output drains.)
      // The peer finished and the module wants nothing more: the peer closed it.
      if (eof) return CloseReason.PEER;
      if (rest === d.inCap) return CloseReason.OVERFLOW;
      this.restPtr = d.inPtr + consumed;
      this.restLen = rest;
      return KEEP;
    }
  }

  /** on_open for a new connection (state slot zeroed by the caller). KEEP (nothing pending), FAULTED or a close reason. */
  open(inst: ModuleInstance, conn: number): number {
    this.linger = false;
    this.restPtr = inst.desc.inPtr;
    this.restLen = 0;
    if (!inst.hasOnOpen) return KEEP;
    let action: number;
    this.transport.enter(conn);
    try {
      action = inst.onOpen(conn);
    } catch (e) {
      this.transport.leave();
      return this.faulted(e);
    }
    this.transport.leave();
    return this.settle(inst, action, false);
  }

  /**
   * on_timer with the carry-over (`len` bytes) at in_ptr: one call, settled as
   * on_data's. Returns KEEP (nothing new arrived, so no overflow), FAULTED or a
   * close reason.
   */
  timer(inst: ModuleInstance, conn: number, len: number): number {
    this.linger = false;
    let action: number;
    this.transport.enter(conn);
    try {
      action = inst.onTimer(conn, len);
    } catch (e) {
      this.transport.leave();
      return this.faulted(e);
    }
    this.transport.leave();
    const r = this.settle(inst, action, false);
    if (r !== KEEP) return r;
    this.restPtr = inst.desc.inPtr + inst.consumed;
    this.restLen = len - inst.consumed;
    return KEEP;
  }

  /** on_close; returns the fault when the module faulted in it (the caller renews the instance). */
  close(inst: ModuleInstance, conn: number, reason: number): ModuleFault | null {
    this.failure = -1;
    this.transport.enter(conn);
    try {
      inst.onClose(conn, reason);
    } catch (e) {
      this.transport.leave();
      return this.faulted(e) === FAULTED ? this.fault : null;
    }
    this.transport.leave();
    return null;
  }

  /**
   * What a callback's result leads to, the same for every callback: a send that
   * failed during the call, ABORT (the out region is dropped; bytes already
   * given to tcpmod.send are gone out), the out region, CLOSE.
   */
  private settle(inst: ModuleInstance, action: number, eof: boolean): number {
    if (this.failure >= 0) {
      const r = this.failure;
      this.failure = -1;
      return r;
    }
    if (action === Action.ABORT) return CloseReason.MODULE;
    if (inst.outLen > 0) {
      const r = this.transport.send(inst.buffer, inst.desc.outPtr, inst.outLen);
      if (r >= 0) return r;
    }
    if (action === Action.CLOSE) {
      this.linger = true;
      // A module that answers EOF with CLOSE did not close the connection: the peer did.
      return eof ? CloseReason.PEER : CloseReason.MODULE;
    }
    return KEEP;
  }

  /** A ModuleFault is the module's doing; anything else is a host bug and propagates. */
  private faulted(e: unknown): number {
    this.failure = -1;
    if (!(e instanceof ModuleFault)) throw e;
    this.fault = e;
    return FAULTED;
  }
}
