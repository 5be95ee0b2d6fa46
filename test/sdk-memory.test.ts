// Behaviour of the AssemblyScript SDK as the host sees it, through the raw ABI v1
// exports only (no host code involved): build/echo.wasm (run `npm run build:wasm`
// first) plus a fixture module compiled in memory that exercises the rest of the
// SDK. The instance is driven exactly as the ABI describes: input at in_ptr, call,
// then the result record, queued `tcpmod.send` bytes and the out region.
import { describe, it, expect, beforeAll } from "vitest";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { compileAs } from "./asc-source.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const ALLOWED_IMPORTS = new Set([
  "env.memory",
  ...["send", "log", "now_ms", "abort", "kv_get", "kv_set", "kv_del", "kv_incr"].map((n) => `tcpmod.${n}`),
  ...["fd_write", "clock_time_get", "random_get", "proc_exit"].map((n) => `wasi_snapshot_preview1.${n}`),
]);

interface Exports {
  memory: WebAssembly.Memory;
  _initialize(): void;
  __collect(): void;
  tcpmod_io_desc(): number;
  tcpmod_init(cfgLen: number): number;
  tcpmod_on_open(conn: number): number;
  tcpmod_on_data(conn: number, inLen: number, flags: number): number;
  tcpmod_on_close(conn: number, reason: number): void;
}

class ModuleAbort extends Error {}

/** A minimal stand-in for the host around one instance. */
class Harness {
  readonly ex: Exports;
  readonly desc: { inPtr: number; inCap: number; outPtr: number; outCap: number; statePtr: number; stateSize: number; resPtr: number; flags: number };
  sent: Buffer[] = [];
  logs: { level: number; text: string }[] = [];
  sendResult = 0;
  handling = -1;

  constructor(mod: WebAssembly.Module) {
    const self = this;
    const tcpmod = {
      send(conn: number, ptr: number, len: number) {
        if (conn !== self.handling || self.sendResult < 0) return -1;
        self.sent.push(Buffer.from(self.bytes(ptr, len)));
        return 0;
      },
      log(level: number, ptr: number, len: number) {
        self.logs.push({ level, text: Buffer.from(self.bytes(ptr, len)).toString("utf8") });
      },
      now_ms: () => Date.now(),
      abort(msg: number, file: number, line: number, col: number) {
        throw new ModuleAbort(`${self.asString(msg)} @ ${self.asString(file)}:${line}:${col}`);
      },
      kv_get: () => -1,
      kv_set: () => 0,
      kv_del: () => 0,
      kv_incr: () => -1,
    };
    const imports: WebAssembly.Imports = { tcpmod };
    for (const i of WebAssembly.Module.imports(mod)) {
      if (!ALLOWED_IMPORTS.has(`${i.module}.${i.name}`)) throw new Error(`unexpected import ${i.module}.${i.name}`);
    }
    this.ex = new WebAssembly.Instance(mod, imports).exports as unknown as Exports;
    this.ex._initialize();
    const d = new Uint32Array(this.ex.memory.buffer.slice(this.ex.tcpmod_io_desc(), this.ex.tcpmod_io_desc() + 32));
    this.desc = { inPtr: d[0], inCap: d[1], outPtr: d[2], outCap: d[3], statePtr: d[4], stateSize: d[5], resPtr: d[6], flags: d[7] };
  }

  bytes(ptr: number, len: number): Uint8Array {
    return new Uint8Array(this.ex.memory.buffer, ptr, len);
  }

  asString(ptr: number): string {
    if (!ptr) return "";
    const len = new Uint32Array(this.ex.memory.buffer, ptr - 4, 1)[0];
    return Buffer.from(this.ex.memory.buffer, ptr, len).toString("utf16le");
  }

  result() {
    const r = new Uint32Array(this.ex.memory.buffer, this.desc.resPtr, 2);
    return { consumed: r[0], outLen: r[1] };
  }

  /** Everything the connection would receive from the last call: sends, then the out region. */
  output(): Buffer {
    return Buffer.concat([...this.sent, Buffer.from(this.bytes(this.desc.outPtr, this.result().outLen))]);
  }

  data(conn: number, input: Uint8Array | string, flags = 0) {
    const buf = typeof input === "string" ? Buffer.from(input) : input;
    this.bytes(this.desc.inPtr, buf.length).set(buf);
    this.sent = [];
    this.handling = conn;
    const action = this.ex.tcpmod_on_data(conn, buf.length, flags);
    this.ex.__collect();
    return { action, ...this.result(), out: this.output() };
  }

  open(conn: number) {
    this.sent = [];
    this.handling = conn;
    const action = this.ex.tcpmod_on_open(conn);
    return { action, ...this.result(), out: this.output() };
  }
}

describe("echo module (build/echo.wasm)", () => {
  let mod: WebAssembly.Module;
  beforeAll(() => {
    mod = new WebAssembly.Module(readFileSync(join(root, "build/echo.wasm")));
  });

  it("imports only ABI functions and exports the ABI surface", () => {
    for (const i of WebAssembly.Module.imports(mod)) expect(ALLOWED_IMPORTS.has(`${i.module}.${i.name}`)).toBe(true);
    const names = WebAssembly.Module.exports(mod).map((e) => e.name);
    for (const n of ["memory", "tcpmod_abi_v1", "tcpmod_io_desc", "tcpmod_on_data", "_initialize", "__collect"]) {
      expect(names).toContain(n);
    }
  });

  it("describes disjoint regions inside memory", () => {
    const h = new Harness(mod);
    const { inPtr, inCap, outPtr, outCap, stateSize, statePtr, resPtr, flags } = h.desc;
    expect(inCap).toBeGreaterThan(100 * 1024);
    expect(outCap).toBeLessThan(100 * 1024);
    expect([stateSize, statePtr, flags]).toEqual([0, 0, 0]);
    const regions = [[inPtr, inCap], [outPtr, outCap], [resPtr, 8]];
    for (const [p, n] of regions) expect(p + n).toBeLessThanOrEqual(h.ex.memory.buffer.byteLength);
    for (const [a, al] of regions) for (const [b, bl] of regions) if (a !== b) expect(a < b + bl && b < a + al).toBe(false);
  });

  it("echoes small input through the out region and keeps the connection open", () => {
    const h = new Harness(mod);
    const r = h.data(7, "hello");
    expect(r).toMatchObject({ action: 0, consumed: 5, outLen: 5 });
    expect(h.sent).toHaveLength(0);
    expect(r.out.toString()).toBe("hello");
  });

  it("echoes then asks to close on EOF", () => {
    const h = new Harness(mod);
    const r = h.data(8, "bye", 1);
    expect(r).toMatchObject({ action: 1, consumed: 3 });
    expect(r.out.toString()).toBe("bye");
  });

  it("echoes 100 KiB, more than out_cap, through tcpmod.send", () => {
    const h = new Harness(mod);
    const input = Buffer.alloc(100 * 1024);
    for (let i = 0; i < input.length; i++) input[i] = (i * 7 + (i >> 9)) & 0xff;
    const r = h.data(9, input);
    expect(r.action).toBe(0);
    expect(r.consumed).toBe(input.length);
    expect(h.sent.length).toBeGreaterThan(0);
    expect(r.out.equals(input)).toBe(true);
  });

  it("turns a failed tcpmod.send into Abort", () => {
    const h = new Harness(mod);
    h.sendResult = -1;
    expect(h.data(10, Buffer.alloc(100 * 1024, 1)).action).toBe(2);
    h.sendResult = 0;
    expect(h.data(10, "ok").action).toBe(0); // the next call starts clean
  });

  it("reports SDK contract violations through tcpmod.abort", () => {
    const h = new Harness(mod);
    expect(() => h.ex.tcpmod_on_data(1, -1, 0)).toThrow(/negative length/);
  });

  it("keeps memory flat over 1,000,000 calls with __collect", () => {
    const h = new Harness(mod);
    const big = Buffer.alloc(100 * 1024, 0x61);
    h.data(1, big); // warm up every path once
    const before = h.ex.memory.buffer.byteLength;
    h.bytes(h.desc.inPtr, 64).fill(0x62);
    let total = 0;
    for (let i = 0; i < 1_000_000; i++) {
      const len = i % 10_000 === 0 ? big.length : 1 + (i & 63);
      h.handling = i;
      const action = h.ex.tcpmod_on_data(i, len, 0);
      h.ex.__collect();
      if (action !== 0) throw new Error(`call ${i}: action ${action}`);
      total += new Uint32Array(h.ex.memory.buffer, h.desc.resPtr, 1)[0];
    }
    expect(h.ex.memory.buffer.byteLength).toBe(before);
    expect(total).toBeGreaterThan(30_000_000);
  }, 120_000);
});

// Compiled in memory (never written to assembly/), with the project's asconfig.json,
// so the options and abort wiring are the same as `npm run build:wasm`.
const FIXTURE = `
import { Conn, Action, CloseReason, configure, setOnOpen, setOnClose, setOnInit, logString, LogLevel } from "./sdk";
export * from "./sdk/exports";

configure(1024, 1024, 8, onData);
setOnOpen(onOpen);
setOnClose(onClose);
setOnInit(onInit);

function onInit(config: usize, len: i32): i32 {
  return len > 0 && load<u8>(config) == 0x78 ? 1 : 0; // refuse configs starting with 'x'
}
function onOpen(c: Conn): Action {
  c.writeString("hi ");
  c.writeInt(c.id);
  c.writeByte(10);
  return Action.Continue;
}
function onClose(c: Conn, reason: i32): void {
  c.writeString("dropped");
  if (reason == CloseReason.Overflow) logString(LogLevel.Warn, "overflow \u2713");
}
// One command per line; an incomplete line waits for more input.
function onData(c: Conn): Action {
  const nl = c.indexOf(10, c.consumed);
  if (nl < 0) return Action.Continue;
  const cmd = c.byte(c.consumed);
  if (cmd == 0x53) {          // S: long UTF-8 output, several times out_cap
    for (let i = 0; i < 500; i++) c.writeString("\u00e9\u20ac\u{1F600}\ud800|");
  } else if (cmd == 0x49) {   // I: integers
    c.writeInt(i64.MIN_VALUE); c.writeByte(32); c.writeInt(0); c.writeByte(32); c.writeInt(1234567890123);
  } else if (cmd == 0x54) {   // T: counter in the state slot
    store<u32>(c.state, load<u32>(c.state) + 1);
    c.writeInt(load<u32>(c.state));
  } else if (cmd == 0x41) {   // A: failing assert
    assert(false, "boom");
  } else if (cmd == 0x43) {   // C: consume too much
    c.consume(c.inputLen + 1);
  } else if (cmd == 0x51) {   // Q: quit
    c.consume(nl + 1 - c.consumed);
    return Action.Close;
  }
  c.consume(nl + 1 - c.consumed);
  return Action.Continue;
}
`;


describe("SDK API (fixture module)", () => {
  let mod: WebAssembly.Module;
  beforeAll(async () => {
    mod = new WebAssembly.Module(await compileAs("__sdk_fixture", FIXTURE));
  }, 60_000);

  it("declares the configured state slot and refuses config via the init hook", () => {
    const h = new Harness(mod);
    expect(h.desc.stateSize).toBe(8);
    expect(h.desc.statePtr).not.toBe(0);
    h.bytes(h.desc.inPtr, 3).set(Buffer.from("abc"));
    expect(h.ex.tcpmod_init(3)).toBe(0);
    h.bytes(h.desc.inPtr, 3).set(Buffer.from("xyz"));
    expect(h.ex.tcpmod_init(3)).toBe(1);
  });

  it("runs the open hook with output", () => {
    const h = new Harness(mod);
    const r = h.open(42);
    expect(r.action).toBe(0);
    expect(r.out.toString()).toBe("hi 42\n");
  });

  it("drops output in the close hook and logs as UTF-8", () => {
    const h = new Harness(mod);
    h.handling = -1;
    h.ex.tcpmod_on_close(5, 3);
    expect(h.sent).toHaveLength(0);
    expect(h.logs).toEqual([{ level: 2, text: "overflow \u2713" }]);
  });

  it("waits for a full line, then handles one command per call", () => {
    const h = new Harness(mod);
    expect(h.data(1, "T")).toMatchObject({ action: 0, consumed: 0, outLen: 0 });
    const r = h.data(1, "T\nT\n");
    expect(r).toMatchObject({ action: 0, consumed: 2 });
    expect(r.out.toString()).toBe("1");
    expect(h.data(1, "Q\n")).toMatchObject({ action: 1, consumed: 2 });
  });

  it("writes decimal integers including i64 min", () => {
    const h = new Harness(mod);
    expect(h.data(1, "I\n").out.toString()).toBe("-9223372036854775808 0 1234567890123");
  });

  it("encodes long strings as UTF-8 across out-region flushes", () => {
    const h = new Harness(mod);
    const r = h.data(1, "S\n");
    expect(h.sent.length).toBeGreaterThan(1);
    expect(r.out.equals(Buffer.from("\u00e9\u20ac\u{1F600}\uFFFD|".repeat(500)))).toBe(true);
  });

  it("routes assert() and contract violations to tcpmod.abort", () => {
    const h = new Harness(mod);
    expect(() => h.data(1, "A\n")).toThrow(/boom @ assembly\/__sdk_fixture\.ts:\d+:\d+/);
    expect(() => h.data(1, "C\n")).toThrow(/consume\(\) past the end of input/);
  });
});
