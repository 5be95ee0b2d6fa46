// The OptionError resolveOptions throws for options given over build/echo.wasm
// (fails when it throws something else or nothing). From dist/, as the option
// tests that also start servers use it (bus-options, kv-options).
import { expect } from 'vitest';
import { OptionError, resolveOptions, type ServerOptions } from '../dist/options.js';

export function refusal(o: Partial<ServerOptions>, module = 'build/echo.wasm'): OptionError {
  try {
    resolveOptions({ module, ...o });
  } catch (e) {
    expect(e).toBeInstanceOf(OptionError);
    return e as OptionError;
  }
  throw new Error('no OptionError thrown');
}
