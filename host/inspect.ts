// `tcpmod inspect`: the module's shape in words, after the same checks `serve` runs.
import { compileModule, probeModule, type CompileOptions } from './module/load.js';
import { PAGE } from './module/abi.js';
import { signature } from './module/wasm-binary.js';

export async function inspectModule(file: string, opts: CompileOptions): Promise<string> {
  const compiled = await compileModule(file, opts);
  const logs: string[] = [];
  const inst = probeModule(compiled, { send: () => -1, log: (level, msg) => logs.push(`[${level}] ${msg}`) });
  const d = inst.desc;
  const mem = compiled.verdict.memory.imported
    ? `imported env.memory, host-created: ${compiled.verdict.memory.imported.initial}..${compiled.verdict.memory.imported.maximum} pages`
    : (() => {
        const l = compiled.shape.memories[0];
        return `own memory: ${l.initial}..${l.maximum} pages (cap ${Math.floor(compiled.memoryCap / PAGE)} pages)`;
      })();
  const lines = [
    `${file}: tcpmod ABI v1 module`,
    `memory:   ${mem}; now ${inst.buffer.byteLength} bytes`,
    `io:       in  [${d.inPtr}, +${d.inCap})`,
    `          out [${d.outPtr}, +${d.outCap})`,
    `          state ${d.stateSize ? `[${d.statePtr}, +${d.stateSize})` : 'none'}`,
    `          result [${d.resPtr}, +8)`,
    `imports:  ${compiled.shape.imports.map((i) => `${i.module}.${i.name}${i.desc.kind === 'function' ? ` ${signature(i.desc.type)}` : ` (${i.desc.kind})`}`).join('\n          ') || 'none'}`,
    `exports:  ${compiled.shape.exports.map((e) => `${e.name}${e.desc.kind === 'function' ? ` ${signature(e.desc.type)}` : ` (${e.desc.kind})`}`).join('\n          ')}`,
    `callbacks: on_data${[...compiled.verdict.optional].map((n) => `, ${n}`).join('')}`,
    ...(compiled.config.length ? [`config:   ${compiled.config.length} bytes accepted by tcpmod_init`] : []),
    ...logs.map((l) => `log:      ${l}`),
  ];
  return lines.join('\n') + '\n';
}
