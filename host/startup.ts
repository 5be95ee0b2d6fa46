// A module's trial instance, made before the module serves (listen, reload,
// inspect) in a thread of its own under the start-up timeout: a module whose
// start-up loops is refused (StartupTimeout) instead of freezing the thread
// that asked, and whoever asked can give up at once (a signal, close()).
import { Worker } from 'node:worker_threads';
import { ModuleConfigRefused, ModuleLoadError, StartupTimeout } from './module/errors.js';
import type { IoDesc } from './module/instance.js';
import type { CompiledModule } from './module/load.js';
import { workerExecArgv } from './pool/pool.js';

/** What a trial instance tells of its module. */
export interface TrialResult {
  /** tcpmod_state_version; null: the module does not say. */
  stateVersion: number | null;
  desc: IoDesc;
  /** Memory size once start-up has run, in 64 KiB pages. */
  pagesAfterStartup: number;
}

/** workerData of the trial thread (worker/trial-main.ts). */
export interface TrialData {
  file: string;
  bytes: Uint8Array;
  module: WebAssembly.Module;
  memoryCap: number;
  config: Uint8Array;
}

/** What the trial thread posts: start-up begins (the timeout runs from here), a log line, the outcome. */
export type TrialMessage =
  | { type: 'start' }
  | { type: 'log'; level: number; message: string }
  | { type: 'done'; result: TrialResult }
  | { type: 'failed'; load?: string[]; status?: number; message?: string };

export interface TrialOptions {
  timeoutMs: number;
  /** A log line the module wrote during start-up. */
  log(level: number, message: string): void;
  /** Gives up at once (the thread is terminated); the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
}

/**
 * Runs one trial instance of `compiled` (every start-up step, tcpmod_init with
 * its config, tcpmod_state_version) in a new thread. Rejects as listen() does
 * for a bad module (ModuleLoadError, ModuleConfigRefused), with StartupTimeout
 * when start-up runs past opts.timeoutMs (the thread is then terminated).
 */
export function trialInstance(compiled: CompiledModule, opts: TrialOptions): Promise<TrialResult> {
  const { file } = compiled;
  const data: TrialData = { file, bytes: compiled.bytes, module: compiled.module, memoryCap: compiled.memoryCap, config: compiled.config };
  return new Promise<TrialResult>((resolve, reject) => {
    if (opts.signal?.aborted) return reject(opts.signal.reason);
    const worker = new Worker(new URL('./worker/trial-main.js', import.meta.url), { workerData: data, execArgv: workerExecArgv(process.execArgv) });
    let timer: NodeJS.Timeout | null = null;
    let settled = false;
    const onAbort = () => finish(() => reject(opts.signal!.reason));
    const finish = (settle: () => void) => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      void worker.terminate();
      settle();
    };
    opts.signal?.addEventListener('abort', onAbort);
    worker.on('message', (m: TrialMessage) => {
      if (m.type === 'start') timer = setTimeout(() => finish(() => reject(new StartupTimeout(file, opts.timeoutMs))), opts.timeoutMs);
      else if (m.type === 'log') opts.log(m.level, m.message);
      else if (m.type === 'done') finish(() => resolve(m.result));
      else if (m.load) finish(() => reject(new ModuleLoadError(file, m.load!)));
      else if (m.status !== undefined) finish(() => reject(new ModuleConfigRefused(file, m.status!)));
      else finish(() => reject(new Error(`trial instance of ${file} failed: ${m.message}`)));
    });
    worker.on('error', (e) => finish(() => reject(e)));
    worker.on('exit', (code) => finish(() => reject(new Error(`the trial instance's thread of ${file} exited (${code}) before start-up finished`))));
  });
}
