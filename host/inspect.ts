// `tcpmod inspect`: the module's shape in words, after exactly the checks
// `serve` runs (static checks, then one trial instance for the IoDesc and
// tcpmod_init). Problems are thrown as ModuleLoadError / ModuleConfigRefused
// for the CLI to print one line each.
import { compileModule, probeModule, type CompileOptions } from './module/load.js';
import { LOG_LEVELS, PAGE, V1_1_IMPORTS } from './module/abi.js';
import { signature, type Desc, type Limits } from './module/wasm-binary.js';

export async function inspectModule(file: string, opts: CompileOptions): Promise<string> {
  const compiled = await compileModule(file, opts);
  const logs: string[] = [];
  const inst = probeModule(compiled, { send: () => -1, log: (level, msg) => logs.push(`[${LOG_LEVELS[level] ?? level}] ${msg}`) });
  const d = inst.desc;
  const now = inst.buffer.byteLength;
  inst.dispose();
  const capPages = Math.floor(compiled.memoryCap / PAGE);
  const plan = compiled.verdict.memory.imported;
  const mem = plan
    ? `imports env.memory; the host creates it with ${plan.initial}..${plan.maximum} pages (declared ${pages(importedLimits(compiled.shape.imports))}, cap ${capPages} pages)`
    : `defines its own: ${pages(compiled.shape.memories[0])} (cap ${capPages} pages)`;
  const region = (p: number, n: number) => `[${p}, ${p + n})  ${n} bytes`;
  const opt = compiled.verdict.optional;
  const lines = [
    `${file}: tcpmod ABI v1 module`,
    `memory:    ${mem}; ${now / PAGE} pages after start-up`,
    `io desc:   in     ${region(d.inPtr, d.inCap)}`,
    `           out    ${region(d.outPtr, d.outCap)}`,
    `           state  ${d.stateSize ? region(d.statePtr, d.stateSize) : 'none (state_size 0)'}`,
    `           result ${region(d.resPtr, 8)}`,
    `state:     ${d.stateSize} bytes per connection`,
    `imports:   ${list(compiled.shape.imports.map((i) => `${i.module}.${i.name} ${describe(i.desc)}`))}`,
    `exports:   ${list(compiled.shape.exports.map((e) => `${e.name} ${describe(e.desc)}`))}`,
    `callbacks: tcpmod_on_data${['tcpmod_on_open', 'tcpmod_on_close', 'tcpmod_init', '_initialize', '__collect'].filter((n) => opt.has(n)).map((n) => `, ${n}`).join('')}`,
    `v1.1:      ${list(compiled.shape.imports.filter((i) => i.module === 'tcpmod' && (V1_1_IMPORTS as readonly string[]).includes(i.name)).map((i) => `tcpmod.${i.name}`))}`,
    `config:    ${!opt.has('tcpmod_init') ? 'not taken (no tcpmod_init)' : `${compiled.config.length} bytes, accepted by tcpmod_init`}`,
    ...logs.map((l) => `log:       ${l}`),
  ];
  return lines.join('\n') + '\n';
}

function list(items: string[]): string {
  return items.length ? items.join('\n           ') : 'none';
}

function pages(l: Limits | undefined): string {
  if (!l) return '?';
  return `${l.initial}..${l.maximum ?? 'unbounded'} pages`;
}

function importedLimits(imports: { module: string; name: string; desc: Desc }[]): Limits | undefined {
  const m = imports.find((i) => i.module === 'env' && i.name === 'memory');
  return m?.desc.kind === 'memory' ? m.desc.limits : undefined;
}

function describe(d: Desc): string {
  if (d.kind === 'function') return signature(d.type);
  if (d.kind === 'memory') return `(memory ${pages(d.limits)})`;
  return `(${d.kind})`;
}
