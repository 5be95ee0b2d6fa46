// A socket-free host for unit tests of protocol modules. It runs every
// callback through the same ABI driver as the worker loop (module/driver.ts),
// so carry-over, the state slot, the progress loop, output order, ABORT,
// overflow, EOF and faults behave exactly as over a socket; bytes go in through
// feed() and come out as arrays.
import { CloseReason } from './module/abi.js';
import { AbiDriver, FAULTED, KEEP, type Transport } from './module/driver.js';
import type { ModuleFault } from './module/errors.js';
import type { ModuleInstance } from './module/instance.js';
import { compileModule, instantiate, type CompiledModule, type CompileOptions } from './module/load.js';

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
  /** When the module's timer fires, on the harness clock (null: not armed). */
  timerAt: number | null = null;
  private out: Uint8Array[] = [];

  constructor(readonly h: Harness, readonly id: number) {
    this.state = new Uint8Array(h.inst.desc.stateSize);
  }

  collect(bytes: Uint8Array): void {
    this.out.push(bytes.slice());
  }

  takeOutput(): Uint8Array {
    const all = concat(this.out);
    this.out = [];
    return all;
  }

  /** Delivers bytes (possibly empty) as received input, optionally followed by EOF. */
  feed(bytes: Uint8Array | string, opts: { eof?: boolean } = {}): FeedResult {
    if (this.closed !== null) throw new Error(`connection ${this.id} is closed (reason ${this.closed})`);
    const data = typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes;
    let fault: ModuleFault | null = null;
    let offset = 0;
    this.h.handling(this);
    try {
      // Like a socket read, the host loads at most in_cap bytes at a time.
      do {
        const room = this.h.inst.desc.inCap - this.pending.length;
        const chunk = data.subarray(offset, offset + room);
        offset += chunk.length;
        const eof = opts.eof === true && offset >= data.length;
        fault = this.step(chunk, eof);
        if (fault || this.closed !== null) break;
      } while (offset < data.length);
    } finally {
      this.h.handling(null);
    }
    return { output: this.takeOutput(), closed: this.closed, fault };
  }

  private step(chunk: Uint8Array, eof: boolean): ModuleFault | null {
    const len = this.load(chunk);
    if (len === 0 && !eof) return null;
    return this.settle(this.h.driver.data(this.h.inst, this.id, len, eof));
  }

  /** Places the carry-over, then `chunk`, at in_ptr and the state slot at state_ptr; returns the input length. */
  private load(chunk: Uint8Array): number {
    const d = this.h.inst.desc;
    const mem = new Uint8Array(this.h.inst.buffer);
    mem.set(this.pending, d.inPtr);
    mem.set(chunk, d.inPtr + this.pending.length);
    if (d.stateSize) mem.set(this.state, d.statePtr);
    return this.pending.length + chunk.length;
  }

  /** The timer fired (Harness.clock.advance calls this): on_timer with the carry-over. */
  fireTimer(): FeedResult {
    this.timerAt = null;
    this.h.handling(this);
    let fault: ModuleFault | null;
    try {
      fault = this.settle(this.h.driver.timer(this.h.inst, this.id, this.load(new Uint8Array(0))));
    } finally {
      this.h.handling(null);
    }
    return { output: this.takeOutput(), closed: this.closed, fault };
  }

  /** What the driver's result leads to, as the worker loop does it. */
  settle(r: number): ModuleFault | null {
    const h = this.h;
    const inst = h.inst;
    const d = inst.desc;
    if (r === KEEP) {
      const mem = new Uint8Array(inst.buffer); // memory may have grown
      this.pending = mem.slice(h.driver.restPtr, h.driver.restPtr + h.driver.restLen);
      if (d.stateSize) this.state = mem.slice(d.statePtr, d.statePtr + d.stateSize);
      return null;
    }
    if (r === FAULTED) {
      h.renew();
      this.closed = CloseReason.FAULT;
      return h.driver.fault;
    }
    const fault = h.driver.close(inst, this.id, r);
    if (fault) h.renew();
    this.closed = fault ? CloseReason.FAULT : r;
    return null;
  }
}

/** What a timer firing produced, for the test to look at. */
export interface TimerFiring extends FeedResult {
  conn: HarnessConn;
  /** The harness clock when it fired. */
  at: number;
}

export class Harness implements Transport {
  inst: ModuleInstance;
  faults = 0;
  logs: { level: number; message: string; conn: number }[] = [];
  readonly driver = new AbiDriver(this);
  /** What tcpmod.peer_addr answers for every connection of the harness. */
  peerAddress = '127.0.0.1:40000';
  /** What tcpmod.draining answers: set it to see how the module behaves in a graceful stop. */
  draining = false;
  /**
   * The module's clock: tcpmod.now_ms reads it and module timers run on it. It
   * is the wall clock (Date.now) plus whatever advance(ms) added: advance moves
   * it forward, firing every timer that comes due on the way, in time order (a
   * timer armed by on_timer fires in the same advance if it is due).
   */
  readonly clock = {
    skew: 0,
    /** The wall clock as advance() began: time stands still while it fires timers. */
    frozen: null as number | null,
    get now(): number {
      return (this.frozen ?? Date.now()) + this.skew;
    },
    advance: (ms: number): TimerFiring[] => this.advance(ms),
  };
  private readonly conns = new Set<HarnessConn>();
  private current: HarnessConn | null = null;
  private nextId = 1;

  constructor(readonly compiled: CompiledModule) {
    this.inst = this.make();
  }

  private make(): ModuleInstance {
    return instantiate(this.compiled, {
      send: (_conn, mem, ptr, len) => this.driver.moduleSend(mem, ptr, len),
      log: (level, message, conn) => this.logs.push({ level, message, conn }),
      now: () => this.clock.now,
      setTimer: (ms) => {
        if (!this.current || !Number.isInteger(ms) || ms < 0 || ms > 86_400_000) return -2;
        this.current.timerAt = ms === 0 ? null : this.clock.now + ms;
        return 0;
      },
      draining: () => (this.draining ? 1 : 0),
      // tcpmod.want is a hint the harness does not need: a module must give the same answers however input is cut.
      want: () => 0,
      peerAddr: () => this.peerAddress,
    });
  }

  private advance(ms: number): TimerFiring[] {
    const clock = this.clock;
    clock.frozen = Date.now();
    try {
      return this.fireUntil(clock.now + ms);
    } finally {
      clock.skew += clock.frozen - Date.now(); // the wall clock goes on from where advance left it
      clock.frozen = null;
    }
  }

  private fireUntil(until: number): TimerFiring[] {
    const clock = this.clock;
    const fired: TimerFiring[] = [];
    for (;;) {
      let next: HarnessConn | null = null;
      for (const c of this.conns) {
        if (c.closed !== null) this.conns.delete(c);
        else if (c.timerAt !== null && c.timerAt <= until && (next === null || c.timerAt < next.timerAt!)) next = c;
      }
      if (next === null) break;
      clock.skew += Math.max(0, next.timerAt! - clock.now);
      fired.push({ conn: next, at: clock.now, ...next.fireTimer() });
    }
    clock.skew += Math.max(0, until - clock.now);
    return fired;
  }

  /** The connection whose callbacks run now (output goes to it). */
  handling(conn: HarnessConn | null): void {
    this.current = conn;
  }

  // Transport: output is collected on the connection being handled; no clock to run.
  send(mem: ArrayBuffer, ptr: number, len: number): number {
    this.current?.collect(new Uint8Array(mem, ptr, len));
    return -1;
  }
  enter(): void {}
  leave(): void {}
  congested(): boolean {
    return false;
  }

  renew(): void {
    this.faults++;
    this.inst = this.make();
  }

  /** Opens a connection: runs tcpmod_on_open with a zeroed state slot (its output is in the result). */
  open(): { conn: HarnessConn; output: Uint8Array; closed: number | null } {
    const conn = new HarnessConn(this, this.nextId++);
    this.conns.add(conn);
    const inst = this.inst;
    const d = inst.desc;
    if (d.stateSize) new Uint8Array(inst.buffer, d.statePtr, d.stateSize).fill(0);
    this.current = conn;
    try {
      conn.settle(this.driver.open(inst, conn.id));
    } finally {
      this.current = null;
    }
    return { conn, output: conn.takeOutput(), closed: conn.closed };
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
  return { output: concat(parts), closed: conn.closed };
}

/** Every way to cut `input` into two pieces, plus one-byte pieces: the splits every protocol test runs. */
export function splitPlans(length: number): number[][] {
  const plans: number[][] = [[]];
  for (let i = 1; i < length; i++) plans.push([i]);
  plans.push(Array.from({ length: Math.max(0, length - 1) }, (_, i) => i + 1));
  return plans;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((a, b) => a + b.length, 0));
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  return all;
}
