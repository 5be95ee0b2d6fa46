// One live instance of a protocol module: its memory, its IoDesc, the host
// imports it calls, and typed entry points for the ABI callbacks. Every call
// that goes wrong inside the module surfaces as a ModuleFault, and the instance
// is then finished (disposed: it refuses further calls); the caller makes a
// fresh one. Knows nothing of sockets: output goes through the `send` hook the
// caller provides, log lines (tcpmod.log, WASI fds 1 and 2) through `log`.
import { native } from '../sys.js';
import {
  Action, IO_MAX, IO_MIN, IODESC_SIZE, PAGE, RESULT_SIZE, STATE_MAX,
} from './abi.js';
import type { StoredWrite } from './driver.js';
import { ModuleFault } from './errors.js';
import { kvV12Imports, type KvBackendV12 } from './kv-imports.js';
import type { CompiledModule } from './load.js';
import { LogLimit } from './log-limit.js';
import { wasiImports } from './wasi.js';

export interface IoDesc {
  inPtr: number; inCap: number; outPtr: number; outCap: number;
  statePtr: number; stateSize: number; resPtr: number; flags: number;
}

export interface InstanceHooks {
  /** Sends len bytes at ptr of mem for `conn` (the connection being handled); 0 or negative. */
  send(conn: number, mem: ArrayBuffer, ptr: number, len: number): number;
  /** kv_send's write from the store for `conn` (driver.ts moduleSendStored); without it kv_send copies and send()s. */
  sendStored?(conn: number, write: StoredWrite): number;
  /** A log line from the module: tcpmod.log, WASI stdout/stderr, or an abort message. */
  log(level: number, message: string, conn: number): void;
  /**
   * tcpmod.conn_info for the connection being handled: a number, a text
   * (written as UTF-8), or null for an unknown key. Without it: plain TCP.
   */
  connInfo?(key: number): number | string | null;
  /** tcpmod.set_timer for the connection being handled: 0, or negative (ms out of range). Without it: -1. */
  setTimer?(ms: number): number;
  /**
   * Topics (docs/abi.md §15). subscribe/unsubscribe for the connection being
   * handled (kind -1 to unsubscribe: all), publish from any call: the topic
   * and message regions are in `mem`. Without them: -1 and 0 reached.
   */
  subscribe?(kind: number, mem: ArrayBuffer, ptr: number, len: number): number;
  unsubscribe?(kind: number, mem: ArrayBuffer, ptr: number, len: number): number;
  publish?(mem: ArrayBuffer, topicPtr: number, topicLen: number, msgPtr: number, msgLen: number): number;
  /** publish_frame (docs/abi.md §19): publish, and direct subscriptions take the frame [framePtr, +frameLen) instead. */
  publishFrame?(mem: ArrayBuffer, topicPtr: number, topicLen: number, msgPtr: number, msgLen: number, framePtr: number, frameLen: number): number;
  /** topic_count and topics_list (PUBSUB): this server's subscriptions, from any call. */
  topicCount?(kind: number, mem: ArrayBuffer, ptr: number, len: number): number;
  topicsList?(mem: ArrayBuffer, globPtr: number, globLen: number, skip: number, outPtr: number, outCap: number): number;
  /** tcpmod.draining: 1 once the server is stopping. Without it: 0. */
  draining?(): number;
  /** tcpmod.now_ms; without it, the wall clock. */
  now?(): number;
  /** tcpmod.peer_addr for the connection being handled: the client's address as text. Without it: "". */
  peerAddr?(): string;
  /**
   * tcpmod.upstream_open / upstream_send / upstream_close for the connection
   * being handled (docs/abi.md, Upstreams). Without them: -1 (no upstream is configured).
   */
  upstreamOpen?(mem: ArrayBuffer, namePtr: number, nameLen: number): number;
  /** tcpmod.upstream_addr: address `index` of upstream `name` as HOST:PORT, or null (no such name or address). From any callback, tcpmod_init too. */
  upstreamAddr?(name: string, index: number): string | null;
  upstreamSend?(up: number, mem: ArrayBuffer, ptr: number, len: number): number;
  upstreamClose?(up: number): number;
  /** tcpmod.upstream_resume: up > 0 an upstream's held bytes, 0 the client's held input, offered again (docs/abi.md §16). */
  upstreamResume?(up: number): number;
  /** tcpmod.upstream_shutdown / shutdown_output (docs/abi.md §20): end the sending side to an upstream / to the client. Without them: -1. */
  upstreamShutdown?(up: number): number;
  shutdownOutput?(): number;
  /** tcpmod.want for the connection being handled (a hint): 0. Without it: 0 (ignored). */
  want?(n: number): number;
  /** Bytes of log messages dropped by the log limit (module/log-limit.ts). Without it: not counted. */
  logDropped?(bytes: number): void;
  /**
   * Called before every tcpmod.kv_* call: may throw a ModuleFault to stop a
   * callback that has spent too long (store waits included). Without it: nothing.
   */
  storeCall?(): void;
  /**
   * The key-value store behind tcpmod.kv_*. Without it: the native process
   * store, shared by every instance (what a server uses; its hot path).
   */
  kv?: KvBackend;
}

/** kv result of ABI v1.1 from any kv_* function: the store is unavailable, nothing changed. */
export const KV_UNAVAILABLE = -3;

/**
 * A key-value store for tcpmod.kv_* other than the process store (the test
 * harness gives each loaded module its own). Keys and values are bytes the
 * instance has copied out of module memory; the backend may keep them. Each
 * method answers as docs/abi.md §10 states, or KV_UNAVAILABLE, which reaches
 * the module unchanged.
 */
export interface KvBackend extends KvBackendV12 {
  /** The value, null when the key is missing, or KV_UNAVAILABLE. */
  get(key: Uint8Array): Uint8Array | null | typeof KV_UNAVAILABLE;
  /** 0 stored; -2 over the budget (nothing changed); KV_UNAVAILABLE. */
  set(key: Uint8Array, value: Uint8Array): number;
  /** 1 deleted; 0 no such key; KV_UNAVAILABLE. */
  del(key: Uint8Array): number;
  /** The new value (a bigint); or -1 not an integer or overflow, -2 over the budget, KV_UNAVAILABLE (numbers). */
  incr(key: Uint8Array, delta: bigint): bigint | number;
}

/** conn_info of a host with no transport details (the test harness): plain TCP. */
function plainConnInfo(key: number): number | string | null {
  return key === 0 || key === 2 ? 0 : key === 1 ? '' : null;
}

const utf8 = new TextDecoder('utf-8');
const utf8Encoder = new TextEncoder();
const utf16 = new TextDecoder('utf-16le');
/** Longest abort message or file name decoded, in bytes (UTF-16: half as many characters). */
const ABORT_TEXT_MAX = 2048;

/**
 * The memory the process store's kv_get/kv_set/kv_del/kv_incr read and write, bound in
 * native code once per thread (native.kvBindMemory) rather than passed as two
 * ArrayBuffer arguments per call, which cost about as much as the rest of the
 * call (bench/kv-call.mjs). One binding per thread, so it follows the calling
 * instance: bound again whenever the buffer differs from the one bound (another
 * instance, or a grow: memory.buffer is then a new object). Held here, the
 * bound buffer keeps its memory alive while native code may use it.
 */
let storeMemory: ArrayBuffer | null = null;
function bindStoreMemory(b: ArrayBuffer): void {
  if (b === storeMemory) return;
  native.kvBindMemory(b, 0, b.byteLength);
  storeMemory = b;
}

export class ModuleInstance {
  readonly memory!: WebAssembly.Memory;
  private buf: ArrayBuffer | null = null;
  /** A one-byte view of `buf` (empty until it is read): its length turns 0 when a grow detaches `buf`. */
  private bufView = new Uint8Array(0);
  readonly desc!: IoDesc;
  private readonly exports!: Record<string, unknown>;
  /** The connection being handled: the only one tcpmod.send accepts. 0 outside on_open/on_data. */
  conn = 0;
  /** The connection a call is about (on_close's too), for log lines. */
  private logConn = 0;
  /** The result record of the last on_data call. */
  consumed = 0;
  outLen = 0;

  private u32!: Uint32Array;
  /** What the module wrote to WASI fds 1 and 2 during the call running now, logged line by line after it. */
  private readonly wasiText = ['', ''];
  private readonly wasiDecoders = [new TextDecoder('utf-8'), new TextDecoder('utf-8')];
  private wasiWrote = false;
  private readonly logLimit: LogLimit;
  private disposed = false;
  private readonly onDataFn!: (c: number, n: number, f: number) => number;
  private readonly onOpenFn!: ((c: number) => number) | null;
  private readonly onCloseFn!: ((c: number, r: number) => void) | null;
  private readonly onTimerFn!: ((c: number, n: number) => number) | null;
  private readonly onMessageFn!: ((c: number, n: number, t: number, p: number, m: number) => number) | null;
  private readonly onUpstreamFn!: ((c: number, u: number, e: number, n: number) => number) | null;
  private readonly collectFn!: (() => void) | null;
  private readonly initFn!: ((n: number) => number) | null;

  constructor(readonly compiled: CompiledModule, private readonly hooks: InstanceHooks) {
    const { verdict } = compiled;
    this.logLimit = new LogLimit((bytes) => hooks.logDropped?.(bytes), (text) => hooks.log(2, text, 0));
    let memory: WebAssembly.Memory | undefined;
    const imports: WebAssembly.Imports = { tcpmod: this.tcpmodImports() };
    if (verdict.memory.imported) {
      memory = new WebAssembly.Memory(verdict.memory.imported);
      imports.env = { memory };
    }
    if (verdict.importsWasi) {
      // Only stdout and stderr exist for a module; both end up in the host log (under the log limit).
      imports.wasi_snapshot_preview1 = wasiImports({
        buffer: () => (this.inBounds(0, 0), this.buffer), // inBounds: refuses a call from the start function
        write: (fd, mem, ptr, len) => {
          if (!this.logLimit.take(this.logConn, len)) return;
          this.wasiText[fd - 1] += this.wasiDecoders[fd - 1].decode(new Uint8Array(mem, ptr, len), { stream: true });
          this.wasiWrote = true;
        },
      });
    }
    try {
      // A start function or an out-of-bounds data segment can fail right here: a start-up trap.
      const instance = this.guard(() => new WebAssembly.Instance(compiled.module, imports));
      const ex = instance.exports as Record<string, any>;
      this.exports = ex;
      this.memory = memory ?? (ex.memory as WebAssembly.Memory);
      this.u32 = new Uint32Array(this.memory.buffer);
      this.onDataFn = ex.tcpmod_on_data;
      this.onOpenFn = verdict.optional.has('tcpmod_on_open') ? ex.tcpmod_on_open : null;
      this.onCloseFn = verdict.optional.has('tcpmod_on_close') ? ex.tcpmod_on_close : null;
      this.onTimerFn = verdict.optional.has('tcpmod_on_timer') ? ex.tcpmod_on_timer : null;
      this.onMessageFn = verdict.optional.has('tcpmod_on_message') ? ex.tcpmod_on_message : null;
      this.onUpstreamFn = verdict.optional.has('tcpmod_on_upstream') ? ex.tcpmod_on_upstream : null;
      this.collectFn = verdict.optional.has('__collect') ? ex.__collect : null;
      this.initFn = verdict.optional.has('tcpmod_init') ? ex.tcpmod_init : null;
      if (verdict.optional.has('_initialize')) this.guard(() => ex._initialize());
      const descPtr = this.guard(() => ex.tcpmod_io_desc()) >>> 0;
      this.desc = readIoDesc(this.memory.buffer, descPtr);
      if (this.collectFn && typeof ex.__new === 'function' && (ex.__new as () => number).length === 2) {
        this.guard(() => {
          try {
            this.probeHeap(ex.__new);
          } catch {
            // Not the runtime probeHeap knows (its __new trapped): collect after every call, as before.
          }
        });
      }
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /**
   * The memory's current buffer; any call into the module may have replaced it.
   * Kept between calls: reading `memory.buffer` costs more than a host call's
   * own work, and a grow detaches the old buffer (its byteLength becomes 0),
   * which is how a stale one is told.
   */
  get buffer(): ArrayBuffer {
    // A detached buffer's views have length 0: a view's length is read inline, where byteLength is a
    // call into a V8 builtin (~28 instructions, several times per event).
    if (this.bufView.length !== 0) return this.buf!;
    const b = (this.buf = this.memory.buffer);
    if (b.byteLength > 0) this.bufView = new Uint8Array(b, 0, 1); // (a memory of 0 pages is read again each time)
    return b;
  }

  /** Runs tcpmod_init with the config bytes at in_ptr; returns its status (0 accepts). */
  init(config: Uint8Array): number {
    if (!this.initFn) return 0;
    if (config.length > this.desc.inCap) throw new ModuleFault('result', `config of ${config.length} bytes exceeds in_cap ${this.desc.inCap}`);
    new Uint8Array(this.buffer, this.desc.inPtr, config.length).set(config);
    const fn = this.initFn;
    return this.guard(() => fn(config.length)) | 0;
  }

  /** tcpmod_on_data; returns the action, with `consumed` and `outLen` set. The hot path: no closure. */
  onData(conn: number, inLen: number, flags: number): number {
    return this.invoke(this.onDataFn, 'tcpmod_on_data', conn, inLen, flags);
  }

  /** tcpmod_on_timer with the carry-over at in_ptr; result and action as for on_data. */
  onTimer(conn: number, inLen: number): number {
    if (!this.onTimerFn) throw new Error(`${this.compiled.name}: no tcpmod_on_timer`);
    return this.invoke(this.onTimerFn, 'tcpmod_on_timer', conn, inLen, 0);
  }

  /**
   * tcpmod_on_message: the carry-over (in_len bytes) at in_ptr, then the
   * topic, the matching pattern and the message after it; result and action as for on_timer.
   */
  onMessage(conn: number, inLen: number, topicLen: number, patternLen: number, msgLen: number): number {
    const fn = this.onMessageFn;
    if (!fn) throw new Error(`${this.compiled.name}: no tcpmod_on_message`);
    return this.invoke((c, n) => fn(c, n, topicLen, patternLen, msgLen), 'tcpmod_on_message', conn, inLen, 0);
  }

  get hasOnMessage(): boolean {
    return this.onMessageFn !== null;
  }

  /** tcpmod_on_upstream(conn, up, event, in_len) with the upstream's bytes at in_ptr; result and action as for on_data. */
  onUpstream(conn: number, up: number, event: number, inLen: number): number {
    const fn = this.onUpstreamFn;
    if (!fn) throw new Error(`${this.compiled.name}: no tcpmod_on_upstream`);
    return this.invoke((c, n, e) => fn(c, up, e, n), 'tcpmod_on_upstream', conn, inLen, event);
  }

  /**
   * The module imports tcpmod.upstream_resume: input it leaves unconsumed is held ("not yet") and
   * offered again when it asks, so a full input region it took nothing of is not an overflow
   * (docs/abi.md §16, Held input); the host stops reading that socket meanwhile.
   */
  get holdsInput(): boolean {
    return (this.holdsInputMemo ??= WebAssembly.Module.imports(this.compiled.module).some((i) => i.module === 'tcpmod' && i.name === 'upstream_resume'));
  }
  private holdsInputMemo: boolean | undefined;

  /**
   * The module imports tcpmod.upstream_shutdown or shutdown_output (docs/abi.md §20): an EOF call it
   * answers with CONTINUE keeps the connection (its input ended, its output still open).
   */
  get halfCloses(): boolean {
    return (this.halfClosesMemo ??= importsHalfClose(this.compiled.module));
  }
  private halfClosesMemo: boolean | undefined;

  get hasOnTimer(): boolean {
    return this.onTimerFn !== null;
  }

  /**
   * AssemblyScript's collector after a call (the module exports __collect), unless the call can have
   * allocated nothing managed since the last collection: with the runtime's two object lists known
   * (probeHeap), every allocation links its object at the tail of one of them, so the lists' tails
   * unchanged since the last collection mean no allocation, and a collection now would find only what
   * the call dropped without allocating: it is freed by the next one, which runs before any memory is
   * allocated again (memory stays bounded by what the last collection kept plus one call's
   * allocations, as when every call collects). A collection is ~750 instructions for echo.wasm: 1/10
   * of its host cost per request (bench/results/ceiling-profile.md).
   */
  private collect(): void {
    const a = this.gcTailA;
    if (a >= 0) {
      const u32 = this.words();
      if (u32[a] === this.gcSeenA && u32[this.gcTailB] === this.gcSeenB) return;
    }
    this.collectFn!();
    this.collections++;
    if (a >= 0) {
      const u32 = this.words();
      this.gcSeenA = u32[a];
      this.gcSeenB = u32[this.gcTailB];
    }
  }

  /** Memory as u32 words, made again when a call grew the memory (detaching the old buffer). */
  private words(): Uint32Array {
    // Told by the buffer it was made on, not by u32.buffer: that getter is a call into V8's C++ (~120 instructions).
    const b = this.buffer;
    if (b !== this.u32Buf) {
      this.u32 = new Uint32Array(b);
      this.u32Buf = b;
    }
    return this.u32;
  }
  private u32Buf: ArrayBuffer | null = null;

  /** Calls of __collect made (collect()): for tests. */
  collections = 0;
  /** The u32 index of the `prev` (tail) field of each of the collector's two list heads, or -1 (not known: collect after every call). */
  private gcTailA = -1;
  private gcTailB = -1;
  /** The tails as the last collection left them. */
  private gcSeenA = 0;
  private gcSeenB = 0;

  /**
   * Finds the two object lists of AssemblyScript's minimal runtime (TCMS, --runtime minimal; its
   * incremental runtime keeps objects the same way), by what two allocations through its exported
   * __new(size, id) show: an object's header (mmInfo, next|color, prev, rtId, rtSize, 20 bytes before
   * the pointer) names the list head it was linked to, whose `prev` is the new object; a collection
   * frees it (nothing refers to it), leaves that head empty (next and prev itself) and swaps the lists,
   * so the second allocation goes to the other head. Anything that does not look exactly like that
   * (another runtime, a module of another language with such exports) leaves the tails unknown, and
   * every call is followed by __collect as before.
   */
  private probeHeap(newFn: unknown): void {
    const alloc = newFn as (size: number, id: number) => number;
    const collect = this.collectFn!;
    const heads: number[] = [];
    collect();
    for (let n = 0; n < 2; n++) {
      const p = alloc(12, 0) >>> 0;
      let m = new Uint32Array(this.memory.buffer);
      const word = (addr: number) => (addr % 4 === 0 && addr >= 0 && addr + 4 <= m.byteLength ? m[addr >>> 2] : -1);
      const obj = p - 20;
      const head = word(p - 16) & ~3;
      const prev = word(p - 12);
      if (p % 4 !== 0 || obj <= 0 || word(p - 8) !== 0 || word(p - 4) !== 12 || head <= 0 || head === obj ||
          heads.includes(head) || word(head + 8) !== obj || prev < 0 || (word(prev + 4) & ~3) !== obj) {
        collect();
        return;
      }
      collect();
      m = new Uint32Array(this.memory.buffer);
      if (word(head + 4) !== head || word(head + 8) !== head) return;
      heads.push(head);
    }
    const m = new Uint32Array(this.memory.buffer);
    this.gcTailA = (heads[0] + 8) >>> 2;
    this.gcTailB = (heads[1] + 8) >>> 2;
    this.gcSeenA = m[this.gcTailA];
    this.gcSeenB = m[this.gcTailB];
  }

  private invoke(fn: (c: number, n: number, f: number) => number, name: string, conn: number, inLen: number, flags: number): number {
    if (this.disposed) throw this.calledAfterFault();
    this.conn = this.logConn = conn;
    try {
      const action = fn(conn, inLen, flags);
      if (this.collectFn) this.collect();
      const rp = this.desc.resPtr;
      if ((rp & 3) === 0) {
        const u32 = this.words();
        this.consumed = u32[rp >>> 2];
        this.outLen = u32[(rp >>> 2) + 1];
      } else {
        // The ABI aligns the IoDesc, not the result record: read an unaligned one byte-wise.
        const v = new DataView(this.buffer);
        this.consumed = v.getUint32(rp, true);
        this.outLen = v.getUint32(rp + 4, true);
      }
      if ((action !== Action.CONTINUE && action !== Action.CLOSE && action !== Action.ABORT) ||
          this.consumed > inLen || this.outLen > this.desc.outCap) {
        throw new ModuleFault('result', `${name} returned action ${action}, consumed ${this.consumed} of ${inLen}, out_len ${this.outLen} of ${this.desc.outCap}`);
      }
      return action;
    } catch (e) {
      throw this.failed(e, conn);
    } finally {
      this.conn = this.logConn = 0;
      if (this.wasiWrote && !this.disposed) this.drainWasi(conn);
    }
  }

  /** tcpmod_on_open, if exported; returns the action, with `outLen` set (the out region is the reply). */
  onOpen(conn: number): number {
    this.outLen = 0;
    const fn = this.onOpenFn;
    if (!fn) return Action.CONTINUE;
    return this.enter(conn, conn, () => {
      const action = fn(conn);
      if (this.collectFn) this.collect();
      const outLen = new DataView(this.buffer).getUint32(this.desc.resPtr + 4, true);
      if ((action !== Action.CONTINUE && action !== Action.CLOSE && action !== Action.ABORT) || outLen > this.desc.outCap)
        throw new ModuleFault('result', `tcpmod_on_open returned action ${action}, out_len ${outLen} of ${this.desc.outCap}`);
      this.outLen = outLen;
      return action;
    });
  }

  /** tcpmod_on_close, if exported; output is ignored, and tcpmod.send refuses (no connection is being handled). */
  onClose(conn: number, reason: number): void {
    const fn = this.onCloseFn;
    if (!fn) return;
    this.enter(conn, 0, () => {
      fn(conn, reason);
      if (this.collectFn) this.collect();
    });
  }

  get hasOnOpen(): boolean {
    return this.onOpenFn !== null;
  }

  /**
   * tcpmod_state_version: the version of what the module keeps in the state
   * slot (and the carry-over), or null when it does not say (no export, or a
   * negative number). Connections move between generations only when both
   * give the same version (docs/abi.md §11).
   */
  stateVersion(): number | null {
    const ex = this.exports;
    if (typeof ex.tcpmod_state_version !== 'function' || !this.compiled.verdict.optional.has('tcpmod_state_version')) return null;
    const v = this.guard(() => (ex.tcpmod_state_version as () => number)()) | 0;
    return v < 0 ? null : v;
  }

  /** Logs the log limit's summary of a past second that dropped messages, if not done yet (an idle worker calls it). */
  flushLogSummary(): void {
    this.logLimit.flush();
  }

  /** True once the instance has faulted (or was disposed): it must not be called again. */
  get isDisposed(): boolean {
    return this.disposed;
  }

  /**
   * Marks the instance finished: it refuses further calls. Runs by itself
   * when the instance faults; whoever drops a healthy instance should call it
   * (it held WASI runtime state once; it is kept as the one way to retire an
   * instance). Idempotent.
   */
  dispose(): void {
    this.disposed = true;
  }

  /** Start-up calls (_initialize, tcpmod_io_desc, tcpmod_init): no connection, nothing to send. */
  private guard<T>(fn: () => T): T {
    return this.enter(0, 0, fn);
  }

  /**
   * Runs one call into the module for connection `logConn` (0: none), letting
   * tcpmod.send accept `sendConn` only. Anything the module does wrong comes out
   * as a ModuleFault, after the module's stdout/stderr are logged (its last
   * words often explain the fault) and the instance is disposed: by ABI v1 a
   * faulted instance is never called again.
   */
  private enter<T>(logConn: number, sendConn: number, fn: () => T): T {
    if (this.disposed) throw this.calledAfterFault();
    this.conn = sendConn;
    this.logConn = logConn;
    try {
      return fn();
    } catch (e) {
      throw this.failed(e, logConn);
    } finally {
      this.conn = this.logConn = 0;
      if (this.wasiWrote && !this.disposed) this.drainWasi(logConn);
    }
  }

  /** Turns what a call threw into a ModuleFault where it is the module's doing, and then disposes the instance. */
  private failed(e: unknown, logConn: number): unknown {
    const fault = asFault(e);
    if (fault instanceof ModuleFault) {
      if (this.wasiWrote) this.drainWasi(logConn);
      this.dispose();
    }
    return fault;
  }

  private calledAfterFault(): Error {
    return new Error(`${this.compiled.name}: instance called after a fault (make a new one)`);
  }

  private drainWasi(conn: number): void {
    this.wasiWrote = false;
    const [out, err] = this.wasiText;
    this.wasiText[0] = this.wasiText[1] = '';
    for (const line of out.split('\n')) if (line) this.hooks.log(1, line, conn);
    for (const line of err.split('\n')) if (line) this.hooks.log(2, line, conn);
  }

  /** ptr and len are wasm i32s as JS sees them (signed): read them as the unsigned addresses they are. */
  private inBounds(ptr: number, len: number): boolean {
    // A start function runs inside instantiation, before the host knows the module's own memory.
    if (this.memory === undefined)
      throw new ModuleFault('trap', 'a host function was called from the start function, before the module\'s memory is known (use _initialize)');
    return (ptr >>> 0) + (len >>> 0) <= this.buffer.byteLength;
  }

  /** A host call given memory it cannot have is the module's fault, as an out-of-bounds load would be. */
  private region(what: string, ptr: number, len: number): void {
    if (!this.inBounds(ptr, len)) throw new ModuleFault('trap', `${what}: region [${ptr >>> 0}, +${len >>> 0}) is outside memory (${this.buffer.byteLength} bytes)`);
  }

  private tcpmodImports(): Record<string, Function> {
    return {
      send: (conn: number, ptr: number, len: number): number => {
        if (conn !== this.conn || conn === 0) return -1;
        if (!this.inBounds(ptr, len)) return -2;
        return this.hooks.send(conn, this.buffer, ptr >>> 0, len >>> 0);
      },
      log: (level: number, ptr: number, len: number): void => {
        this.region('tcpmod.log', ptr, len);
        if (!this.logLimit.take(this.logConn, len >>> 0)) return;
        this.hooks.log(level, utf8.decode(new Uint8Array(this.buffer, ptr >>> 0, len >>> 0)), this.logConn);
      },
      now_ms: this.hooks.now ?? ((): number => Date.now()),
      set_timer: (conn: number, ms: number): number => {
        if (conn !== this.conn || conn === 0) return -1;
        return this.hooks.setTimer ? this.hooks.setTimer(ms) : -1;
      },
      draining: (): number => (this.hooks.draining ? this.hooks.draining() : 0),
      subscribe: (conn: number, kind: number, ptr: number, len: number): number => {
        if (conn !== this.conn || conn === 0 || !this.hooks.subscribe) return -1;
        this.region('tcpmod.subscribe topic', ptr, len);
        return this.hooks.subscribe(kind, this.buffer, ptr >>> 0, len >>> 0);
      },
      unsubscribe: (conn: number, kind: number, ptr: number, len: number): number => {
        if (conn !== this.conn || conn === 0 || !this.hooks.unsubscribe) return -1;
        if (kind !== -1) this.region('tcpmod.unsubscribe topic', ptr, len); // len 0: every subscription of the kind
        return this.hooks.unsubscribe(kind, this.buffer, kind === -1 ? 0 : ptr >>> 0, kind === -1 ? 0 : len >>> 0);
      },
      publish: (topic: number, topicLen: number, msg: number, msgLen: number): number => {
        this.region('tcpmod.publish topic', topic, topicLen);
        this.region('tcpmod.publish message', msg, msgLen);
        return this.hooks.publish ? this.hooks.publish(this.buffer, topic >>> 0, topicLen >>> 0, msg >>> 0, msgLen >>> 0) : 0;
      },
      publish_frame: (topic: number, topicLen: number, msg: number, msgLen: number, frame: number, frameLen: number): number => {
        this.region('tcpmod.publish_frame topic', topic, topicLen);
        this.region('tcpmod.publish_frame message', msg, msgLen);
        this.region('tcpmod.publish_frame frame', frame, frameLen);
        return this.hooks.publishFrame
          ? this.hooks.publishFrame(this.buffer, topic >>> 0, topicLen >>> 0, msg >>> 0, msgLen >>> 0, frame >>> 0, frameLen >>> 0)
          : 0;
      },
      topic_count: (kind: number, ptr: number, len: number): number => {
        this.region('tcpmod.topic_count text', ptr, len);
        return this.hooks.topicCount ? this.hooks.topicCount(kind, this.buffer, ptr >>> 0, len >>> 0) : 0;
      },
      topics_list: (glob: number, globLen: number, skip: number, out: number, cap: number): number => {
        this.region('tcpmod.topics_list glob', glob, globLen);
        this.region('tcpmod.topics_list out', out, cap);
        if (skip < 0) return -3;
        return this.hooks.topicsList ? this.hooks.topicsList(this.buffer, glob >>> 0, globLen >>> 0, skip, out >>> 0, cap >>> 0) : 0;
      },
      peer_addr: (conn: number, out: number, cap: number): number => {
        if (conn !== this.conn || conn === 0) return -1;
        const bytes = utf8Encoder.encode(this.hooks.peerAddr ? this.hooks.peerAddr() : '');
        if (bytes.length > (cap >>> 0)) return -2;
        this.region('tcpmod.peer_addr out', out, bytes.length);
        new Uint8Array(this.buffer, out >>> 0, bytes.length).set(bytes);
        return bytes.length;
      },
      upstream_open: (conn: number, ptr: number, len: number): number => {
        if (conn !== this.conn || conn === 0) return -1;
        this.region('tcpmod.upstream_open name', ptr, len);
        return this.hooks.upstreamOpen ? this.hooks.upstreamOpen(this.buffer, ptr >>> 0, len >>> 0) : -1;
      },
      upstream_addr: (ptr: number, len: number, index: number, out: number, cap: number): number => {
        this.region('tcpmod.upstream_addr name', ptr, len);
        const name = new TextDecoder().decode(new Uint8Array(this.buffer, ptr >>> 0, len >>> 0));
        const addr = this.hooks.upstreamAddr ? this.hooks.upstreamAddr(name, index) : null;
        if (addr === null) return -1;
        const bytes = utf8Encoder.encode(addr);
        if (bytes.length > (cap >>> 0)) return -2;
        this.region('tcpmod.upstream_addr out', out, bytes.length);
        new Uint8Array(this.buffer, out >>> 0, bytes.length).set(bytes);
        return bytes.length;
      },
      upstream_send: (conn: number, up: number, ptr: number, len: number): number => {
        if (conn !== this.conn || conn === 0) return -1;
        this.region('tcpmod.upstream_send', ptr, len);
        return this.hooks.upstreamSend ? this.hooks.upstreamSend(up, this.buffer, ptr >>> 0, len >>> 0) : -1;
      },
      upstream_close: (conn: number, up: number): number => {
        if (conn !== this.conn || conn === 0) return -1;
        return this.hooks.upstreamClose ? this.hooks.upstreamClose(up) : -1;
      },
      upstream_resume: (conn: number, up: number): number => {
        if (conn !== this.conn || conn === 0) return -1;
        return this.hooks.upstreamResume ? this.hooks.upstreamResume(up) : -1;
      },
      upstream_shutdown: (conn: number, up: number): number => {
        if (conn !== this.conn || conn === 0) return -1;
        return this.hooks.upstreamShutdown ? this.hooks.upstreamShutdown(up) : -1;
      },
      shutdown_output: (conn: number): number => {
        if (conn !== this.conn || conn === 0) return -1;
        return this.hooks.shutdownOutput ? this.hooks.shutdownOutput() : -1;
      },
      want: (conn: number, n: number): number => {
        if (conn !== this.conn || conn === 0) return -1;
        return this.hooks.want ? this.hooks.want(n >>> 0) : 0;
      },
      conn_info: (conn: number, key: number, out: number, cap: number): number => {
        if (conn !== this.conn || conn === 0) return -1;
        const v = (this.hooks.connInfo ?? plainConnInfo)(key);
        if (v === null) return -3;
        if (typeof v === 'number') return v;
        const bytes = utf8Encoder.encode(v);
        if (bytes.length > (cap >>> 0)) return -2;
        this.region('tcpmod.conn_info out', out, bytes.length);
        new Uint8Array(this.buffer, out >>> 0, bytes.length).set(bytes);
        return bytes.length;
      },
      abort: (msg: number, file: number, line: number, col: number): never => {
        const text = `${this.asString(msg) ?? 'abort'} at ${this.asString(file) ?? '?'}:${line >>> 0}:${col >>> 0}`;
        throw new ModuleFault('abort', text);
      },
      kv_get: (key: number, keyLen: number, out: number, cap: number): number => {
        this.hooks.storeCall?.();
        this.region('kv_get key', key, keyLen);
        this.region('kv_get out', out, cap);
        const kv = this.hooks.kv;
        if (!kv) return (bindStoreMemory(this.buffer), native.kvGetBound(key >>> 0, keyLen >>> 0, out >>> 0, cap >>> 0));
        const b = this.buffer;
        const v = kv.get(this.bytes(key, keyLen));
        if (v === null) return -1;
        if (typeof v === 'number') return v;
        if (v.length <= (cap >>> 0)) new Uint8Array(b, out >>> 0, v.length).set(v);
        return v.length;
      },
      kv_set: (key: number, keyLen: number, val: number, valLen: number): number => {
        this.hooks.storeCall?.();
        this.region('kv_set key', key, keyLen);
        this.region('kv_set value', val, valLen);
        const kv = this.hooks.kv;
        if (!kv) return (bindStoreMemory(this.buffer), native.kvSetBound(key >>> 0, keyLen >>> 0, val >>> 0, valLen >>> 0));
        return kv.set(this.bytes(key, keyLen), this.bytes(val, valLen));
      },
      kv_del: (key: number, keyLen: number): number => {
        this.hooks.storeCall?.();
        this.region('kv_del key', key, keyLen);
        const kv = this.hooks.kv;
        if (!kv) return (bindStoreMemory(this.buffer), native.kvDelBound(key >>> 0, keyLen >>> 0));
        return kv.del(this.bytes(key, keyLen));
      },
      kv_incr: (key: number, keyLen: number, delta: bigint, out: number): number => {
        this.hooks.storeCall?.();
        this.region('kv_incr key', key, keyLen);
        this.region('kv_incr out', out, 8);
        const b = this.buffer;
        const kv = this.hooks.kv;
        let rc: number;
        if (!kv) {
          bindStoreMemory(b);
          rc = native.kvIncrBound(key >>> 0, keyLen >>> 0, delta, out >>> 0);
        } else {
          const v = kv.incr(this.bytes(key, keyLen), delta);
          rc = typeof v === 'bigint' ? 0 : v;
          if (typeof v === 'bigint') new DataView(b).setBigInt64(out >>> 0, v, true);
        }
        // ABI v1 gives kv_incr only 0 and -1: a full store is a failed increment (-3 is v1.1's, kept).
        return rc === -2 ? -1 : rc;
      },
      ...kvV12Imports({
        buffer: () => this.buffer, region: (w, p, l) => this.region(w, p, l), bytes: (p, l) => this.bytes(p, l), kv: () => this.hooks.kv,
        current: (conn) => conn === this.conn && conn !== 0,
        send: (conn, mem, ptr, len) => this.hooks.send(conn, mem, ptr, len),
        sendStored: this.hooks.sendStored ? (conn, write) => this.hooks.sendStored!(conn, write) : undefined,
        storeCall: this.hooks.storeCall ? () => this.hooks.storeCall!() : undefined,
      }),
    };
  }

  /** A copy of [ptr, ptr + len) of memory (checked by the caller), for a kv backend to keep. */
  private bytes(ptr: number, len: number): Uint8Array {
    return new Uint8Array(this.buffer, ptr >>> 0, len >>> 0).slice();
  }

  /** Decodes an AssemblyScript string (UTF-16LE, byte length in the u32 before it). */
  private asString(ptr: number): string | null {
    ptr >>>= 0;
    if (ptr < 4 || !this.inBounds(ptr - 4, 4)) return null;
    const len = new DataView(this.buffer).getUint32(ptr - 4, true);
    if (!this.inBounds(ptr, len)) return null;
    // One log line, not megabytes of it, whatever the module claims.
    const text = utf16.decode(new Uint8Array(this.buffer, ptr, Math.min(len, ABORT_TEXT_MAX) & ~1));
    return len > ABORT_TEXT_MAX ? `${text}…` : text;
  }
}

function asFault(e: unknown): unknown {
  if (e instanceof ModuleFault) return e;
  if (e instanceof WebAssembly.RuntimeError) return new ModuleFault('trap', e.message);
  // A wasm stack overflow surfaces as a RangeError.
  if (e instanceof RangeError && /call stack/.test(e.message)) return new ModuleFault('trap', e.message);
  return e;
}

/** Reads and checks the IoDesc at ptr; throws ModuleFault('result') naming every problem. */
export function readIoDesc(buf: ArrayBuffer, ptr: number): IoDesc {
  const size = buf.byteLength;
  if (ptr % 4 !== 0 || ptr + IODESC_SIZE > size)
    throw new ModuleFault('result', `tcpmod_io_desc returned ${ptr}, which is not a 4-byte aligned record inside memory (${size} bytes)`);
  const v = new DataView(buf, ptr, IODESC_SIZE);
  const u = (i: number) => v.getUint32(i * 4, true);
  const d: IoDesc = {
    inPtr: u(0), inCap: u(1), outPtr: u(2), outCap: u(3), statePtr: u(4), stateSize: u(5), resPtr: u(6), flags: u(7),
  };
  const problems: string[] = [];
  if (d.inCap < IO_MIN || d.inCap > IO_MAX) problems.push(`IoDesc in_cap ${d.inCap} is outside ${IO_MIN}..${IO_MAX}`);
  if (d.outCap < IO_MIN || d.outCap > IO_MAX) problems.push(`IoDesc out_cap ${d.outCap} is outside ${IO_MIN}..${IO_MAX}`);
  if (d.stateSize > STATE_MAX) problems.push(`IoDesc state_size ${d.stateSize} exceeds ${STATE_MAX}`);
  if (d.stateSize === 0 && d.statePtr !== 0) problems.push('IoDesc state_ptr must be 0 when state_size is 0');
  if (d.flags !== 0) problems.push(`IoDesc flags must be 0 (reserved), got ${d.flags}`);
  const regions: [string, number, number][] = [
    ['input', d.inPtr, d.inCap], ['output', d.outPtr, d.outCap], ['result', d.resPtr, RESULT_SIZE],
  ];
  if (d.stateSize > 0) regions.push(['state', d.statePtr, d.stateSize]);
  for (const [name, p, n] of regions) {
    if (p + n > size) problems.push(`IoDesc ${name} region [${p}, ${p + n}) lies outside memory (${size} bytes, ${size / PAGE} pages)`);
  }
  for (let i = 0; i < regions.length; i++) {
    for (let j = i + 1; j < regions.length; j++) {
      const [a, ap, an] = regions[i];
      const [b, bp, bn] = regions[j];
      if (ap < bp + bn && bp < ap + an) problems.push(`IoDesc ${a} region [${ap}, ${ap + an}) and ${b} region [${bp}, ${bp + bn}) overlap`);
    }
  }
  if (problems.length) throw new ModuleFault('result', problems.join('; '));
  return d;
}

/** Whether a compiled module imports a half-close function (docs/abi.md §20). */
export function importsHalfClose(module: WebAssembly.Module): boolean {
  return WebAssembly.Module.imports(module).some((i) => i.module === 'tcpmod' && (i.name === 'upstream_shutdown' || i.name === 'shutdown_output'));
}
