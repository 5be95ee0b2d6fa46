// Counters shared by the main thread and every worker through one
// SharedArrayBuffer. Gauges that must be exact at every moment (workers, busy,
// connections) and control flags are Int32 cells changed with Atomics. Totals
// are Float64 cells in a per-worker slot with a single writer (its worker), so
// the hot path pays plain stores; the main thread sums live slots and folds a
// slot into `retired` when its worker exits.

export const MAX_WORKERS = 64;

/** Int32 cells (Atomics). */
export const G = {
  WORKERS: 0, // workers running or being started (a reservation counts)
  BUSY: 1, // workers handling an event
  CONNECTIONS: 2, // open connections
  STOP: 3, // 1: workers leave at the next wake-up
  FORCED: 4, // 1: drain timed out, remaining connections close with reason 5
  WANT_EVENTS: 5, // 1: workers post connection/close events to the main thread
  MIN: 6,
  MAX: 7,
  GROW: 8, // 1: a worker has asked for one more worker and the pool has not decided yet
} as const;
const GLOBAL_CELLS = 16;

/** Int32 cells per slot. CALL_SEQ is odd while the worker is inside a module callback, SEND_SEQ while it is in a send. */
export const S = { ALIVE: 0, CALL_SEQ: 1, FD: 2, CONN: 3, SEND_SEQ: 4 } as const;
const SLOT_I32 = 5;

/** Float64 totals per slot. */
export const T = {
  EVENTS: 0, BYTES_IN: 1, BYTES_OUT: 2, ACCEPTED: 3,
  CLOSED: 4, // 7 cells, one per close reason 0..6
  SEND_TIMEOUTS: 11,
  FAULTS: 12, // 5 cells: trap, abort, exit, timeout, result
  INSTANCES: 17,
} as const;
export const TOTALS = 18;
export const FAULT_KINDS = ['trap', 'abort', 'exit', 'timeout', 'result'] as const;

const I32_BYTES = (GLOBAL_CELLS + MAX_WORKERS * SLOT_I32) * 4;

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
