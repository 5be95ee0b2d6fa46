// `tcpmod new <dir>`: writes a module project to start from — a working line
// protocol, its tests on tcpmod/testing, and the scripts to build, test and
// serve it — from the templates shipped in the package: templates/common/ (the
// test and README, the same for every language: both starting modules speak the
// same protocol) and templates/<lang>/ (the module and its build).
//
// Contract: the directory must not exist or be empty (nothing is overwritten);
// on success every file is written and the list is returned; on any refusal
// nothing is written.
//
// The project depends on the very tcpmod that wrote it. Installed from a
// registry (npm's lockfile beside this package says where it came from): by
// version range, "^0.1.0". Otherwise (a tarball, a checkout, a link) the
// registry may not have it at all, so `npm pack` writes this package as
// tcpmod-<version>.tgz into the project and the dependency is that file. A
// tarball rather than a path: the project stands alone (the directory it was
// made from may go; the file can be committed with it), npm installs a copy
// (a `file:` directory would be a symlink into someone else's node_modules,
// and npm would run that checkout's `prepare`, which needs its dev tools), and
// what is installed is exactly what a registry would serve. Placeholders ({{name}}, {{version}}, {{vitest}} and the
// per-language words of LANGUAGE_TEXT) are replaced in every file; a file named `gitignore` becomes `.gitignore` (npm
// drops dot-gitignore files from tarballs, so the template cannot carry one).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const LANGUAGES = ['assemblyscript', 'c'] as const;
export type Language = (typeof LANGUAGES)[number];

/** What the shared README says of each language. */
const LANGUAGE_TEXT: Record<Language, Record<string, string>> = {
  assemblyscript: {
    language: 'AssemblyScript',
    source: 'assembly/index.ts',
    build: 'runs `tcpmod build`: asc with the options tcpmod needs, then the\n  same checks `tcpmod serve` runs when it loads the module.',
    reference: 'the SDK in `node_modules/tcpmod/docs/sdk.md`',
  },
  c: {
    language: 'C (clang, no libc)',
    source: 'src/module.c',
    build: 'runs `build.sh`: clang for wasm32 (install `clang` and `lld`), then\n  `tcpmod inspect`, the checks `tcpmod serve` runs when it loads the module.',
    reference: 'the C declarations in `node_modules/tcpmod/include/tcpmod.h`',
  },
};

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export class ScaffoldError extends Error {
  readonly code = 'TCPMOD_SCAFFOLD';
  constructor(message: string) {
    super(message);
    this.name = 'ScaffoldError';
  }
}

/** Accepts the language names and the short forms people type. */
export function parseLanguage(v: string): Language {
  const l = v.toLowerCase();
  if (l === 'assemblyscript' || l === 'as' || l === 'ts') return 'assemblyscript';
  if (l === 'c') return 'c';
  throw new ScaffoldError(`--lang must be one of ${LANGUAGES.join(', ')}; got ${JSON.stringify(v)}`);
}

/** An npm package name made from the directory's name ("My Proto" -> "my-proto"). */
export function packageName(dir: string): string {
  const name = basename(resolve(dir)).toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[._-]+|[-]+$/g, '');
  return name === '' ? 'tcpmod-module' : name.slice(0, 214);
}

function templateFiles(root: string, at = root): string[] {
  return readdirSync(at).flatMap((f) => {
    const p = join(at, f);
    return statSync(p).isDirectory() ? templateFiles(root, p) : [relative(root, p)];
  });
}

/**
 * Where npm got the package at `root`, as its lockfile records it (`resolved`): a registry URL, a
 * `file:` spec, ... null when no lockfile knows (a checkout, a package not installed by npm). Reads
 * npm's own record in the node_modules that holds it (node_modules/.package-lock.json), then the
 * project's package-lock.json.
 */
export function resolvedFrom(root: string): string | null {
  const parts = resolve(root).split(sep);
  for (let i = parts.lastIndexOf('node_modules'); i > 0; i = parts.lastIndexOf('node_modules', i - 1)) {
    const project = parts.slice(0, i).join(sep) || sep;
    const key = parts.slice(i).join('/');
    for (const lock of [join(project, 'node_modules', '.package-lock.json'), join(project, 'package-lock.json')]) {
      try {
        const entry = (JSON.parse(readFileSync(lock, 'utf8')) as { packages?: Record<string, { resolved?: string }> }).packages?.[key];
        if (entry) return entry.resolved ?? null;
      } catch {
        // no such lockfile, or not npm's: try the next
      }
    }
  }
  return null;
}

/** What the project's package.json says of tcpmod, and the tarball to write beside it (null: none). */
function dependencyOn(version: string): { spec: string; tarball: string | null } {
  const from = resolvedFrom(packageRoot);
  if (from !== null && /^https?:\/\//.test(from)) return { spec: `^${version}`, tarball: null };
  const tarball = `tcpmod-${version}.tgz`;
  return { spec: `file:${tarball}`, tarball };
}

/** `npm pack`s this package into `dir` (no lifecycle scripts: what is here is what ships); throws a ScaffoldError saying why not. */
function packInto(dir: string, tarball: string): void {
  // Run through npm's own CLI when npm (npx, npm exec, a script) started us; else the npm on PATH.
  // A checkout (npm installed nothing here) ships the addon it compiled as the prebuilt, as `npm pack`'s
  // prepack would; an installed package already holds its prebuilt.
  if (resolvedFrom(packageRoot) === null && existsSync(join(packageRoot, 'host', 'native', 'build'))) {
    const r = spawnSync(process.execPath, [join(packageRoot, 'scripts', 'build-native.mjs'), '--prebuild'], { cwd: packageRoot, encoding: 'utf8' });
    if (r.status !== 0) throw new ScaffoldError(`could not write ${tarball}: the native shim did not build: ${(r.stderr || r.stdout).trim()}`);
  }
  const npmCli = process.env.npm_execpath;
  const [cmd, args] = npmCli && /npm-cli\.js$/.test(npmCli) ? [process.execPath, [npmCli]] : ['npm', []];
  const r = spawnSync(cmd, [...args, 'pack', '--ignore-scripts', '--silent', '--pack-destination', dir], { cwd: packageRoot, encoding: 'utf8' });
  if (r.error || r.status !== 0 || !existsSync(join(dir, tarball))) {
    const why = r.error ? r.error.message : (r.stderr || r.stdout).trim().split('\n').pop();
    throw new ScaffoldError(`could not write ${tarball} (npm pack in ${packageRoot}): ${why}`);
  }
}

/** What the README says of where tcpmod comes from. */
function dependencyText(dep: { spec: string; tarball: string | null }): string {
  if (dep.tarball === null) return 'tcpmod comes from the npm registry (`"tcpmod": "' + dep.spec + '"` in package.json).';
  return (
    `\`${dep.tarball}\` is the tcpmod this project was made with (it was not installed from the npm\n` +
    `registry), and package.json depends on it by path: keep it with the project (commit it), or\n` +
    `replace it with a version range once tcpmod is published.`
  );
}

/** Writes a new module project in `dir`; returns the paths written, relative to it. */
export function newProject(dir: string, lang: Language): string[] {
  const target = resolve(dir);
  if (existsSync(target)) {
    if (!statSync(target).isDirectory()) throw new ScaffoldError(`${dir} exists and is not a directory`);
    if (readdirSync(target).length > 0) throw new ScaffoldError(`${dir} is not empty: tcpmod new writes only into a new or empty directory`);
  }
  const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string; devDependencies?: Record<string, string> };
  const dep = dependencyOn(pkg.version);
  const values: Record<string, string> = {
    name: packageName(dir),
    version: pkg.version,
    dependency: dep.spec,
    // The key `npm install-scripts approve tcpmod` writes (npm 11.19 keys a tarball by its absolute
    // path): tcpmod's install script (the native shim) may run. A moved project gets npm's warning back.
    allowKey: dep.tarball ? `file:${join(target, dep.tarball)}` : 'tcpmod',
    dependencyText: dependencyText(dep),
    vitest: pkg.devDependencies?.vitest ?? '^4.0.0',
    ...LANGUAGE_TEXT[lang],
  };
  const sources = ['common', lang].map((d) => join(packageRoot, 'templates', d));
  // Read and fill everything first, so a missing template writes nothing.
  const out = sources.flatMap((src) =>
    templateFiles(src).map((f) => ({
      path: f === 'gitignore' ? '.gitignore' : f,
      text: readFileSync(join(src, f), 'utf8').replace(/\{\{(\w+)\}\}/g, (m, k: string) => values[k] ?? m),
    })),
  );
  const made = !existsSync(target);
  try {
    mkdirSync(target, { recursive: true });
    if (dep.tarball) packInto(target, dep.tarball);
  } catch (e) {
    if (made) rmSync(target, { recursive: true, force: true });
    else if (dep.tarball) rmSync(join(target, dep.tarball), { force: true });
    throw e;
  }
  for (const { path, text } of out) {
    mkdirSync(dirname(join(target, path)), { recursive: true });
    writeFileSync(join(target, path), text, { flag: 'wx' });
  }
  return [...out.map((f) => f.path), ...(dep.tarball ? [dep.tarball] : [])];
}
