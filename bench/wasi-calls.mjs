// Per-call cost of the WASI calls a module may import, answered by the host
// (host/module/wasi.ts, what the server uses) and by @wasmer/wasi (what it
// used before issue 26), from a wasm loop: best of 5 × 20,000 calls, twice
// each, interleaved. The host's fd_write sink only counts the bytes here (the
// server's decodes them into log lines under the log limit).
//   npm run build:host && node bench/wasi-calls.mjs
import { createRequire } from 'node:module';
import { watToWasm } from './lib/wat.mjs';
import { wasiImports } from '../dist/module/wasi.js';

const wasmer = createRequire(import.meta.url)('@wasmer/wasi');
await wasmer.init();
const loop = (name, call) => `(func (export "${name}") (param $n i32)
    (loop $l ${call} (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br_if $l (local.get $n))))`;
const mod = new WebAssembly.Module(await watToWasm('wasi-calls.wat', `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $c (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))
  (memory (export "memory") 1 1)
  (data (i32.const 64) "\\80\\00\\00\\00\\10\\00\\00\\00") ;; one iovec: 16 bytes at 128
  ${loop('clock_time_get', '(drop (call $c (i32.const 1) (i64.const 1) (i32.const 0)))')}
  ${loop('random_get(16)', '(drop (call $r (i32.const 0) (i32.const 16)))')}
  ${loop('fd_write(16 B)', '(drop (call $w (i32.const 1) (i32.const 64) (i32.const 1) (i32.const 72)))')})`));

function viaWasmer() {
  const wasi = new wasmer.WASI({ args: ['bench'], env: {} });
  const inst = new WebAssembly.Instance(mod, wasi.getImports(mod));
  wasi.instantiate(inst, {});
  return { ex: inst.exports, drain: () => wasi.getStdoutString() };
}
function viaHost() {
  let inst = null;
  let bytes = 0;
  const imports = wasiImports({ buffer: () => inst.exports.memory.buffer, write: (_fd, _mem, _ptr, len) => void (bytes += len) });
  inst = new WebAssembly.Instance(mod, { wasi_snapshot_preview1: imports });
  return { ex: inst.exports, drain: () => bytes };
}

const N = 20_000;
for (const [name, make] of [['@wasmer/wasi', viaWasmer], ['host', viaHost], ['@wasmer/wasi', viaWasmer], ['host', viaHost]]) {
  const { ex, drain } = make();
  const out = [];
  for (const call of ['clock_time_get', 'random_get(16)', 'fd_write(16 B)']) {
    ex[call](1000); // warm-up
    let best = Infinity;
    for (let k = 0; k < 5; k++) {
      const t = performance.now();
      ex[call](N);
      best = Math.min(best, ((performance.now() - t) * 1000) / N);
      drain();
    }
    out.push(`${call} ${best.toFixed(3)} us`);
  }
  console.log(`${name.padEnd(13)} ${out.join(', ')}`);
}
