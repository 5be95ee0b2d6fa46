// Host limits that are neither ABI numbers (host/module/abi.ts) nor options
// (host/options.ts): bounds on the work of one wake, and a width of the native
// epoll layout. Together with those two tables they are the single source of
// host/native/src/tcpmod_limits.h (scripts/gen-limits.mjs writes it; a test
// fails when the committed header differs). Keep this file free of imports
// that load the native addon: the generator imports its compiled form before
// the addon is built.

/** Connections one worker accepts per listener wake, at most (Redis's MAX_ACCEPTS_PER_CALL). */
export const MAX_ACCEPTS_PER_WAKE = 128;

/**
 * Timer items one timerfd wake takes, at most: the rest wait for the next wake,
 * which comes at once, so a burst of due items never holds the table lock in one go.
 */
export const TIMER_POPS_PER_WAKE = 128;

/**
 * Bits of a connection id kept in its epoll item (the stale-event tag): an
 * event for a closed connection whose fd was reused is told apart by it. The
 * item's 64 bits are tag | kind (4) | fd (32), so the tag has 28.
 */
export const EPOLL_TAG_BITS = 28;
