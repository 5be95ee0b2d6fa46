// Compiles an AssemblyScript module given as source text, against the SDK in
// assembly/sdk and the project's asconfig.json, in memory (nothing written but
// the cache). A compile costs seconds (and importing the compiler more), so the
// binary is cached by the hash of everything it is made from: the name and the
// source, asconfig.json, every file of assembly/sdk and the compiler's version,
// in node_modules/.cache/tcpmod-asc/. Any change to one of them compiles again.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CACHE = join(root, 'node_modules', '.cache', 'tcpmod-asc');

/** Every file under `dir`, as paths relative to the repository, sorted. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(relative(root, p));
  }
  return out.sort();
}

/** The cache key of a compile of `source` as assembly/<name>.ts. */
function compileKey(name: string, source: string): string {
  const h = createHash('sha256');
  const ascVersion = JSON.parse(readFileSync(join(root, 'node_modules', 'assemblyscript', 'package.json'), 'utf8')).version as string;
  h.update(`${name}\0${source}\0asc ${ascVersion}\0`);
  for (const f of ['asconfig.json', ...filesUnder(join(root, 'assembly', 'sdk'))]) h.update(`${f}\0`).update(readFileSync(join(root, f))).update('\0');
  return h.digest('hex');
}

/** `source` is compiled as if it were assembly/<name>.ts (so it imports "./sdk"). */
export async function compileAs(name: string, source: string): Promise<Uint8Array<ArrayBuffer>> {
  const cached = join(CACHE, `${compileKey(name, source)}.wasm`);
  if (existsSync(cached)) return new Uint8Array(readFileSync(cached));
  const binary = await compile(name, source);
  mkdirSync(CACHE, { recursive: true });
  const tmp = `${cached}.${process.pid}.tmp`;
  writeFileSync(tmp, binary);
  renameSync(tmp, cached); // whole or not at all: files compiling at once may share a key
  return binary;
}

async function compile(name: string, source: string): Promise<Uint8Array<ArrayBuffer>> {
  const { default: asc } = await import('assemblyscript/asc');
  const entry = `assembly/${name}.ts`;
  let binary: Uint8Array<ArrayBuffer> | undefined;
  const { error, stderr } = await asc.main(['--baseDir', root, '--config', 'asconfig.json', entry, '--outFile', `${name}.wasm`], {
    readFile: (file: string, baseDir: string) => {
      if (file.replace(/\\/g, '/').endsWith(`${name}.ts`)) return source;
      try {
        return readFileSync(resolve(baseDir, file), 'utf8');
      } catch {
        return null;
      }
    },
    writeFile: (file: string, contents: Uint8Array | string) => {
      if (file.endsWith('.wasm') && typeof contents !== 'string') binary = new Uint8Array(contents);
    },
    listFiles: (dir: string, baseDir: string) => {
      try {
        return readdirSync(resolve(baseDir, dir)).filter((f) => f.endsWith('.ts'));
      } catch {
        return null;
      }
    },
  });
  if (error || !binary) throw new Error(`${name} did not compile: ${stderr.toString()}`);
  return binary;
}
