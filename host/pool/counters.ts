// Counters shared by the main thread and every worker through one
// SharedArrayBuffer. Gauges that must be exact at every moment (workers, busy)
// and control flags are Int32 cells changed with Atomics. Totals are Float64
// cells in a per-worker slot with a single writer (its worker), so the hot path
// pays plain stores; the main thread sums live slots and folds a slot into
// `retired` when its worker exits. The connection gauge is not here: it is the
// size of the native connection table, so it cannot drift.
import { CLOSE_REASONS } from '../module/abi.js';
import { FAULT_KINDS } from '../module/errors.js';

export const MAX_WORKERS = 64;

/** Int32 cells (Atomics). */
export const G = {
  WORKERS: 0, // workers running or being started (a reservation counts)
  BUSY: 1, // workers handling an event (kept by the native epollWait with each slot's S.BUSY)
  STOP: 3, // 1: workers leave at the next wake-up
  FORCED: 4, // 1: drain timed out, remaining connections close with reason 5
  WANT_EVENTS: 5, // 1: workers post connection/close events to the main thread
  MIN: 6,
  MAX: 7,
  GROW: 8, // 1: a worker has asked for one more worker and the pool has not decided yet
  TLS_CTX: 9, // the TLS context new connections get (0: plain TCP); a certificate reload swaps it
  DRAINING: 10, // 1 once a graceful stop has begun (tcpmod.draining)
  WARNED_LIMIT: 11, // second (Date.now()/1000) of the last 'connection limit' warning: one a second at most
  WARNED_FD: 12, // the same for 'out of file descriptors'
  WARNED_BOUND: 13, // the same for 'a memory bound closed connections'
  WARNED_SEND_TIMEOUT: 14, // the same for 'send timeout'
  WARNED_PROXY: 15, // the same for 'no valid PROXY protocol header'
  // Live reload (server.reload). The main thread posts a new generation to every worker's port, then
  // bumps GEN_EPOCH, then sets GENERATION: a worker that sees either change reads its port (synchronously)
  // before it uses a generation, so it always knows the one it reads.
  GENERATION: 16, // the module generation new connections get (1, 2, …; a rollback sets an older one)
  GEN_EPOCH: 17, // bumped with every message the workers must read before going on (a generation added or freed)
  WATCH_GEN: 18, // the generation whose faults are counted in GEN_FAULTS (0: none), in the watch after a reload
  GEN_FAULTS: 19, // faults of WATCH_GEN since it was set
} as const;
const GLOBAL_CELLS = 20;

/**
 * Int32 cells per slot.
 * - CALL_SEQ is odd while the worker is inside a module callback; the watchdog
 *   stops a callback by swapping an odd value it saw for CALL_KILLED, and the
 *   worker ends a callback by swapping its own odd value for the next one, so
 *   exactly one of the two wins (pool.ts, worker/loop.ts).
 * - CALL_START is when the callback started and CALL_EXCLUDED how long it has
 *   waited for writability in tcpmod.send, or for the Redis-backed store, since (ms, modulo 2^32 of the pool's clock).
 * - CALL_GEN is the module generation of that call, negated when the call is
 *   an instance's start-up (_initialize, start function, tcpmod_io_desc,
 *   tcpmod_init), which runs under the start-up timeout instead.
 * - SEND_SEQ is odd while the worker is in a send, which started at SEND_START,
 *   or waits for the Redis-backed store (kv_redis.cc marks it the same way).
 * - BUSY is 1 while the worker handles an event (written by the native epollWait).
 */
export const S = { ALIVE: 0, CALL_SEQ: 1, CALL_START: 2, CALL_EXCLUDED: 3, SEND_SEQ: 4, SEND_START: 5, BUSY: 6, CALL_GEN: 7 } as const;
const SLOT_I32 = 8;
/** CALL_SEQ after the watchdog stopped the callback (even: never a live call's value). */
export const CALL_KILLED = -2;

/** Why a TLS handshake failed: the labels the native engine gives (tls.h), in counter order. */
export const TLS_FAILURES = ['protocol', 'version', 'certificate', 'alpn', 'timeout', 'socket', 'other'] as const;
/** Upper bounds (seconds) of the TLS handshake time histogram; one more cell counts the rest (+Inf). */
export const TLS_HANDSHAKE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5] as const;

/**
 * Why a connection was refused at accept (tcpmod_connections_refused_total{reason}). proxy: it did not
 * start with a valid PROXY protocol header in time (--proxy-protocol); it is also counted closed
 * (socket_error, timeout, or shutdown), since it was accepted and entered the table.
 */
export const REFUSED_REASONS = ['limit', 'fd', 'proxy'] as const;

/** Why a call to the Redis-backed store returned -3 (tcpmod_kv_errors_total{kind}); kv_redis.cc counts in this order. */
export const KV_ERROR_KINDS = ['connect', 'timeout', 'closed', 'protocol', 'error', 'backoff'] as const;

/** Float64 totals per slot. */
export const T = {
  EVENTS: 0, BYTES_IN: 1, BYTES_OUT: 2, ACCEPTED: 3, SEND_TIMEOUTS: 4, INSTANCES: 5,
  TLS_HANDSHAKES: 6, TLS_HANDSHAKE_SECONDS: 7, // count and sum of completed handshakes
  CLOSED: 8, // one cell per close reason
  FAULTS: 8 + CLOSE_REASONS.length, // one cell per fault kind
  TLS_FAILURES: 8 + CLOSE_REASONS.length + FAULT_KINDS.length, // one cell per TLS_FAILURES label
  TLS_BUCKETS: 8 + CLOSE_REASONS.length + FAULT_KINDS.length + TLS_FAILURES.length, // one per bucket, then +Inf
  TIMERS_FIRED: 8 + CLOSE_REASONS.length + FAULT_KINDS.length + TLS_FAILURES.length + TLS_HANDSHAKE_BUCKETS.length + 1,
  REFUSED: 9 + CLOSE_REASONS.length + FAULT_KINDS.length + TLS_FAILURES.length + TLS_HANDSHAKE_BUCKETS.length + 1, // per REFUSED_REASONS
  KV_ERRORS: 9 + CLOSE_REASONS.length + FAULT_KINDS.length + TLS_FAILURES.length + TLS_HANDSHAKE_BUCKETS.length + 1 + REFUSED_REASONS.length, // per KV_ERROR_KINDS (written by kv_redis.cc)
  // bytes of module log messages dropped by the log limit (module/log-limit.ts)
  LOG_DROPPED: 9 + CLOSE_REASONS.length + FAULT_KINDS.length + TLS_FAILURES.length + TLS_HANDSHAKE_BUCKETS.length + 1 + REFUSED_REASONS.length + KV_ERROR_KINDS.length,
} as const;
export const TOTALS = T.LOG_DROPPED + 1;

const I32_BYTES = (GLOBAL_CELLS + MAX_WORKERS * SLOT_I32) * 4;

/** Milliseconds on a clock every thread shares (Date.now based), truncated to int32: compare by difference. */
export function clockMs(): number {
  return Date.now() | 0;
}

export class Counters {
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  constructor(readonly sab: SharedArrayBuffer = new SharedArrayBuffer(I32_BYTES + MAX_WORKERS * TOTALS * 8)) {
    this.i32 = new Int32Array(sab, 0, I32_BYTES / 4);
    this.f64 = new Float64Array(sab, I32_BYTES, MAX_WORKERS * TOTALS);
  }
  get(cell: number): number {
    return Atomics.load(this.i32, cell);
  }
  add(cell: number, n: number): number {
    return Atomics.add(this.i32, cell, n) + n;
  }
  set(cell: number, v: number): void {
    Atomics.store(this.i32, cell, v);
  }
  slotCell(slot: number, field: number): number {
    return GLOBAL_CELLS + slot * SLOT_I32 + field;
  }
  /** Index of a worker's first Float64 total. */
  totalsBase(slot: number): number {
    return slot * TOTALS;
  }
}
