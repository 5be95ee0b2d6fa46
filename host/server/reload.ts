// The reload controller: the module generations the main thread knows, live
// reload (a new generation after its trial instance), the fault watch after a
// reload and its rollback, and the generation tick that frees idle
// generations and applies --reload-drain. Workers learn of generations from
// announce(); the native table counts each generation's connections.
import { LOG_LEVELS } from '../module/abi.js';
import { ModuleConfigRefused, ModuleLoadError } from '../module/errors.js';
import { compileModule, type CompiledModule } from '../module/load.js';
import { OptionError, OPTIONS, parseOptionValue } from '../options.js';
import { G } from '../pool/counters.js';
import { native } from '../sys.js';
import { trialInstance } from '../startup.js';
import { capabilities, compatibility, type GenerationMessage, type GenerationSpec } from '../worker/generations.js';
import type { ServerCore } from './core.js';

export type ReloadResult = 'applied' | 'refused' | 'rolled_back';
export const RELOAD_RESULTS: readonly ReloadResult[] = ['applied', 'refused', 'rolled_back'];

export interface ReloadOptions {
  /** The new module's path (default: the current generation's). */
  module?: string;
  /** Bytes for its tcpmod_init (default: the current generation's config). */
  config?: Uint8Array | string;
}

/**
 * What a reload did: applied (a new generation), or unchanged (the same module bytes and config as
 * the current generation: nothing to do, no generation made, not counted; a SIGHUP meant for the TLS
 * files leaves the module alone). A refused one rejects (ModuleLoadError, ModuleConfigRefused, OptionError).
 */
export interface ReloadReport {
  result: 'applied' | 'unchanged';
  generation: number;
  previous: number;
  module: string;
  /** tcpmod_state_version of the new module; null: it does not say (no open connection can move to it). */
  stateVersion: number | null;
  /** Connections open on older generations when it was applied... */
  connections: number;
  /** ...of which these move to the new generation at their next event (the pair's verdict: worker/generations.ts compatibility())... */
  migrating: number;
  /** ...and these stay on their own generation until they close (or --reload-drain). */
  pinned: number;
}

/** A generation the main thread knows: the current one, and older ones while they have connections. */
interface ServerGeneration {
  spec: GenerationSpec;
  name: string;
  failed: boolean;
  /** When it stopped being current (Date.now(); 0 while current), and whether --reload-drain has acted on it. */
  retiredAt: number;
  drained: boolean;
}

/** How often the main thread looks at generations while more than one is live or a reload is watched. */
const GENERATION_TICK_MS = 100;

export class ReloadController {
  /** Live reload: the generations workers may hold, the current one, the last number given. */
  readonly gens = new Map<number, ServerGeneration>();
  currentGen = 0;
  lastGen = 0;
  readonly reloadCounts: Record<ReloadResult, number> = { applied: 0, refused: 0, rolled_back: 0 };
  /** One reload at a time: each waits for the one before. */
  private reloading: Promise<unknown> = Promise.resolve();
  /** The fault watch after a reload: the generation and the one to roll back to. */
  private watch: { gen: number; previous: ServerGeneration; until: number } | null = null;
  private genTimer: NodeJS.Timeout | null = null;
  /** Workers load WASI at start only if a generation they start with imports it. */
  workersHaveWasi = false;

  constructor(private readonly core: ServerCore) {}

  private get state() { return this.core.state; }
  private get options() { return this.core.options; }
  private get log() { return this.core.log; }
  private get pool() { return this.core.pool; }
  private get epfd() { return this.core.epfd; }
  private get trials() { return this.core.trials; }
  private set compiled(c: CompiledModule) { this.core.compiled = c; }

  /**
   * One trial instance of a module (every load check, a start-up trap, tcpmod_init with its config), in a
   * thread of its own under --startup-timeout: what workers need to know of it. Rejects as listen() would
   * (ModuleLoadError, StartupTimeout, ModuleConfigRefused); this thread keeps serving meanwhile.
   */
  async trial(compiled: CompiledModule): Promise<Omit<GenerationSpec, 'gen' | 'file' | 'bytes' | 'module' | 'config'>> {
    const { stateVersion, desc } = await trialInstance(compiled, {
      timeoutMs: this.options.startupTimeoutMs,
      log: (level, message) => this.log[LOG_LEVELS[level] ?? 'info']({ module: compiled.name }, message),
      signal: this.trials.signal,
    });
    return { stateVersion, stateSize: desc.stateSize, inCap: desc.inCap, ...capabilities(compiled) };
  }

  /** Numbers a checked module as the next generation; workers learn of it from announce() or their start-up list. */
  addGeneration(compiled: CompiledModule, trial: Awaited<ReturnType<ReloadController['trial']>>): ServerGeneration {
    const gen = ++this.lastGen;
    const spec: GenerationSpec = { gen, file: compiled.file, bytes: compiled.bytes, module: compiled.module, config: compiled.config, ...trial };
    const g: ServerGeneration = { spec, name: compiled.name, failed: false, retiredAt: 0, drained: false };
    this.gens.set(gen, g);
    return g;
  }

  /** Tells every worker (they read it at their next event: the epoch cell says there is something to read). */
  private announce(msg: GenerationMessage): void {
    this.pool!.post(msg);
    this.pool!.counters.add(G.GEN_EPOCH, 1);
  }

  /** New connections get `gen` from now on (and connections of other generations move to it where they can). */
  private makeCurrent(gen: number): void {
    const old = this.gens.get(this.currentGen);
    if (old && this.currentGen !== gen) old.retiredAt = Date.now();
    this.currentGen = gen;
    this.gens.get(gen)!.retiredAt = 0;
    this.pool!.counters.set(G.GENERATION, gen);
  }

  /**
   * Replaces the module without dropping a connection (docs/abi.md §11). The
   * new module (by default the same file, read again, with the same config)
   * goes through every load check and one trial instance first (in a thread of
   * its own, under the start-up timeout); a refused one changes nothing and the
   * promise rejects with the error listen() would give. An applied one is a new
   * generation: new connections get it, open ones move to it at their next
   * event where the pair's verdict allows (compatibility(): same
   * tcpmod_state_version and state size, the capabilities the old module may
   * have used), and the others stay on their own generation until they close. If it then faults more than reloadFaultLimit times within
   * reloadWatch, the server rolls back to the previous generation.
   */
  reload(opts: ReloadOptions = {}): Promise<ReloadReport> {
    const run = this.reloading.then(() => this.reloadNow(opts));
    this.reloading = run.catch(() => undefined);
    return run;
  }

  private async reloadNow(opts: ReloadOptions): Promise<ReloadReport> {
    if (opts === null || typeof opts !== 'object') throw new OptionError('options', 'must be an object');
    if (opts.module !== undefined && (typeof opts.module !== 'string' || opts.module === '')) throw new OptionError('module', 'must be the path of a .wasm file');
    const config = opts.config === undefined ? undefined : (parseOptionValue('config', OPTIONS.config.kind, opts.config) as Uint8Array);
    if (this.state !== 'running') throw new Error(`reload() called in state ${this.state}`);
    const cur = this.gens.get(this.currentGen)!;
    const file = opts.module ?? cur.spec.file;
    let compiled: CompiledModule;
    let trial: Awaited<ReturnType<ReloadController['trial']>>;
    try {
      compiled = await compileModule(file, { memoryCap: this.options.moduleMemory, config: config ?? cur.spec.config });
      if (compiled.verdict.importsWasi && !this.workersHaveWasi)
        throw new ModuleLoadError(file, ['imports WASI, which the running workers have not loaded (the module the server started with does not import it): restart the server to serve it']);
      trial = await this.trial(compiled);
    } catch (e) {
      this.refused(file, e);
      throw e;
    }
    if (this.state !== 'running') throw new Error(`reload() called in state ${this.state}`);
    if (sameBytes(compiled.bytes, cur.spec.bytes) && sameBytes(compiled.config, cur.spec.config)) {
      return { result: 'unchanged', generation: cur.spec.gen, previous: cur.spec.gen, module: file, stateVersion: cur.spec.stateVersion, connections: 0, migrating: 0, pinned: 0 };
    }
    const g = this.addGeneration(compiled, trial);
    const previous = this.currentGen;
    this.announce({ type: 'generation', spec: g.spec });
    this.makeCurrent(g.spec.gen);
    this.compiled = compiled;
    this.reloadCounts.applied++;
    let connections = 0;
    let migrating = 0;
    for (const [gen, n] of this.generationCounts()) {
      const from = this.gens.get(gen);
      if (gen === g.spec.gen || !from) continue;
      connections += n;
      if (compatibility(from.spec, g.spec).move) migrating += n;
    }
    this.startWatch(g.spec.gen, this.gens.get(previous)!);
    const report: ReloadReport = {
      result: 'applied', generation: g.spec.gen, previous, module: file, stateVersion: g.spec.stateVersion,
      connections, migrating, pinned: connections - migrating,
    };
    const { result: _, ...detail } = report;
    this.log.info(detail, 'module reloaded');
    return report;
  }

  /** A refused reload: counted, and logged one problem per line; the running generation keeps serving. */
  private refused(file: string, e: unknown): void {
    this.reloadCounts.refused++;
    const problems = e instanceof ModuleLoadError ? e.problems
      : e instanceof ModuleConfigRefused ? [`tcpmod_init refused the config (returned ${e.status})`]
        : [(e as Error)?.message ?? String(e)];
    for (const p of problems) this.log.error({ module: file, generation: this.currentGen }, `reload refused: ${p}`);
  }

  /** Counts the new generation's faults for reloadWatch; a generation timer runs meanwhile. */
  private startWatch(gen: number, previous: ServerGeneration): void {
    const c = this.pool!.counters;
    c.set(G.GEN_FAULTS, 0);
    c.set(G.WATCH_GEN, gen);
    this.watch = { gen, previous, until: Date.now() + this.options.reloadWatchMs };
    this.genTimer ??= setInterval(() => this.tickGenerations(), GENERATION_TICK_MS).unref();
  }

  /** The main thread's look at generations: the fault watch, freeing idle generations, --reload-drain. */
  private tickGenerations(): void {
    if (this.state !== 'running' || !this.pool) return;
    const c = this.pool.counters;
    const w = this.watch;
    if (w && c.get(G.GEN_FAULTS) > this.options.reloadFaultLimit && this.currentGen === w.gen) this.rollback(w);
    else if (w && Date.now() >= w.until) {
      this.watch = null;
      c.set(G.WATCH_GEN, 0);
    }
    const counts = this.generationCounts();
    const now = Date.now();
    const current = this.gens.get(this.currentGen)!;
    for (const [gen, g] of this.gens) {
      if (gen === this.currentGen) continue;
      const n = counts.get(gen) ?? 0;
      // A short grace: a worker that read the old GENERATION just before the swap may still be opening a
      // connection on it (opening moves it to the current generation anyway).
      if (n === 0 && now - g.retiredAt > GENERATION_TICK_MS * 2) {
        this.gens.delete(gen);
        this.announce({ type: 'free', gen });
        this.log.debug({ generation: gen }, 'module generation has no connections left: instances freed');
      } else if (n > 0 && !g.drained && this.options.reloadDrainMs !== null && now - g.retiredAt >= this.options.reloadDrainMs && !compatibility(g.spec, current.spec).move) {
        g.drained = true;
        const marked = native.connDrainGeneration(this.epfd, gen);
        this.log.info({ generation: gen, connections: marked }, 'reload drain: closing connections pinned to an older module (reason 5)');
      }
    }
    if (!this.watch && this.gens.size <= 1 && this.genTimer) {
      clearInterval(this.genTimer);
      this.genTimer = null;
    }
  }

  /** The watched generation faulted too often: back to the previous one, loudly. */
  private rollback(w: NonNullable<ReloadController['watch']>): void {
    const c = this.pool!.counters;
    this.watch = null;
    c.set(G.WATCH_GEN, 0);
    const bad = this.gens.get(w.gen)!;
    bad.failed = true;
    const prev = w.previous;
    if (!this.gens.has(prev.spec.gen)) {
      // Freed meanwhile (it had no connections left): workers learn of it again.
      prev.drained = false;
      this.gens.set(prev.spec.gen, prev);
      this.announce({ type: 'generation', spec: prev.spec });
    }
    this.makeCurrent(prev.spec.gen);
    this.reloadCounts.rolled_back++;
    this.log.error({ generation: w.gen, faults: c.get(G.GEN_FAULTS), limit: this.options.reloadFaultLimit, back: prev.spec.gen, module: prev.name },
      `RELOAD ROLLED BACK: module generation ${w.gen} (${bad.name}) faulted more than ${this.options.reloadFaultLimit} times within ${this.options.reloadWatchMs} ms; generation ${prev.spec.gen} (${prev.name}) serves again`);
  }

  /** Open connections per generation, from the native table. */
  generationCounts(): Map<number, number> {
    const out = new Map<number, number>();
    if (this.epfd < 0) return out;
    const flat = native.generationCounts(this.epfd);
    for (let i = 0; i < flat.length; i += 2) out.set(flat[i], flat[i + 1]);
    return out;
  }

  /** Stops the generation tick (the server's release()). */
  stopTick(): void {
    if (this.genTimer) clearInterval(this.genTimer);
    this.genTimer = null;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}
