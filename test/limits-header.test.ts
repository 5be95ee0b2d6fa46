// host/native/src/tcpmod_limits.h is generated from the TypeScript tables and
// committed (an installed package compiles it without TypeScript). These tests
// keep the two from drifting: the header rendered from the tables as they are
// now must be the committed one, and no value of the header may be written
// again as a literal in the native sources.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: plain JS without declarations (it must run without TypeScript)
import { HEADER_PATH, limitEntries, renderLimits } from '../scripts/gen-limits.mjs';
import * as abi from '../host/module/abi.js';
import * as limits from '../host/limits.js';
import * as options from '../host/options.js';

interface Entry { name: string; type: string; value: number; from: string }

const SRC = join(import.meta.dirname, '..', 'host', 'native', 'src');
const HEADER = 'tcpmod_limits.h';
const tables = { options, abi, limits };

/**
 * Occurrences in the native sources of numbers equal to a limit that are other
 * quantities, each with why: a flag bit, a buffer's own floor or a scratch size.
 */
/** Flag bits above 16 (kv_incr_at's DECR, subscribe's DIRECT): checked by value in the tests above, not as literals. */
const FLAG_BITS = new Set(['kKvDecr', 'kTopicDirectFlag']);
const UNRELATED: readonly { file: string; text: string }[] = [
  { file: 'conn_table.h', text: 'kDueOpen = 128' }, // a bit of the due mask
  { file: 'conn_table.h', text: 'kDueProxy = 256' }, // a bit of the due mask
  { file: 'input_buffer.cc', text: 'kMinCap = 256' }, // the input buffer's smallest allocation
  { file: 'tls.cc', text: 'char buf[128]' }, // an OpenSSL error string
];

/** Regular expressions for the ways C++ here spells `value` where it acts as a bound. */
function spellings(value: number): RegExp[] {
  const digits = String(value);
  // 86400000, 86'400'000 and 86,400,000 (the last in comments).
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, "[',]?");
  const out: RegExp[] = [];
  if (value >= 100_000) out.push(new RegExp(`(?<![\\w'])${grouped}(?![\\w'])`));
  // Small numbers are everywhere (sizes, flags): only where they bound something.
  else out.push(new RegExp(`(?:[=<>]=?|\\.\\.|\\[)\\s*${digits}\\s*(?:[;)\\]"]|$)`, 'm'));
  const log2 = Math.log2(value);
  if (Number.isInteger(log2) && log2 >= 8) {
    // (Prose such as "mod 2^31" in a comment is not a second definition, and is not looked for.)
    out.push(new RegExp(`\\b1(?:u|ul|ull|l|ll)?\\}?\\s*<<\\s*${log2}\\b`, 'i'));
    // 4 * 1024 * 1024, 64 * 1024 and the like.
    const kib = value / 1024, mib = value / 1024 / 1024;
    if (Number.isInteger(mib) && mib >= 1) out.push(new RegExp(`\\b${mib}\\s*\\*\\s*1024\\s*\\*\\s*1024\\b`));
    else if (Number.isInteger(kib)) out.push(new RegExp(`\\b${kib}\\s*\\*\\s*1024\\b(?!\\s*\\*)`));
  }
  return out;
}

describe('tcpmod_limits.h', () => {
  it('is the header the tables generate now (regenerate: npm run build:host && node scripts/gen-limits.mjs)', () => {
    expect(readFileSync(HEADER_PATH, 'utf8')).toBe(renderLimits(tables));
  });

  it('draws its values from the tables', () => {
    const byName = Object.fromEntries((limitEntries(tables) as Entry[]).map((e) => [e.name, e.value]));
    expect(byName.kStateMax).toBe(abi.STATE_MAX);
    expect(byName.kIoMax).toBe(abi.IO_MAX);
    expect(byName.kModuleIdSpace).toBe(abi.MODULE_ID_SPACE);
    expect(byName.kTimerMaxMs).toBe(abi.TIMER_MAX_MS);
    expect(byName.kBatchMax).toBe(options.OPTIONS.batch.kind.max);
    expect(byName.kMaxConnectionsMax).toBe(options.OPTIONS.maxConnections.kind.max);
    expect(byName.kDurationMaxMs).toBe(options.MAX_DURATION_MS);
    expect(byName.kTimerPopsPerWake).toBe(limits.TIMER_POPS_PER_WAKE);
    expect(byName.kEpollTagBits).toBe(limits.EPOLL_TAG_BITS);
    expect(byName.kKvTtlMax).toBe(abi.KV_TTL_MAX);
    expect(byName.kKvMissing).toBe(abi.KV.MISSING);
    expect(byName.kKvTooSmall).toBe(abi.KV.TOO_SMALL);
    expect(byName.kKvKeepTtl).toBe(abi.KV_KEEPTTL);
  });

  it('no value of it is written again as a literal in host/native/src', () => {
    const files = readdirSync(SRC).filter((f) => /\.(cc|h)$/.test(f) && f !== HEADER);
    expect(files.length).toBeGreaterThan(10);
    const found: string[] = [];
    for (const e of limitEntries(tables) as Entry[]) {
      // Result codes and flag bits (-8..16, and the higher flag bits named here) are small numbers or
      // bit positions written everywhere for other things (32 is also every `>> 32`).
      if (Math.abs(e.value) <= 16 || FLAG_BITS.has(e.name)) continue;
      // The tag width is a shift count: look for the mask and shift it makes.
      const patterns = e.name === 'kEpollTagBits'
        ? [new RegExp(`<<\\s*${e.value}\\b`), new RegExp(`(?:<<|=)\\s*${64 - e.value}\\b`)]
        : spellings(e.value);
      for (const file of files) {
        readFileSync(join(SRC, file), 'utf8').split('\n').forEach((line, i) => {
          if (UNRELATED.some((u) => u.file === file && line.includes(u.text))) return;
          if (patterns.some((p) => p.test(line))) found.push(`${file}:${i + 1}: ${e.name} (${e.value}) written again: ${line.trim()}`);
        });
      }
    }
    expect(found).toEqual([]);
  });

  it('the scan recognises the usual spellings (so that it can fail)', () => {
    const hits = (value: number, line: string) => spellings(value).some((p) => p.test(line));
    expect(hits(256, 'constexpr int kMaxState = 256;')).toBe(true);
    expect(hits(256, '"stateSize must be 0..256"')).toBe(true);
    expect(hits(256, 'epoll_event evs[256];')).toBe(true);
    expect(hits(2 ** 31, 'constexpr uint64_t kModuleIdSpace = 1ull << 31;')).toBe(true);
    expect(hits(86_400_000, 'if (ms < 0 || ms > 86400000) return')).toBe(true);
    expect(hits(86_400_000, '// ms outside 0..86,400,000')).toBe(true);
    expect(hits(4 * 1024 * 1024, 'constexpr size_t kMax = 4 * 1024 * 1024;')).toBe(true);
    expect(hits(2 ** 46, 'constexpr int64_t kTtlMax = int64_t{1} << 46;')).toBe(true);
    expect(hits(256, 'constexpr int64_t kLingerReadBudget = 256 * 1024;')).toBe(false);
    expect(hits(1024, 'by_fd.resize(static_cast<size_t>(fd) + 1024, nullptr);')).toBe(false);
    expect(hits(1024, 'if (cap <= 1024 || items_.size() * 4 > cap) return;')).toBe(false);
  });
});
