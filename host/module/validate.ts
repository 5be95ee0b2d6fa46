// Static checks of a module against ABI v1, before anything of it runs. Each
// problem is one line that names the offending import, export or limit.
import { OPTIONAL_EXPORTS, PAGE, REQUIRED_EXPORTS, TCPMOD_IMPORTS, WASI_IMPORTS } from './abi.js';
import { signature, type Limits, type WasmShape } from './wasm-binary.js';

export interface MemoryPlan {
  /** Present when the module imports env.memory: the host creates it with these pages. */
  imported?: { initial: number; maximum: number };
}

export interface ShapeVerdict {
  problems: string[];
  memory: MemoryPlan;
  importsWasi: boolean;
  optional: Set<string>;
}

export function checkShape(shape: WasmShape, memoryCapBytes: number): ShapeVerdict {
  const problems: string[] = [];
  const capPages = Math.floor(memoryCapBytes / PAGE);
  const memory: MemoryPlan = {};
  let importsWasi = false;

  for (const imp of shape.imports) {
    const where = `${imp.module}.${imp.name}`;
    const allowed = imp.module === 'tcpmod' ? TCPMOD_IMPORTS : imp.module === 'wasi_snapshot_preview1' ? WASI_IMPORTS : null;
    if (imp.module === 'env' && imp.name === 'memory') {
      if (imp.desc.kind !== 'memory') {
        problems.push(`import env.memory must be a memory, not a ${imp.desc.kind}`);
        continue;
      }
      const lim = imp.desc.limits;
      const bad = memoryKindProblem(lim);
      if (bad) problems.push(`import env.memory: ${bad}`);
      else if (lim.initial > capPages)
        problems.push(`import env.memory: initial size ${lim.initial} pages exceeds the memory cap of ${capPages} pages`);
      else memory.imported = { initial: lim.initial, maximum: Math.min(capPages, lim.maximum ?? capPages) };
      continue;
    }
    if (!allowed || !(imp.name in allowed)) {
      problems.push(`import ${where} is not allowed by ABI v1`);
      continue;
    }
    if (imp.desc.kind !== 'function') {
      problems.push(`import ${where} must be a function, not a ${imp.desc.kind}`);
      continue;
    }
    const sig = signature(imp.desc.type);
    if (sig !== allowed[imp.name]) problems.push(`import ${where} has signature ${sig}; ABI v1 says ${allowed[imp.name]}`);
    if (imp.module === 'wasi_snapshot_preview1') importsWasi = true;
  }

  const exports = new Map(shape.exports.map((e) => [e.name, e.desc]));
  const mem = exports.get('memory');
  if (!mem) problems.push('missing export memory');
  else if (mem.kind !== 'memory') problems.push(`export memory must be a memory, not a ${mem.kind}`);
  for (const [name, want] of Object.entries(REQUIRED_EXPORTS)) {
    const d = exports.get(name);
    if (!d) problems.push(`missing export ${name} ${want}`);
    else if (d.kind !== 'function') problems.push(`export ${name} must be a function, not a ${d.kind}`);
    else if (signature(d.type) !== want) problems.push(`export ${name} has signature ${signature(d.type)}; ABI v1 says ${want}`);
  }
  const optional = new Set<string>();
  for (const [name, want] of Object.entries(OPTIONAL_EXPORTS)) {
    const d = exports.get(name);
    if (!d) continue;
    if (d.kind !== 'function') problems.push(`export ${name} must be a function, not a ${d.kind}`);
    else if (signature(d.type) !== want) problems.push(`export ${name} has signature ${signature(d.type)}; ABI v1 says ${want}`);
    else optional.add(name);
  }

  if (shape.imports.some((i) => i.module === 'tcpmod' && i.name === 'set_timer') && !optional.has('tcpmod_on_timer'))
    problems.push('import tcpmod.set_timer needs the export tcpmod_on_timer (i32, i32) -> i32, which the host calls when the timer fires');

  if (!memory.imported) {
    if (shape.memories.length === 0 && !problems.some((p) => p.includes('memory'))) problems.push('the module has no memory');
    for (const lim of shape.memories) {
      const bad = memoryKindProblem(lim);
      if (bad) problems.push(`memory: ${bad}`);
      else if (lim.maximum === undefined)
        problems.push(`memory declares no maximum; a module-defined memory must declare a maximum of at most ${capPages} pages (${memoryCapBytes} bytes)`);
      else if (lim.maximum > capPages)
        problems.push(`memory maximum ${lim.maximum} pages exceeds the host cap of ${capPages} pages (${memoryCapBytes} bytes)`);
    }
  }
  return { problems, memory, importsWasi, optional };
}

function memoryKindProblem(lim: Limits): string | null {
  if (lim.memory64) return '64-bit memories are not supported';
  if (lim.shared) return 'shared memories are not supported';
  return null;
}
