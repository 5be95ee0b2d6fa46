// What connections and the listener are armed for, and the bounds on what one
// wake of a worker does; shared by the loop's phases and the server.
import { REFUSED_REASONS } from '../pool/counters.js';
import { C } from '../sys.js';

/** Connections wait for input, edge-triggered, one thread at a time. */
export const CONN_EVENTS = C.EPOLLIN | C.EPOLLET | C.EPOLLONESHOT;
/** A new connection is in epoll before on_open, but reports only errors until its first re-arm. */
export const OPENING_EVENTS = C.EPOLLET | C.EPOLLONESHOT;
export const LISTEN_EVENTS = C.EPOLLIN | C.EPOLLONESHOT;
export const REFUSED_PROXY = REFUSED_REASONS.indexOf('proxy');
/**
 * How long the rest of a batch may wait behind the event being handled before
 * the server's timer gives it back to epoll for another worker. Handling an
 * event costs microseconds, so a batch of 8 is done in well under this and is
 * never split; only a slow callback (a module doing real work, a blocking send)
 * runs past it, and then the connections behind it wait at most this long (plus
 * a timer tick and another worker's wake-up) — the latency a client of the
 * seed's one-event loop could already see from scheduling alone.
 */
export const BATCH_BUDGET_MS = 2;
/** How often an idle worker reads its port (live reload): holding an older generation's instance, and otherwise. */
export const STALE_CHECK_MS = 250;
/** Connections one listener event accepts at most (see accept()). */
export { MAX_ACCEPTS_PER_WAKE } from '../limits.js';
/** Upstream events one claim of a connection delivers at most: a chatty upstream never keeps its connection from its client's input. */
export const UPSTREAM_EVENTS_PER_WAKE = 16;
export const SEND_TIMEOUT_WARNING = 'send timeout: closing connections whose clients stopped reading';
export const IDLE_CHECK_MS = 1000;

/** Messages one claim of a subscriber delivers at most (one on_message call each) before it re-arms. */
export const MESSAGES_PER_EVENT = 32;
/** Mailbox entries (direct frames, which call no module, and messages) one claim takes at most (docs/abi.md §19). */
export const FRAMES_PER_EVENT = 256;
