// One live instance of a protocol module: its memory, its IoDesc, the host
// imports it calls, and typed entry points for the ABI callbacks. Every call
// that goes wrong inside the module surfaces as a ModuleFault; the caller then
// throws this instance away and makes a fresh one. Knows nothing of sockets:
// output goes through the `send` hook the caller provides.
import { WASI } from '@wasmer/wasi';
import { native } from '../sys.js';
import {
  Action, IO_MAX, IO_MIN, IODESC_SIZE, PAGE, RESULT_SIZE, STATE_MAX,
} from './abi.js';
import { ModuleFault } from './errors.js';
import type { CompiledModule } from './load.js';

export interface IoDesc {
  inPtr: number; inCap: number; outPtr: number; outCap: number;
  statePtr: number; stateSize: number; resPtr: number; flags: number;
}

export interface InstanceHooks {
  /** Sends len bytes at ptr of mem for `conn` (the connection being handled); 0 or negative. */
  send(conn: number, mem: ArrayBuffer, ptr: number, len: number): number;
  /** A log line from the module: tcpmod.log, WASI stdout/stderr, or an abort message. */
  log(level: number, message: string, conn: number): void;
}

const utf8 = new TextDecoder('utf-8');
const utf16 = new TextDecoder('utf-16le');

export class ModuleInstance {
  readonly memory: WebAssembly.Memory;
  readonly desc: IoDesc;
  /** The connection being handled: the only one tcpmod.send accepts. 0 outside callbacks. */
  conn = 0;
  /** The result record of the last on_data call. */
  consumed = 0;
  outLen = 0;

  private u32: Uint32Array;
  private readonly wasi: WASI | null;
  private wasiWrote = false;
  private readonly onDataFn: (c: number, n: number, f: number) => number;
  private readonly onOpenFn: ((c: number) => number) | null;
  private readonly onCloseFn: ((c: number, r: number) => void) | null;
  private readonly collectFn: (() => void) | null;
  private readonly initFn: ((n: number) => number) | null;

  constructor(readonly compiled: CompiledModule, private readonly hooks: InstanceHooks) {
    const { verdict } = compiled;
    let memory: WebAssembly.Memory | undefined;
    const imports: WebAssembly.Imports = { tcpmod: this.tcpmodImports() };
    if (verdict.memory.imported) {
      memory = new WebAssembly.Memory(verdict.memory.imported);
      imports.env = { memory };
    }
    this.wasi = null;
    if (verdict.importsWasi) {
      // No preopens, no environment, no arguments but the module's name.
      this.wasi = new WASI({ args: [compiled.name], env: {} });
      const all = this.wasi.getImports(compiled.module) as { wasi_snapshot_preview1: Record<string, Function> };
      const w = all.wasi_snapshot_preview1;
      imports.wasi_snapshot_preview1 = {
        fd_write: (...a: number[]) => { this.wasiWrote = true; return w.fd_write(...a); },
        clock_time_get: w.clock_time_get,
        random_get: w.random_get,
        proc_exit: (code: number) => { throw new ModuleFault('exit', `module called proc_exit(${code})`); },
      };
    }
    const instance = new WebAssembly.Instance(compiled.module, imports);
    const ex = instance.exports as Record<string, any>;
    this.memory = memory ?? (ex.memory as WebAssembly.Memory);
    if (this.wasi) this.wasi.instantiate(instance, {});
    this.u32 = new Uint32Array(this.memory.buffer);
    this.onDataFn = ex.tcpmod_on_data;
    this.onOpenFn = verdict.optional.has('tcpmod_on_open') ? ex.tcpmod_on_open : null;
    this.onCloseFn = verdict.optional.has('tcpmod_on_close') ? ex.tcpmod_on_close : null;
    this.collectFn = verdict.optional.has('__collect') ? ex.__collect : null;
    this.initFn = verdict.optional.has('tcpmod_init') ? ex.tcpmod_init : null;
    if (verdict.optional.has('_initialize')) this.guard(() => ex._initialize());
    const descPtr = this.guard(() => ex.tcpmod_io_desc()) >>> 0;
    this.desc = readIoDesc(this.memory.buffer, descPtr);
  }

  /** The memory's current buffer; any call into the module may have replaced it. */
  get buffer(): ArrayBuffer {
    return this.memory.buffer;
  }

  /** Runs tcpmod_init with the config bytes at in_ptr; returns its status (0 accepts). */
  init(config: Uint8Array): number {
    if (!this.initFn) return 0;
    if (config.length > this.desc.inCap) throw new ModuleFault('result', `config of ${config.length} bytes exceeds in_cap ${this.desc.inCap}`);
    new Uint8Array(this.memory.buffer, this.desc.inPtr, config.length).set(config);
    const fn = this.initFn;
    return this.guard(() => fn(config.length)) | 0;
  }

  /** tcpmod_on_data; returns the action, with `consumed` and `outLen` set. */
  onData(conn: number, inLen: number, flags: number): number {
    this.conn = conn;
    try {
      const action = this.onDataFn(conn, inLen, flags);
      if (this.collectFn) this.collectFn();
      let u32 = this.u32;
      if (u32.buffer !== this.memory.buffer) u32 = this.u32 = new Uint32Array(this.memory.buffer);
      const r = this.desc.resPtr >>> 2;
      this.consumed = u32[r];
      this.outLen = u32[r + 1];
      if ((action !== Action.CONTINUE && action !== Action.CLOSE && action !== Action.ABORT) ||
          this.consumed > inLen || this.outLen > this.desc.outCap) {
        throw new ModuleFault('result', `tcpmod_on_data returned action ${action}, consumed ${this.consumed} of ${inLen}, out_len ${this.outLen} of ${this.desc.outCap}`);
      }
      return action;
    } catch (e) {
      throw asFault(e);
    } finally {
      this.conn = 0;
      if (this.wasiWrote) this.drainWasi(conn);
    }
  }

  /** tcpmod_on_open, if exported; returns the action, with `outLen` set (the out region is the reply). */
  onOpen(conn: number): number {
    this.outLen = 0;
    const fn = this.onOpenFn;
    if (!fn) return Action.CONTINUE;
    this.conn = conn;
    try {
      const action = fn(conn);
      if (this.collectFn) this.collectFn();
      const outLen = new DataView(this.memory.buffer).getUint32(this.desc.resPtr + 4, true);
      if ((action !== Action.CONTINUE && action !== Action.CLOSE && action !== Action.ABORT) || outLen > this.desc.outCap)
        throw new ModuleFault('result', `tcpmod_on_open returned action ${action}, out_len ${outLen}`);
      this.outLen = outLen;
      return action;
    } catch (e) {
      throw asFault(e);
    } finally {
      this.conn = 0;
      if (this.wasiWrote) this.drainWasi(conn);
    }
  }

  /** tcpmod_on_close, if exported; output is ignored. */
  onClose(conn: number, reason: number): void {
    const fn = this.onCloseFn;
    if (!fn) return;
    try {
      fn(conn, reason);
      if (this.collectFn) this.collectFn();
    } catch (e) {
      throw asFault(e);
    } finally {
      if (this.wasiWrote) this.drainWasi(conn);
    }
  }

  get hasOnOpen(): boolean {
    return this.onOpenFn !== null;
  }

  private guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw asFault(e);
    } finally {
      if (this.wasiWrote) this.drainWasi(0);
    }
  }

  private drainWasi(conn: number): void {
    this.wasiWrote = false;
    const out = this.wasi!.getStdoutString();
    const err = this.wasi!.getStderrString();
    for (const line of out.split('\n')) if (line) this.hooks.log(1, line, conn);
    for (const line of err.split('\n')) if (line) this.hooks.log(2, line, conn);
  }

  private inBounds(ptr: number, len: number): boolean {
    return ptr >= 0 && len >= 0 && ptr + len <= this.memory.buffer.byteLength;
  }

  private region(what: string, ptr: number, len: number): void {
    if (!this.inBounds(ptr, len)) throw new ModuleFault('trap', `${what}: region [${ptr}, +${len}) is outside memory`);
  }

  private tcpmodImports(): Record<string, Function> {
    return {
      send: (conn: number, ptr: number, len: number): number => {
        if (conn !== this.conn || conn === 0) return -1;
        if (!this.inBounds(ptr, len)) return -2;
        return this.hooks.send(conn, this.memory.buffer, ptr, len);
      },
      log: (level: number, ptr: number, len: number): void => {
        this.region('tcpmod.log', ptr, len);
        this.hooks.log(level, utf8.decode(new Uint8Array(this.memory.buffer, ptr, len)), this.conn);
      },
      now_ms: (): number => Date.now(),
      abort: (msg: number, file: number, line: number, col: number): never => {
        const text = `${this.asString(msg) ?? 'abort'} at ${this.asString(file) ?? '?'}:${line}:${col}`;
        throw new ModuleFault('abort', text);
      },
      kv_get: (key: number, keyLen: number, out: number, cap: number): number => {
        this.region('kv_get key', key, keyLen);
        this.region('kv_get out', out, cap);
        const b = this.memory.buffer;
        return native.kvGet(b, key, keyLen, b, out, cap);
      },
      kv_set: (key: number, keyLen: number, val: number, valLen: number): number => {
        this.region('kv_set key', key, keyLen);
        this.region('kv_set value', val, valLen);
        const b = this.memory.buffer;
        return native.kvSet(b, key, keyLen, b, val, valLen);
      },
      kv_del: (key: number, keyLen: number): number => {
        this.region('kv_del key', key, keyLen);
        return native.kvDel(this.memory.buffer, key, keyLen);
      },
      kv_incr: (key: number, keyLen: number, delta: bigint, out: number): number => {
        this.region('kv_incr key', key, keyLen);
        this.region('kv_incr out', out, 8);
        const b = this.memory.buffer;
        const rc = native.kvIncr(b, key, keyLen, delta, b, out);
        return rc === -2 ? -1 : rc;
      },
    };
  }

  /** Decodes an AssemblyScript string (UTF-16LE, byte length in the u32 before it). */
  private asString(ptr: number): string | null {
    if (!ptr || !this.inBounds(ptr - 4, 4)) return null;
    const len = new DataView(this.memory.buffer).getUint32(ptr - 4, true);
    if (!this.inBounds(ptr, len)) return null;
    return utf16.decode(new Uint8Array(this.memory.buffer, ptr, len & ~1));
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
  if (d.resPtr % 4 !== 0) problems.push(`IoDesc res_ptr ${d.resPtr} is not 4-byte aligned`);
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
