// Shutdown and drain: close() stops accepting at once, tells modules they are
// draining, lets open connections go on until they close or the drain timeout
// passes, shuts the rest down (reason 5), stops the workers and finishes what
// no worker closed; abort() stops at once (a second signal).
import { CloseReason } from '../module/abi.js';
import { duration } from '../options.js';
import { G } from '../pool/counters.js';
import { C, native } from '../sys.js';
import { finishConnection } from '../worker/close.js';
import type { ServerCore, ServerState } from './core.js';
import type { WorkerRecovery } from './recovery.js';

export interface CloseOptions {
  /** How long open connections may go on after accepting stops (default: the server's drainTimeout). */
  drainTimeout?: number | string;
}

export class Shutdown {
  private closing: Promise<void> | null = null;

  constructor(private readonly core: ServerCore, private readonly recovery: WorkerRecovery) {}

  private get state() { return this.core.state; }
  private set state(s: ServerState) { this.core.state = s; }
  private get options() { return this.core.options; }
  private get log() { return this.core.log; }
  private get pool() { return this.core.pool; }
  private get epfd() { return this.core.epfd; }
  private get listenFd() { return this.core.listenFd; }
  private get wakeFd() { return this.core.wakeFd; }
  private get trials() { return this.core.trials; }
  private release(): Promise<void> { return this.core.release(); }

  /**
   * Graceful shutdown: stop accepting now; let open connections go on until they
   * close or the drain timeout passes; then shut the rest down (close reason 5),
   * stop every worker and close every fd. Calling it again returns the same promise.
   */
  close(opts: CloseOptions = {}): Promise<void> {
    this.closing ??= this.shutdown(opts);
    return this.closing;
  }

  private async shutdown(opts: CloseOptions): Promise<void> {
    if (this.state === 'created' || this.state === 'stopped') {
      this.state = 'stopped';
      return;
    }
    // A trial instance still running (a start-up that hangs) is given up: listen() then rejects.
    this.trials.abort(new Error('the server was closed while a module was being tried'));
    while (this.state === 'starting') await new Promise((r) => setTimeout(r, 10));
    if ((this.state as ServerState) === 'stopped') return;
    this.state = 'stopping';
    const drainMs = duration('drainTimeout', opts.drainTimeout, this.options.drainTimeoutMs);
    const pool = this.pool!;
    const c = pool.counters;
    // Stop accepting at once: out of the epoll set, and no longer listening.
    native.epollCtl(this.epfd, C.EPOLL_CTL_DEL, this.listenFd, 0, 0);
    native.shutdown(this.listenFd, C.SHUT_RDWR);
    // Tell modules (tcpmod.draining), and close connections that stay idle through the grace.
    c.set(G.DRAINING, 1);
    native.timersDrain(this.epfd, this.options.drainIdleMs);
    const open = () => native.connCount(this.epfd);
    await waitFor(() => open() === 0, drainMs);
    if (open() > 0) {
      c.set(G.FORCED, 1);
      const n = native.connShutdownGroup(this.epfd, C.SHUT_RDWR);
      this.log.info({ connections: n }, 'drain timeout: shutting down the remaining connections');
      await waitFor(() => open() === 0, Math.max(1000, this.options.handlerTimeoutMs * 2));
    }
    await pool.stop(() => native.eventfdWrite(this.wakeFd));
    // Anything still in the table now had no worker to close it.
    const left = native.connList(this.epfd);
    for (let i = 0; i < left.length; i += 3) finishConnection(left[i], left[i + 1], CloseReason.SHUTDOWN, this.recovery.mainCloses());
    await this.release();
    this.state = 'stopped';
    this.log.info('stopped');
  }

  /** Stops at once (a second signal): wakes every worker and sender; the caller then exits. */
  abort(): void {
    if (!this.pool || this.epfd < 0) return;
    this.pool.counters.set(G.FORCED, 1);
    this.pool.counters.set(G.STOP, 1);
    native.connShutdownGroup(this.epfd, C.SHUT_RDWR);
    native.eventfdWrite(this.wakeFd);
  }
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, Math.min(20, Math.max(1, end - Date.now()))));
}
