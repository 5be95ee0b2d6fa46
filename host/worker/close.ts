// The one close path. Every connection ends here, whoever ends it: its worker
// (after on_close), the main thread for a worker that died holding it, and the
// shutdown sweep. It closes by (fd, id), so a connection closed twice, or an fd
// number that already belongs to a newer connection, is never touched; and it
// counts the reason only when it really closed something.
import { CloseReason, MODULE_ID_SPACE } from '../module/abi.js';
import { T } from '../pool/counters.js';
import { native } from '../sys.js';

/** How much already-received input a lingering close discards (see connClose). */
export const LINGER_DRAIN_BYTES = 1 << 20;

/** The id a module sees for host id `id` (ABI v1's i32 conn): id mod 2^31, never 0. */
export function moduleConnId(id: number): number {
  return id % MODULE_ID_SPACE;
}

export interface CloseCount {
  /** Totals to count the close in, at `base` (a worker's slot, or the pool's own). */
  totals: Float64Array;
  base: number;
  /** Called with the module-visible id and the reason when someone listens for close events. */
  notify: ((conn: number, reason: number) => void) | null;
}

/**
 * Closes connection (fd, id) with `reason`; false when it was closed already
 * (nothing counted). A connection that was finishing its queued output after
 * the module closed it was counted then (countClose), and is not counted again.
 */
export function finishConnection(fd: number, id: number, reason: number, count: CloseCount, linger = false): boolean {
  return closed(native.connClose(fd, id, linger ? LINGER_DRAIN_BYTES : 0), id, reason, count);
}

/**
 * The module closed connection (fd, id) (on_close ran): with `lingerEpfd` >= 0
 * (the module closed after its reply, and nothing forbids lingering) it may
 * stay in its close phase, re-armed with `events` and counted closed now;
 * otherwise, or when nothing keeps it, it is closed as finishConnection closes
 * it. One native call (connEnd); true when it was there to close (counted once,
 * whichever way it went).
 */
export function endConnection(fd: number, id: number, reason: number, count: CloseCount, linger: boolean, lingerEpfd: number,
  events: number): boolean {
  return closed(native.connEnd(fd, id, lingerEpfd, events, linger ? LINGER_DRAIN_BYTES : 0), id, reason, count);
}

/** connClosing's out cell (one per worker thread: each has its own copy of this module). */
const stepOut = new Int32Array(1);

/**
 * An event of connection (fd, id) in its close phase (DUE_CLOSING, counted
 * closed already), in one native call (connClosing): its step, then its re-arm
 * or its close. Returns CLOSE_KEPT when it stays (re-armed); otherwise it was
 * closed, and the result is why: 0 its phase ended (or its re-arm failed),
 * -ETIMEDOUT its send timeout, -ENOBUFS a memory bound, -errno; -EBADF: it was gone.
 */
export function closingStep(fd: number, id: number, due: number, count: CloseCount, epfd: number, events: number): number {
  const rc = native.connClosing(fd, id, due, epfd, events, LINGER_DRAIN_BYTES, stepOut);
  if (rc === native.CLOSE_KEPT) return rc;
  if (!closed(rc, id, CloseReason.MODULE, count)) return rc;
  return Math.min(stepOut[0], 0);
}

/**
 * What a close call returned (connClose, connEnd, connClosing): 0 closed now,
 * CLOSE_KEPT kept in its close phase (its close counts now), 1 closed now and
 * counted when its close phase began, < 0 gone already. Counts the close once.
 */
function closed(rc: number, id: number, reason: number, count: CloseCount): boolean {
  if (rc < 0) return false;
  if (rc !== 1) countClose(id, reason, count);
  return true;
}

/** Counts a close (and tells listeners): once per connection, by finishConnection or a lingering close. */
function countClose(id: number, reason: number, count: CloseCount): void {
  count.totals[count.base + T.CLOSED + reason]++;
  count.notify?.(moduleConnId(id), reason);
}
