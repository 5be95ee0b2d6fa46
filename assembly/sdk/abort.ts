// The host import that AssemblyScript's `abort` is redirected to.
//
// The compiler preset (asconfig.json) loads this file as a library file
// (`"lib": ["./assembly/sdk/abort.ts"]`), which makes its exports globals, and
// aliases the global `abort` to it (`"use": ["abort=tcpmod_abort"]`). So every
// `abort()`, failed `assert()`, bounds check and out-of-memory in a module
// reports to the host as `tcpmod.abort(msg, file, line, col)` instead of
// importing `env.abort` (which the host does not provide).
//
// Why a library file rather than an entry: an entry's element gets an internal
// name from its path relative to the build's base directory
// (`assembly/sdk/abort/tcpmod_abort` here, `node_modules/tcpmod/assembly/...` in
// a module project), so the alias would differ per project; a library global is
// named `tcpmod_abort` wherever the package sits, so one preset serves this
// repository and every project that extends it. A library file is not an entry,
// so exporting here adds no wasm export. It is not part of the SDK's import
// graph, so the alias also resolves for modules that do not use the SDK. The
// parameters mirror the standard library's `abort` (optional, string|null) so
// `abort("msg")` keeps working.

// @ts-ignore: decorator
@external("tcpmod", "abort")
export declare function tcpmod_abort(
  message?: string | null,
  fileName?: string | null,
  lineNumber?: u32,
  columnNumber?: u32
): void;
