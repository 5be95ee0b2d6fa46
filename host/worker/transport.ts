// The transport the ABI driver sends through (module/driver.ts Transport):
// the one sender (plain or TLS, queued or blocking, the native sender.h),
// the one way to wait inside a callback (blocking(): the watchdog leaves the
// wait out), the close reason of a failed send, the output high-water mark,
// and tcpmod.conn_info for the connection being handled.
import { CloseReason } from '../module/abi.js';
import { clockMs, G, T } from '../pool/counters.js';
import { ENOBUFS, EPROTO, ETIMEDOUT, native } from '../sys.js';
import { LoopInstances } from './instances.js';

export abstract class LoopTransport extends LoopInstances {
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
