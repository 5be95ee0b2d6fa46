// `tcpmod build`: compiles an AssemblyScript module with the compiler options
// ABI v1 needs, then runs the load checks `serve` runs, so a module project
// needs no build script of its own. This repository's modules are built by the
// same function (scripts/build-wasm.mjs), so there is one definition of how a
// module is compiled: the preset asconfig.json at the package root, which a
// project's own asconfig.json may also `extends` to use asc directly.
import asc from 'assemblyscript/asc';
import { existsSync, mkdirSync, readlinkSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileModule, probeModule } from './module/load.js';
import { OptionError } from './options.js';

/** The installed package (or this repository): dist/ sits right under it. */
export const PACKAGE_ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

/**
 * The compiler preset: runtime minimal (the host runs the collector), the runtime helpers
 * exported, top-level code as `_initialize`, a memory maximum (256 pages, 16 MiB, under the
 * host's 32 MiB default cap), and `abort` redirected to the `tcpmod.abort` import.
 */
export const PRESET = join(PACKAGE_ROOT, 'asconfig.json');

export interface BuildOptions {
  /** The module's entry file, relative to baseDir (default assembly/index.ts). */
  entry?: string;
  /** Where the .wasm goes, relative to baseDir (default build/<entry name>.wasm). */
  outFile?: string;
  /** The project directory the paths are relative to (default the current directory). */
  baseDir?: string;
}

export interface BuiltModule {
  /** Absolute path of the .wasm written. */
  file: string;
  /** Its size in bytes. */
  size: number;
  /** Its imports, `module.name`, in order. */
  imports: string[];
  /** The compiler's warnings, if any (empty when none). */
  warnings: string;
}

/** asc refused the source; `diagnostics` is its report, as it prints it. */
export class BuildError extends Error {
  readonly code = 'TCPMOD_BUILD_FAILED';
  constructor(readonly entry: string, readonly diagnostics: string) {
    super(`${entry}: compile failed\n${diagnostics}`);
    this.name = 'BuildError';
  }
}

export const DEFAULT_ENTRY = 'assembly/index.ts';

/**
 * Compiles `entry` against the preset, writes the .wasm, and checks it exactly as `serve`
 * would load it (imports allow-list, exports, memory bounds, one trial instance for the
 * IoDesc and tcpmod_init). Rejects with OptionError (bad paths), BuildError (asc's
 * diagnostics) or the loader's ModuleLoadError (`problems`, one line each).
 */
export async function buildModule(opts: BuildOptions = {}): Promise<BuiltModule> {
  const baseDir = resolve(opts.baseDir ?? process.cwd());
  const entry = opts.entry ?? DEFAULT_ENTRY;
  if (typeof entry !== 'string' || extname(entry) !== '.ts' || entry.endsWith('.d.ts')) {
    throw new OptionError('entry', `must be an AssemblyScript file ending in .ts, got ${JSON.stringify(entry)}`);
  }
  if (!isFile(resolve(baseDir, entry))) throw new OptionError('entry', `${JSON.stringify(entry)} is not a file in ${baseDir}`);
  const outFile = opts.outFile ?? join('build', `${basename(entry, '.ts')}.wasm`);
  if (typeof outFile !== 'string' || extname(outFile) !== '.wasm') {
    throw new OptionError('outFile', `must end in .wasm, got ${JSON.stringify(outFile)}`);
  }
  const file = resolve(baseDir, outFile);
  const { error, stderr } = await asc.main(
    [entry, '--baseDir', baseDir, '--config', PRESET, '--path', sdkSearchPath(), '--outFile', relative(baseDir, file)],
    {},
  );
  const diagnostics = stderr.toString().trim();
  if (error) throw new BuildError(entry, diagnostics || error.message);
  const imports = await checkModule(file);
  return { file, size: statSync(file).size, imports, warnings: diagnostics };
}

/** The load checks of `serve` on a built file; the module's imports as `module.name`. */
export async function checkModule(file: string): Promise<string[]> {
  const compiled = await compileModule(file);
  probeModule(compiled, { send: () => -1, log: () => undefined }).dispose();
  return compiled.shape.imports.map((i) => `${i.module}.${i.name}`);
}

/** One line for a built module: `built build/x.wasm (1234 bytes; imports: tcpmod.abort, ...)`. */
export function describeBuilt(built: BuiltModule, baseDir: string = process.cwd()): string {
  return `built ${relative(baseDir, built.file)} (${built.size} bytes; imports: ${built.imports.join(', ') || 'none'})`;
}

/**
 * A directory holding this package under the name `tcpmod`, for asc's `--path`: modules
 * import the SDK as "tcpmod/assembly/sdk", which asc looks up in node_modules directories
 * (a project that depends on tcpmod has it there) and then in these. Installed, the package
 * already sits in such a directory (its node_modules). This repository is not named tcpmod,
 * so it links build/asc-path/tcpmod to itself: its own modules then compile against its own
 * SDK by the same import path, without an installed copy.
 */
export function sdkSearchPath(): string {
  if (basename(PACKAGE_ROOT) === 'tcpmod') return dirname(PACKAGE_ROOT);
  const dir = join(PACKAGE_ROOT, 'build', 'asc-path');
  const link = join(dir, 'tcpmod');
  if (linkTarget(link) !== '../..') {
    mkdirSync(dir, { recursive: true });
    rmSync(link, { force: true });
    symlinkSync('../..', link);
  }
  return dir;
}

function linkTarget(path: string): string | null {
  try {
    return readlinkSync(path);
  } catch {
    return null;
  }
}

function isFile(path: string): boolean {
  return existsSync(path) && statSync(path).isFile();
}
