#!/usr/bin/env node
// The cost of one store call from WebAssembly (issue 25 item 4): a module that
// calls its kv_get import N times in a loop (a 3-byte key that is missing, so
// the store's own work is a hash and a miss), with the import bound in the ways
// compared. CPU time of this thread (process.cpuUsage, so time the machine's
// other load takes is not counted), variants interleaved round by round, median.
//
//   node bench/kv-call.mjs [--calls N] [--rounds R]
//
// Variants:
//   buffers  what host/module/instance.ts did before issue 25: a JS function
//            that runs the store-call hook, checks both regions, reads the
//            cached buffer and calls native.kvGet(buf, key, keyLen, buf, out,
//            cap): 6 arguments, two of them the memory's ArrayBuffer;
//   bound    what it does now: the memory bound once (native.kvBindMemory,
//            again only when memory.buffer is a new object), the same JS
//            checks, then native.kvGetBound(key, keyLen, out, cap): 4 numbers;
//   direct   native.kvGetBound itself as the wasm import: no JS in between
//            (the native side checks the regions against the bound size);
//   js-floor an empty JS import (what any JS hop costs at least).
// One thread binds one memory at a time: each round binds the memory of the
// instance it runs (as a worker would when it switches instances).
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { watToWasm } from './lib/wat.mjs';
import { median } from './lib/stats.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const native = createRequire(import.meta.url)(resolve(root, 'host/native/build/Release/tcpmod_native.node'));

function parse(argv) {
  const o = { calls: 1_000_000, rounds: 7 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = Number(argv[++i]);
    if (!Number.isInteger(v) || v < 1) throw new Error(`${a} needs a positive integer`);
    if (a === '--calls') o.calls = v;
    else if (a === '--rounds') o.rounds = v;
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

const WAT = `(module
  (import "env" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "k:1")
  (func (export "loop") (param $n i32) (result i32)
    (local $sum i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $sum (i32.add (local.get $sum) (call $kv_get (i32.const 16) (i32.const 3) (i32.const 64) (i32.const 256))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $sum)))`;

async function instantiate(makeImport) {
  const bytes = await watToWasm('kv-call.wat', WAT);
  const holder = {};
  const { instance } = await WebAssembly.instantiate(bytes, { env: { kv_get: makeImport(holder) } });
  holder.memory = instance.exports.memory;
  return { loop: instance.exports.loop, memory: instance.exports.memory };
}

/** Each variant: a make(holder) giving the import; holder.memory is set after instantiation. */
const VARIANTS = {
  buffers: (h) => {
    let buf = null;
    const buffer = () => (buf !== null && buf.byteLength !== 0 ? buf : (buf = h.memory.buffer));
    const hooks = { storeCall: undefined };
    const region = (what, ptr, len) => {
      if ((ptr >>> 0) + (len >>> 0) > buffer().byteLength) throw new Error(`${what} outside memory`);
    };
    return (key, keyLen, out, cap) => {
      hooks.storeCall?.();
      region('kv_get key', key, keyLen);
      region('kv_get out', out, cap);
      const b = buffer();
      return native.kvGet(b, key >>> 0, keyLen >>> 0, b, out >>> 0, cap >>> 0);
    };
  },
  bound: (h) => {
    let buf = null;
    const hooks = { storeCall: undefined };
    const buffer = () => {
      if (buf !== null && buf.byteLength !== 0) return buf;
      buf = h.memory.buffer;
      native.kvBindMemory(buf, 0, buf.byteLength);
      return buf;
    };
    const region = (what, ptr, len) => {
      if ((ptr >>> 0) + (len >>> 0) > buffer().byteLength) throw new Error(`${what} outside memory`);
    };
    return (key, keyLen, out, cap) => {
      hooks.storeCall?.();
      region('kv_get key', key, keyLen);
      region('kv_get out', out, cap);
      return native.kvGetBound(key >>> 0, keyLen >>> 0, out >>> 0, cap >>> 0);
    };
  },
  direct: () => native.kvGetBound,
  'js-floor': () => () => -1,
};

function cpuNs(fn) {
  const t0 = process.cpuUsage();
  fn();
  const t = process.cpuUsage(t0);
  return (t.user + t.system) * 1000;
}

async function main() {
  const o = parse(process.argv.slice(2));
  const loops = {};
  for (const [name, make] of Object.entries(VARIANTS)) loops[name] = await instantiate(make);
  const per = Object.fromEntries(Object.keys(loops).map((k) => [k, []]));
  for (let r = 0; r <= o.rounds; r++) {
    for (const [name, loop] of Object.entries(loops)) {
      native.kvBindMemory(loop.memory.buffer, 0, loop.memory.buffer.byteLength);
      const ns = cpuNs(() => loop.loop(o.calls));
      if (r > 0) per[name].push(ns / o.calls); // round 0 warms the JIT
    }
  }
  const out = Object.fromEntries(Object.entries(per).map(([k, v]) => [k, { nsPerCall: +median(v).toFixed(1), min: +Math.min(...v).toFixed(1), max: +Math.max(...v).toFixed(1) }]));
  process.stdout.write(`${JSON.stringify({ calls: o.calls, rounds: o.rounds, node: process.version, variants: out })}\n`);
}

main().catch((e) => {
  process.stderr.write(`kv-call: ${e.stack ?? e}\n`);
  process.exit(1);
});
