#!/usr/bin/env node
// Builds every protocol module: each top-level assembly/<name>.ts becomes
// build/<name>.wasm (assembly/sdk/ is the library, not a module). Each one goes
// through the host's buildModule (dist/build.js: build the host first), the
// function behind `tcpmod build`: the same compiler preset (asconfig.json) and
// the same load checks `tcpmod serve` runs, so a bad module fails the build
// instead of the server's load step, and modules here build exactly as a
// module project's do. They import the SDK by its package path
// ("tcpmod/assembly/sdk"), which buildModule resolves to this repository.
//
// Usage: node scripts/build-wasm.mjs [name ...]   (default: all modules)

import { readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const srcDir = join(root, "assembly");

function listModules() {
  return readdirSync(srcDir)
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts") && statSync(join(srcDir, f)).isFile())
    .map((f) => f.slice(0, -3))
    .sort();
}

async function main() {
  const { buildModule, describeBuilt } = await import("../dist/build.js");
  const all = listModules();
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((n) => !all.includes(n));
  if (unknown.length) throw new Error(`no such module: ${unknown.join(", ")} (have: ${all.join(", ")})`);
  const names = wanted.length ? wanted : all;
  if (names.length === 0) throw new Error("no modules in assembly/");
  const t0 = performance.now();
  // Sequential on purpose: asc.main shares compiler/Binaryen state within a process.
  for (const name of names) {
    try {
      const built = await buildModule({ entry: `assembly/${name}.ts`, outFile: `build/${name}.wasm`, baseDir: root });
      if (built.warnings) console.warn(built.warnings);
      console.log(describeBuilt(built, root));
    } catch (e) {
      throw new Error(e.problems ? `${name}: violates ABI v1\n  ${e.problems.join("\n  ")}` : e.message);
    }
  }
  console.log(`${names.length} module(s) in ${Math.round(performance.now() - t0)} ms`);
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
