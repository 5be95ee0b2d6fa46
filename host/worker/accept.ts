// Accepting: up to MAX_ACCEPTS_PER_WAKE connections per listener event, each
// in the table and in epoll before any on_open runs, the listener re-armed
// before them; refusals over the connection limit and at the descriptor
// limit (the spare descriptor); the accepted socket's options.
import { CloseReason } from '../module/abi.js';
import { G, T } from '../pool/counters.js';
import { C, EAGAIN, EINVAL, EMFILE, ENFILE, native } from '../sys.js';
import { finishConnection } from './close.js';
import { LISTEN_EVENTS, MAX_ACCEPTS_PER_WAKE, OPENING_EVENTS } from './events.js';
import { LoopPhases } from './phases.js';

export abstract class LoopAccept extends LoopPhases {
  /**
   * Accepts until EAGAIN, or MAX_ACCEPTS_PER_WAKE (Redis's MAX_ACCEPTS_PER_CALL):
   * the listener is then re-armed with connections still waiting, so it reports
   * again at once and another worker (or this one, after these) takes the rest --
   * a burst never keeps one worker accepting while its new connections' on_open
   * waits and the other workers idle. Every accepted socket is in the table (held by this
   * worker) and in epoll before any on_open runs, and the listener is re-armed
   * before them too, so a slow on_open never holds up accepting and a worker
   * dying in one strands nothing.
   */
  protected accept(lfd: number, lid: number): void {
    const { epfd } = this.cfg;
    const list = this.accepted;
    list.length = 0;
    const gen = this.gens.current; // reads the port first if a reload moved the epoch
    const stateSize = this.gens.spec(gen)?.stateSize ?? 0; // open() sets it again, for the generation current then
    for (let taken = 0; taken < MAX_ACCEPTS_PER_WAKE; taken++) {
      const fd = native.accept(lfd);
      if (fd < 0) {
        if ((fd === EMFILE || fd === ENFILE) && this.refuseAtFdLimit(lfd)) continue;
        if (fd !== EAGAIN && fd !== EMFILE && fd !== ENFILE && !this.ctr.get(G.STOP)) this.hooks.warn('accept failed', { errno: fd });
        break;
      }
      // Socket options before the connection is in the table, so that no one (connections(), another
      // worker) ever sees it without them.
      this.socketOptions(fd);
      if (native.connCount(epfd) >= this.cfg.maxConnections) {
        // Never left in the backlog to hang: accepted and closed at once.
        native.close(fd);
        this.refused(0, G.WARNED_LIMIT, `connection limit (${this.cfg.maxConnections}) reached: closing new connections`);
        continue;
      }
      let id = native.connOpen(fd, epfd, stateSize, this.holder, C.KIND_CONN, this.tls ? this.ctr.get(G.TLS_CTX) : 0, gen);
      // A certificate reload freed the context just read: the cell holds its successor.
      if (id === EINVAL && this.tls) id = native.connOpen(fd, epfd, stateSize, this.holder, C.KIND_CONN, this.ctr.get(G.TLS_CTX), gen);
      if (id < 0) {
        // The table still has an entry for this fd number: a host bug, never a reason to leak the socket.
        this.hooks.warn('connection table refused an accepted socket; closing it', { fd, errno: id });
        native.close(fd);
        continue;
      }
      this.ctr.f64[this.t + T.ACCEPTED]++;
      if (native.connAdd(epfd, fd, id, OPENING_EVENTS) < 0) {
        finishConnection(fd, id, CloseReason.SOCKET_ERROR, this.closeCount);
        continue;
      }
      list.push(fd, id);
    }
    if (native.connRearm(epfd, lfd, lid, LISTEN_EVENTS) < 0 && !this.ctr.get(G.STOP)) {
      // Only when the server has taken the listener out of the set (it is stopping).
      this.hooks.warn('listener re-arm failed');
    }
    for (let i = 0; i < list.length; i += 2) {
      // One connection's failure must not strand the others accepted with it.
      try {
        this.begin(list[i], list[i + 1]);
      } catch (e) {
        this.escaped(list[i], list[i + 1], e);
      }
    }
  }

  /**
   * Out of descriptors: frees the reserve, accepts the waiting connection and
   * closes it (so it is told, not left hanging), and takes the reserve back.
   * False when there is no reserve to spend: then the listener waits 10 ms
   * before it is re-armed, so a full table never turns into a busy loop.
   */
  protected refuseAtFdLimit(lfd: number): boolean {
    const rc = native.acceptRefuse(lfd);
    if (rc === 1) {
      this.refused(1, G.WARNED_FD, 'out of file descriptors: closing new connections');
      return true;
    }
    if (rc < 0) {
      this.refused(-1, G.WARNED_FD, 'out of file descriptors: new connections wait');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
    return false;
  }

  /** --keepalive's SO_KEEPALIVE and TCP_KEEPIDLE/INTVL/CNT, and TCP_NODELAY, on an accepted socket. */
  protected socketOptions(fd: number): void {
    const ka = this.cfg.keepalive;
    if (ka) {
      native.setsockoptInt(fd, C.SOL_SOCKET, C.SO_KEEPALIVE, 1);
      native.setsockoptInt(fd, C.IPPROTO_TCP, C.TCP_KEEPIDLE, ka[0]);
      native.setsockoptInt(fd, C.IPPROTO_TCP, C.TCP_KEEPINTVL, ka[1]);
      native.setsockoptInt(fd, C.IPPROTO_TCP, C.TCP_KEEPCNT, ka[2]);
    }
    native.setsockoptInt(fd, C.IPPROTO_TCP, C.TCP_NODELAY, 1);
  }
}
