// WAT text → WebAssembly bytes with the wabt package (a devDependency): the one
// compiler for the modules the bench builds itself (scale's timer module) and
// for the test fixtures (test/fixtures.ts re-exports it). It lives here, not in
// host/, because host/ ships to users and wabt does not.
import wabtInit from 'wabt';

/** wabt's instance, made on first use and shared by every later call. */
let wabt = null;

/** WAT text → WebAssembly bytes; `name` names the text in wabt's errors. Any feature wabt enables by default is allowed. */
export async function watToWasm(name, text) {
  wabt ??= wabtInit();
  const mod = (await wabt).parseWat(name, text);
  try {
    mod.resolveNames();
    mod.validate();
    return new Uint8Array(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}
