// What a module call's result leads to, and the one close path of a worker:
// keep (the last output sent, saved and re-armed in one native call), a
// fault (closed, the instance renewed), or a close (on_close, then a
// lingering close or finishConnection); the close phase of a connection the
// module closed; and what escapes a connection's handling.
import { CloseReason } from '../module/abi.js';
import { FAULTED, KEEP } from '../module/driver.js';
import { FAULT_KINDS, ModuleFault } from '../module/errors.js';
import { G, T } from '../pool/counters.js';
import { C, ENOBUFS, ETIMEDOUT, native } from '../sys.js';
import { closingStep, endConnection, finishConnection, moduleConnId } from './close.js';
import { CONN_EVENTS, LISTEN_EVENTS, SEND_TIMEOUT_WARNING } from './events.js';
import { LoopTransport } from './transport.js';

export abstract class LoopResults extends LoopTransport {
  /**
   * Whatever a connection's handling threw (a native check refusing a region,
   * a host bug) ends that connection, never the worker: it closes with reason
   * 6 without on_close (the module's view of it is in doubt), and the instance
   * that was handling it is dropped and made again at next use. Logged at most
   * once a second per worker.
   */
  protected escaped(fd: number, id: number, e: unknown): void {
    if (this.callSeq) this.leave();
    const inst = this.inst;
    if (inst && this.gens.ready(this.instGen) === inst) {
      inst.dispose();
      this.gens.discard(this.instGen);
    }
    finishConnection(fd, id, CloseReason.FAULT, this.closeCount);
    this.warnThrottled(`an error in the handling of connection ${moduleConnId(id)} closed it (reason fault): ${(e as Error)?.message ?? e}`);
  }

  /** As escaped(), for the listener: it stays open and is armed again so that accepting goes on. */
  protected listenerFailed(fd: number, id: number, e: unknown): void {
    this.warnThrottled(`an error while accepting: ${(e as Error)?.message ?? e}`);
    native.connRearm(this.cfg.epfd, fd, id, LISTEN_EVENTS);
  }

  /** Closes a connection the module has not met (a PROXY header or TLS handshake that did not complete): no on_close. */
  protected drop(fd: number, id: number, reason: number): void {
    finishConnection(fd, id, reason, this.closeCount);
  }

  /**
   * What the driver's result leads to: keep (save and re-arm), a fault, or a
   * close. `saved`: the result of this event's save when the wait made it and
   * it did not complete (waitNext's KIND_SAVE event, loop.ts); it is then
   * finished here as connSave's own result would have been.
   */
  protected after(fd: number, id: number, r: number, saved = NaN): void {
    if (r === KEEP) {
      const inst = this.inst;
      const d = this.driver;
      const { epfd } = this.cfg;
      // A full region held (upstream_resume, docs/abi.md §16): no input is read until the module resumes it or an upstream event comes.
      const events = d.restLen === inst.desc.inCap && inst.holdsInput ? CONN_EVENTS & ~C.EPOLLIN : CONN_EVENTS;
      const fused = saved === saved;
      // Sent, saved and re-armed by the next wait, in the same native call (transport.ts deferSave).
      if (!fused && this.deferSave(fd, id, inst, events)) return;
      if (saved === native.SAVE_OUTSIDE) throw new RangeError('state region outside memory');
      let out = d.outLen;
      if (out > 0) {
        // The event's last output (deferred by the driver), sent, saved and re-armed in one native call
        // when the socket takes it all at once and it lies in module memory (not staged).
        let ptr = d.outPtr;
        const mem = d.outMem;
        if (mem === inst.buffer) {
          const left = fused ? saved : native.connSave(fd, id, mem, d.restPtr, d.restLen, inst.desc.statePtr, epfd, events, ptr, out);
          if (left < 0) return this.close(fd, id, this.failure(left));
          this.ctr.f64[this.t + T.BYTES_OUT] += out - left;
          if (left === 0) return;
          ptr += out - left;
          out = left;
        }
        // The rest the blocking or queued way, then saved without it.
        const reason = this.send(mem, ptr, out);
        if (reason >= 0) return this.close(fd, id, reason);
      } else if (fused) {
        // Nothing to send: the deferred save itself failed (or the kv_send it sent, conn_output.cc SendHeld).
        return this.close(fd, id, saved === ENOBUFS ? CloseReason.OVERFLOW : CloseReason.SOCKET_ERROR);
      }
      // Saved and re-armed in one native call.
      const rc = native.connSave(fd, id, inst.buffer, d.restPtr, d.restLen, inst.desc.statePtr, epfd, events);
      if (rc < 0) this.close(fd, id, rc === ENOBUFS ? CloseReason.OVERFLOW : CloseReason.SOCKET_ERROR);
      return;
    }
    if (r === FAULTED) return this.faulted(fd, id, this.driver.fault!);
    this.close(fd, id, r, this.driver.linger);
  }

  protected rearm(fd: number, id: number): void {
    if (native.connRearm(this.cfg.epfd, fd, id, CONN_EVENTS) < 0) this.close(fd, id, CloseReason.SOCKET_ERROR);
  }

  /**
   * Runs on_close, then the one close path; `linger` (the module closed after
   * its reply) keeps the reply from being reset: the connection is counted
   * closed now and enters its close phase (close_phase.h) -- a reply still
   * queued goes out first, then it lingers, discarding what the client still
   * sends -- and its socket closes at the end of it (closing()).
   */
  protected close(fd: number, id: number, reason: number, linger = false): void {
    // The connection on_close is about (a topic call made from it names this one).
    this.fd = fd;
    this.id = id;
    if ((reason === CloseReason.PEER || reason === CloseReason.SOCKET_ERROR) && this.ctr.get(G.FORCED)) reason = CloseReason.SHUTDOWN;
    const inst = this.instFor(fd, id, false);
    const fault = inst ? this.driver.close(inst, moduleConnId(id), reason) : null;
    if (fault) return this.faulted(fd, id, fault);
    const keep = linger && !this.ctr.get(G.FORCED) && reason !== CloseReason.SEND_TIMEOUT;
    // Lingers (re-armed, counted now) or closed now, decided in one native call; counted with the close, so that a
    // reader of the stats never sees the one without the other.
    if (endConnection(fd, id, reason, this.closeCount, linger, keep ? this.cfg.epfd : -1, CONN_EVENTS) && reason === CloseReason.SEND_TIMEOUT) {
      this.ctr.f64[this.t + T.SEND_TIMEOUTS]++;
    }
  }

  /**
   * An event of a connection in its close phase (counted closed already): its
   * queued reply goes on, or its lingering; the socket closes when that is over,
   * or on an error, its send timeout (counted as one), a memory bound, or a forced shutdown.
   */
  protected closing(fd: number, id: number, due: number): void {
    if (this.ctr.get(G.FORCED)) {
      finishConnection(fd, id, CloseReason.MODULE, this.closeCount);
      return;
    }
    const rc = closingStep(fd, id, due, this.closeCount, this.cfg.epfd, CONN_EVENTS);
    if (rc !== ETIMEDOUT) return;
    this.warnOnce(G.WARNED_SEND_TIMEOUT, SEND_TIMEOUT_WARNING);
    this.ctr.f64[this.t + T.SEND_TIMEOUTS]++;
  }

  /** The module faulted on this connection: close it (reason 6, no on_close) and renew the instance. */
  protected faulted(fd: number, id: number, fault: ModuleFault): void {
    finishConnection(fd, id, CloseReason.FAULT, this.closeCount);
    this.ctr.f64[this.t + T.FAULTS + FAULT_KINDS.indexOf(fault.kind)]++;
    const gen = this.instGen;
    if (gen === this.ctr.get(G.WATCH_GEN)) this.ctr.add(G.GEN_FAULTS, 1);
    this.hooks.faulted(fault, moduleConnId(id), this.gens.name(gen));
    // The faulted instance is disposed. The current generation's is renewed now, as a fault has always
    // done, so the next event does not wait for it; an older generation's only when next used (its
    // connections are going, and the generation may be freed first).
    if (gen === this.gens.current && this.gens.spec(gen)) this.make(gen);
    else this.gens.discard(gen);
  }
}
