// Module generations as a worker sees them (live reload, server.reload). Each
// accepted reload is a generation; every connection belongs to one (the native
// table keeps its number). A worker knows a generation from the main thread's
// message on its port, read synchronously when the shared epoch cell changes,
// so an idle worker is never woken for it; it makes a generation's instance
// only when it first handles one of its connections, and drops it when the
// main thread says the generation has no connections left anywhere.
import { parentPort, receiveMessageOnPort } from 'node:worker_threads';
import { adoptModuleSync, type CompiledModule } from '../module/load.js';
import type { ModuleInstance } from '../module/instance.js';
import { G, type Counters } from '../pool/counters.js';

/** What the main thread tells workers of a generation (structured-cloned). */
export interface GenerationSpec {
  gen: number;
  file: string;
  bytes: Uint8Array;
  module: WebAssembly.Module;
  config: Uint8Array;
  /** tcpmod_state_version of the trial instance; null: the module does not say (its connections never move). */
  stateVersion: number | null;
  stateSize: number;
  inCap: number;
  /**
   * Capabilities a connection's state may depend on: the module exports tcpmod_on_timer / imports
   * tcpmod.want / exports tcpmod_on_message (its connections may hold subscriptions and a mailbox) /
   * exports tcpmod_on_upstream (its connections may hold open upstreams).
   */
  onTimer: boolean;
  want: boolean;
  onMessage: boolean;
  onUpstream: boolean;
}

export type GenerationMessage = { type: 'generation'; spec: GenerationSpec } | { type: 'free'; gen: number };

/** Whether connections of one generation may move to another, and if not, why (for logs and docs). */
export type Compatibility = { move: true } | { move: false; why: string };

const MOVES: Compatibility = { move: true };

/**
 * The one compatibility verdict for a pair of generations (docs/abi.md §11):
 * whether a connection of `from` may continue on `to` at its next event (a
 * reload moves connections forward, a rollback back). Everything a connection
 * carries from its module must mean the same to the other one: the state slot
 * (same tcpmod_state_version, same size), and the capabilities the old module
 * may have used for it — a timer it armed needs tcpmod_on_timer to fire into,
 * a want threshold it set is the old framing's, a subscription's messages need
 * tcpmod_on_message, an open upstream's events tcpmod_on_upstream. Anything else pins the
 * connection to its own generation until it closes (or --reload-drain).
 * The one condition per connection, its carry-over fitting `to`'s in_cap, is
 * the native table's (connMigrate), since only it knows the pending input;
 * when to.inCap >= from.inCap it always holds.
 */
export function compatibility(from: GenerationSpec, to: GenerationSpec): Compatibility {
  if (from.stateVersion === null) return { move: false, why: 'the old module does not export tcpmod_state_version' };
  if (from.stateVersion !== to.stateVersion) return { move: false, why: `state version ${from.stateVersion} -> ${to.stateVersion ?? 'none'}` };
  if (from.stateSize !== to.stateSize) return { move: false, why: `state size ${from.stateSize} -> ${to.stateSize}` };
  if (from.onTimer && !to.onTimer) return { move: false, why: 'the old module has timers (tcpmod_on_timer), the new one does not' };
  if (from.want && !to.want) return { move: false, why: 'the old module sets want thresholds (tcpmod.want), the new one does not' };
  if (from.onMessage && !to.onMessage) return { move: false, why: 'the old module has subscriptions (tcpmod_on_message), the new one does not' };
  if (from.onUpstream && !to.onUpstream) return { move: false, why: 'the old module has upstreams (tcpmod_on_upstream), the new one does not' };
  return MOVES;
}

/** The capabilities of GenerationSpec, read off a compiled module. */
export function capabilities(compiled: CompiledModule): Pick<GenerationSpec, 'onTimer' | 'want' | 'onMessage' | 'onUpstream'> {
  return {
    onTimer: compiled.verdict.optional.has('tcpmod_on_timer'),
    onMessage: compiled.verdict.optional.has('tcpmod_on_message'),
    onUpstream: compiled.verdict.optional.has('tcpmod_on_upstream'),
    want: compiled.shape.imports.some((i) => i.module === 'tcpmod' && i.name === 'want'),
  };
}

interface Known {
  spec: GenerationSpec;
  compiled: CompiledModule;
  inst: ModuleInstance | null;
}

export class WorkerGenerations {
  private readonly known = new Map<number, Known>();
  /** compatibility(from, to).move by "from>to", decided once per pair while both are known. */
  private readonly verdicts = new Map<string, boolean>();
  private epoch = -1;
  private single = -1;

  /**
   * @param make an instance of a compiled module (tcpmod_init run), checked against its generation's spec
   * @param live tells the main thread how many instances of `gen` this worker has now (0 or 1)
   * @param tell hands the verdict for a pair to the native table once, when the second of the two is added
   *   (connMoveTo then decides a connection's move in one native call); `forget` when a generation goes
   */
  constructor(
    private readonly ctr: Counters,
    private readonly memoryCap: number,
    private readonly make: (compiled: CompiledModule, spec: GenerationSpec) => ModuleInstance,
    private readonly live: (gen: number, n: number) => void,
    private readonly tell: (from: number, to: number, move: boolean, toSpec: GenerationSpec) => void = () => {},
    private readonly forget: (gen: number) => void = () => {},
  ) {}

  /** Adds a generation (the worker's start-up list, or a message); one it knows already is left alone. */
  add(spec: GenerationSpec, compiled?: CompiledModule): void {
    if (this.known.has(spec.gen)) return;
    compiled ??= adoptModuleSync(spec.file, spec.bytes, spec.module, { memoryCap: this.memoryCap, config: spec.config });
    this.known.set(spec.gen, { spec, compiled, inst: null });
    this.changed();
    for (const [gen, k] of this.known) {
      if (gen === spec.gen) continue;
      this.tell(gen, spec.gen, this.moves(gen, spec.gen), spec);
      this.tell(spec.gen, gen, this.moves(spec.gen, gen), k.spec);
    }
  }

  /** Reads the port when the epoch moved: call before reading GENERATION's value to use it. Cheap when nothing changed. */
  sync(): void {
    // A plain read of the epoch (an Atomics.load is a call into a V8 builtin, ~100 instructions, per event):
    // `current` reads GENERATION with Atomics.load first, and the main thread bumps the epoch before it sets
    // GENERATION, so the epoch read here is at least the one that generation's message came with; a later
    // bump missed now is seen at the next read (every event, and every idle wake-up).
    const epoch = this.ctr.i32[G.GEN_EPOCH];
    const port = parentPort;
    if (epoch === this.epoch || !port) return;
    this.epoch = epoch;
    for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) {
      const msg = m.message as GenerationMessage | { type: string };
      if (msg.type === 'generation') this.add((msg as { spec: GenerationSpec }).spec);
      else if (msg.type === 'free') this.free((msg as { gen: number }).gen);
    }
  }

  /**
   * The generation new connections get, known to this worker: the main thread
   * bumps the epoch before it sets GENERATION, so reading GENERATION first and
   * then the port can never yield a generation whose message is still unread.
   */
  get current(): number {
    const gen = this.ctr.get(G.GENERATION);
    this.sync();
    this.lastCurrent = gen;
    return gen;
  }

  /**
   * What `current` returned when last read (-1 before the first read), with no shared read (two
   * Atomics.load, ~200 instructions): only for a guess that a read of `current` checks later (the
   * wait's load target, loop.ts: an event loaded into a generation that is no longer current goes
   * the long way).
   */
  get lastRead(): number {
    return this.lastCurrent;
  }
  private lastCurrent = -1;

  spec(gen: number): GenerationSpec | null {
    return this.known.get(gen)?.spec ?? null;
  }

  /** Whether connections of `from` may move to `to` (compatibility(), decided once per pair). */
  moves(from: number, to: number): boolean {
    const key = `${from}>${to}`;
    let v = this.verdicts.get(key);
    if (v === undefined) {
      const a = this.spec(from);
      const b = this.spec(to);
      if (a === null || b === null) return false;
      v = compatibility(a, b).move;
      this.verdicts.set(key, v);
    }
    return v;
  }

  /** This worker's instance of `gen`, made now if it has none (or its last one faulted). */
  instance(gen: number): ModuleInstance {
    const k = this.known.get(gen);
    if (!k) throw new Error(`module generation ${gen} is unknown to this worker`);
    if (k.inst && !k.inst.isDisposed) return k.inst;
    const had = k.inst !== null;
    k.inst = this.make(k.compiled, k.spec);
    if (!had) this.live(gen, 1);
    return k.inst;
  }

  /**
   * After a fault disposed the instance of `gen`: forgets it, so that the
   * next use makes a new one (instance()) and the live count says 0 meanwhile.
   */
  discard(gen: number): void {
    const k = this.known.get(gen);
    if (!k?.inst || !k.inst.isDisposed) return;
    k.inst = null;
    this.live(gen, 0);
  }

  /** This worker's live instance of `gen`, or null when it has none now (nothing is made). */
  ready(gen: number): ModuleInstance | null {
    const inst = this.known.get(gen)?.inst;
    return inst && !inst.isDisposed ? inst : null;
  }

  /** The one generation this worker knows, or -1 when it knows several (connections may be on any of them). */
  only(): number {
    return this.single;
  }

  /** Keeps `single` (only()) right after every change of the known set: the hot path reads it per event. */
  private changed(): void {
    this.single = -1;
    if (this.known.size === 1) for (const gen of this.known.keys()) this.single = gen;
  }

  /** True while this worker has an instance of a generation other than the current one (it may be freed soon). */
  stale(): boolean {
    if (this.single !== -1) return false; // one generation known: no other's instance to hold (the usual case, per wait)
    const cur = this.current;
    for (const [gen, k] of this.known) if (k.inst && gen !== cur) return true;
    return false;
  }

  /** The module name of `gen`, for log lines. */
  name(gen: number): string {
    return this.known.get(gen)?.compiled.name ?? '';
  }

  /** The generation has no connections left anywhere: its instance goes, and so does the module. */
  private free(gen: number): void {
    const k = this.known.get(gen);
    if (!k) return;
    this.known.delete(gen);
    for (const key of this.verdicts.keys()) if (key.startsWith(`${gen}>`) || key.endsWith(`>${gen}`)) this.verdicts.delete(key);
    this.forget(gen);
    this.changed();
    if (k.inst) {
      k.inst.dispose();
      this.live(gen, 0);
    }
  }
}
