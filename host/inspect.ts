// `tcpmod inspect`: the module's shape, after exactly the checks `serve` runs
// (static checks, then one trial instance for the IoDesc and tcpmod_init).
// describeModule gathers the description once; inspectModule words it for
// people and inspectModuleJson prints it for tools (CI of module projects).
// Problems are thrown as ModuleLoadError / ModuleConfigRefused for the CLI.
import { compileModule, type CompileOptions } from './module/load.js';
import { LOG_LEVELS, PAGE, RESULT_SIZE, V1_1_IMPORTS, V1_2_IMPORTS } from './module/abi.js';
import { DEFAULTS } from './options.js';
import { prepareTrialThread, trialInstance } from './startup.js';
import { signature, type Desc, type Limits } from './module/wasm-binary.js';

/** One region of the IoDesc: its start in the module's memory and its size in bytes. */
export interface InspectRegion {
  ptr: number;
  size: number;
}

/** An import or export: a function's signature, or a memory's declared limits in pages. */
export interface InspectItem {
  kind: Desc['kind'];
  signature: string | null;
  memory?: { initial: number; maximum: number | null };
}

/** What `tcpmod inspect --json` prints for a module that passes every check. */
export interface ModuleDescription {
  ok: true;
  file: string;
  abi: 'v1';
  memory: {
    /** "own": the module defines and exports its memory; "imported": it imports env.memory. */
    source: 'own' | 'imported';
    /** The limits the module declares, in 64 KiB pages (maximum null: none declared). */
    declared: { initial: number; maximum: number | null };
    /** The maximum the instance runs with (for an imported memory, min(cap, declared)). */
    maximumPages: number;
    capPages: number;
    /** Size once the start-up steps (_initialize, tcpmod_io_desc, tcpmod_init) have run. */
    pagesAfterStartup: number;
  };
  ioDesc: { in: InspectRegion; out: InspectRegion; state: InspectRegion | null; result: InspectRegion };
  stateSize: number;
  imports: ({ module: string; name: string } & InspectItem)[];
  exports: ({ name: string } & InspectItem)[];
  /** The callbacks the host will call: tcpmod_on_data and the optional exports present. */
  callbacks: string[];
  /** The v1.1 host functions the module imports, as "tcpmod.NAME". */
  v1_1: string[];
  /** The v1.2 host functions (store additions, docs/abi.md §14) the module imports, as "tcpmod.NAME". */
  v1_2: string[];
  /** Whether the module takes a config (exports tcpmod_init), and how many bytes it accepted. */
  config: { taken: boolean; bytes: number };
  /** What the module logged during start-up. */
  logs: { level: string; message: string }[];
}

/** What `tcpmod inspect --json` prints for a refused module (and exits 1). */
export interface ModuleRefusal {
  ok: false;
  file: string;
  /** TCPMOD_MODULE_INVALID, TCPMOD_CONFIG_REFUSED or TCPMOD_INVALID_OPTION. */
  code: string;
  /** One line each, as the text output lists them. */
  problems: string[];
}

export interface InspectOptions extends CompileOptions {
  /** How long the trial instance's start-up may run (ms; default: --startup-timeout's). */
  startupTimeoutMs?: number;
}

const CALLBACK_ORDER = ['tcpmod_on_open', 'tcpmod_on_close', 'tcpmod_on_timer', 'tcpmod_init', '_initialize', '__collect'];

export async function describeModule(file: string, opts: InspectOptions): Promise<ModuleDescription> {
  prepareTrialThread();
  const compiled = await compileModule(file, opts);
  const logs: { level: string; message: string }[] = [];
  // The trial instance runs in a thread of its own, under the start-up timeout: a module whose start-up
  // loops is refused (StartupTimeout), and this thread stays free to take a signal meanwhile.
  const { desc: d, pagesAfterStartup: after } = await trialInstance(compiled, {
    timeoutMs: opts.startupTimeoutMs ?? DEFAULTS.startupTimeout,
    log: (level, message) => logs.push({ level: LOG_LEVELS[level] ?? 'info', message }),
  });
  const capPages = Math.floor(compiled.memoryCap / PAGE);
  const plan = compiled.verdict.memory.imported;
  const limits = plan ? importedLimits(compiled.shape.imports) : compiled.shape.memories[0];
  const opt = compiled.verdict.optional;
  return {
    ok: true,
    file,
    abi: 'v1',
    memory: {
      source: plan ? 'imported' : 'own',
      declared: { initial: limits?.initial ?? 0, maximum: limits?.maximum ?? null },
      maximumPages: plan ? plan.maximum : (limits?.maximum ?? capPages),
      capPages,
      pagesAfterStartup: after,
    },
    ioDesc: {
      in: { ptr: d.inPtr, size: d.inCap },
      out: { ptr: d.outPtr, size: d.outCap },
      state: d.stateSize ? { ptr: d.statePtr, size: d.stateSize } : null,
      result: { ptr: d.resPtr, size: RESULT_SIZE },
    },
    stateSize: d.stateSize,
    imports: compiled.shape.imports.map((i) => ({ module: i.module, name: i.name, ...item(i.desc) })),
    exports: compiled.shape.exports.map((e) => ({ name: e.name, ...item(e.desc) })),
    callbacks: ['tcpmod_on_data', ...CALLBACK_ORDER.filter((n) => opt.has(n))],
    v1_1: hostImports(compiled.shape.imports, V1_1_IMPORTS),
    v1_2: hostImports(compiled.shape.imports, V1_2_IMPORTS),
    config: { taken: opt.has('tcpmod_init'), bytes: opt.has('tcpmod_init') ? compiled.config.length : 0 },
    logs,
  };
}

/** The tcpmod imports among `names`, as "tcpmod.NAME". */
function hostImports(imports: readonly { module: string; name: string }[], names: readonly string[]): string[] {
  return imports.filter((i) => i.module === 'tcpmod' && names.includes(i.name)).map((i) => `tcpmod.${i.name}`);
}

/** The description as `tcpmod inspect --json` prints it: one JSON document and a newline. */
export async function inspectModuleJson(file: string, opts: InspectOptions): Promise<string> {
  return JSON.stringify(await describeModule(file, opts), null, 2) + '\n';
}

/** The description in words, as `tcpmod inspect` prints it. */
export async function inspectModule(file: string, opts: InspectOptions): Promise<string> {
  const m = await describeModule(file, opts);
  const mem = m.memory;
  const declared = pages(mem.declared);
  const memText = mem.source === 'imported'
    ? `imports env.memory; the host creates it with ${mem.declared.initial}..${mem.maximumPages} pages (declared ${declared}, cap ${mem.capPages} pages)`
    : `defines its own: ${declared} (cap ${mem.capPages} pages)`;
  const region = (r: InspectRegion) => `[${r.ptr}, ${r.ptr + r.size})  ${r.size} bytes`;
  const lines = [
    `${m.file}: tcpmod ABI v1 module`,
    `memory:    ${memText}; ${mem.pagesAfterStartup} pages after start-up`,
    `io desc:   in     ${region(m.ioDesc.in)}`,
    `           out    ${region(m.ioDesc.out)}`,
    `           state  ${m.ioDesc.state ? region(m.ioDesc.state) : 'none (state_size 0)'}`,
    `           result ${region(m.ioDesc.result)}`,
    `state:     ${m.stateSize} bytes per connection`,
    `imports:   ${list(m.imports.map((i) => `${i.module}.${i.name} ${describe(i)}`))}`,
    `exports:   ${list(m.exports.map((e) => `${e.name} ${describe(e)}`))}`,
    `callbacks: ${m.callbacks.join(', ')}`,
    `v1.1:      ${list(m.v1_1)}`,
    `v1.2:      ${list(m.v1_2)}`,
    `config:    ${!m.config.taken ? 'not taken (no tcpmod_init)' : `${m.config.bytes} bytes, accepted by tcpmod_init`}`,
    ...m.logs.map((l) => `log:       [${l.level}] ${l.message}`),
  ];
  return lines.join('\n') + '\n';
}

function list(items: string[]): string {
  return items.length ? items.join('\n           ') : 'none';
}

function pages(l: { initial: number; maximum: number | null }): string {
  return `${l.initial}..${l.maximum ?? 'unbounded'} pages`;
}

function importedLimits(imports: { module: string; name: string; desc: Desc }[]): Limits | undefined {
  const m = imports.find((i) => i.module === 'env' && i.name === 'memory');
  return m?.desc.kind === 'memory' ? m.desc.limits : undefined;
}

function item(d: Desc): InspectItem {
  if (d.kind === 'function') return { kind: d.kind, signature: signature(d.type) };
  if (d.kind === 'memory') return { kind: d.kind, signature: null, memory: { initial: d.limits.initial, maximum: d.limits.maximum ?? null } };
  return { kind: d.kind, signature: null };
}

/** An import's or export's type in the text output: a signature, memory limits, or its kind. */
function describe(i: InspectItem): string {
  if (i.signature !== null) return i.signature;
  if (i.memory) return `(memory ${pages(i.memory)})`;
  return `(${i.kind})`;
}
