// The SDK's decimal integers at their edges: Conn.writeU64/writeInt and
// formatU64/formatI64 write, parseU64/parseI64 read with overflow detection.
// A module compiled in memory against assembly/sdk echoes each input line's
// number as the parsers read it, then written back by the writers, and the
// harness (tcpmod/testing) drives it through the real ABI driver.
import { beforeAll, describe, expect, it } from 'vitest';
import { loadModule, type LoadedModule } from '../host/testing.js';
import { compileAs } from './asc-source.js';

// Each line is "<op> <number>": U parses unsigned and answers with writeU64, I parses signed and
// answers with writeInt, F formats with formatU64 into a buffer first. The answer is
// "<value> <bytes read>" or "none" / "overflow"; "n" is what PARSE_NONE/PARSE_OVERFLOW left in
// the output slot (it must stay untouched: 7).
const SOURCE = `import { Conn, Action, configure, parseU64, parseI64, formatU64, PARSE_NONE, PARSE_OVERFLOW } from "./sdk";
export * from "./sdk/exports";

const VALUE = memory.data(8, 8);
const DIGITS = memory.data(24);

configure(4096, 1024, 0, onData);

function onData(c: Conn): Action {
  let start = 0;
  for (let nl = c.indexOf(0x0A); nl >= 0; nl = c.indexOf(0x0A, start)) {
    const op = c.byte(start);
    const at = c.input + <usize>(start + 2);
    const len = nl - start - 2;
    store<u64>(VALUE, 7);
    const r = op == 0x49 ? parseI64(at, len, VALUE) : parseU64(at, len, VALUE);
    if (r == PARSE_NONE || r == PARSE_OVERFLOW) {
      c.writeString(r == PARSE_NONE ? "none n=" : "overflow n=");
      c.writeU64(load<u64>(VALUE));
    } else if (op == 0x49) {
      c.writeInt(load<i64>(VALUE));
    } else if (op == 0x46) {
      c.write(DIGITS, formatU64(DIGITS, load<u64>(VALUE)));
    } else {
      c.writeU64(load<u64>(VALUE));
    }
    if (r > 0) {
      c.writeByte(0x20);
      c.writeInt(r);
    }
    c.writeByte(0x0A);
    start = nl + 1;
  }
  c.consume(start);
  return Action.Continue;
}
`;

let m: LoadedModule;
beforeAll(async () => {
  m = await loadModule(await compileAs('__sdk_decimal', SOURCE));
}, 60_000);

/** One line through a fresh connection, in every split (the answer must not depend on how TCP cuts it). */
function ask(line: string): string {
  return new TextDecoder().decode(m.connect().sendInPieces(`${line}\n`));
}

describe('unsigned 64-bit', () => {
  it.each([
    ['0', '0 1'],
    ['9223372036854775808', '9223372036854775808 19'], // 2^63: negative if read as i64
    ['18446744073709551615', '18446744073709551615 20'], // 2^64-1
    ['000042', '42 6'],
    ['12 rest', '12 2'], // stops at the first non-digit
  ])('writeU64(parseU64(%s))', (n, want) => {
    expect(ask(`U ${n}`)).toBe(`${want}\n`);
    expect(ask(`F ${n}`)).toBe(`${want}\n`);
  });

  it.each([
    ['18446744073709551616', 'overflow n=7'], // 2^64
    ['18446744073709551620', 'overflow n=7'],
    ['99999999999999999999', 'overflow n=7'],
    ['184467440737095516150', 'overflow n=7'], // 2^64-1 with one more digit
    ['-1', 'none n=7'],
    ['+1', 'none n=7'],
    ['', 'none n=7'],
  ])('parseU64(%j) refuses: %s', (n, want) => {
    expect(ask(`U ${n}`)).toBe(`${want}\n`);
  });
});

describe('signed 64-bit', () => {
  it.each([
    ['0', '0 1'],
    ['-9223372036854775808', '-9223372036854775808 20'],
    ['9223372036854775807', '9223372036854775807 19'],
    ['-1', '-1 2'],
    ['9223372036854775808', 'overflow n=7'],
    ['-9223372036854775809', 'overflow n=7'],
    ['-', 'none n=7'],
    ['x', 'none n=7'],
  ])('writeInt(parseI64(%s))', (n, want) => {
    expect(ask(`I ${n}`)).toBe(`${want}\n`);
  });
});

it('writeU64 spills through tcpmod.send when the out region is nearly full, keeping order', () => {
  // 1 KiB out region: 100 answers of 24 bytes do not fit, and 1024 is no multiple of 24, so
  // some answer's digits find the region short and flush it first.
  const r = m.connect().send('U 18446744073709551615\n'.repeat(100));
  expect(r.text).toBe('18446744073709551615 20\n'.repeat(100));
  expect(r.writes).toBeGreaterThan(1);
  expect(m.faults).toEqual([]);
});
