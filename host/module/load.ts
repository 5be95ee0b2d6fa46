// Reading, checking and compiling a module file; making instances from it.
// compileModule runs every static check and reports all problems at once;
// probeModule then instantiates once (IoDesc checks, tcpmod_init) so that a
// server refuses to start on a bad module instead of failing per connection.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { DEFAULT_MEMORY_CAP } from './abi.js';
import { ModuleConfigRefused, ModuleFault, ModuleLoadError } from './errors.js';
import { ModuleInstance, type InstanceHooks } from './instance.js';
import { checkShape, type ShapeVerdict } from './validate.js';
import { isWasm, readShape, WasmFormatError, type WasmShape } from './wasm-binary.js';

export interface CompiledModule {
  file: string;
  name: string;
  bytes: Uint8Array;
  module: WebAssembly.Module;
  shape: WasmShape;
  verdict: ShapeVerdict;
  memoryCap: number;
  config: Uint8Array;
}

export interface CompileOptions {
  /** Largest memory a module may have, in bytes (default 32 MiB). */
  memoryCap?: number;
  /** Bytes given to tcpmod_init. */
  config?: Uint8Array;
}

export async function compileModule(file: string, opts: CompileOptions = {}): Promise<CompiledModule> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(file));
  } catch (e) {
    throw new ModuleLoadError(file, [`cannot read the file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`]);
  }
  return compileBytes(file, bytes, opts);
}

export async function compileBytes(file: string, bytes: Uint8Array, opts: CompileOptions = {}): Promise<CompiledModule> {
  const memoryCap = opts.memoryCap ?? DEFAULT_MEMORY_CAP;
  if (!isWasm(bytes)) throw new ModuleLoadError(file, ['not a WebAssembly module (the file does not start with the \\0asm magic bytes)']);
  let shape: WasmShape;
  try {
    shape = readShape(bytes);
  } catch (e) {
    if (e instanceof WasmFormatError) throw new ModuleLoadError(file, [`malformed WebAssembly: ${e.message}`]);
    throw e;
  }
  const verdict = checkShape(shape, memoryCap);
  let module: WebAssembly.Module | null = null;
  try {
    module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  } catch (e) {
    verdict.problems.push(`invalid WebAssembly: ${(e as Error).message}`);
  }
  if (verdict.problems.length || !module) throw new ModuleLoadError(file, verdict.problems);
  const name = basename(file);
  return { file, name, bytes, module, shape, verdict, memoryCap, config: opts.config ?? new Uint8Array(0) };
}

/** Rebuilds a CompiledModule around an already compiled module (a worker gets one from the main thread). */
export async function adoptModule(file: string, bytes: Uint8Array, module: WebAssembly.Module, opts: CompileOptions): Promise<CompiledModule> {
  return adoptModuleSync(file, bytes, module, opts);
}

/** adoptModule, synchronous: for a worker taking a new generation in the middle of its loop. */
export function adoptModuleSync(file: string, bytes: Uint8Array, module: WebAssembly.Module, opts: CompileOptions): CompiledModule {
  const memoryCap = opts.memoryCap ?? DEFAULT_MEMORY_CAP;
  const shape = readShape(bytes);
  const verdict = checkShape(shape, memoryCap);
  if (verdict.problems.length) throw new ModuleLoadError(file, verdict.problems);
  return { file, name: basename(file), bytes, module, shape, verdict, memoryCap, config: opts.config ?? new Uint8Array(0) };
}

/** Makes an instance and runs tcpmod_init with the module's config. */
export function instantiate(compiled: CompiledModule, hooks: InstanceHooks): ModuleInstance {
  const inst = new ModuleInstance(compiled, hooks);
  let status: number;
  try {
    status = inst.init(compiled.config);
  } catch (e) {
    inst.dispose();
    throw e;
  }
  if (status !== 0) {
    inst.dispose();
    throw new ModuleConfigRefused(compiled.file, status);
  }
  return inst;
}

/** One trial instance: turns IoDesc problems and faults at start-up into a ModuleLoadError. */
export function probeModule(compiled: CompiledModule, hooks: InstanceHooks): ModuleInstance {
  try {
    return instantiate(compiled, hooks);
  } catch (e) {
    if (e instanceof ModuleFault) throw new ModuleLoadError(compiled.file, e.message.split('; ').map((m) => (e.kind === 'result' ? m : `${e.kind} during start-up: ${m}`)));
    if (e instanceof WebAssembly.LinkError) throw new ModuleLoadError(compiled.file, [`cannot link: ${e.message}`]);
    throw e;
  }
}
