// Static checks of a module against ABI v1, before anything of it runs. Each
// problem is one line that names the offending import, export or limit and,
// when the problem has a usual cause, ends with how to fix it ("; fix: ...").
import { OPTIONAL_EXPORTS, PAGE, REQUIRED_EXPORTS, TCPMOD_IMPORTS, V1_2_IMPORTS, WASI_IMPORTS } from './abi.js';
import { declarationHint } from './declarations.js';
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
        problems.push(withFix(`import env.memory: initial size ${lim.initial} pages exceeds the memory cap of ${capPages} pages`,
          `declare a smaller initial memory (asc --initialMemory PAGES, clang -Wl,--initial-memory=BYTES) or raise the host's --module-memory`));
      else memory.imported = { initial: lim.initial, maximum: Math.min(capPages, lim.maximum ?? capPages) };
      continue;
    }
    if (!allowed || !Object.hasOwn(allowed, imp.name)) {
      problems.push(withFix(`import ${where} is not allowed by ABI v1`, forbiddenImportFix(imp.module, imp.name)));
      continue;
    }
    if (imp.desc.kind !== 'function') {
      problems.push(`import ${where} must be a function, not a ${imp.desc.kind}`);
      continue;
    }
    const sig = signature(imp.desc.type);
    if (sig !== allowed[imp.name])
      problems.push(withFix(`import ${where} has signature ${sig}; ABI ${abiOf(imp.module, imp.name)} says ${allowed[imp.name]}`,
        imp.module === 'tcpmod' ? declarationHint(imp.name) : 'declare it as WASI preview1 defines it'));
    if (imp.module === 'wasi_snapshot_preview1') importsWasi = true;
  }

  const exports = new Map(shape.exports.map((e) => [e.name, e.desc]));
  const mem = exports.get('memory');
  if (!mem) problems.push(withFix('missing export memory', 'clang exports it unless linked with --import-memory: then add -Wl,--export-memory'));
  else if (mem.kind !== 'memory') problems.push(`export memory must be a memory, not a ${mem.kind}`);
  for (const [name, want] of Object.entries(REQUIRED_EXPORTS)) {
    const d = exports.get(name);
    if (!d) problems.push(withFix(`missing export ${name} ${want}`, `export it: in C define it with TCPMOD_EXPORT(${name}) from include/tcpmod.h (or link with -Wl,--export=${name}); in AssemblyScript export it from the entry file`));
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

  const upstreamImport = shape.imports.find((i) => i.module === 'tcpmod' && i.name.startsWith('upstream_'));
  if (upstreamImport && !optional.has('tcpmod_on_upstream'))
    problems.push(withFix(`import tcpmod.${upstreamImport.name} needs the export tcpmod_on_upstream (i32, i32, i32, i32) -> i32`,
      'export it: the host calls it with (conn, upstream, event, in_len) when an upstream connects, sends, closes or fails'));
  if (shape.imports.some((i) => i.module === 'tcpmod' && i.name === 'set_timer') && !optional.has('tcpmod_on_timer'))
    problems.push('import tcpmod.set_timer needs the export tcpmod_on_timer (i32, i32) -> i32, which the host calls when the timer fires');
  if (shape.imports.some((i) => i.module === 'tcpmod' && i.name === 'subscribe') && !optional.has('tcpmod_on_message'))
    problems.push(withFix('import tcpmod.subscribe needs the export tcpmod_on_message (i32, i32, i32, i32, i32) -> i32, which the host calls with each message',
      'export it: in C TCPMOD_EXPORT(tcpmod_on_message) from include/tcpmod.h; in AssemblyScript re-export onMessage\'s tcpmod_on_message from the SDK (assembly/sdk/topics.ts)'));

  if (!memory.imported) {
    if (shape.memories.length === 0 && !problems.some((p) => p.includes('memory'))) problems.push('the module has no memory');
    for (const lim of shape.memories) {
      const bad = memoryKindProblem(lim);
      if (bad) problems.push(`memory: ${bad}`);
      else if (lim.maximum === undefined)
        problems.push(withFix(`memory declares no maximum; a module-defined memory must declare a maximum of at most ${capPages} pages (${memoryCapBytes} bytes)`,
          maximumFlags(capPages)));
      else if (lim.maximum > capPages)
        problems.push(withFix(`memory maximum ${lim.maximum} pages exceeds the host cap of ${capPages} pages (${memoryCapBytes} bytes)`,
          `${maximumFlags(capPages)}; or raise the host's cap with --module-memory`));
    }
  }
  return { problems, memory, importsWasi, optional };
}

/** The ABI version that defines an import, as a refusal names it. */
function abiOf(module: string, name: string): string {
  return module === 'tcpmod' && (V1_2_IMPORTS as readonly string[]).includes(name) ? 'v1.2' : 'v1';
}

/** A problem line with the usual fix appended (the problem alone when there is none). */
function withFix(problem: string, fix: string | null): string {
  return fix ? `${problem}; fix: ${fix}` : problem;
}

/** The flags that declare a memory maximum of `pages`, in each toolchain. */
function maximumFlags(pages: number): string {
  const bytes = pages * PAGE;
  return `declare a maximum of at most ${pages} pages: asc --maximumMemory ${pages} (asconfig "maximumMemory"), clang -Wl,--max-memory=${bytes}, Rust -C link-arg=--max-memory=${bytes}`;
}

/** Why a module usually imports something ABI v1 does not offer, and what to do instead. */
function forbiddenImportFix(module: string, name: string): string | null {
  if (module === 'wasi_snapshot_preview1')
    return 'WASI functions beyond fd_write, clock_time_get, random_get and proc_exit come from libc stdio and files (printf, fopen) or a WASI start-up: build without libc (clang --target=wasm32 -nostdlib, Rust wasm32-unknown-unknown), do not use printf/stdio, and log with tcpmod.log';
  if (module === 'env' && name === 'abort')
    return 'point AssemblyScript\'s abort at tcpmod.abort: build with `tcpmod build`, or extend the preset (asconfig: "extends": "tcpmod/asconfig.json"), or pass --lib node_modules/tcpmod/assembly/sdk/abort.ts --use abort=tcpmod_abort';
  if (module === 'env' && name === 'seed') return 'AssemblyScript imports it for Math.random: do not use Math.random, or take random bytes from WASI random_get';
  if (module === 'env' && name === 'trace') return 'AssemblyScript imports it for trace(): log with tcpmod.log instead';
  const bare = name.replace(/^tcpmod_/, '');
  if (module === 'env' && Object.hasOwn(TCPMOD_IMPORTS, bare))
    return `a host function declared without its import module: in C use __attribute__((import_module("tcpmod"), import_name("${bare}"))) (include/tcpmod.h does), in AssemblyScript @external("tcpmod", "${bare}"), in Rust #[link(wasm_import_module = "tcpmod")]`;
  if (module === 'env')
    return 'a function the module declares but never defines (C linked with --allow-undefined, a Rust extern block without #[link(wasm_import_module = ...)]): define it, or use a tcpmod import instead';
  if (module === 'tcpmod') return `this host's tcpmod imports are ${Object.keys(TCPMOD_IMPORTS).join(', ')}`;
  return null;
}

function memoryKindProblem(lim: Limits): string | null {
  if (lim.memory64) return '64-bit memories are not supported';
  if (lim.shared) return 'shared memories are not supported';
  return null;
}
