// Worker recovery: what the main thread does for a worker that is stuck (the
// watchdog stops it) or gone (stopped, a host error, a crash). Its held
// connections are finished here, by the one close path, and counted as the
// main thread's closes.
import { CLOSE_REASONS, CloseReason } from '../module/abi.js';
import { G } from '../pool/counters.js';
import { C, native } from '../sys.js';
import { finishConnection, type CloseCount } from '../worker/close.js';
import { CONN_EVENTS, LISTEN_EVENTS } from '../worker/events.js';
import type { ServerCore } from './core.js';

export class WorkerRecovery {
  constructor(private readonly core: ServerCore) {}

  private get state() { return this.core.state; }
  private get log() { return this.core.log; }
  private get pool() { return this.core.pool; }
  private get epfd() { return this.core.epfd; }
  private get emit() { return this.core.emit; }

  /** The watchdog stopped the worker in `slot` in a call of generation `gen` (negative: a start-up). */
  stuck(slot: number, gen: number): void {
    const pool = this.pool!;
    // A stop counts toward a reload's rollback like any other fault of the watched generation.
    if (Math.abs(gen) === pool.counters.get(G.WATCH_GEN)) pool.counters.add(G.GEN_FAULTS, 1);
    // Tell its client at once; the fd stays open until the frozen thread is gone. What it
    // took in its batch and never touched goes back to epoll first, for the other workers.
    native.batchRelease(this.epfd, slot + 1);
    const held = native.connHeld(this.epfd, slot + 1);
    for (let i = 0; i < held.length; i += 3) if (held[i + 2] === C.KIND_CONN) native.connShutdown(held[i], held[i + 1], C.SHUT_RDWR);
  }

  /** How the main thread counts the connections it closes itself. */
  mainCloses(): CloseCount {
    const pool = this.pool!;
    return { totals: pool.retired, base: 0, notify: pool.counters.get(G.WANT_EVENTS) ? (conn, reason) => this.emit('close', conn, CLOSE_REASONS[reason]) : null };
  }

  /**
   * A worker's thread has exited (stopped by the watchdog, a host error, a
   * crash): it can no longer finish what it held, so the main thread does. The
   * entries of its last batch it had not started on go back into the epoll set
   * untouched (ready sockets report again at once); the
   * listener goes back into the epoll set; a connection it had accepted but not
   * opened yet goes back too, for another worker to open; a connection the
   * module had met is closed (reason 6, no on_close: the instance died with the
   * thread).
   */
  finishHeld(slot: number): void {
    if (this.epfd < 0) return;
    native.batchRelease(this.epfd, slot + 1);
    const held = native.connHeld(this.epfd, slot + 1);
    for (let i = 0; i < held.length; i += 3) {
      const [fd, id, kind] = [held[i], held[i + 1], held[i + 2]];
      if (kind === C.KIND_LISTEN) {
        const rc = native.connRearm(this.epfd, fd, id, LISTEN_EVENTS);
        if (rc < 0 && this.state === 'running') this.log.error({ errno: rc }, 'could not re-arm the listener a dead worker held');
      } else if (kind === C.KIND_UNOPENED && native.connRearm(this.epfd, fd, id, CONN_EVENTS | C.EPOLLOUT) === 0) {
        // Accepted but never opened: another worker opens it (reporting at once: writable).
      } else {
        finishConnection(fd, id, CloseReason.FAULT, this.mainCloses());
      }
    }
  }
}
