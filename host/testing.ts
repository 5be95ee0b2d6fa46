// tcpmod/testing: unit tests of protocol modules without sockets. Load a module
// as `serve` would, open connections, send bytes, read what the module sent;
// `sendInPieces` checks that an input gives the same answer however TCP cuts
// it. Works in vitest, node:test or a plain script (no sockets, no worker
// threads, no test-runner imports). docs/testing.md shows it in use.
//
// Below the new API are the names the project's tests used before it
// (loadHarness, Harness.open, HarnessConn.feed, runSplit), kept as thin
// deprecated wrappers until the last test using them moves over.
import { CLOSE_REASONS } from './module/abi.js';
import type { ModuleFault } from './module/errors.js';
import type { ModuleInstance } from './module/instance.js';
import type { CompileOptions } from './module/load.js';
import { openModule, type TestConn, type LoadedModule } from './testing/module.js';

export {
  loadModule, LoadedModule, TestConn, TestClock,
  type LoadOptions, type SendOptions, type PiecesOptions, type SendResult, type TimerFiring, type LogLine, type LogLevelName, type CloseReasonName,
} from './testing/module.js';
export { ModuleKv, type KvBytes, type KvOp } from './testing/kv.js';
export { SplitMismatchError, splitPlans, randomPlans, type PieceRun } from './testing/split.js';
export { ModuleFault, ModuleLoadError, ModuleConfigRefused, type FaultKind } from './module/errors.js';
export { OptionError } from './options.js';
export { CLOSE_REASONS };

/** @deprecated Use SendResult (closed is a reason name there). */
export interface FeedResult {
  output: Uint8Array;
  /** The close reason as a number (docs/abi.md §8). */
  closed: number | null;
  fault: ModuleFault | null;
}

function code(name: string | null): number | null {
  return name === null ? null : CLOSE_REASONS.indexOf(name as (typeof CLOSE_REASONS)[number]);
}

/** @deprecated Use TestConn (m.connect()). */
export class HarnessConn {
  constructor(readonly h: Harness, readonly c: TestConn) {}

  get id(): number {
    return this.c.id;
  }

  get closed(): number | null {
    return this.c.closedCode;
  }

  /** @deprecated Use TestConn.send. */
  feed(bytes: Uint8Array | string, opts: { eof?: boolean } = {}): FeedResult {
    const r = this.c.send(bytes, opts);
    return { output: r.output, closed: code(r.closed), fault: r.fault };
  }
}

/** @deprecated Use LoadedModule (loadModule). Uses the process store, as it always did. */
export class Harness {
  /** Log lines with numeric levels, as the old harness kept them. */
  logs: { level: number; message: string; conn: number }[] = [];
  private readonly wrapped = new WeakMap<TestConn, HarnessConn>();
  readonly clock: {
    readonly now: number;
    advance(ms: number): { conn: HarnessConn; at: number; output: Uint8Array; closed: number | null; fault: ModuleFault | null }[];
  };

  constructor(readonly m: LoadedModule) {
    m.onLog = (level, message, conn) => this.logs.push({ level, message, conn });
    const wrap = (c: TestConn) => this.wrap(c);
    this.clock = {
      get now() {
        return m.clock.now;
      },
      advance: (ms) => m.clock.advance(ms).map((f) => ({ conn: wrap(f.conn), at: f.at, output: f.output, closed: code(f.closed), fault: f.fault })),
    };
  }

  get inst(): ModuleInstance {
    return this.m.instance;
  }

  get faults(): number {
    return this.m.faults.length;
  }

  get peerAddress(): string {
    return this.m.peerAddress;
  }

  set peerAddress(v: string) {
    this.m.peerAddress = v;
  }

  get draining(): boolean {
    return this.m.draining;
  }

  set draining(v: boolean) {
    this.m.draining = v;
  }

  /** @deprecated Use m.connect(). */
  open(): { conn: HarnessConn; output: Uint8Array; closed: number | null } {
    const c = this.m.connect();
    return { conn: this.wrap(c), output: c.opened.output, closed: c.closedCode };
  }

  private wrap(c: TestConn): HarnessConn {
    let w = this.wrapped.get(c);
    if (!w) this.wrapped.set(c, (w = new HarnessConn(this, c)));
    return w;
  }
}

/** @deprecated Use loadModule; this one uses the process store and a clock that follows the wall clock, as the old harness did. */
export async function loadHarness(file: string, opts: CompileOptions = {}): Promise<Harness> {
  return new Harness(await openModule(file, { memoryCap: opts.memoryCap, config: opts.config, store: 'process' }, true));
}

/** @deprecated Use TestConn.sendInPieces. Feeds `input` to a fresh connection cut at `cuts`; returns everything it sent. */
export function runSplit(h: Harness, input: Uint8Array, cuts: number[], opts: { eof?: boolean } = {}): { output: Uint8Array; closed: number | null } {
  const { conn, output: first } = h.open();
  const parts: Uint8Array[] = [first];
  let prev = 0;
  for (const cut of [...cuts, input.length]) {
    if (conn.closed !== null) break;
    parts.push(conn.feed(input.subarray(prev, cut), { eof: opts.eof === true && cut === input.length }).output);
    prev = cut;
  }
  return { output: Buffer.concat(parts), closed: conn.closed };
}
