import { beforeAll, describe, expect, it } from 'vitest';
import { CloseReason } from '../host/module/abi.js';
import { loadHarness, runSplit, splitPlans, type Harness } from '../host/testing.js';

let h: Harness;
beforeAll(async () => {
  h = await loadHarness('build/echo.wasm');
});

describe('echo.wasm through the harness', () => {
  const inputs = ['hello', 'a\r\nb\r\n', '\u0000\u00ff binary \u0001'].map((s) => Uint8Array.from(s, (c) => c.charCodeAt(0)));

  it('echoes every input at every split point', () => {
    for (const input of inputs) {
      for (const cuts of splitPlans(input.length)) {
        const { output, closed } = runSplit(h, input, cuts);
        expect(Buffer.from(output).equals(Buffer.from(input)), `cuts ${cuts}`).toBe(true);
        expect(closed).toBeNull();
      }
    }
  });

  it('echoes input larger than out_cap, in order', () => {
    const big = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 7) & 255);
    const { output } = runSplit(h, big, [1, 65_536, 200_001]);
    expect(Buffer.from(output).equals(Buffer.from(big))).toBe(true);
  });

  it('closes after echoing what came with EOF', () => {
    const { output, closed } = runSplit(h, new TextEncoder().encode('bye'), [1], { eof: true });
    expect(new TextDecoder().decode(output)).toBe('bye');
    expect(closed).toBe(CloseReason.PEER);
  });
});
