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
// Usage: node scripts/build-wasm.mjs [--force] [name ...]   (default: all modules)
//
// Building all of them costs seconds of compiler time on every `npm test` and
// `npm run test:unit`, so a full build is skipped when nothing it is made from
// changed: build/.wasm-inputs holds the hash of every file under assembly/,
// asconfig.json, the compiler's version, this script and the built host (dist/*.js,
// whose checks every module passes); the build runs again when any differs or a
// module's .wasm is missing. --force builds anyway.

import { createHash } from "node:crypto";
import { copyFileSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const srcDir = join(root, "assembly");
const STAMP = join(root, "build", ".wasm-inputs");
// Shipped under a second name too, byte for byte the same module: issue 23 calls the sharding
// proxy build/proxy.wasm, and redis-proxy.wasm stays for what already names it (one module, two files).
const ALIASES = { proxy: "redis-proxy" };

/** Every file under `dir` (relative to the repository), sorted; none when it does not exist. */
function filesUnder(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(relative(root, p));
  }
  return out.sort();
}

/** The hash of everything a full build is made from (see the header). */
function inputsKey() {
  const h = createHash("sha256");
  const asc = JSON.parse(readFileSync(join(root, "node_modules", "assemblyscript", "package.json"), "utf8")).version;
  h.update(`asc ${asc}\0`);
  const files = [...filesUnder(srcDir), "asconfig.json", relative(root, fileURLToPath(import.meta.url)), ...filesUnder(join(root, "dist")).filter((f) => f.endsWith(".js"))];
  for (const f of files) h.update(`${f}\0`).update(readFileSync(join(root, f))).update("\0");
  return h.digest("hex");
}

function listModules() {
  return readdirSync(srcDir)
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts") && statSync(join(srcDir, f)).isFile())
    .map((f) => f.slice(0, -3))
    .sort();
}

async function main() {
  const all = listModules();
  const force = process.argv.includes("--force");
  const wanted = process.argv.slice(2).filter((a) => a !== "--force");
  const full = wanted.length === 0;
  const key = full ? inputsKey() : null;
  if (full && !force && existsSync(STAMP) && readFileSync(STAMP, "utf8") === key && [...all, ...Object.keys(ALIASES)].every((n) => existsSync(join(root, "build", `${n}.wasm`)))) {
    console.log(`${all.length} module(s) up to date (nothing under assembly/, asconfig.json or dist/ changed; --force builds anyway)`);
    return;
  }
  rmSync(STAMP, { force: true });
  const { buildModule, describeBuilt } = await import("../dist/build.js");
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
      for (const [alias, of] of Object.entries(ALIASES))
        if (of === name) copyFileSync(join(root, "build", `${name}.wasm`), join(root, "build", `${alias}.wasm`));
    } catch (e) {
      throw new Error(e.problems ? `${name}: violates ABI v1\n  ${e.problems.join("\n  ")}` : e.message);
    }
  }
  console.log(`${names.length} module(s) in ${Math.round(performance.now() - t0)} ms`);
  if (key) writeFileSync(STAMP, key);
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
