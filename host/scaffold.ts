// `tcpmod new <dir>`: writes a module project to start from — a working line
// protocol, its tests on tcpmod/testing, and the scripts to build, test and
// serve it — from the templates shipped in the package: templates/common/ (the
// test and README, the same for every language: both starting modules speak the
// same protocol) and templates/<lang>/ (the module and its build).
//
// Contract: the directory must not exist or be empty (nothing is overwritten);
// on success every file is written and the list is returned; on any refusal
// nothing is written. Placeholders ({{name}}, {{version}}, {{vitest}} and the
// per-language words of LANGUAGE_TEXT) are replaced in every file; a file named `gitignore` becomes `.gitignore` (npm
// drops dot-gitignore files from tarballs, so the template cannot carry one).
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
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

/** Writes a new module project in `dir`; returns the paths written, relative to it. */
export function newProject(dir: string, lang: Language): string[] {
  const target = resolve(dir);
  if (existsSync(target)) {
    if (!statSync(target).isDirectory()) throw new ScaffoldError(`${dir} exists and is not a directory`);
    if (readdirSync(target).length > 0) throw new ScaffoldError(`${dir} is not empty: tcpmod new writes only into a new or empty directory`);
  }
  const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string; devDependencies?: Record<string, string> };
  const values: Record<string, string> = {
    name: packageName(dir),
    version: pkg.version,
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
  for (const { path, text } of out) {
    mkdirSync(dirname(join(target, path)), { recursive: true });
    writeFileSync(join(target, path), text, { flag: 'wx' });
  }
  return out.map((f) => f.path);
}
