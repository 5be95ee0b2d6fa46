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

/** One trial, as the trial thread (worker/trial-main.ts) is sent it. */
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

/** A trial thread that finished its last trial in time, kept for the next one (one at most). */
let idle: { worker: Worker; timer: NodeJS.Timeout; gone: () => void } | null = null;
/** How long an idle trial thread is kept. */
const IDLE_KEEP_MS = 30_000;

/**
 * Starts a trial thread now, kept idle for the next trial, so that its start (~50-100 ms) overlaps
 * whatever the caller does before it needs the trial (reading and compiling the module).
 */
export function prepareTrialThread(): void {
  if (!idle) giveBack(newThread());
}

function newThread(): Worker {
  return new Worker(new URL('./worker/trial-main.js', import.meta.url), { execArgv: workerExecArgv(process.execArgv) });
}

function takeThread(): Worker {
  if (idle) {
    const { worker, timer, gone } = idle;
    idle = null;
    clearTimeout(timer);
    worker.off('exit', gone).off('error', gone).ref();
    return worker;
  }
  return newThread();
}

/** A thread whose trial ended in time: kept (not holding the process open) for the next trial, or ended. */
function giveBack(worker: Worker): void {
  if (idle) return void worker.terminate();
  worker.unref();
  const timer = setTimeout(() => {
    if (idle?.worker === worker) idle = null;
    void worker.terminate();
  }, IDLE_KEEP_MS);
  timer.unref();
  // An idle thread that dies, or fails to start (its script missing, say), is simply forgotten: the
  // next trial starts a thread of its own and reports such a failure to its caller. Without an
  // 'error' listener here, that failure would be an uncaught exception of the whole process.
  const gone = () => {
    if (idle?.worker !== worker) return;
    clearTimeout(idle.timer);
    idle = null;
  };
  worker.once('exit', gone).on('error', gone);
  idle = { worker, timer, gone };
}

/**
 * Runs one trial instance of `compiled` (every start-up step, tcpmod_init with
 * its config, tcpmod_state_version) in a thread of its own. Rejects as listen()
 * does for a bad module (ModuleLoadError, ModuleConfigRefused), with
 * StartupTimeout when start-up runs past opts.timeoutMs: that thread is then
 * terminated (one that finished in time is kept for the next trial).
 */
export function trialInstance(compiled: CompiledModule, opts: TrialOptions): Promise<TrialResult> {
  const { file } = compiled;
  const data: TrialData = { file, bytes: compiled.bytes, module: compiled.module, memoryCap: compiled.memoryCap, config: compiled.config };
  return new Promise<TrialResult>((resolve, reject) => {
    if (opts.signal?.aborted) return reject(opts.signal.reason);
    const worker = takeThread();
    let timer: NodeJS.Timeout | null = null;
    let settled = false;
    const onAbort = () => finish(false, () => reject(opts.signal!.reason));
    /** `reuse`: the trial ended in the thread's own time; otherwise the thread may be stuck in the module. */
    const finish = (reuse: boolean, settle: () => void) => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      worker.off('message', onMessage).off('error', onError).off('exit', onExit);
      if (reuse) giveBack(worker);
      else void worker.terminate();
      settle();
    };
    opts.signal?.addEventListener('abort', onAbort);
    const onMessage = (m: TrialMessage) => {
      if (m.type === 'start') timer = setTimeout(() => finish(false, () => reject(new StartupTimeout(file, opts.timeoutMs))), opts.timeoutMs);
      else if (m.type === 'log') opts.log(m.level, m.message);
      else if (m.type === 'done') finish(true, () => resolve(m.result));
      else if (m.load) finish(true, () => reject(new ModuleLoadError(file, m.load!)));
      else if (m.status !== undefined) finish(true, () => reject(new ModuleConfigRefused(file, m.status!)));
      else finish(false, () => reject(new Error(`trial instance of ${file} failed: ${m.message}`)));
    };
    const onError = (e: Error) => finish(false, () => reject(e));
    const onExit = (code: number) => finish(false, () => reject(new Error(`the trial instance's thread of ${file} exited (${code}) before start-up finished`)));
    worker.on('message', onMessage).on('error', onError).on('exit', onExit);
    worker.postMessage(data);
  });
}
