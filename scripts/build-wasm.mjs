#!/usr/bin/env node
// Builds every protocol module: each top-level assembly/<name>.ts becomes
// build/<name>.wasm (assembly/sdk/ is the library, not a module). Shared compiler
// options live in asconfig.json so a bare `npx asc assembly/x.ts` behaves the
// same; this script is the entry point (`npm run build:wasm`). All modules are
// compiled in this one process, and each result goes through the host's own
// load checks (dist/module/load.js: build the host first) so a bad module fails
// the build instead of the server's load step.
//
// Usage: node scripts/build-wasm.mjs [name ...]   (default: all modules)

import asc from "assemblyscript/asc";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const srcDir = join(root, "assembly");
const outDir = "build";

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

// The host's own load checks (dist/, built first by `npm run build:host`): the
// same imports allow-list, exports, memory bounds and trial instance (IoDesc)
// that `tcpmod serve` runs, so a module the build accepts is one the server loads.
async function check(name, file) {
  const { compileModule, probeModule } = await import("../dist/module/load.js");
  try {
    const compiled = await compileModule(file);
    probeModule(compiled, { send: () => -1, log: () => undefined }).dispose();
    return compiled.shape.imports;
  } catch (e) {
    throw new Error(`${name}: violates ABI v1\n  ${(e.problems ?? [e.message]).join("\n  ")}`);
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
    const imports = await check(name, file);
    const imp = imports.map((i) => `${i.module}.${i.name}`).join(", ");
    console.log(`built ${outDir}/${name}.wasm (${bytes.length} bytes; imports: ${imp || "none"})`);
  }
  console.log(`${names.length} module(s) in ${Math.round(performance.now() - t0)} ms`);
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
