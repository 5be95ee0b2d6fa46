// A socket-free host for unit tests of protocol modules: it plays the host's
// side of ABI v1 exactly as the worker loop does (carry-over of unconsumed
// input, the state slot, the progress loop, overflow, EOF, faults), but bytes
// go in through feed() and come out as arrays.
import { Action, CloseReason, FLAG_EOF } from '../host/module/abi.js';
import { ModuleFault } from '../host/module/errors.js';
import type { ModuleInstance } from '../host/module/instance.js';
import { compileModule, instantiate, type CompiledModule, type CompileOptions } from '../host/module/load.js';

export interface FeedResult {
  /** Bytes the module sent during this feed (tcpmod.send first, then out regions, in order). */
  output: Uint8Array;
  /** Set when the connection closed during this feed. */
  closed: number | null;
  /** Set when the module faulted (the connection is then closed with reason 6). */
  fault: ModuleFault | null;
}

export class HarnessConn {
  pending = new Uint8Array(0);
  state: Uint8Array;
  closed: number | null = null;
  private out: Uint8Array[] = [];

  constructor(readonly h: Harness, readonly id: number) {
    this.state = new Uint8Array(h.inst.desc.stateSize);
  }

  collect(bytes: Uint8Array): void {
    this.out.push(bytes.slice());
  }

  takeOutput(): Uint8Array {
    const n = this.out.reduce((a, b) => a + b.length, 0);
    const all = new Uint8Array(n);
    let o = 0;
    for (const b of this.out) {
      all.set(b, o);
      o += b.length;
    }
    this.out = [];
    return all;
  }

  /** Delivers bytes (possibly empty) as one received chunk, optionally followed by EOF. */
  feed(bytes: Uint8Array | string, opts: { eof?: boolean } = {}): FeedResult {
    if (this.closed !== null) throw new Error(`connection ${this.id} is closed (reason ${this.closed})`);
    const data = typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes;
    let fault: ModuleFault | null = null;
    let offset = 0;
    // Like a socket read, the host loads at most in_cap bytes at a time.
    do {
      const d = this.h.inst.desc;
      const room = d.inCap - this.pending.length;
      const chunk = data.subarray(offset, offset + room);
      offset += chunk.length;
      const eof = opts.eof === true && offset >= data.length;
      fault = this.step(chunk, eof);
      if (fault || this.closed !== null) break;
    } while (offset < data.length);
    return { output: this.takeOutput(), closed: this.closed, fault };
  }

  private step(chunk: Uint8Array, eof: boolean): ModuleFault | null {
    const h = this.h;
    let inst = h.inst;
    const d = inst.desc;
    let len = this.pending.length + chunk.length;
    let mem = new Uint8Array(inst.buffer);
    mem.set(this.pending, d.inPtr);
    mem.set(chunk, d.inPtr + this.pending.length);
    if (d.stateSize) mem.set(this.state, d.statePtr);
    if (len === 0 && !eof) return null;
    for (;;) {
      let action: number;
      try {
        action = inst.onData(this.id, len, eof ? FLAG_EOF : 0);
      } catch (e) {
        if (!(e instanceof ModuleFault)) throw e;
        h.renew();
        this.closed = CloseReason.FAULT;
        return e;
      }
      mem = new Uint8Array(inst.buffer); // memory may have grown
      if (action === Action.ABORT) return this.close(CloseReason.MODULE, true);
      if (inst.outLen) this.collect(mem.subarray(d.outPtr, d.outPtr + inst.outLen));
      if (action === Action.CLOSE) return this.close(CloseReason.MODULE);
      const rest = len - inst.consumed;
      if (inst.consumed > 0 && rest > 0) {
        mem.copyWithin(d.inPtr, d.inPtr + inst.consumed, d.inPtr + len);
        len = rest;
        continue;
      }
      if (eof) return this.close(CloseReason.PEER);
      if (rest === d.inCap) return this.close(CloseReason.OVERFLOW);
      this.pending = mem.slice(d.inPtr + inst.consumed, d.inPtr + len);
      if (d.stateSize) this.state = mem.slice(d.statePtr, d.statePtr + d.stateSize);
      return null;
    }
  }

  private close(reason: number, dropOutput = false): null {
    if (dropOutput) this.out = [];
    this.closed = reason;
    try {
      this.h.inst.onClose(this.id, reason);
    } catch (e) {
      if (!(e instanceof ModuleFault)) throw e;
      this.h.renew();
    }
    return null;
  }
}

export class Harness {
  inst: ModuleInstance;
  faults = 0;
  logs: { level: number; message: string; conn: number }[] = [];
  private current: HarnessConn | null = null;
  private nextId = 1;

  constructor(readonly compiled: CompiledModule) {
    this.inst = this.make();
  }

  private make(): ModuleInstance {
    return instantiate(this.compiled, {
      send: (conn, mem, ptr, len) => {
        if (!this.current || this.current.id !== conn) return -1;
        this.current.collect(new Uint8Array(mem, ptr, len));
        return 0;
      },
      log: (level, message, conn) => this.logs.push({ level, message, conn }),
    });
  }

  renew(): void {
    this.faults++;
    this.inst = this.make();
  }

  /** Opens a connection: runs tcpmod_on_open (its output is in the result). */
  open(): { conn: HarnessConn; output: Uint8Array; closed: number | null } {
    const conn = new HarnessConn(this, this.nextId++);
    const inst = this.inst;
    this.current = conn;
    try {
      const action = inst.onOpen(conn.id);
      if (action === Action.ABORT) {
        conn.closed = CloseReason.MODULE;
      } else {
        if (inst.outLen) conn.collect(new Uint8Array(inst.buffer, inst.desc.outPtr, inst.outLen));
        if (action === Action.CLOSE) conn.closed = CloseReason.MODULE;
      }
    } catch (e) {
      if (!(e instanceof ModuleFault)) throw e;
      this.renew();
      conn.closed = CloseReason.FAULT;
    }
    const output = conn.takeOutput();
    // Route tcpmod.send to whichever connection is being fed.
    const feed = conn.feed.bind(conn);
    conn.feed = (bytes, opts) => {
      this.current = conn;
      try {
        return feed(bytes, opts);
      } finally {
        this.current = null;
      }
    };
    this.current = null;
    return { conn, output, closed: conn.closed };
  }
}

export async function loadHarness(file: string, opts: CompileOptions = {}): Promise<Harness> {
  return new Harness(await compileModule(file, opts));
}

/** Feeds `input` to a fresh connection split at the given cut points; returns everything it sent back. */
export function runSplit(h: Harness, input: Uint8Array, cuts: number[], opts: { eof?: boolean } = {}): { output: Uint8Array; closed: number | null } {
  const { conn, output: first } = h.open();
  const parts: Uint8Array[] = [first];
  let prev = 0;
  for (const cut of [...cuts, input.length]) {
    if (conn.closed !== null) break;
    const r = conn.feed(input.subarray(prev, cut), { eof: opts.eof === true && cut === input.length });
    parts.push(r.output);
    prev = cut;
  }
  const n = parts.reduce((a, b) => a + b.length, 0);
  const output = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    output.set(p, o);
    o += p.length;
  }
  return { output, closed: conn.closed };
}

/** Every way to cut `input` into two pieces, plus one-byte pieces: the splits every protocol test runs. */
export function splitPlans(length: number): number[][] {
  const plans: number[][] = [[]];
  for (let i = 1; i < length; i++) plans.push([i]);
  plans.push(Array.from({ length: Math.max(0, length - 1) }, (_, i) => i + 1));
  return plans;
}
