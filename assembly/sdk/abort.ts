// The host import that AssemblyScript's `abort` is redirected to.
//
// asconfig.json lists this file as an extra entry and aliases the global `abort`
// to it (`--use abort=assembly/sdk/abort/tcpmod_abort`), so every `abort()`,
// failed `assert()`, bounds check and out-of-memory in a module reports to the
// host as `tcpmod.abort(msg, file, line, col)` instead of importing `env.abort`
// (which the host does not provide). It is a separate entry, not part of the
// SDK's import graph, so the alias also resolves for modules that do not use
// the SDK. Nothing is exported here on purpose: an exported declaration in an
// entry file would be re-exported by the wasm module. The parameters mirror the
// standard library's `abort` (optional, string|null) so `abort("msg")` keeps working.

// @ts-ignore: decorator
@external("tcpmod", "abort")
declare function tcpmod_abort(
  message?: string | null,
  fileName?: string | null,
  lineNumber?: u32,
  columnNumber?: u32
): void;
