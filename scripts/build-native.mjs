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
// The package ships a prebuilt addon (prebuilds/<platform>-<arch>/, made by
// `--prebuild` at pack time from the same sources). The addon uses Node-API
// (NAPI_VERSION 8) only, so one linux-x64 binary serves every Node >= 20. At
// install the prebuilt is used when it fits, and nothing is compiled:
//   - its manifest names this platform and arch, the sources shipped beside it
//     (the same hash as buildKey's), and a Node-API version this Node has;
//   - it loads here with RTLD_NOW, so every symbol it takes from the running
//     Node (the TLS part links Node's own OpenSSL) resolves now, not at a
//     first call in a server (a wrong libc or a missing symbol refuses here).
// Otherwise, or with `npm install --build-from-source` (npm_config_build_from_source)
// or TCPMOD_BUILD_FROM_SOURCE=1, the shim is compiled as before; the line
// printed says which was done and why. host/sys.ts loads a compiled addon
// (host/native/build/Release) when there is one, else the prebuilt.
//
// Usage: node scripts/build-native.mjs [--force | --if-missing | --prebuild]

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { constants as osConstants } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const nativeDir = join(root, "host", "native");
const addon = join(nativeDir, "build", "Release", "tcpmod_native.node");
const stampFile = join(nativeDir, "build", "tcpmod-build.json");
/** The Node-API version the addon is compiled against (binding.gyp's NAPI_VERSION). */
const NAPI_VERSION = 8;
const prebuiltDir = join(root, "prebuilds", `${process.platform}-${process.arch}`);
const prebuilt = join(prebuiltDir, "tcpmod_native.node");
const manifestFile = join(prebuiltDir, "tcpmod_native.json");

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
  // One compiler per core (make -j): the shim is some forty independent sources, so a build on a
  // 2-core machine takes about half the time of node-gyp's default one job.
  const args = ["rebuild", "--jobs", "max"];
  const r = spawnSync("node-gyp", args, opts);
  if (r.error?.code !== "ENOENT") return r;
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return spawnSync(process.execPath, [fromNpm, ...args], opts);
  return r;
}

/** "glibc", "musl" or "unknown": which C library this Node runs on. */
function libc() {
  if (process.platform !== "linux") return "none";
  const header = process.report?.getReport?.().header;
  return header?.glibcVersionRuntime ? "glibc" : "musl";
}

/** Why the shipped prebuilt cannot serve here, or null when it fits (it has just loaded). */
function prebuiltMisfit(key) {
  if (process.env.npm_config_build_from_source === "true" || process.env.TCPMOD_BUILD_FROM_SOURCE === "1")
    return "building from source was asked for (--build-from-source / TCPMOD_BUILD_FROM_SOURCE=1)";
  if (!existsSync(manifestFile) || !existsSync(prebuilt)) return `no prebuilt for ${process.platform}-${process.arch}`;
  let m;
  try {
    m = JSON.parse(readFileSync(manifestFile, "utf8"));
  } catch (e) {
    return `its manifest is unreadable: ${e.message}`;
  }
  if (m.sources !== key.sources) return "it was built from other sources than the ones here";
  if (m.libc !== libc()) return `it is for ${m.libc}, this Node runs on ${libc()}`;
  if (Number(process.versions.napi ?? 0) < m.napi) return `it needs Node-API ${m.napi}, this Node has ${process.versions.napi}`;
  try {
    process.dlopen({ exports: {} }, prebuilt, osConstants.dlopen.RTLD_NOW);
  } catch (e) {
    return `it does not load in this Node: ${e.message.split("\n")[0]}`;
  }
  return null;
}

/** `--prebuild` (the package's prepack): compiles when not up to date, then copies the addon into prebuilds/ with its manifest. */
function prebuild(key) {
  const rc = upToDate(key) ? 0 : compile(key);
  if (rc !== 0) return rc;
  rmSync(prebuiltDir, { recursive: true, force: true });
  mkdirSync(prebuiltDir, { recursive: true });
  copyFileSync(addon, prebuilt);
  const manifest = { napi: NAPI_VERSION, platform: process.platform, arch: process.arch, libc: libc(), sources: key.sources, nodeAddonApi: key.nodeAddonApi, builtWith: process.version };
  writeFileSync(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
  console.log(`tcpmod: prebuilt native shim for ${process.platform}-${process.arch} (Node-API ${NAPI_VERSION}) in ${prebuiltDir}`);
  return 0;
}

function main() {
  const key = buildKey();
  if (process.argv.includes("--prebuild")) return prebuild(key);
  if (process.argv.includes("--if-missing") && (existsSync(addon) || prebuiltMisfit(key) === null)) return 0;
  const force = process.argv.includes("--force") || process.env.npm_command === "rebuild";
  if (!force && upToDate(key)) {
    console.log(`tcpmod: native shim is up to date (${addon})`);
    return 0;
  }
  // An installed package has no compiled addon: the prebuilt serves when it fits. (A checkout that
  // has one keeps compiling it: host/sys.ts would load it ahead of the prebuilt.)
  if (!force && !existsSync(addon)) {
    const misfit = prebuiltMisfit(key);
    if (misfit === null) {
      console.log(`tcpmod: using the prebuilt native shim (${process.platform}-${process.arch}, Node-API ${NAPI_VERSION}); nothing compiled`);
      return 0;
    }
    console.log(`tcpmod: compiling the native shim: the prebuilt does not serve here (${misfit})`);
  }
  return compile(key);
}

/** Compiles the addon with node-gyp and stamps it with `key`. */
function compile(key) {
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
