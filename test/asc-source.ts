// Compiles an AssemblyScript module given as source text, against the SDK in
// assembly/sdk and the project's asconfig.json, in memory (nothing written).
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import asc from 'assemblyscript/asc';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** `source` is compiled as if it were assembly/<name>.ts (so it imports "./sdk"). */
export async function compileAs(name: string, source: string): Promise<Uint8Array> {
  const entry = `assembly/${name}.ts`;
  let binary: Uint8Array | undefined;
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
