// What the server's parts (reload controller, worker recovery, stats, the
// key-value store's setup, shutdown) read of the server they belong to. The
// server owns these and hands its parts this narrow view, never itself, so
// each part depends only on what it uses and none imports server.ts.
import type pino from 'pino';
import type { CloseReasonName } from '../module/abi.js';
import type { CompiledModule } from '../module/load.js';
import type { ResolvedOptions } from '../options.js';
import type { Pool } from '../pool/pool.js';

export type ServerState = 'created' | 'starting' | 'running' | 'stopping' | 'stopped';

export interface ServerCore {
  state: ServerState;
  readonly options: ResolvedOptions;
  readonly log: pino.Logger;
  readonly pool: Pool | null;
  /** The shared epoll set (-1 before listen() made it and after release()). */
  readonly epfd: number;
  readonly listenFd: number;
  readonly wakeFd: number;
  /** The connection limit in force, and certificate reloads so far (for stats). */
  readonly maxConnections: number;
  readonly tlsReloads: number;
  /** Aborted by close(): a trial instance still running (listen, reload) is given up at once. */
  readonly trials: AbortController;
  /** The module the current generation was made from. */
  compiled: CompiledModule | null;
  /** The server's 'close' event (opt-in: see ServerEvents). */
  readonly emit: (event: 'close', conn: number, reason: CloseReasonName) => void;
  /** Frees what listen() made (the listener, the epoll set and its fds, the TLS context, the timers). */
  release(): Promise<void>;
}
