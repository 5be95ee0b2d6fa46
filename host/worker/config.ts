// What the pool hands each worker (structured-cloned through workerData).
import type { KvTarget } from '../native/native.js';
import type { GenerationSpec } from './generations.js';

export interface WorkerConfig {
  slot: number;
  sab: SharedArrayBuffer;
  epfd: number;
  listenFd: number;
  wakeFd: number;
  /** The module generations with connections when the worker starts (the current one among them); later ones come by message. */
  generations: GenerationSpec[];
  memoryCap: number;
  idleTimeoutMs: number;
  /** Ready connections taken per epoll_wait (maxevents); 1 takes one event per wait. */
  batch: number;
  sendTimeoutMs: number;
  /** [idle s, interval s, count] or null for no keepalive. */
  keepalive: [number, number, number] | null;
  logLevel: string;
  /** Post log records to the main thread (the application's logger) instead of writing them on stderr. */
  forwardLogs: boolean;
  /** Connections speak TLS (the context in use is the G.TLS_CTX cell). */
  tls: boolean;
  /** Every connection starts with a PROXY protocol header, read before anything else (the group knows which versions). */
  proxy: boolean;
  /** Connections beyond this are accepted and closed at once. */
  maxConnections: number;
  /** queued: output waits in the connection's native queue; blocking: the worker waits (up to sendTimeoutMs). */
  sendMode: 'queued' | 'blocking';
  /** Queued output above this stops calling the module for that connection (and reading its input). */
  highWater: number;
  /** A callback's total time, store waits included, past which its next kv call faults it (timeout); 0: no cap. */
  storeCallCapMs: number;
  /** The Redis server this worker's kv calls go to (its own connection); null: the in-process store. */
  kv: KvTarget | null;
}
