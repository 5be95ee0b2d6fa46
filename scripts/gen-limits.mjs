#!/usr/bin/env node
// Writes host/native/src/tcpmod_limits.h: the limits the native shim shares
// with the TypeScript host, taken from their one source -- the option table
// (host/options.ts), the ABI numbers (host/module/abi.ts) and the host limits
// (host/limits.ts) -- so that a bound is written once and C++ cannot drift from it.
//
// The header is committed and shipped: an installed package compiles the
// native sources (scripts/build-native.mjs, the `install` script) without
// TypeScript, so it must not need this script. This script therefore reads the
// COMPILED tables in dist/ (plain JS, no tsc at run time) and is run only by
// `npm run build:native` in a checkout, never by `install`. When dist/ is
// missing or older than a source table (build:native runs before build:host in
// `npm run build`), it leaves the committed header alone and says so;
// test/limits-header.test.ts renders the header from the TypeScript sources
// themselves and fails when the committed one differs.
//
// Usage: node scripts/gen-limits.mjs [--check]
//   --check: write nothing; exit 1 when the committed header differs.

import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const HEADER_PATH = join(root, 'host', 'native', 'src', 'tcpmod_limits.h');
/** The source tables, as the TypeScript file and its compiled form. */
const SOURCES = {
  options: ['host/options.ts', 'dist/options.js'],
  abi: ['host/module/abi.ts', 'dist/module/abi.js'],
  limits: ['host/limits.ts', 'dist/limits.js'],
};

/**
 * The header's constants: C++ name, type, value and where it comes from, from the
 * three tables (module namespaces, compiled or not). Every value must be an integer.
 */
export function limitEntries({ options, abi, limits }) {
  const { OPTIONS } = options;
  const durationMaxes = Object.values(OPTIONS).filter((s) => s.kind.type === 'duration').map((s) => s.kind.max);
  return [
    ['kStateMax', 'int', abi.STATE_MAX, 'abi.ts STATE_MAX', "a connection's state slot, bytes (IoDesc state_size)"],
    ['kIoMin', 'int64_t', abi.IO_MIN, 'abi.ts IO_MIN', 'the smallest in_cap / out_cap of an IoDesc'],
    ['kIoMax', 'int64_t', abi.IO_MAX, 'abi.ts IO_MAX', 'the largest in_cap / out_cap of an IoDesc'],
    ['kModuleIdSpace', 'uint64_t', abi.MODULE_ID_SPACE, 'abi.ts MODULE_ID_SPACE', "a module's conn is the host id modulo this"],
    ['kTimerMaxMs', 'int64_t', abi.TIMER_MAX_MS, 'abi.ts TIMER_MAX_MS', 'the longest tcpmod.set_timer, ms'],
    ['kTopicMax', 'size_t', abi.TOPIC_MAX, 'abi.ts TOPIC_MAX', 'the longest topic or pattern, bytes'],
    ['kTopicDirectFlag', 'int', abi.TOPIC_DIRECT, 'abi.ts TOPIC_DIRECT', "subscribe's kind flag: a direct subscription (publish_frame's frame)"],
    ['kSubscriptionsMax', 'size_t', abi.SUBSCRIPTIONS_MAX, 'abi.ts SUBSCRIPTIONS_MAX', 'the subscriptions one connection may hold'],
    ['kBatchMax', 'int64_t', OPTIONS.batch.kind.max, 'options.ts OPTIONS.batch max', 'the most events one epoll_wait takes (--batch)'],
    ['kMaxConnectionsMax', 'int64_t', OPTIONS.maxConnections.kind.max, 'options.ts OPTIONS.maxConnections max', 'the largest --max-connections'],
    ['kDurationMaxMs', 'int64_t', Math.max(...durationMaxes), 'options.ts: the largest max of a duration option', 'the longest duration any option passes down, ms'],
    ['kTimerPopsPerWake', 'int', limits.TIMER_POPS_PER_WAKE, 'limits.ts TIMER_POPS_PER_WAKE', 'timer items one timerfd wake takes, at most'],
    ['kEpollTagBits', 'int', limits.EPOLL_TAG_BITS, 'limits.ts EPOLL_TAG_BITS', "bits of a connection id in its epoll item's data (stale-event tag)"],
    // The key-value store's numbers (docs/abi.md §10, §14), as kv_core.h names them.
    ...Object.entries(abi.KV).map(([k, v]) => [`kKv${camel(k)}`, 'int64_t', v, `abi.ts KV.${k}`, 'a kv call\'s result code']),
    ['kKvNx', 'int', abi.KV_NX, 'abi.ts KV_NX', 'kv_set_ex / kv_cas flag: only when absent'],
    ['kKvXx', 'int', abi.KV_XX, 'abi.ts KV_XX', 'kv flag: only when present'],
    ['kKvKeepTtl', 'int', abi.KV_KEEPTTL, 'abi.ts KV_KEEPTTL', 'kv flag: keep the key\'s TTL'],
    ['kKvPrepend', 'int', abi.KV_PREPEND, 'abi.ts KV_PREPEND', 'kv_append flag: prepend'],
    ['kKvGt', 'int', abi.KV_GT, 'abi.ts KV_GT', 'kv_expire_ex flag: only a later expiry'],
    ['kKvLt', 'int', abi.KV_LT, 'abi.ts KV_LT', 'kv_expire_ex flag: only an earlier expiry'],
    ['kKvDecr', 'int', abi.KV_DECR, 'abi.ts KV_DECR', 'kv_incr_at flag: subtract, stopping at 0'],
    ['kKvTtlMax', 'int64_t', abi.KV_TTL_MAX, 'abi.ts KV_TTL_MAX', 'the longest TTL a kv call accepts, ms'],
  ].map(([name, type, value, from, doc]) => {
    if (!Number.isSafeInteger(value)) throw new Error(`gen-limits: ${from} is not an integer (${value})`);
    return { name, type, value, from, doc };
  });
}

/** NOT_INTEGER -> NotInteger. */
function camel(upper) {
  return upper.toLowerCase().replace(/(?:^|_)([a-z])/g, (_, c) => c.toUpperCase());
}

/** The header's text for the three tables. */
export function renderLimits(tables) {
  const entries = limitEntries(tables);
  const lines = entries.map((e) => `// ${e.doc} (${e.from})\nconstexpr ${e.type} ${e.name} = ${e.value};`);
  return `// GENERATED by scripts/gen-limits.mjs from host/options.ts (the option table),
// host/module/abi.ts (ABI numbers) and host/limits.ts (host limits). DO NOT EDIT:
// change the TypeScript table, then \`npm run build:host && npm run build:native\`
// (the generator reads the compiled tables in dist/, so it needs no TypeScript;
// the package's install compiles this committed copy and never runs it).
// test/limits-header.test.ts fails when this file and the tables differ, and
// when one of these values is written as a literal elsewhere in host/native/src.
//
// Named tcpmod_limits.h, not limits.h: the native unit tests compile with
// -Ihost/native/src, where a limits.h would shadow the C library's <limits.h>.
#pragma once

#include <cstdint>

namespace tcpmod {
namespace limits {

${lines.join('\n')}

// Relations the native code relies on; a table change that breaks one stops the build here.
static_assert(kStateMax > 0 && kIoMin > 0 && kIoMin <= kIoMax, "IoDesc bounds out of order");
// connLoad reports EOF as bit 30 of its result (conn_table.h kLoadEof), beside a length of at most kIoMax.
static_assert(kIoMax < (int64_t{1} << 30), "an input length must stay below connLoad's EOF bit");
// A module's conn is a positive i32: the host id modulo a power of two no larger than 2^31.
static_assert(kModuleIdSpace <= (uint64_t{1} << 31) && (kModuleIdSpace & (kModuleIdSpace - 1)) == 0,
              "the module id space must be a power of two that fits an i32");
// Ids are handed out so that no two open connections share a conn (NextId skips those in use):
// there must always be a free one.
static_assert(static_cast<uint64_t>(kMaxConnectionsMax) < kModuleIdSpace, "more connections than module ids");
// An epoll item's data is (tag << (64 - kEpollTagBits)) | (kind << 32) | fd: 4 bits of kind, 32 of fd.
static_assert(kEpollTagBits >= 1 && kEpollTagBits + 4 + 32 == 64, "the stale-event tag must fill the epoll data's top bits");
// The stale-event tag is the id's low bits, as the module's conn is: no wider than the module id space.
static_assert((uint64_t{1} << kEpollTagBits) <= kModuleIdSpace, "the stale-event tag is wider than the module id space");
// Durations reach native code as an int of ms (poll, epoll_wait, SendAll's timeout): past INT32_MAX one waits forever.
static_assert(kDurationMaxMs <= INT32_MAX && kTimerMaxMs <= INT32_MAX, "a duration limit overflows an int of ms");
static_assert(kBatchMax >= 1 && kTimerPopsPerWake >= 1, "a wake must take at least one item");
// kv_set_ex's flags are bits of one word; a TTL is held as ms in an int64 (and an expiry time beside the clock).
static_assert((kKvNx & kKvXx) == 0 && (kKvNx & kKvKeepTtl) == 0 && (kKvXx & kKvKeepTtl) == 0, "kv flags must be distinct bits");
static_assert(kKvTtlMax > 0 && kKvTtlMax <= (int64_t{1} << 52), "a kv TTL must stay far inside an int64 of ms");

}  // namespace limits
}  // namespace tcpmod
`;
}

/** Why dist/ cannot serve as the source (missing, or older than a table), or null. */
function distStale() {
  for (const [ts, js] of Object.values(SOURCES)) {
    const jsPath = join(root, js);
    if (!existsSync(jsPath)) return `${js} is missing`;
    if (statSync(jsPath).mtimeMs < statSync(join(root, ts)).mtimeMs) return `${js} is older than ${ts}`;
  }
  return null;
}

async function main() {
  const check = process.argv.includes('--check');
  const header = relative(root, HEADER_PATH);
  const stale = distStale();
  if (stale) {
    console.log(`tcpmod: ${header} not regenerated: ${stale} (run npm run build:host first); the committed header is used`);
    return check ? 1 : 0;
  }
  const tables = {};
  for (const [key, [, js]] of Object.entries(SOURCES)) tables[key] = await import(pathToFileURL(join(root, js)).href);
  const text = renderLimits(tables);
  const old = existsSync(HEADER_PATH) ? readFileSync(HEADER_PATH, 'utf8') : null;
  if (old === text) return 0;
  if (check) {
    console.error(`tcpmod: ${header} differs from the tables: run npm run build:host && node scripts/gen-limits.mjs`);
    return 1;
  }
  writeFileSync(HEADER_PATH, text);
  console.log(`tcpmod: wrote ${header}`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) process.exitCode = await main();
