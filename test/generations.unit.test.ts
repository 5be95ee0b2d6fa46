// The one compatibility verdict per pair of generations (host/worker/generations.ts): every
// capability a connection's state may depend on keeps it on its module when the other lacks it.
import { describe, expect, it } from 'vitest';
import { compatibility, type GenerationSpec } from '../host/worker/generations.js';

const base = {
  gen: 1, name: 'a.wasm', module: null as unknown as WebAssembly.Module, config: new Uint8Array(),
  stateVersion: 1, stateSize: 16, inCap: 4096, onTimer: false, want: false, onMessage: false, onUpstream: false,
} as unknown as GenerationSpec;
const spec = (over: Partial<GenerationSpec>): GenerationSpec => ({ ...base, ...over });

describe('compatibility(from, to)', () => {
  it('moves a connection between modules with the same state version and size and no capability lost', () => {
    expect(compatibility(base, spec({ gen: 2 })).move).toBe(true);
    // Gaining a capability never stops a move.
    expect(compatibility(base, spec({ gen: 2, onTimer: true, want: true, onMessage: true, onUpstream: true })).move).toBe(true);
  });

  it('pins it when the state does not mean the same', () => {
    expect(compatibility(spec({ stateVersion: null }), spec({ gen: 2, stateVersion: null })).move).toBe(false);
    expect(compatibility(base, spec({ gen: 2, stateVersion: 2 })).move).toBe(false);
    expect(compatibility(base, spec({ gen: 2, stateSize: 32 })).move).toBe(false);
  });

  for (const cap of ['onTimer', 'want', 'onMessage', 'onUpstream'] as const) {
    it(`pins it when the old module has ${cap} and the new one does not, naming why`, () => {
      const v = compatibility(spec({ [cap]: true }), spec({ gen: 2, [cap]: false }));
      expect(v.move).toBe(false);
      expect((v as { why: string }).why).toMatch(/the old module .* the new one does not/);
      expect(compatibility(spec({ [cap]: true }), spec({ gen: 2, [cap]: true })).move).toBe(true);
    });
  }
});
