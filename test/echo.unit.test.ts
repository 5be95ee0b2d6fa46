import { beforeAll, describe, expect, it } from 'vitest';
import { loadModule, type TestModule } from '../host/testing.js';

let m: TestModule;
beforeAll(async () => {
  m = await loadModule('build/echo.wasm');
});

describe('echo.wasm through tcpmod/testing', () => {
  const inputs = ['hello', 'a\r\nb\r\n', '\u0000\u00ff binary \u0001'].map((s) => Uint8Array.from(s, (c) => c.charCodeAt(0)));

  it('echoes every input at every split point', () => {
    for (const input of inputs) {
      const r = m.connect().sendInPieces(input);
      expect(Buffer.from(r.output).equals(Buffer.from(input))).toBe(true);
      expect(r.closed).toBeNull();
    }
    expect(m.faults).toEqual([]);
  });

  it('echoes input larger than out_cap, in order', () => {
    const big = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 7) & 255);
    const c = m.connect();
    const parts = [big.subarray(0, 1), big.subarray(1, 65_536), big.subarray(65_536, 200_001), big.subarray(200_001)].map((p) => c.send(p).output);
    expect(Buffer.concat(parts).equals(Buffer.from(big))).toBe(true);
  });

  it('closes after echoing what came with EOF', () => {
    const r = m.connect().sendInPieces('bye', { eof: true });
    expect(r.text).toBe('bye');
    expect(r.closed).toBe('peer');
  });
});
