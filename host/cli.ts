// The `tcpmod` command: `serve` runs a module, `inspect` checks one, `build`
// compiles one, `new` starts a module project. Option errors and module errors
// print one line each (no stack) and exit 1.
import { readFileSync, statSync, watch as watchFs } from 'node:fs';
import { basename, dirname } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { ModuleConfigRefused, ModuleLoadError, StartupTimeout } from './module/errors.js';
import { inspectModule, inspectModuleJson, type ModuleRefusal } from './inspect.js';
import { DEFAULTS, OPTIONS, OptionError, parseOptionValue, type Kind, type OptionSpec, type ServerOptions, type Value } from './options.js';
import { LANGUAGES, newProject, parseLanguage } from './scaffold.js';
import { createServer, type TcpmodServer } from './server.js';

type OptionName = keyof typeof OPTIONS;

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('tcpmod')
  .description('A multi-threaded TCP server whose protocol logic runs in sandboxed WebAssembly modules.')
  .version(version)
  .exitOverride()
  .configureOutput({ outputError: (s, write) => write(s) });

// The kind of value an option takes, as help explains it once for all options of that kind.
const KIND_HINTS: Partial<Record<Kind['type'], (k: Kind) => string>> = {
  duration: (k) => `(ms, or with a unit: 500ms, 2s, 1m${k.type === 'duration' && k.off !== undefined ? `; ${JSON.stringify(k.off)} disables it` : ''})`,
  size: () => '(bytes, or 16MiB, 512KiB)',
};

/** A table option added to a command, and the key commander keeps its value under (--idle-timeout → idleTimeout). */
type CliOption = { name: OptionName; spec: OptionSpec; key: string };

/** Adds the table's option `name` to a command; `help` replaces its help line where the command uses it differently. */
function addTableOption(cmd: Command, name: OptionName, help: string = OPTIONS[name].help): CliOption {
  const spec: OptionSpec = OPTIONS[name];
  const hint = KIND_HINTS[spec.kind.type]?.(spec.kind);
  // A default the table only describes goes in the text; a fixed one goes to commander, which shows it as given.
  const note = spec.defaultNote === undefined ? undefined : `(default: ${spec.defaultNote})`;
  const option = new Option(spec.arg ? `${spec.flag} ${spec.arg}` : spec.flag, [help, hint, note].filter(Boolean).join(' '));
  if (spec.kind.type === 'choice') option.choices(spec.kind.choices);
  // Repeatable: every occurrence is kept, in order.
  if (spec.kind.type === 'upstreams' || spec.kind.type === 'upstreamTls') option.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
  if (spec.default !== undefined) option.default(spec.default);
  cmd.addOption(option);
  return { name, spec, key: option.attributeName() };
}

/**
 * The options given on the command line, as the API takes them. Values commander filled in from
 * the help's defaults are left out, so that resolveOptions applies the table's defaults itself
 * and tells an option the user set from one left alone.
 */
function given(cmd: Command, options: CliOption[]): Record<string, unknown> {
  const values = cmd.opts();
  const out: Record<string, unknown> = {};
  for (const { name, spec, key } of options) {
    if (values[key] === undefined || cmd.getOptionValueSource(key) === 'default') continue;
    out[name] = spec.kind.type === 'bytes' ? bytes(values[key] as string) : values[key];
  }
  return out;
}

/** `--config @path` reads the file; anything else is the bytes themselves. */
function bytes(v: string): string | Uint8Array {
  if (!v.startsWith('@')) return v;
  try {
    return new Uint8Array(readFileSync(v.slice(1)));
  } catch (e) {
    throw new OptionError('config', `cannot read ${v.slice(1)}: ${(e as NodeJS.ErrnoException).code}`);
  }
}

const serveCmd = program
  .command('serve')
  .description('serve a protocol module (.wasm built against tcpmod ABI v1)')
  .argument('<module>', 'path of the module, e.g. build/echo.wasm');
const serveOptions = (Object.keys(OPTIONS) as OptionName[]).map((name) => addTableOption(serveCmd, name));
serveCmd.action((file: string) => serve(file));

const inspectCmd = program
  .command('inspect')
  .description('check a module against ABI v1 and describe it; exit 1 listing every problem')
  .argument('<module>', 'path of the module');
const inspectOptions = [
  addTableOption(inspectCmd, 'moduleMemory', 'memory cap to check against'),
  addTableOption(inspectCmd, 'config', "bytes to try the module's tcpmod_init with"),
  addTableOption(inspectCmd, 'startupTimeout', "how long the trial instance's start-up (_initialize, start function, tcpmod_io_desc, tcpmod_init) may run"),
];
inspectCmd.option('--json', 'print the description, or the refusal ({ "ok": false, "problems": [...] }), as JSON on stdout');
inspectCmd.action(async (file: string) => {
  const json = inspectCmd.opts().json === true;
  try {
    const o = given(inspectCmd, inspectOptions);
    // inspect keeps the bounds it has always had: no upper one, and a lower one whose error says why.
    const memoryCap = o.moduleMemory === undefined ? DEFAULTS.moduleMemory
      : (parseOptionValue('moduleMemory', { type: 'size', min: 0, max: Number.MAX_SAFE_INTEGER }, o.moduleMemory) as number);
    if (memoryCap < 65536) throw new OptionError('moduleMemory', `must be at least 65536 bytes (one page), got ${JSON.stringify(o.moduleMemory)}`);
    const config = o.config === undefined ? undefined : (parseOptionValue('config', OPTIONS.config.kind, o.config) as Uint8Array);
    const startupTimeoutMs = o.startupTimeout === undefined ? undefined : (parseOptionValue('startupTimeout', OPTIONS.startupTimeout.kind, o.startupTimeout) as number);
    process.stdout.write(await (json ? inspectModuleJson : inspectModule)(file, { memoryCap, config, startupTimeoutMs }));
  } catch (e) {
    if (json) failJson(file, e);
    fail(e);
  }
});

program
  .command('new')
  .description('write a module project to start from: a line protocol, its tests (tcpmod/testing) and build/test/start scripts')
  .argument('<dir>', 'a new or empty directory')
  .option('--lang <language>', `the module's language: ${LANGUAGES.join(' or ')}`, 'assemblyscript')
  .action((dir: string, o: { lang: string }) => {
    try {
      const files = newProject(dir, parseLanguage(o.lang));
      process.stdout.write(`wrote ${files.length} files in ${dir}:\n${files.map((f) => `  ${f}\n`).join('')}next:\n  cd ${dir}\n  npm install\n  npm test\n  npm start\n`);
    } catch (e) {
      fail(e);
    }
  });

/** `inspect --json`: a refusal as one JSON document on stdout (tools read one stream), exit 1. Other errors fall through to fail(). */
function failJson(file: string, e: unknown): void {
  let refusal: ModuleRefusal;
  if (e instanceof ModuleLoadError) refusal = { ok: false, file, code: e.code, problems: e.problems };
  else if (e instanceof ModuleConfigRefused) refusal = { ok: false, file, code: e.code, problems: [`tcpmod_init refused the config (returned ${e.status})`] };
  else if (e instanceof OptionError) refusal = { ok: false, file, code: e.code, problems: [e.describe(flagOf)] };
  else return;
  process.stdout.write(JSON.stringify(refusal, null, 2) + '\n');
  process.exit(1);
}
const buildCmd = program
  .command('build')
  .description("compile an AssemblyScript module with the options ABI v1 needs (the package's asconfig.json), then run the checks `serve` runs")
  .argument('[entry]', "the module's entry file (default: assembly/index.ts)")
  .option('-o, --out <file>', 'where to write the module (default: build/<entry name>.wasm)');
buildCmd.action(async (entry: string | undefined, opts: { out?: string }) => {
  try {
    // asc and Binaryen take a while to load: only for this command.
    const { buildModule, describeBuilt } = await import('./build.js');
    const built = await buildModule({ entry, outFile: opts.out });
    if (built.warnings) process.stderr.write(`${built.warnings}\n`);
    process.stdout.write(`${describeBuilt(built)}\n`);
  } catch (e) {
    fail(e);
  }
});

/** On the command line an option is named by its flag; names outside the table (e.g. "options") stay as they are. */
const flagOf = (name: string): string => (OPTIONS as Record<string, OptionSpec>)[name]?.flag ?? BUILD_FLAGS[name] ?? name;

/** The names buildModule gives its options in errors, as `tcpmod build` spells them. */
const BUILD_FLAGS: Record<string, string> = { outFile: '--out', entry: 'the entry' };

function fail(e: unknown): never {
  if (e instanceof OptionError) {
    process.stderr.write(`tcpmod: ${e.describe(flagOf)}\n`);
  } else if (e instanceof StartupTimeout) {
    process.stderr.write(`tcpmod: ${e.describe(flagOf)}\n`);
  } else if (e instanceof ModuleLoadError) {
    process.stderr.write(`tcpmod: ${e.file}: invalid module\n${e.problems.map((p) => `  - ${p}\n`).join('')}`);
  } else if (e instanceof ModuleConfigRefused || (e as { code?: string })?.code) {
    process.stderr.write(`tcpmod: ${(e as Error).message}\n`);
  } else {
    process.stderr.write(`tcpmod: ${(e as Error)?.stack ?? String(e)}\n`);
  }
  process.exit(1);
}

async function serve(file: string): Promise<void> {
  let server: TcpmodServer;
  let metrics: Value<typeof OPTIONS.metrics.kind> | null = null;
  let watch = false;
  // --config as typed: a reload reads an @file again.
  const rawConfig = serveCmd.getOptionValueSource('config') === 'default' ? undefined : (serveCmd.opts().config as string | undefined);
  try {
    const { metrics: address, watch: w, ...opts } = given(serveCmd, serveOptions);
    watch = w === true;
    if (address !== undefined) metrics = parseOptionValue('metrics', OPTIONS.metrics.kind, address) as Value<typeof OPTIONS.metrics.kind>;
    // Strings as typed: createServer checks and converts each one, naming the option. The CLI logs at
    // the table's default level (info); the API's own default is quieter (host/logger.ts).
    server = createServer({ logLevel: DEFAULTS.logLevel, ...opts, module: file } as ServerOptions);
  } catch (e) {
    fail(e);
  }
  let signals = 0;
  const onSignal = (sig: string) => {
    signals++;
    if (signals > 1) {
      process.stderr.write(`tcpmod: second ${sig}: stopping at once\n`);
      server.abort();
      process.exit(1);
    }
    server.close().then(() => process.exit(0), (e) => fail(e));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // SIGHUP re-reads the module and --config from the same paths, and the TLS files with --tls-cert;
  // whatever is refused leaves the old one serving (the server logs why, one problem a line).
  process.on('SIGHUP', () => {
    if (server.options.tls) {
      server.reloadTls().catch((e: unknown) => {
        const why = e instanceof OptionError ? e.describe(flagOf) : (e as Error).message;
        process.stderr.write(`tcpmod: SIGHUP: certificate reload refused, the previous certificate keeps serving: ${why}\n`);
      });
    }
    void reloadModule(server!, rawConfig, 'SIGHUP');
  });
  try {
    const addr = await server.listen();
    if (metrics) {
      // prom-client takes ~80 ms to load: only when metrics are asked for.
      const { serveMetrics } = await import('./metrics.js');
      const m = await serveMetrics(server, metrics.host, metrics.port);
      m.http.unref();
      process.stderr.write(`metrics on http://${metrics.host}:${m.port}/metrics\n`);
    }
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    process.stdout.write(`listening on ${host}:${addr.port}\n`);
    if (watch) watchModule(file, () => reloadModule(server!, rawConfig, '--watch'));
  } catch (e) {
    // A signal during start-up closed the server, which gave up on starting: onSignal exits.
    if (signals > 0) return;
    fail(e);
  }
}

/**
 * Reloads the module (and an @file --config) from the same paths; true when applied. A refusal
 * is logged by the server, one problem a line, and the running module keeps serving.
 */
async function reloadModule(server: TcpmodServer, rawConfig: string | undefined, why: string): Promise<boolean> {
  if (server.state !== 'running') return false;
  try {
    const config = rawConfig?.startsWith('@') ? bytes(rawConfig) : undefined;
    const r = await server.reload({ config });
    if (r.result === 'unchanged') return true;
    process.stderr.write(`tcpmod: ${why}: module reloaded: generation ${r.generation} (${r.migrating} connections move to it, ${r.pinned} stay on older modules)\n`);
    return true;
  } catch (e) {
    const detail = e instanceof OptionError ? e.describe(flagOf) : e instanceof ModuleLoadError ? `${e.problems.length} problem(s), logged above` : (e as Error).message;
    process.stderr.write(`tcpmod: ${why}: reload refused, the running module keeps serving: ${detail}\n`);
    return false;
  }
}

/** How long the module file must stay unchanged before --watch loads it, and how often a refused load is retried. */
const WATCH_SETTLE_MS = 300;
const WATCH_RETRY_MS = 1000;

/**
 * --watch: reloads when the module file changes. Events are debounced (the file
 * must stay the same size and age for WATCH_SETTLE_MS), and a load that is
 * refused (a file still being written is not a valid module) is tried again
 * while the file keeps changing: never fatal, and a half file is never served.
 * The directory is watched, so an editor or build tool that replaces the file
 * (write elsewhere, rename) is seen too.
 */
function watchModule(file: string, reload: () => Promise<boolean>): void {
  const name = basename(file);
  const stamp = (): string => {
    try {
      const st = statSync(file);
      return `${st.size}:${st.mtimeMs}`;
    } catch {
      return 'missing';
    }
  };
  let loaded = stamp();
  let timer: NodeJS.Timeout | null = null;
  let busy = false;
  const settle = (): void => {
    if (timer) clearTimeout(timer);
    const seen = stamp();
    timer = setTimeout(() => (stamp() === seen ? void attempt(seen) : settle()), WATCH_SETTLE_MS);
  };
  const attempt = async (seen: string): Promise<void> => {
    timer = null;
    if (seen === loaded || seen === 'missing' || busy) return;
    busy = true;
    const ok = await reload();
    busy = false;
    if (ok) loaded = seen;
    else timer = setTimeout(() => (stamp() !== seen ? settle() : undefined), WATCH_RETRY_MS);
    if (stamp() !== seen) settle(); // it changed while loading
  };
  watchFs(dirname(file), (_event, changed) => {
    if (changed === null || changed === name) settle();
  }).unref();
}

program.parseAsync(process.argv).catch((e) => {
  if (e instanceof CommanderError) process.exit(e.exitCode);
  fail(e);
});
