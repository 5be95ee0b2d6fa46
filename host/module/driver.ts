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
//
// Output of one event goes out in as few writes as the order allows: when the
// progress loop answers several pipelined requests, each call's out region is
// staged (copied into one reused buffer) and the whole lot is written once, at
// the end, or earlier when a tcpmod.send must follow it (order) or the staged
// bytes pass STAGE_FLUSH (bounded memory). With `deferFinal` the last write of a
// kept event is left to the caller, which sends it together with the save and
// re-arm (one native call instead of two).
import { Action, CloseReason, FLAG_EOF } from './abi.js';
import { ModuleFault } from './errors.js';
import type { ModuleInstance } from './instance.js';

/** data()/open() result: the connection stays open; its unconsumed input is [restPtr, restPtr + restLen). */
export const KEEP = -1;
/** data()/open() result: the module faulted (`fault`); close with reason 6 without calling on_close, and renew the instance. */
export const FAULTED = -2;
/** Staged output past this many bytes is written before the next call (a bound on the buffer, not a tuning knob). */
export const STAGE_FLUSH = 64 * 1024;

/** A native write of a stored value to connection (fd, id): as native.kvSendStored, queued bytes after it at out[0]. */
export type StoredWrite = (fd: number, id: number, out: Int32Array) => number;
/** Transport.sendStored / kvSendStored: not written here, the caller's own path must send it. */
export const KV_SEND_FALLBACK = -100;

export interface Transport {
  /** Sends len bytes at ptr of mem, in full and in order; returns -1, or the close reason when the connection cannot take them. */
  send(mem: ArrayBuffer, ptr: number, len: number): number;
  /**
   * kv_send's write straight from the store (optional): calls write(fd, id, queuedOut) for the connection
   * being handled and returns its result (value bytes sent, or a kv result code); a failed write (-8) passes
   * its close reason to fail(). KV_SEND_FALLBACK when the transport cannot (blocking mode): nothing was written.
   */
  sendStored?(write: StoredWrite, fail: (reason: number) => void): number;
  /** A call into the module starts (the handler clock runs) / ends. */
  enter(conn: number): void;
  leave(): void;
  /**
   * True while the connection's queued output, with `staged` bytes of replies
   * not written yet, is above its high-water mark: call the module no more now.
   */
  congested(staged: number): boolean;
  /**
   * When true, data() leaves the last output of a KEEP result unsent, in
   * (outMem, outPtr, outLen): the caller must send it before the connection's
   * next event (the worker sends it in the same native call that saves and re-arms).
   */
  readonly deferFinal: boolean;
}

export class AbiDriver {
  /** After KEEP: where the unconsumed input lies in module memory, and how long it is. */
  restPtr = 0;
  restLen = 0;
  /** After a close reason: the module closed after its reply (do not reset it). */
  linger = false;
  /** After FAULTED: what the module did. */
  fault: ModuleFault | null = null;
  /** After KEEP with deferFinal: output the caller still has to send (outLen 0: none). */
  outMem: ArrayBuffer = new ArrayBuffer(0);
  outPtr = 0;
  outLen = 0;
  /** Writes made through the transport since the last data()/open()/timer() began (what a socket would see). */
  writes = 0;
  /** A tcpmod.send that failed during the current call: the close reason, or -1. */
  private failure = -1;
  /** Out regions of earlier calls of this event's progress loop, not written yet: stage[0, staged). */
  private stage = new Uint8Array(4096);
  private staged = 0;

  /**
   * Set by the worker around one claim's series of on_message calls: a call that CONTINUEs has its
   * out region staged instead of written, so the messages of one claim leave in one write (a
   * subscriber then costs one send per claim, not one per message). release() writes what is
   * staged and ends it; a tcpmod.send, a CLOSE or an ABORT writes it first, as in data().
   */
  holding = false;

  constructor(private readonly transport: Transport) {}

  /** Ends holding: writes what it staged. -1, or the close reason. */
  release(): number {
    this.holding = false;
    return this.flush();
  }

  /** The instance's tcpmod.send hook: queue bytes ahead of the out region (sent at once here). 0 or -1. */
  moduleSend(mem: ArrayBuffer, ptr: number, len: number): number {
    if (this.failure >= 0) return -1;
    // Earlier replies of this event go first.
    let r = this.flush();
    if (r < 0) r = this.write(mem, ptr, len);
    if (r < 0) return 0;
    this.failure = r;
    return -1;
  }

  /**
   * The instance's kv_send hook (docs/abi.md §17.1): earlier replies of this event first, then the
   * transport writes the stored value. The value bytes sent, a kv result code, or KV_SEND_FALLBACK.
   */
  moduleSendStored(write: StoredWrite): number {
    if (!this.transport.sendStored) return KV_SEND_FALLBACK;
    if (this.failure >= 0) return -8;
    const r = this.flush();
    if (r >= 0) {
      this.failure = r;
      return -8;
    }
    const rc = this.transport.sendStored(write, (reason) => {
      this.failure = reason;
    });
    if (rc >= 0) this.writes++;
    return rc;
  }

  /** One write through the transport: -1, or the close reason. */
  private write(mem: ArrayBuffer, ptr: number, len: number): number {
    this.writes++;
    return this.transport.send(mem, ptr, len);
  }

  /** Writes the staged output: -1, or the close reason. */
  private flush(): number {
    const n = this.staged;
    if (n === 0) return -1;
    this.staged = 0;
    return this.write(this.stage.buffer, this.stage.byteOffset, n);
  }

  /** While holding: a direct subscription's frame (docs/abi.md §19), staged behind the claim's earlier output, no module call. */
  stageFrame(mem: ArrayBuffer, ptr: number, len: number): void {
    this.stageOut(mem, ptr, len);
  }

  /** Appends an out region to the staged output (the buffer grows; it is reused across events). */
  private stageOut(mem: ArrayBuffer, ptr: number, len: number): void {
    const need = this.staged + len;
    if (need > this.stage.length) {
      let size = this.stage.length * 2;
      while (size < need) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.stage.subarray(0, this.staged));
      this.stage = next;
    }
    this.stage.set(new Uint8Array(mem, ptr, len), this.staged);
    this.staged = need;
  }

  /**
   * The end of an event's output: what is staged and `len` bytes at `ptr`,
   * in one write; with `defer` (a KEEP result whose transport defers) the
   * write is left to the caller. -1, or the close reason.
   */
  private finish(mem: ArrayBuffer, ptr: number, len: number, defer: boolean): number {
    if (this.staged > 0) {
      if (len > 0) this.stageOut(mem, ptr, len);
      if (!defer) return this.flush();
      mem = this.stage.buffer;
      ptr = this.stage.byteOffset;
      len = this.staged;
      this.staged = 0;
    }
    if (len === 0) return -1;
    if (!defer) return this.write(mem, ptr, len);
    this.writes++;
    this.outMem = mem;
    this.outPtr = ptr;
    this.outLen = len;
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
    this.outLen = 0;
    this.writes = 0;
    this.staged = 0;
    for (;;) {
      let action: number;
      this.transport.enter(conn);
      try {
        action = inst.onData(conn, len, eof ? FLAG_EOF : 0);
      } catch (e) {
        this.transport.leave();
        // Replies of earlier calls of this event were given: they go out before the fault closes it.
        this.flush();
        return this.faulted(e);
      }
      this.transport.leave();
      const settled = this.settle(inst, action, eof);
      if (settled !== KEEP) return settled;
      const out = inst.outLen;
      const consumed = inst.consumed;
      const rest = len - consumed;
      if (consumed > 0 && rest > 0 && !this.transport.congested(this.staged + out)) {
        // Progress with input left: call again before waiting for more, its reply staged behind this one.
        if (out > 0) {
          this.stageOut(inst.buffer, d.outPtr, out);
          if (this.staged >= STAGE_FLUSH) {
            const r = this.flush();
            if (r >= 0) return r;
          }
        }
        new Uint8Array(inst.buffer).copyWithin(d.inPtr, d.inPtr + consumed, d.inPtr + len);
        len = rest;
        continue;
      }
      // (A client that does not read its replies gets no more of them now: the
      // rest waits as carry-over until its queued output drains.)
      // The peer finished and the module wants nothing more: the peer closed it.
      // A module that can resume held input (upstream_resume, docs/abi.md §16) may hold a full region: not an overflow.
      // A module that half-closes (docs/abi.md §20) keeps the connection after its EOF call: its input ended.
      const closing = eof && !inst.halfCloses ? CloseReason.PEER : rest === d.inCap && !inst.holdsInput && !eof ? CloseReason.OVERFLOW : KEEP;
      const r = this.finish(inst.buffer, d.outPtr, out, closing === KEEP && this.transport.deferFinal);
      if (r >= 0) return r;
      if (closing !== KEEP) return closing;
      this.restPtr = d.inPtr + consumed;
      this.restLen = rest;
      return KEEP;
    }
  }

  /** on_open for a new connection (state slot zeroed by the caller). KEEP (nothing pending), FAULTED or a close reason. */
  open(inst: ModuleInstance, conn: number): number {
    this.linger = false;
    this.outLen = 0;
    this.writes = 0;
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
    return this.settleAll(inst, action);
  }

  /**
   * on_timer with the carry-over (`len` bytes) at in_ptr: one call, settled as
   * on_data's. Returns KEEP (nothing new arrived, so no overflow), FAULTED or a
   * close reason.
   */
  timer(inst: ModuleInstance, conn: number, len: number): number {
    return this.single(inst, conn, len, () => inst.onTimer(conn, len));
  }

  /**
   * on_message (docs/abi.md §15): the carry-over (`len` bytes) at in_ptr, the
   * topic, pattern and message after it; settled as on_timer's.
   */
  message(inst: ModuleInstance, conn: number, len: number, topicLen: number, patternLen: number, msgLen: number): number {
    return this.single(inst, conn, len, () => inst.onMessage(conn, len, topicLen, patternLen, msgLen));
  }

  /**
   * on_upstream with the upstream's bytes (`len`) at in_ptr: one call, settled
   * as on_timer's (its out region goes to the client). KEEP with restPtr/restLen
   * the upstream's unconsumed bytes, FAULTED or a close reason.
   */
  upstream(inst: ModuleInstance, conn: number, up: number, event: number, len: number): number {
    return this.single(inst, conn, len, () => inst.onUpstream(conn, up, event, len));
  }

  /** One call (on_timer, on_message, on_upstream) with `len` input bytes at in_ptr, settled at once; restPtr/restLen after KEEP. */
  private single(inst: ModuleInstance, conn: number, len: number, call: () => number): number {
    this.linger = false;
    this.outLen = 0;
    this.writes = 0;
    let action: number;
    this.transport.enter(conn);
    try {
      action = call();
    } catch (e) {
      this.transport.leave();
      return this.faulted(e);
    }
    this.transport.leave();
    const r = this.settleAll(inst, action);
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
   * failed during the call (what is staged is dropped: the connection is
   * going), ABORT (this call's out region is dropped; what earlier calls of the
   * event answered and bytes given to tcpmod.send go out), CLOSE (the out region
   * after everything staged, then the close). KEEP for CONTINUE: the out region
   * is then the caller's to write or stage.
   */
  private settle(inst: ModuleInstance, action: number, eof: boolean): number {
    if (this.failure >= 0) {
      const r = this.failure;
      this.failure = -1;
      this.staged = 0;
      return r;
    }
    if (action === Action.ABORT) {
      this.flush();
      return CloseReason.MODULE;
    }
    if (action === Action.CLOSE) {
      const r = this.finish(inst.buffer, inst.desc.outPtr, inst.outLen, false);
      if (r >= 0) return r;
      this.linger = true;
      // A module that answers EOF with CLOSE did not close the connection: the peer did.
      return eof ? CloseReason.PEER : CloseReason.MODULE;
    }
    return KEEP;
  }

  /** settle() for a single call (on_open, on_timer): CONTINUE writes its out region at once. */
  private settleAll(inst: ModuleInstance, action: number): number {
    const r = this.settle(inst, action, false);
    if (r !== KEEP) return r;
    if (this.holding) {
      if (inst.outLen > 0) this.stageOut(inst.buffer, inst.desc.outPtr, inst.outLen);
      const w = this.staged > STAGE_FLUSH ? this.flush() : -1;
      return w >= 0 ? w : KEEP;
    }
    const w = this.finish(inst.buffer, inst.desc.outPtr, inst.outLen, false);
    return w >= 0 ? w : KEEP;
  }

  /** A ModuleFault is the module's doing; anything else is a host bug and propagates. */
  private faulted(e: unknown): number {
    this.failure = -1;
    if (!(e instanceof ModuleFault)) throw e;
    this.fault = e;
    return FAULTED;
  }
}
