// The one close path. Every connection ends here, whoever ends it: its worker
// (after on_close), the main thread for a worker that died holding it, and the
// shutdown sweep. It closes by (fd, id), so a connection closed twice, or an fd
// number that already belongs to a newer connection, is never touched; and it
// counts the reason only when it really closed something.
import { MODULE_ID_SPACE } from '../module/abi.js';
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
  const rc = native.connClose(fd, id, linger ? LINGER_DRAIN_BYTES : 0);
  if (rc < 0) return false;
  if (rc === 0) countClose(id, reason, count);
  return true;
}

/** Counts a close (and tells listeners): once per connection, by finishConnection or a lingering close. */
export function countClose(id: number, reason: number, count: CloseCount): void {
  count.totals[count.base + T.CLOSED + reason]++;
  count.notify?.(moduleConnId(id), reason);
}
