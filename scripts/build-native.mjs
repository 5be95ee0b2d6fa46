#!/usr/bin/env node
// Builds the native shim (host/native) with node-gyp. This is the package's
// `install` script, so it runs wherever tcpmod is installed: in this
// repository (`npm install`, `npm ci`) and in a project that depends on the
// published tarball, where the shim is compiled for the user's own Node.
//
// A build is skipped when host/native/build holds an addon made from the same
// sources (binding.gyp, src/*) for the same Node, node-addon-api and platform:
// reinstalling (npm ci, a `file:` dependency) then costs nothing. `--force`,
// `npm rebuild tcpmod` and `npm run build:native` always rebuild.
// `--if-missing` builds only when there is no addon at all: `prepare` uses it,
// because scripts/build-wasm.mjs loads the addon for its checks and npm runs a
// linked (`file:`) package's prepare before its install.
//
// node-gyp comes from PATH: npm puts its own bundled node-gyp there for every
// lifecycle script (and this repository's devDependency ahead of it), so a
// consumer needs no node-gyp of its own, only python3, make and a C++17
// compiler. Outside npm, $npm_config_node_gyp or a node-gyp on PATH is used.
//
// Usage: node scripts/build-native.mjs [--force | --if-missing]

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const nativeDir = join(root, "host", "native");
const addon = join(nativeDir, "build", "Release", "tcpmod_native.node");
const stampFile = join(nativeDir, "build", "tcpmod-build.json");

/** What the built addon depends on: its sources, the Node it was built for, node-addon-api's headers. */
function buildKey() {
  const hash = createHash("sha256");
  const srcDir = join(nativeDir, "src");
  const files = ["binding.gyp", ...readdirSync(srcDir).sort().map((f) => join("src", f))];
  for (const f of files) {
    hash.update(`${f}\0`);
    hash.update(readFileSync(join(nativeDir, f)));
  }
  let addonApi = "none";
  try {
    const require = createRequire(join(nativeDir, "binding.gyp"));
    addonApi = JSON.parse(readFileSync(require.resolve("node-addon-api/package.json"), "utf8")).version;
  } catch {
    // node-gyp will report the missing dependency itself.
  }
  return {
    sources: hash.digest("hex"),
    node: process.version,
    modules: process.versions.modules,
    openssl: process.versions.openssl,
    platform: process.platform,
    arch: process.arch,
    nodeAddonApi: addonApi,
  };
}

function upToDate(key) {
  if (!existsSync(addon) || !existsSync(stampFile)) return false;
  try {
    return JSON.stringify(JSON.parse(readFileSync(stampFile, "utf8"))) === JSON.stringify(key);
  } catch {
    return false;
  }
}

/** Runs `node-gyp rebuild` in host/native: the node-gyp on PATH (npm's own inside lifecycle scripts), else npm's as npm reports it. */
function runNodeGyp() {
  const opts = { cwd: nativeDir, stdio: "inherit" };
  const r = spawnSync("node-gyp", ["rebuild"], opts);
  if (r.error?.code !== "ENOENT") return r;
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return spawnSync(process.execPath, [fromNpm, "rebuild"], opts);
  return r;
}

function main() {
  if (process.argv.includes("--if-missing") && existsSync(addon)) return 0;
  const force = process.argv.includes("--force") || process.env.npm_command === "rebuild";
  const key = buildKey();
  if (!force && upToDate(key)) {
    console.log(`tcpmod: native shim is up to date (${addon})`);
    return 0;
  }
  const t0 = performance.now();
  const r = runNodeGyp();
  if (r.error) {
    const hint = r.error.code === "ENOENT" ? " (not found: run this through npm, e.g. npm rebuild tcpmod, or install node-gyp)" : "";
    console.error(`tcpmod: could not run node-gyp: ${r.error.message}${hint}`);
    return 1;
  }
  if (r.status !== 0) {
    console.error(
      "tcpmod: building the native shim failed. It needs python3, make and a C++17 compiler " +
        "(Debian/Ubuntu: apt-get install python3 make g++), and Node's headers " +
        "(node-gyp downloads them, or set npm_config_nodedir to a Node source/headers directory).",
    );
    return r.status ?? 1;
  }
  writeFileSync(stampFile, `${JSON.stringify(key, null, 2)}\n`);
  console.log(`tcpmod: built the native shim in ${Math.round(performance.now() - t0)} ms`);
  return 0;
}

process.exit(main());
