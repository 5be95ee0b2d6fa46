#!/usr/bin/env node
// Builds every protocol module: each top-level assembly/<name>.ts becomes
// build/<name>.wasm (assembly/sdk/ is the library, not a module). Shared compiler
// options live in asconfig.json so a bare `npx asc assembly/x.ts` behaves the
// same; this script is the entry point (`npm run build:wasm`). All modules are
// compiled in this one process, and each result is checked against ABI v1
// (imports allow-list, required exports, bounded memory, a sane IoDesc) so a bad
// module fails the build instead of the server's load step.
//
// Usage: node scripts/build-wasm.mjs [name ...]   (default: all modules)

import asc from "assemblyscript/asc";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const srcDir = join(root, "assembly");
const outDir = "build";

// ABI v1: the only imports a module may have.
const ALLOWED_IMPORTS = {
  env: { memory: "memory" },
  tcpmod: Object.fromEntries(
    ["send", "log", "now_ms", "abort", "kv_get", "kv_set", "kv_del", "kv_incr"].map((n) => [n, "function"]),
  ),
  wasi_snapshot_preview1: Object.fromEntries(
    ["fd_write", "clock_time_get", "random_get", "proc_exit"].map((n) => [n, "function"]),
  ),
};
const REQUIRED_EXPORTS = { memory: "memory", tcpmod_abi_v1: "function", tcpmod_io_desc: "function", tcpmod_on_data: "function" };
const HOST_CAP_PAGES = 512; // 32 MiB, the host's default memory cap
const MIN_CAP = 1024;
const MAX_CAP = 4 * 1024 * 1024;

function listModules() {
  return readdirSync(srcDir)
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts") && statSync(join(srcDir, f)).isFile())
    .map((f) => f.slice(0, -3))
    .sort();
}

async function compile(name) {
  const { error, stderr } = await asc.main(
    [`assembly/${name}.ts`, "--baseDir", root, "--config", "asconfig.json", "--outFile", `${outDir}/${name}.wasm`],
    {},
  );
  const diagnostics = stderr.toString().trim();
  if (error) throw new Error(`${name}: compile failed\n${diagnostics || error.message}`);
  if (diagnostics) console.warn(diagnostics);
}

// Reads the limits of the module's own (section 5) memory; null when it defines none.
function definedMemoryLimits(bytes) {
  let p = 8;
  const leb = () => {
    let result = 0, shift = 0, b;
    do { b = bytes[p++]; result += (b & 0x7f) * 2 ** shift; shift += 7; } while (b & 0x80);
    return result;
  };
  while (p < bytes.length) {
    const id = bytes[p++];
    const size = leb();
    const end = p + size;
    if (id === 5) {
      if (leb() === 0) return null;
      const flags = leb();
      const initial = leb();
      return { initial, maximum: flags & 1 ? leb() : undefined };
    }
    p = end;
  }
  return null;
}

function check(name, bytes) {
  const problems = [];
  const mod = new WebAssembly.Module(bytes);
  const imports = WebAssembly.Module.imports(mod);
  for (const { module, name: field, kind } of imports) {
    if (ALLOWED_IMPORTS[module]?.[field] !== kind) problems.push(`import ${module}.${field} (${kind}) is not allowed by ABI v1`);
  }
  const exports = Object.fromEntries(WebAssembly.Module.exports(mod).map((e) => [e.name, e.kind]));
  for (const [field, kind] of Object.entries(REQUIRED_EXPORTS)) {
    if (exports[field] !== kind) problems.push(`missing export ${field} (${kind})`);
  }
  if (!imports.some((i) => i.module === "env" && i.name === "memory")) {
    const mem = definedMemoryLimits(bytes);
    if (!mem || mem.maximum === undefined || mem.maximum > HOST_CAP_PAGES) {
      problems.push(`own memory must declare a maximum <= ${HOST_CAP_PAGES} pages (got ${JSON.stringify(mem)})`);
    }
  }
  if (problems.length === 0) problems.push(...smokeTest(mod, imports));
  if (problems.length) throw new Error(`${name}: violates ABI v1\n  ${problems.join("\n  ")}`);
  return { imports, exports };
}

// Instantiates with inert host functions, runs _initialize and validates the IoDesc,
// so a module that forgets configure() or picks bad sizes fails here, with its message.
function smokeTest(mod, imports) {
  let memory;
  const str = (ptr) => {
    if (!ptr || !memory) return "";
    const len = new Uint32Array(memory.buffer, ptr - 4, 1)[0];
    return Buffer.from(memory.buffer, ptr, len).toString("utf16le");
  };
  const stubs = {
    abort: (msg, file, line, col) => { throw new Error(`abort: ${str(msg)} at ${str(file) || "?"}:${line}:${col}`); },
    proc_exit: (code) => { throw new Error(`proc_exit(${code})`); },
    now_ms: () => Date.now(),
  };
  const importObject = {};
  for (const i of imports) {
    importObject[i.module] ??= {};
    importObject[i.module][i.name] =
      i.kind === "memory" ? new WebAssembly.Memory({ initial: 1, maximum: HOST_CAP_PAGES }) : stubs[i.name] ?? (() => 0);
  }
  try {
    const inst = new WebAssembly.Instance(mod, importObject);
    memory = inst.exports.memory;
    inst.exports._initialize?.();
    const desc = inst.exports.tcpmod_io_desc();
    const [inPtr, inCap, outPtr, outCap, statePtr, stateSize, resPtr, flags] = new Uint32Array(memory.buffer.slice(desc, desc + 32));
    const problems = [];
    if (desc % 4) problems.push(`IoDesc at ${desc} is not 4-byte aligned`);
    if (inCap < MIN_CAP || inCap > MAX_CAP) problems.push(`in_cap ${inCap} outside 1 KiB..4 MiB`);
    if (outCap < MIN_CAP || outCap > MAX_CAP) problems.push(`out_cap ${outCap} outside 1 KiB..4 MiB`);
    if (stateSize > 256) problems.push(`state_size ${stateSize} > 256`);
    if (flags !== 0) problems.push(`IoDesc flags ${flags} != 0`);
    const regions = [["in", inPtr, inCap], ["out", outPtr, outCap], ["state", statePtr, stateSize], ["result", resPtr, 8]].filter((r) => r[2] > 0);
    for (const [n, p, len] of regions) if (p + len > memory.buffer.byteLength) problems.push(`${n} region outside memory`);
    for (let a = 0; a < regions.length; a++)
      for (let b = a + 1; b < regions.length; b++) {
        const [na, pa, la] = regions[a], [nb, pb, lb] = regions[b];
        if (pa < pb + lb && pb < pa + la) problems.push(`${na} and ${nb} regions overlap`);
      }
    return problems;
  } catch (e) {
    return [`instantiation/_initialize/tcpmod_io_desc failed: ${e.message}`];
  }
}

async function main() {
  const all = listModules();
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((n) => !all.includes(n));
  if (unknown.length) throw new Error(`no such module: ${unknown.join(", ")} (have: ${all.join(", ")})`);
  const names = wanted.length ? wanted : all;
  if (names.length === 0) throw new Error("no modules in assembly/");
  const t0 = performance.now();
  // Sequential on purpose: asc.main shares compiler/Binaryen state within a process.
  for (const name of names) {
    await compile(name);
    const file = join(root, outDir, `${name}.wasm`);
    const bytes = readFileSync(file);
    const { imports } = check(name, bytes);
    const imp = imports.map((i) => `${i.module}.${i.name}`).join(", ");
    console.log(`built ${outDir}/${name}.wasm (${bytes.length} bytes; imports: ${imp || "none"})`);
  }
  console.log(`${names.length} module(s) in ${Math.round(performance.now() - t0)} ms`);
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
