// Reads the parts of a WebAssembly binary that the loader must judge before
// instantiating: every import and export with its kind and function signature,
// and memory limits (declared or imported). WebAssembly.Module.imports() gives
// kinds but neither signatures nor limits, hence this small reader.
export type ValType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128' | 'funcref' | 'externref';
export interface FuncType { params: ValType[]; results: ValType[] }
export interface Limits { initial: number; maximum?: number; shared: boolean; memory64: boolean }
export type Desc =
  | { kind: 'function'; type: FuncType }
  | { kind: 'table' }
  | { kind: 'memory'; limits: Limits }
  | { kind: 'global'; type: ValType }
  | { kind: 'tag' };
export interface WasmImport { module: string; name: string; desc: Desc }
export interface WasmExport { name: string; desc: Desc }
export interface WasmShape { imports: WasmImport[]; exports: WasmExport[]; memories: Limits[] }

export class WasmFormatError extends Error {}

const VALTYPES: Record<number, ValType> = {
  0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64', 0x7b: 'v128', 0x70: 'funcref', 0x6f: 'externref',
};

class Reader {
  pos = 0;
  constructor(readonly b: Uint8Array, readonly end = b.length) {}
  byte(): number {
    if (this.pos >= this.end) throw new WasmFormatError('unexpected end of section');
    return this.b[this.pos++];
  }
  u32(): number {
    let result = 0, shift = 0, byte;
    do {
      byte = this.byte();
      result += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if (shift > 63) throw new WasmFormatError('LEB128 integer too long');
    } while (byte & 0x80);
    return result;
  }
  name(): string {
    const n = this.u32();
    if (this.pos + n > this.end) throw new WasmFormatError('name runs past the section');
    const s = new TextDecoder('utf-8', { fatal: false }).decode(this.b.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
  valtype(): ValType {
    const t = this.byte();
    const v = VALTYPES[t];
    if (!v) throw new WasmFormatError(`unknown value type 0x${t.toString(16)}`);
    return v;
  }
  /** Skips a constant expression (a global's initialiser) up to its `end`. */
  skipConstExpr(): void {
    for (;;) {
      const op = this.byte();
      if (op === 0x0b) return; // end
      if (op === 0x41 || op === 0x42) this.sleb(); // i32.const, i64.const
      else if (op === 0x43) this.pos += 4; // f32.const
      else if (op === 0x44) this.pos += 8; // f64.const
      else if (op === 0x23 || op === 0xd2) this.u32(); // global.get, ref.func
      else if (op === 0xd0) this.byte(); // ref.null type
      else if (op === 0x6a || op === 0x6b || op === 0x6c || op === 0x7c || op === 0x7d || op === 0x7e) continue; // extended-const arithmetic
      else if (op === 0xfd) { this.u32(); this.pos += 16; } // v128.const
      else throw new WasmFormatError(`unsupported opcode 0x${op.toString(16)} in a constant expression`);
    }
  }
  sleb(): void {
    while (this.byte() & 0x80);
  }
  limits(): Limits {
    const flags = this.byte();
    const initial = this.u32();
    const maximum = flags & 1 ? this.u32() : undefined;
    return { initial, maximum, shared: (flags & 2) !== 0, memory64: (flags & 4) !== 0 };
  }
}

export function isWasm(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && bytes[0] === 0 && bytes[1] === 0x61 && bytes[2] === 0x73 && bytes[3] === 0x6d;
}

/** Parses imports, exports and memories. Throws WasmFormatError on a malformed binary. */
export function readShape(bytes: Uint8Array): WasmShape {
  if (!isWasm(bytes)) throw new WasmFormatError('not a WebAssembly binary (no \\0asm magic)');
  const version = bytes[4] | (bytes[5] << 8) | (bytes[6] << 16) | (bytes[7] << 24);
  if (version !== 1) throw new WasmFormatError(`unsupported WebAssembly version ${version}`);
  const types: FuncType[] = [];
  const funcTypes: number[] = []; // function index space → type index
  const imports: WasmImport[] = [];
  const memories: Limits[] = [];
  const rawExports: { name: string; kind: number; index: number }[] = [];
  const globals: ValType[] = [];
  const r = new Reader(bytes);
  r.pos = 8;
  while (r.pos < bytes.length) {
    const id = r.byte();
    const size = r.u32();
    const end = r.pos + size;
    if (end > bytes.length) throw new WasmFormatError(`section ${id} runs past the end of the file`);
    const s = new Reader(bytes, end);
    s.pos = r.pos;
    if (id === 1) {
      for (let n = s.u32(); n > 0; n--) {
        if (s.byte() !== 0x60) throw new WasmFormatError('unsupported type form');
        const params = Array.from({ length: s.u32() }, () => s.valtype());
        const results = Array.from({ length: s.u32() }, () => s.valtype());
        types.push({ params, results });
      }
    } else if (id === 2) {
      for (let n = s.u32(); n > 0; n--) {
        const module = s.name();
        const name = s.name();
        const kind = s.byte();
        let desc: Desc;
        if (kind === 0) {
          const t = s.u32();
          funcTypes.push(t);
          desc = { kind: 'function', type: typeAt(types, t) };
        } else if (kind === 1) {
          s.byte();
          s.limits();
          desc = { kind: 'table' };
        } else if (kind === 2) {
          desc = { kind: 'memory', limits: s.limits() };
        } else if (kind === 3) {
          const t = s.valtype();
          s.byte();
          globals.push(t);
          desc = { kind: 'global', type: t };
        } else if (kind === 4) {
          s.byte();
          s.u32();
          desc = { kind: 'tag' };
        } else throw new WasmFormatError(`unknown import kind ${kind}`);
        imports.push({ module, name, desc });
      }
    } else if (id === 3) {
      for (let n = s.u32(); n > 0; n--) funcTypes.push(s.u32());
    } else if (id === 5) {
      for (let n = s.u32(); n > 0; n--) memories.push(s.limits());
    } else if (id === 6) {
      // Global types only describe exports; an initialiser this reader does not
      // know ends the listing instead of failing a module the engine may accept.
      try {
        for (let n = s.u32(); n > 0; n--) {
          const t = s.valtype();
          s.byte(); // mutability
          s.skipConstExpr();
          globals.push(t);
        }
      } catch (e) {
        if (!(e instanceof WasmFormatError)) throw e;
      }
    } else if (id === 7) {
      for (let n = s.u32(); n > 0; n--) rawExports.push({ name: s.name(), kind: s.byte(), index: s.u32() });
    }
    r.pos = end;
  }
  const importedMemories = imports.filter((i) => i.desc.kind === 'memory').map((i) => (i.desc as { limits: Limits }).limits);
  const allMemories = [...importedMemories, ...memories];
  const exports: WasmExport[] = rawExports.map(({ name, kind, index }) => {
    if (kind === 0) {
      if (index >= funcTypes.length) throw new WasmFormatError(`export ${name} names a missing function`);
      return { name, desc: { kind: 'function', type: typeAt(types, funcTypes[index]) } };
    }
    if (kind === 2) {
      const limits = allMemories[index];
      if (!limits) throw new WasmFormatError(`export ${name} names a missing memory`);
      return { name, desc: { kind: 'memory', limits } };
    }
    if (kind === 1) return { name, desc: { kind: 'table' } };
    if (kind === 3) return { name, desc: { kind: 'global', type: globals[index] ?? 'i32' } };
    return { name, desc: { kind: 'tag' } };
  });
  return { imports, exports, memories };
}

function typeAt(types: FuncType[], i: number): FuncType {
  const t = types[i];
  if (!t) throw new WasmFormatError(`type index ${i} out of range`);
  return t;
}

export function signature(t: FuncType): string {
  return `(${t.params.join(', ')}) -> ${t.results.length ? t.results.join(', ') : '()'}`;
}
