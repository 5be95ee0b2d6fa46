// The transport the ABI driver sends through (module/driver.ts Transport):
// the one sender (plain or TLS, queued or blocking, the native sender.h),
// the one way to wait inside a callback (blocking(): the watchdog leaves the
// wait out), the close reason of a failed send, the output high-water mark,
// and tcpmod.conn_info for the connection being handled.
import { CloseReason, KV } from '../module/abi.js';
import { KV_SEND_FALLBACK, type StoredWrite } from '../module/driver.js';
import type { ModuleInstance } from '../module/instance.js';
import { clockMs, G, T } from '../pool/counters.js';
import { ENOBUFS, EPROTO, ETIMEDOUT, native } from '../sys.js';
import { LoopInstances } from './instances.js';

export abstract class LoopTransport extends LoopInstances {
  /**
   * The load target bound for the worker's wait (native.waitTarget, loop.ts):
   * the instance, the memory.buffer bound, and its generation; null when none.
   */
  protected target: ModuleInstance | null = null;
  protected targetBuf: ArrayBuffer | null = null;
  protected targetGen = -1;
  /** The save the next wait makes (native.waitBind's record): [fd, id, restPtr, restLen, statePtr, events, outPtr, outLen, pending]. */
  protected readonly pending = new Float64Array(9);
  /** Whether the event being handled may leave its save to the next wait: set by the loop for a connection event, spent by the first save. */
  protected fusable = false;

  /**
   * A kept event's save (and its last output, if any, in module memory) left
   * to the next wait, which makes it before it waits (one native call per
   * event): only for the connection event the loop dispatched (nothing calls
   * into a module between this and the wait, which would overwrite the state
   * slot and in region) and only in the memory bound as the load target. False
   * when the caller must save now.
   */
  protected deferSave(fd: number, id: number, inst: ModuleInstance, events: number): boolean {
    const d = this.driver;
    if (!this.fusable || inst !== this.target || inst.buffer !== this.targetBuf) return false;
    if (d.outLen > 0 && d.outMem !== this.targetBuf) return false;
    this.fusable = false;
    const p = this.pending;
    p[0] = fd;
    p[1] = id;
    p[2] = d.restPtr;
    p[3] = d.restLen;
    p[4] = inst.desc.statePtr;
    p[5] = events;
    p[6] = d.outPtr;
    p[7] = d.outLen;
    p[8] = 1;
    return true;
  }

  /**
   * Sends in order, plain or TLS alike (the native sender, sender.h): queued
   * mode hands the bytes to the connection's queue (the socket takes what it
   * can now, nothing waits); blocking mode waits up to the send timeout.
   * -1, or the close reason.
   */
  send(mem: ArrayBuffer, ptr: number, len: number): number {
    const rc = this.queued
      ? native.connWrite(this.fd, this.id, mem, ptr, len)
      : this.blocking(() => native.connSend(this.fd, this.id, mem, ptr, len, this.cfg.sendTimeoutMs, this.waited));
    if (rc >= 0) {
      if (this.queued) this.backlog = rc;
      this.ctr.f64[this.t + T.BYTES_OUT] += len;
      return -1;
    }
    if (rc === ENOBUFS) return CloseReason.OVERFLOW;
    return this.failure(rc);
  }

  private readonly storedOut = new Int32Array(1);

  /** driver.ts Transport.sendStored: queued mode only (blocking mode sends through send()). */
  sendStored(write: StoredWrite, fail: (reason: number) => void): number {
    if (!this.queued) return KV_SEND_FALLBACK;
    const rc = write(this.fd, this.id, this.storedOut);
    if (rc === KV.NOT_SENT) fail(this.storedOut[0] === ENOBUFS ? CloseReason.OVERFLOW : this.failure(this.storedOut[0]));
    else if (rc >= 0) this.backlog = this.storedOut[0];
    // BYTES_OUT counts the value bytes (the head's are few, and not known here).
    if (rc >= 0) this.ctr.f64[this.t + T.BYTES_OUT] += rc;
    return rc;
  }

  /**
   * The one way to make a native call that may wait for a slow reader inside a
   * module callback: the call is marked (SEND_SEQ odd, SEND_START) while it runs
   * and the time it reports in `waited` is excluded from the callback's, so the
   * watchdog leaves a slow reader to the send timeout (host/pool, checkStuck).
   */
  protected blocking(call: () => number): number {
    const cells = this.cells;
    const c = this.cell;
    this.waited[0] = 0;
    Atomics.store(cells, c.sendStart, clockMs());
    Atomics.add(cells, c.sendSeq, 1); // odd while sending: the pool tells a blocked sender from a busy one
    const rc = call();
    if (this.callSeq) Atomics.add(cells, c.excluded, this.waited[0]);
    Atomics.add(cells, c.sendSeq, 1);
    return rc;
  }

  /** The close reason for a failed send. */
  protected failure(rc: number): number {
    if (rc === ETIMEDOUT) return CloseReason.SEND_TIMEOUT;
    if (rc === ENOBUFS) return CloseReason.OVERFLOW; // a held kv_send's rest past --max-output-buffer, found at the save
    if (this.ctr.get(G.FORCED)) return CloseReason.SHUTDOWN;
    return rc === EPROTO ? CloseReason.TLS : CloseReason.SOCKET_ERROR;
  }

  /** tcpmod.conn_info for the connection being handled: 0 transport, 1 ALPN protocol, 2 client certificate. */
  protected connInfo(key: number): number | string | null {
    if (key === 0) return this.tls ? 1 : 0;
    // Why the upstream of a FAILED event failed (docs/abi.md §16): a code, or its text.
    if (key === 3 || key === 4) return key === 3 ? native.upstreamFailure(this.id, 3) : native.upstreamFailure(this.id, 4);
    if (key !== 1 && key !== 2) return null;
    const info = this.tls ? native.connTlsInfo(this.fd, this.id) : null;
    const ok = info !== null && typeof info !== 'number';
    if (key === 1) return ok ? info.alpn : '';
    return ok && info.peerCert ? 1 : 0;
  }

  congested(staged: number): boolean {
    return this.backlog + staged > this.highWater;
  }
}
