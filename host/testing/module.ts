// A loaded module and its connections, without sockets: tcpmod/testing's core.
// Every callback runs through the one ABI driver the worker loop uses
// (module/driver.ts), so carry-over, the state slot, the progress loop, output
// order (tcpmod.send bytes, then the out region), ABORT, overflow, EOF and
// faults behave exactly as over a socket; bytes go in through send() and come
// out as arrays. Time is a fake clock that moves only when the test moves it.
import { CLOSE_REASONS, CloseReason, LOG_LEVELS, SUBSCRIPTIONS_MAX, TIMER_MAX_MS, TOPIC_DIRECT, TOPIC_MAX, UPSTREAM, type CloseReasonName } from '../module/abi.js';
import { AbiDriver, FAULTED, KEEP, type Transport } from '../module/driver.js';
import type { ModuleFault } from '../module/errors.js';
import type { ModuleInstance } from '../module/instance.js';
import { compileBytes, compileModule, instantiate, probeModule, type CompiledModule } from '../module/load.js';
import { DEFAULTS, OPTIONS, OptionError, parseOptionValue, parseUpstreams } from '../options.js';
import { native } from '../sys.js';
import { ModuleKv } from './kv.js';
import { randomPlans, splitPlans, SplitMismatchError, type PieceRun } from './split.js';
import { ConnUpstreams, UPSTREAM_FAILURES, type TestUpstream } from './upstream.js';

export type { CloseReasonName };
export type LogLevelName = (typeof LOG_LEVELS)[number];

/**
 * What one call produced: a send, on_open, a timer firing or a close. Plain
 * data (ids and names, no live objects), so a test can print or compare it.
 */
export interface SendResult {
  /** The connection's id (TestConn.id, the id the module saw). */
  conn: number;
  /** Bytes the module sent, in the order a client would read them (tcpmod.send first, then each out region). */
  output: Uint8Array;
  /** `output` decoded as UTF-8 (invalid bytes become U+FFFD). */
  text: string;
  /** The close reason (docs/abi.md §8) when the connection closed during this call; else null. */
  closed: CloseReasonName | null;
  /** What the module did wrong, when it faulted (the connection is then closed as 'fault'). */
  fault: ModuleFault | null;
  /**
   * How many writes a socket would have seen for `output`: pipelined replies
   * answered in one event go out together (one write), and a tcpmod.send is
   * a write of its own after what was answered before it.
   */
  writes: number;
}

/** A message handed to a subscriber by `m.deliver()`: `conn` is the subscriber's id. */
export interface MessageDelivery extends SendResult {
  topic: Uint8Array;
  /** The pattern of the subscription that matched (empty for an exact one). */
  pattern: Uint8Array;
  message: Uint8Array;
  /** True when it was a publish_frame's frame taken by a direct subscription (docs/abi.md §19): `output` is the
   *  frame, appended with no tcpmod_on_message call. */
  frame: boolean;
}

/** A timer that fired during `m.clock.advance`: `conn` is the id of the connection whose timer it was. */
export interface TimerFiring extends SendResult {
  /** The fake clock when it fired (ms since the epoch): the due time the module asked for. */
  at: number;
}

/** A line the module logged: tcpmod.log, WASI stdout (info) or stderr (warn). */
export interface LogLine {
  level: LogLevelName;
  message: string;
  /** The connection it was logged for (TestConn.id); 0 outside a connection's callbacks. */
  conn: number;
}

export interface LoadOptions {
  /** Bytes (or UTF-8 text) given to tcpmod_init, as `serve --config`. */
  config?: Uint8Array | string;
  /** Largest memory the module may have, in bytes or a size such as "32MiB" (as `serve --module-memory`; default 32 MiB). */
  memoryCap?: number | string;
  /**
   * The upstream names the module may open (docs/abi.md §16), as `serve --upstream NAME=…` lists
   * them; the test plays each upstream it opens (`c.upstream(name)`). Default: none (upstream_open -1).
   * An entry NAME=IP:PORT[,IP:PORT…] also gives the name's addresses: tcpmod.upstream_addr reports
   * them and `NAME#I` opens address I alone (`c.upstream('NAME#I')`); a bare NAME has none to report.
   */
  upstreams?: readonly string[];
  /** Where the fake clock starts, in ms since the epoch (what tcpmod.now_ms first returns); default: Date.now() at load. */
  now?: number;
  /** The byte budget of the module's key-value store, as `serve --kv-max-bytes` (default 64 MiB). */
  kvMaxBytes?: number | string;
  /**
   * 'own' (default): the module gets a store of its own, `m.kv`. 'process': it
   * uses the server's native store, which every module loaded this way in the
   * process shares (as every worker of a server does); `m.kv` is then not available.
   */
  store?: 'own' | 'process';
}

export interface SendOptions {
  /** The client finishes sending after these bytes (tcpmod_on_data gets the EOF flag). */
  eof?: boolean;
}

export interface PiecesOptions extends SendOptions {
  /**
   * 'every' (default): every two-piece cut, then one-byte pieces. 'random':
   * `count` runs cut at random offsets drawn from `seed`. An array: the cut
   * offsets of one split (ascending, inside the input), e.g. to replay the
   * split an error named.
   */
  at?: 'every' | 'random' | readonly number[];
  /** With 'random': the seed of the cuts (default 1); an error names it, and the same seed cuts the same way. */
  seed?: number;
  /** With 'random': how many random splits to try after the whole input (default 100). */
  count?: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const LOAD_KEYS = new Set(['config', 'memoryCap', 'now', 'kvMaxBytes', 'store', 'upstreams']);
/** Events one claim of a connection delivers at most (host/worker/events.ts UPSTREAM_EVENTS_PER_WAKE): resumes past it wait for the next script step. */
const UPSTREAM_EVENTS_PER_CLAIM = 16;
/** What messages call a module loaded from bytes (where `serve` would name its file). */
const BYTES_NAME = '<bytes>';
const PIECES_KEYS = new Set(['at', 'seed', 'count', 'eof']);

function asBytes(input: Uint8Array | string, what: string): Uint8Array {
  if (typeof input === 'string') return encoder.encode(input);
  if (input instanceof Uint8Array) return input;
  throw new TypeError(`${what} must be a string or a Uint8Array, got ${typeof input}`);
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const all = new Uint8Array(parts.reduce((a, b) => a + b.length, 0));
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  return all;
}

function result(conn: number, output: Uint8Array, writes: number, closed: number | null, fault: ModuleFault | null): SendResult {
  return { conn, output, text: decoder.decode(output), closed: closed === null ? null : CLOSE_REASONS[closed], fault, writes };
}

/** A time the fake clock may be set to: any number (ms since the epoch). */
function clockValue(name: string, v: unknown): number {
  if (typeof v !== 'number') throw new OptionError(name, `must be a number of ms since the epoch, got ${JSON.stringify(v)}`);
  return v;
}

function unknownKeys(opts: object, known: Set<string>, what: string): void {
  for (const k of Object.keys(opts)) if (!known.has(k)) throw new OptionError(k, `is not an option of ${what}`);
}

/** One client connection to the module (make it with `m.connect()`). */
export class TestConn {
  /** What tcpmod_on_open produced (empty output when the module has no on_open). */
  readonly opened: SendResult;
  /** @internal */
  pending = new Uint8Array(0);
  /** @internal */
  state: Uint8Array;
  /** @internal When the timer fires on the fake clock; null when not armed. */
  timerAt: number | null = null;
  /** @internal Its topic subscriptions (docs/abi.md §15), in subscription order. */
  subs: { kind: number; text: Uint8Array; direct: boolean }[] = [];
  /** @internal Its upstreams (docs/abi.md §16), as the host keeps them. */
  readonly ups: ConnUpstreams;
  /** @internal The upstream whose FAILED call runs (conn_info keys 3 and 4). */
  failing: TestUpstream | null = null;
  /** @internal Client bytes the host would not have read yet (a held full region), and whether EOF follows them. */
  unread: Uint8Array = new Uint8Array(0);
  unreadEof = false;
  /** @internal shutdown_output was called during the current run (it takes effect at its end, as at the host's re-arm). */
  outputAsked = false;
  private inEnded = false;
  private outEnded = false;
  private reason: number | null = null;
  private sent = false;
  private out: Uint8Array[] = [];

  /** @internal `m.connect()` makes it. */
  constructor(readonly module: LoadedModule, readonly id: number) {
    this.state = new Uint8Array(module.instance.desc.stateSize);
    this.ups = new ConnUpstreams(this, module.upstreamNames, () => module.nextUpstreamHandle());
    this.opened = module.run(this, () => this.settle(module.driver.open(module.instance, id)));
  }

  /** Every upstream this connection's module opened, in order (closed and failed ones included). */
  get upstreams(): readonly TestUpstream[] {
    return this.ups.all;
  }

  /** The upstream of `name` the module opened last (the test plays it); throws when it opened none. */
  upstream(name: string): TestUpstream {
    const u = this.ups.all.filter((x) => x.name === name).pop();
    if (!u) throw new Error(`connection ${this.id} opened no upstream ${JSON.stringify(name)} (it opened ${this.ups.all.map((x) => x.name).join(', ') || 'none'})`);
    return u;
  }

  /**
   * @internal One scripted upstream event, then what it leads to in the same
   * claim, as the host does: DATA calls for upstreams the module resumed (at
   * most 16 events in all), then on_data with the client's held input when
   * the module called upstream_resume(conn, 0).
   */
  upstreamEvent(u: TestUpstream, event: number, data: Uint8Array): SendResult {
    return this.module.run(this, () => {
      this.ups.clientResume = 0;
      let fault: ModuleFault | null = null;
      let resumeClient = false;
      try {
        if (event === UPSTREAM.DATA) u.unread = concat([u.unread, data]);
        let n = 0;
        fault = this.upstreamCall(u, event, () => n++);
        for (let next = this.resumed(); next && !fault && this.reason === null && n < UPSTREAM_EVENTS_PER_CLAIM; next = this.resumed()) {
          next.reoffer = false;
          fault = this.upstreamCall(next, UPSTREAM.DATA, () => n++, true);
        }
        resumeClient = this.ups.clientResume === 1;
      } finally {
        this.ups.clientResume = -1;
      }
      if (fault || this.reason !== null || !resumeClient) return fault;
      fault = this.settle(this.module.driver.data(this.module.instance, this.id, this.load(new Uint8Array(0)), false));
      // Then what the host had left unread comes in, now that there may be room.
      return fault || this.reason !== null || (this.unread.length === 0 && !this.unreadEof) ? fault : this.feed();
    });
  }

  /** The first live upstream the module asked to resume. */
  private resumed(): TestUpstream | null {
    return this.ups.live().find((x) => x.reoffer) ?? null;
  }

  /**
   * on_upstream calls for one event of `u`: DATA as many times as its unread
   * bytes need (each with the carry-over first; a `reoffer` gives one even
   * with nothing new), else the event once. The module's leftover is kept for
   * the upstream, never mixed with the client's carry-over.
   */
  private upstreamCall(u: TestUpstream, event: number, count: () => void, reoffer = false): ModuleFault | null {
    const m = this.module;
    const d = m.instance.desc;
    const final = event === UPSTREAM.CLOSED || event === UPSTREAM.FAILED;
    for (let first = true; ; first = false) {
      const room = d.inCap - u.pending.length;
      const chunk = event === UPSTREAM.DATA ? u.unread.subarray(0, room) : new Uint8Array(0);
      // The host reads no more of an upstream while its held bytes fill the region; with nothing new, DATA comes only when resumed.
      if (event === UPSTREAM.DATA && chunk.length === 0 && !(first && reoffer && u.pending.length > 0)) return null;
      u.unread = u.unread.subarray(chunk.length);
      const inst = m.instance;
      const mem = new Uint8Array(inst.buffer);
      mem.set(u.pending, d.inPtr);
      mem.set(chunk, d.inPtr + u.pending.length);
      if (d.stateSize) mem.set(this.state, d.statePtr);
      const len = u.pending.length + chunk.length;
      count();
      this.failing = event === UPSTREAM.FAILED || (event === UPSTREAM.CLOSED && u.failure) ? u : null;
      let r: number;
      try {
        r = m.driver.upstream(inst, this.id, u.handle, event, len);
      } finally {
        this.failing = null;
      }
      if (r !== KEEP) return this.settle(r);
      // As for client input: a full region taken nothing of is an overflow, unless the module can resume held input.
      if (m.driver.restLen === d.inCap && !inst.holdsInput) return this.settle(CloseReason.OVERFLOW);
      const after = new Uint8Array(inst.buffer);
      u.pending = final ? new Uint8Array(0) : after.slice(m.driver.restPtr, m.driver.restPtr + m.driver.restLen);
      if (d.stateSize) this.state = after.slice(d.statePtr, d.statePtr + d.stateSize);
      if (final || event !== UPSTREAM.DATA || u.state !== 'open' || u.unread.length === 0) return null;
    }
  }

  /**
   * The client's EOF was handed to a module that half-closes (docs/abi.md §20) and it kept the
   * connection: nothing more can be sent (send() throws), its output may go on.
   */
  get inputEnded(): boolean {
    return this.inEnded;
  }

  /**
   * The module ended its output (shutdown_output, docs/abi.md §20) in an earlier call: the client
   * has read EOF after the output returned so far; what the module gives later is discarded.
   */
  get outputEnded(): boolean {
    return this.outEnded;
  }

  /**
   * @internal The end of a run (the host's re-arm): a shutdown_output asked takes effect; both
   * directions ended with no upstream left closes the connection with reason 'peer', as the host does.
   */
  endRun(): ModuleFault | null {
    if (this.outputAsked) this.outEnded = true;
    this.outputAsked = false;
    if (this.reason !== null || !this.inEnded || !this.outEnded || this.ups.live().length > 0) return null;
    return this.settle(CloseReason.PEER);
  }

  /** The close reason once the connection is closed; null while open. */
  get closed(): CloseReasonName | null {
    return this.reason === null ? null : CLOSE_REASONS[this.reason];
  }

  /** @internal The close reason as the module sees it (a number). */
  get closedCode(): number | null {
    return this.reason;
  }

  /**
   * Delivers `input` as bytes received from the client (an empty input with
   * `eof` is the client finishing), and returns what the module did about it.
   * Like a socket read, the host hands the module at most in_cap bytes at a
   * time, after whatever it left unconsumed. Throws when the connection is closed.
   */
  send(input: Uint8Array | string, opts: SendOptions = {}): SendResult {
    const data = asBytes(input, 'input');
    if (this.reason !== null) throw new Error(`connection ${this.id} is closed (${this.closed})`);
    if (this.inEnded) throw new Error(`connection ${this.id}: the client has ended its sending side (its EOF was sent)`);
    this.sent = true;
    this.unread = this.unread.length ? concat([this.unread, data]) : data;
    this.unreadEof ||= opts.eof === true;
    return this.module.run(this, () => this.feed());
  }

  /**
   * @internal Hands the client's unread bytes to on_data, at most in_cap at a
   * time after the carry-over. A module that imports upstream_resume may hold
   * a full region: then, as the host stops reading that socket, the rest stays
   * unread until the module takes some (after upstream_resume(conn, 0)).
   */
  feed(): ModuleFault | null {
    const data = this.unread;
    const eofAll = this.unreadEof;
    this.unread = new Uint8Array(0);
    this.unreadEof = false;
    let offset = 0;
    do {
      const room = this.module.instance.desc.inCap - this.pending.length;
      if (room === 0 && this.module.instance.holdsInput && (offset < data.length || eofAll)) {
        this.unread = data.subarray(offset);
        this.unreadEof = eofAll;
        return null;
      }
      const chunk = data.subarray(offset, offset + room);
      offset += chunk.length;
      const len = this.load(chunk);
      const eof = eofAll && offset >= data.length;
      if (len === 0 && !eof) return null;
      const fault = this.settle(this.module.driver.data(this.module.instance, this.id, len, eof));
      if (fault || this.reason !== null) return fault;
      // Kept after its EOF (a module that half-closes, docs/abi.md §20): the client's input has ended.
      if (eof) this.inEnded = true;
    } while (offset < data.length);
    return null;
  }

  /**
   * Sends `input` cut in many ways — at every byte boundary (every two-piece
   * split, then one-byte pieces), at random seeded cuts, or at the offsets
   * given — and checks that every split gives what the whole input gives: the
   * same output, close reason and fault. This connection takes the whole input
   * (it must not have been sent anything yet) and the result is the output
   * `send` would return (`c.closed` and `m.faults` tell the rest). The comparison runs beside it: the whole input and each
   * split go to a connection with this one's id on a second instance of the
   * module (as on another worker of a server; each of these connections is
   * closed before the next opens), each starting from the store as it was, at
   * the same time on the clock. Afterwards the store, logs and
   * faults are as the whole input on this connection left them. Throws a
   * SplitMismatchError naming the cut offsets (and the seed) and showing both
   * results when a split disagrees with the whole. With `eof`, closing as
   * 'peer' or 'module' counts as the same: whether the module's CLOSE comes in
   * the call that carries EOF depends on the cuts. Needs the module's own
   * store (not store: 'process').
   */
  sendInPieces(input: Uint8Array | string, opts: PiecesOptions = {}): Uint8Array {
    const data = asBytes(input, 'input');
    unknownKeys(opts, PIECES_KEYS, 'sendInPieces');
    const at = opts.at ?? 'every';
    const explicit = Array.isArray(at) ? [...(at as readonly unknown[])] : null;
    if (explicit ? !isCutList(explicit, data.length) : at !== 'every' && at !== 'random')
      throw new OptionError('at', `must be 'every', 'random' or ascending cut offsets from 1 to ${data.length - 1}, got ${JSON.stringify(at)}`);
    if (opts.seed !== undefined && !Number.isSafeInteger(opts.seed)) throw new OptionError('seed', `must be an integer, got ${JSON.stringify(opts.seed)}`);
    if (opts.count !== undefined && (!Number.isSafeInteger(opts.count) || opts.count < 1))
      throw new OptionError('count', `must be an integer of at least 1, got ${JSON.stringify(opts.count)}`);
    if (at !== 'random' && (opts.seed !== undefined || opts.count !== undefined))
      throw new OptionError(opts.seed !== undefined ? 'seed' : 'count', "only applies with at: 'random'");
    if (!this.module.ownKv)
      throw new Error("sendInPieces needs the module's own store: with store: 'process' it could not put the store back between runs");
    if (this.sent || this.reason !== null)
      throw new Error(`sendInPieces needs a connection that has been sent nothing yet (connection ${this.id} has ${this.reason !== null ? 'closed' : 'been sent input'})`);
    const seed = at === 'random' ? (opts.seed ?? 1) : null;
    const plans = explicit ? [[], explicit as number[]] : seed === null ? splitPlans(data.length) : randomPlans(data.length, seed, opts.count ?? 100);
    const m = this.module;
    const restoreBefore = m.ownKv?.snapshot();
    const whole = this.send(data, { eof: opts.eof });
    const restoreAfter = m.ownKv?.snapshot();
    const logs = m.logs.length;
    const faults = m.faults.length;
    try {
      let expected: PieceRun | null = null;
      for (const cuts of plans) {
        restoreBefore?.();
        const actual = m.runCut(this.id, data, cuts, opts.eof === true);
        if (expected === null) expected = actual;
        else if (!sameRun(expected, actual, opts.eof === true)) throw new SplitMismatchError(cuts, expected, actual, data.length, seed);
      }
    } finally {
      restoreAfter?.();
      m.logs.length = logs;
      m.faults.length = faults;
    }
    return whole.output;
  }

  /** The client goes away: runs tcpmod_on_close with reason 'peer' (nothing more can be sent). Does nothing once closed. */
  close(): SendResult {
    if (this.reason !== null) return result(this.id, new Uint8Array(0), 0, null, null);
    return this.module.run(this, () => this.settle(CloseReason.PEER));
  }

  /** @internal Collects output sent while this connection is handled. */
  collect(bytes: Uint8Array): void {
    this.out.push(bytes.slice());
  }

  /** @internal Output collected since the last call, and in how many writes. */
  takeOutput(): [Uint8Array, number] {
    const writes = this.out.length;
    const all = concat(writes ? this.out : [new Uint8Array(0)]);
    this.out = [];
    return [all, writes];
  }

  /** @internal The timer fired: on_timer with the carry-over. */
  fireTimer(): SendResult {
    this.timerAt = null;
    return this.module.run(this, () => this.settle(this.module.driver.timer(this.module.instance, this.id, this.load(new Uint8Array(0)))));
  }

  /**
   * @internal A message from its mailbox: on_message with the carry-over, then
   * topic, pattern and message; null when they do not fit the room left (dropped, as a server does).
   */
  deliverMessage(topic: Uint8Array, pattern: Uint8Array, message: Uint8Array): SendResult | null {
    const d = this.module.instance.desc;
    if (this.pending.length + topic.length + pattern.length + message.length > d.inCap) return null;
    return this.module.run(this, () => {
      const len = this.load(concat([topic, pattern, message]));
      const inLen = len - topic.length - pattern.length - message.length;
      return this.settle(this.module.driver.message(this.module.instance, this.id, inLen, topic.length, pattern.length, message.length));
    });
  }

  /** Places the carry-over, then `chunk`, at in_ptr and the state slot at state_ptr; returns the input length. */
  private load(chunk: Uint8Array): number {
    const inst = this.module.instance;
    const d = inst.desc;
    const mem = new Uint8Array(inst.buffer);
    mem.set(this.pending, d.inPtr);
    mem.set(chunk, d.inPtr + this.pending.length);
    if (d.stateSize) mem.set(this.state, d.statePtr);
    return this.pending.length + chunk.length;
  }

  /** What the driver's result leads to, as the worker loop does it: save carry-over and state, or close. */
  private settle(r: number): ModuleFault | null {
    const m = this.module;
    const inst = m.instance;
    const d = inst.desc;
    if (r === KEEP) {
      const mem = new Uint8Array(inst.buffer); // memory may have grown
      this.pending = mem.slice(m.driver.restPtr, m.driver.restPtr + m.driver.restLen);
      if (d.stateSize) this.state = mem.slice(d.statePtr, d.statePtr + d.stateSize);
      return null;
    }
    // Closing the client closes its upstreams, without events (before on_close, as the host unlinks the entry first).
    this.ups.drop();
    if (r === FAULTED) {
      this.reason = CloseReason.FAULT;
      return m.renew(m.driver.fault!);
    }
    const fault = m.driver.close(inst, this.id, r);
    this.reason = fault ? CloseReason.FAULT : r;
    return fault ? m.renew(fault) : null;
  }
}

/** The fake clock of a loaded module: tcpmod.now_ms reads it; module timers run on it. */
export class TestClock {
  /** @internal `at` is where the clock starts (loadModule's `now`). */
  constructor(private at: number, private readonly fire: (until: number) => TimerFiring[]) {}

  /** What tcpmod.now_ms returns now, in ms since the epoch. It moves only by advance() and set(). */
  get now(): number {
    return this.at;
  }

  /**
   * Sets the clock to `ms`, forward or back, firing nothing (armed timers keep
   * their due times). For tests of how a module takes a clock it does not
   * expect: any number is allowed, NaN and negatives too, though a server's
   * clock never gives them.
   */
  set(ms: number): void {
    this.at = clockValue('set(ms): ms', ms);
  }

  /** @internal Moves the clock to `t` (never back). */
  moveTo(t: number): void {
    if (t > this.at) this.at = t;
  }

  /**
   * Moves the clock `ms` forward, firing every timer that comes due on the way
   * in time order, each with the clock at its due time (a timer armed by
   * on_timer fires in the same advance when it falls due within it). Returns
   * the firings, with what each produced.
   */
  advance(ms: number): TimerFiring[] {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) throw new RangeError(`advance(ms): ms must be a finite number of at least 0, got ${ms}`);
    return this.fire(this.at + ms);
  }
}

/** A loaded module, as `loadModule` gives it: open connections with `connect()`. */
export class LoadedModule implements Transport {
  /** Every line the module logged, in order; a test may empty it (`m.logs.length = 0`). */
  readonly logs: LogLine[] = [];
  /** Every fault, in order: each cost the module its instance (a fresh one serves what follows, as in a server). */
  readonly faults: ModuleFault[] = [];
  /** What tcpmod.peer_addr answers for every connection. */
  peerAddress = '127.0.0.1:40000';
  /** What tcpmod.draining answers: set it to see how the module behaves in a graceful stop. */
  draining = false;
  /** The fake clock. */
  readonly clock: TestClock;
  /** @internal */
  readonly driver = new AbiDriver(this);
  /** @internal The store behind m.kv; null with store: 'process'. */
  readonly ownKv: ModuleKv | null;
  private inst: ModuleInstance;
  /** The instance sendInPieces compares splits on, as another worker of a server; made when first needed. */
  private side: ModuleInstance | null = null;
  private readonly conns = new Set<TestConn>();
  private current: TestConn | null = null;
  private nextId = 1;
  /** @internal The upstream names the module may open (loadModule's `upstreams`), each with its addresses as text (none for a bare name). */
  upstreamNames: ReadonlyMap<string, readonly string[]> = new Map();
  private nextHandle = 1;
  /** Published messages not yet delivered, in publish order (m.deliver()). */
  private mail: { conn: TestConn; topic: Uint8Array; pattern: Uint8Array; message: Uint8Array; frame: Uint8Array | null }[] = [];

  /** @internal `loadModule` makes it from a module that passed `serve`'s checks (`first` is the probe instance). */
  constructor(readonly compiled: CompiledModule, now: number, kv: ModuleKv | null, first: (hooks: Parameters<typeof instantiate>[1]) => ModuleInstance,
    upstreams: ReadonlyMap<string, readonly string[]> = new Map()) {
    this.clock = new TestClock(now, (until) => this.fireUntil(until));
    this.ownKv = kv;
    this.upstreamNames = upstreams; // before the first instance: its tcpmod_init may ask upstream_addr
    this.inst = first(this.hooks());
  }

  /** The module's key-value store (docs/abi.md §10), its own unless loaded with store: 'process'. */
  get kv(): ModuleKv {
    if (!this.ownKv) throw new Error(`${this.compiled.name} uses the process store (store: 'process'): use the native store, not m.kv`);
    return this.ownKv;
  }

  /** The live instance (replaced after each fault). For tests of the host itself; its shape is not part of the API. */
  get instance(): ModuleInstance {
    return this.inst;
  }

  /** The module's memory now (it grows; a fault replaces it). */
  get memory(): WebAssembly.Memory {
    return this.inst.memory;
  }

  /** @internal Upstream handles, unique in the module as the host's are in a process. */
  nextUpstreamHandle(): number {
    return this.nextHandle++;
  }

  /** Opens a connection: runs tcpmod_on_open with a zeroed state slot; its result is `c.opened`. */
  connect(): TestConn {
    return this.open(this.nextId++);
  }

  private open(id: number): TestConn {
    const d = this.inst.desc;
    if (d.stateSize) new Uint8Array(this.inst.buffer, d.statePtr, d.stateSize).fill(0);
    return new TestConn(this, id);
  }

  /** @internal Runs `fn` (callbacks of `conn`), then gathers what they sent and how the connection ended up. */
  run(conn: TestConn, fn: () => ModuleFault | null): SendResult {
    this.conns.add(conn);
    const before = conn.closedCode;
    this.current = conn;
    let fault: ModuleFault | null;
    try {
      fault = fn();
      if (!fault) fault = conn.endRun();
    } finally {
      this.current = null;
    }
    if (conn.closedCode !== null) {
      // Its subscriptions and mailbox end with it.
      this.conns.delete(conn);
      conn.subs = [];
      this.mail = this.mail.filter((m) => m.conn !== conn);
    }
    const [output, writes] = conn.takeOutput();
    return result(conn.id, output, writes, conn.closedCode === before ? null : conn.closedCode, fault);
  }

  /**
   * @internal One run of sendInPieces: connection `id` on the side instance
   * takes `data` cut at `cuts`, then closes. (The live instance still holds
   * that connection; a second instance keeps the two apart.)
   */
  runCut(id: number, data: Uint8Array, cuts: number[], eof: boolean): PieceRun {
    const live = this.inst;
    const mail = this.mail.slice(); // what a cut run publishes is not the test's: put the mailboxes back
    this.inst = this.side ??= instantiate(this.compiled, this.hooks());
    try {
      return this.cut(this.open(id), data, cuts, eof);
    } finally {
      this.side = this.inst; // a fault renewed it
      this.inst = live;
      this.mail = mail;
    }
  }

  private cut(c: TestConn, data: Uint8Array, cuts: number[], eof: boolean): PieceRun {
    const parts: Uint8Array[] = [];
    let closed: CloseReasonName | null = c.closed;
    let fault: ModuleFault | null = c.opened.fault;
    let prev = 0;
    for (const cut of [...cuts, data.length]) {
      if (closed !== null) break;
      const r = c.send(data.subarray(prev, cut), { eof: eof && cut === data.length });
      parts.push(r.output);
      closed = r.closed;
      fault = r.fault;
      prev = cut;
    }
    c.close();
    return { output: concat(parts.length ? parts : [new Uint8Array(0)]), closed, fault };
  }

  /** @internal A fault: count it, and serve what follows with a fresh instance, as a worker does. */
  renew(fault: ModuleFault): ModuleFault {
    this.faults.push(fault);
    this.inst = instantiate(this.compiled, this.hooks());
    return fault;
  }

  // Transport: output goes to the connection being handled; there is no handler clock, and no congestion.
  /** @internal Every write goes through send(), so that `writes` counts them. */
  readonly deferFinal = false;
  /** @internal */
  send(mem: ArrayBuffer, ptr: number, len: number): number {
    // After the call that ended it (shutdown_output, docs/abi.md §20), output is discarded, as the host does.
    if (this.current?.outputEnded) return -1;
    this.current?.collect(new Uint8Array(mem, ptr, len));
    return -1;
  }
  /** @internal */
  enter(): void {}
  /** @internal */
  leave(): void {}
  /** @internal */
  congested(): boolean {
    return false;
  }

  private hooks(): Parameters<typeof instantiate>[1] {
    return {
      send: (_conn, mem, ptr, len) => this.driver.moduleSend(mem, ptr, len),
      log: (level, message, conn) => this.logs.push({ level: LOG_LEVELS[level] ?? 'info', message, conn }),
      now: () => this.clock.now,
      setTimer: (ms) => {
        if (!this.current || !Number.isInteger(ms) || ms < 0 || ms > TIMER_MAX_MS) return -2;
        this.current.timerAt = ms === 0 ? null : this.clock.now + ms;
        return 0;
      },
      draining: () => (this.draining ? 1 : 0),
      // tcpmod.want is a hint the harness does not need: a module must give the same answers however input is cut.
      want: () => 0,
      peerAddr: () => this.peerAddress,
      subscribe: (kind, mem, ptr, len) => this.subscribe(kind, new Uint8Array(mem, ptr, len).slice()),
      unsubscribe: (kind, mem, ptr, len) => this.unsubscribe(kind, new Uint8Array(mem, ptr, len).slice()),
      publish: (mem, tp, tl, mp, ml) => this.publish(new Uint8Array(mem, tp, tl).slice(), new Uint8Array(mem, mp, ml).slice()),
      publishFrame: (mem, tp, tl, mp, ml, fp, fl) =>
        this.publish(new Uint8Array(mem, tp, tl).slice(), new Uint8Array(mem, mp, ml).slice(), new Uint8Array(mem, fp, fl).slice()),
      topicCount: (kind, mem, ptr, len) => this.topicCount(kind, new Uint8Array(mem, ptr, len).slice()),
      topicsList: (mem, gp, gl, skip, op, cap) => this.topicsList(new Uint8Array(mem, gp, gl).slice(), skip, new Uint8Array(mem, op, cap)),
      kv: this.ownKv?.backend,
      upstreamOpen: (mem, ptr, len) => this.current?.ups.open(decoder.decode(new Uint8Array(mem, ptr, len))) ?? -1,
      upstreamAddr: (name, index) => this.upstreamNames.get(name)?.[index] ?? null,
      upstreamSend: (up, mem, ptr, len) => this.current?.ups.send(up, new Uint8Array(mem, ptr, len).slice()) ?? -1,
      upstreamClose: (up) => this.current?.ups.close(up) ?? -1,
      upstreamResume: (up) => this.current?.ups.resume(up) ?? -1,
      upstreamShutdown: (up) => this.current?.ups.shutdown(up) ?? -1,
      shutdownOutput: () => {
        const c = this.current;
        if (!c) return -1;
        if (!c.outputEnded) c.outputAsked = true;
        return 0;
      },
      // Plain TCP (keys 0-2); keys 3 and 4 in a FAILED call, or a CLOSED the host's timeout made: why (docs/abi.md §16).
      connInfo: (key) => {
        const failing = this.current?.failing;
        if (key === 3) return failing?.failure ? UPSTREAM_FAILURES.indexOf(failing.failure) + 1 : 0;
        if (key === 4) return failing?.failure ? failing.failureText ?? `${failing.failure}: scripted by the test (${failing.name})` : '';
        return key === 0 || key === 2 ? 0 : key === 1 ? '' : null;
      },
    };
  }

  /**
   * Delivers every published message waiting (docs/abi.md §15), in publish
   * order, one tcpmod_on_message call each, including those the calls publish
   * in turn; returns what each call did. Messages wait until this is called,
   * so a test decides when subscribers see them. A message that does not fit
   * the subscriber's input region is dropped (not listed). Throws past 100,000
   * deliveries in one call (modules publishing to each other without end).
   */
  deliver(): MessageDelivery[] {
    const done: MessageDelivery[] = [];
    for (let n = 0; this.mail.length > 0; n++) {
      if (n >= 100_000) throw new Error('deliver(): more than 100,000 messages in one call (do the modules publish to each other without end?)');
      const m = this.mail.shift()!;
      if (m.frame) {
        // A direct subscription's frame (§19): the connection's output as it is, no module call.
        done.push({ ...result(m.conn.id, m.frame, 1, null, null), topic: m.topic, pattern: m.pattern, message: m.message, frame: true });
        continue;
      }
      const r = m.conn.deliverMessage(m.topic, m.pattern, m.message);
      if (r) done.push({ ...r, topic: m.topic, pattern: m.pattern, message: m.message, frame: false });
    }
    return done;
  }

  /** Messages published and not yet delivered. */
  get undelivered(): number {
    return this.mail.length;
  }

  private subscribe(kind: number, text: Uint8Array): number {
    const c = this.current;
    if (!c) return -1;
    const direct = (kind & TOPIC_DIRECT) !== 0;
    kind &= ~TOPIC_DIRECT;
    const r = native.topicCheck(kind, text);
    if (r < 0) return r;
    const had = c.subs.find((s) => s.kind === kind && Buffer.compare(s.text, text) === 0);
    if (had) {
      had.direct = direct; // the same subscription again: direct as the last call said, as a server does
      return 0;
    }
    if (c.subs.length >= SUBSCRIPTIONS_MAX) return -2;
    c.subs.push({ kind, text, direct });
    return 1;
  }

  private unsubscribe(kind: number, text: Uint8Array): number {
    const c = this.current;
    if (!c) return -1;
    if (kind !== -1 && (kind < 0 || kind > 2)) return -3;
    const keep = c.subs.filter((s) => !(kind === -1 || (s.kind === kind && (text.length === 0 || Buffer.compare(s.text, text) === 0))));
    const n = c.subs.length - keep.length;
    c.subs = keep;
    return n;
  }

  /** Every open connection's matching subscriptions, by connection (in opening order), then subscription order. */
  private publish(topic: Uint8Array, message: Uint8Array, frame: Uint8Array | null = null): number {
    if (topic.length === 0 || topic.length > TOPIC_MAX) return -3;
    let n = 0;
    for (const conn of this.conns) {
      if (conn.closedCode !== null) continue;
      for (const s of conn.subs) {
        if (native.topicCheck(s.kind, s.text, topic) !== 1) continue;
        const asFrame = s.direct && frame !== null;
        this.mail.push({ conn, topic, pattern: s.kind === 0 || asFrame ? new Uint8Array(0) : s.text, message, frame: asFrame ? frame : null });
        n++;
      }
    }
    return n;
  }

  /** The open connections' subscriptions, as the server's topic table holds them. */
  private subscriptions(): { kind: number; text: Uint8Array }[] {
    return [...this.conns].filter((c) => c.closedCode === null).flatMap((c) => c.subs);
  }

  /** topic_count (docs/abi.md §15): subscriptions of (kind, text), or with text empty the distinct texts of the kind. */
  private topicCount(kind: number, text: Uint8Array): number {
    if (kind < 0 || kind > 2 || text.length > TOPIC_MAX) return -3;
    const subs = this.subscriptions().filter((s) => s.kind === kind);
    if (text.length > 0) return subs.filter((s) => Buffer.compare(s.text, text) === 0).length;
    return new Set(subs.map((s) => Buffer.from(s.text).toString('latin1'))).size;
  }

  /** topics_list (docs/abi.md §15): the exact topics subscribed that the glob accepts, in byte order, from `skip` on, into out. */
  private topicsList(glob: Uint8Array, skip: number, out: Uint8Array): number {
    if (glob.length > TOPIC_MAX) return -3;
    const names = [...new Set(this.subscriptions().filter((s) => s.kind === 0).map((s) => Buffer.from(s.text).toString('latin1')))]
      .map((n) => Buffer.from(n, 'latin1'))
      .filter((n) => glob.length === 0 || native.topicCheck(1, glob, n) === 1)
      .sort(Buffer.compare);
    let used = 0;
    let written = 0;
    for (const n of names.slice(skip)) {
      if (used + 4 + n.length > out.length) break;
      new DataView(out.buffer, out.byteOffset + used).setUint32(0, n.length, true);
      out.set(n, used + 4);
      used += 4 + n.length;
      written++;
    }
    return written === 0 && skip < names.length ? -2 : written;
  }

  /** Fires every timer due by `until`, earliest first, moving the clock to each; then moves it to `until`. */
  private fireUntil(until: number): TimerFiring[] {
    const fired: TimerFiring[] = [];
    for (;;) {
      let next: TestConn | null = null;
      for (const c of this.conns) {
        if (c.timerAt !== null && c.timerAt <= until && (next === null || c.timerAt < next.timerAt!)) next = c;
      }
      if (next === null) break;
      this.clock.moveTo(next.timerAt!);
      fired.push({ at: this.clock.now, ...next.fireTimer() });
    }
    this.clock.moveTo(until);
    return fired;
  }
}

/** loadModule's `upstreams`: names as --upstream takes them (1-32 of A-Z a-z 0-9 _ . -, a letter first), each once,
 *  a name alone or NAME=IP:PORT[,IP:PORT…] (checked as --upstream checks it); each name's addresses as upstream_addr gives them. */
function upstreamNames(v: unknown): Map<string, readonly string[]> {
  if (v === undefined) return new Map();
  const bare = (n: string) => /^[A-Za-z][A-Za-z0-9_.-]{0,31}$/.test(n);
  const refuse = () => new OptionError('upstreams', `must be a list of distinct upstream names (1 to 32 of A-Z a-z 0-9 _ . -, starting with a letter), each alone or as NAME=IP:PORT[,IP:PORT…], got ${JSON.stringify(v)}`);
  if (!Array.isArray(v) || !v.every((n) => typeof n === 'string' && (bare(n) || n.includes('=')))) throw refuse();
  const out = new Map<string, readonly string[]>();
  for (const entry of v as string[]) {
    const [u] = bare(entry) ? [{ name: entry, addresses: [] }] : parseUpstreams('upstreams', entry);
    if (out.has(u.name)) throw refuse();
    out.set(u.name, u.addresses.map((a) => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`)));
  }
  return out;
}

/** Cut offsets a test gave: integers, ascending, strictly inside an input of `length` bytes. */
function isCutList(cuts: unknown[], length: number): boolean {
  return cuts.every((c, i) => Number.isInteger(c) && (c as number) > (i ? (cuts[i - 1] as number) : 0) && (c as number) < length);
}

function sameRun(a: PieceRun, b: PieceRun, eof: boolean): boolean {
  const reason = (c: string | null) => (eof && c === 'peer' ? 'module' : c);
  if (reason(a.closed) !== reason(b.closed)) return false;
  if ((a.fault === null) !== (b.fault === null)) return false;
  if (a.fault && b.fault && (a.fault.kind !== b.fault.kind || a.fault.message !== b.fault.message)) return false;
  return Buffer.compare(a.output, b.output) === 0;
}

/**
 * Loads a module as `serve` does — the same static checks and one trial
 * instance (IoDesc checks, tcpmod_init with `config`) — so a bad module
 * rejects with the same ModuleLoadError (or ModuleConfigRefused) message.
 * `pathOrBytes` is a file path, or the module's bytes (named "<bytes>" in
 * messages). Options are checked as `serve` checks its own (an OptionError
 * names the option).
 */
export async function loadModule(pathOrBytes: string | Uint8Array, opts: LoadOptions = {}): Promise<LoadedModule> {
  if (opts === null || typeof opts !== 'object') throw new TypeError(`options must be an object, got ${opts === null ? 'null' : typeof opts}`);
  unknownKeys(opts, LOAD_KEYS, 'loadModule');
  const memoryCap = opts.memoryCap === undefined ? DEFAULTS.moduleMemory : (parseOptionValue('memoryCap', OPTIONS.moduleMemory.kind, opts.memoryCap) as number);
  const config = opts.config === undefined ? undefined : (parseOptionValue('config', OPTIONS.config.kind, opts.config) as Uint8Array);
  const kvMaxBytes = opts.kvMaxBytes === undefined ? DEFAULTS.kvMaxBytes : (parseOptionValue('kvMaxBytes', OPTIONS.kvMaxBytes.kind, opts.kvMaxBytes) as number);
  const now = opts.now === undefined ? Date.now() : clockValue('now', opts.now);
  const store = opts.store ?? 'own';
  if (store !== 'own' && store !== 'process') throw new OptionError('store', `must be 'own' or 'process', got ${JSON.stringify(store)}`);
  if (store === 'process' && opts.kvMaxBytes !== undefined) throw new OptionError('kvMaxBytes', "does not apply with store: 'process' (the server's store has its own budget)");
  let compiled: CompiledModule;
  if (typeof pathOrBytes === 'string') compiled = await compileModule(pathOrBytes, { memoryCap, config });
  else if (pathOrBytes instanceof Uint8Array) compiled = await compileBytes(BYTES_NAME, pathOrBytes.slice(), { memoryCap, config });
  else throw new TypeError(`loadModule needs a file path or the module's bytes (a Uint8Array), got ${typeof pathOrBytes}`);
  // TTLs of the module's own store run on its fake clock (at `now` until the module exists).
  let loaded: LoadedModule | undefined;
  const kv = store === 'own' ? new ModuleKv(kvMaxBytes, () => loaded?.clock.now ?? now) : null;
  const upstreams = upstreamNames(opts.upstreams); // checked before the module runs
  loaded = new LoadedModule(compiled, now, kv, (hooks) => probeModule(compiled, hooks), upstreams);
  return loaded;
}
