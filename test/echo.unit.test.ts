import { beforeAll, describe, expect, it } from 'vitest';
import { loadModule, type LoadedModule } from '../host/testing.js';

let m: LoadedModule;
beforeAll(async () => {
  m = await loadModule('build/echo.wasm');
});

describe('echo.wasm through tcpmod/testing', () => {
  const inputs = ['hello', 'a\r\nb\r\n', '\u0000\u00ff binary \u0001'].map((s) => Uint8Array.from(s, (c) => c.charCodeAt(0)));

  it('echoes every input at every split point', () => {
    for (const input of inputs) {
      const c = m.connect();
      expect(Buffer.from(c.sendInPieces(input)).equals(Buffer.from(input))).toBe(true);
      expect(c.closed).toBeNull();
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
    const c = m.connect();
    expect(Buffer.from(c.sendInPieces('bye', { eof: true })).toString()).toBe('bye');
    expect(c.closed).toBe('peer');
  });
});
