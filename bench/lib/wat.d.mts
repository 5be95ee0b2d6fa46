// Types of wat.mjs for its TypeScript importers (test/fixtures.ts).

/** WAT text → WebAssembly bytes; `name` names the text in wabt's errors. */
export function watToWasm(name: string, text: string): Promise<Uint8Array>;
