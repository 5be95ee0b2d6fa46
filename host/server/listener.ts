// The listener and the shared epoll set: what listen() makes before any
// worker starts -- the epoll set with its native configuration (timers,
// output queues and memory bounds, lingering, PROXY, topics, batches,
// upstreams), the timerfd and the wake eventfd in it, the listening socket
// and its entry in the connection table -- and closes again in release().
import type { ResolvedOptions } from '../options.js';
import { C, check, native, SysError } from '../sys.js';
import { nativeUpstreams } from './ca.js';
import { BATCH_BUDGET_MS, CONN_EVENTS, LISTEN_EVENTS } from '../worker/events.js';

export interface AddressInfo { address: string; port: number; family: 'IPv4' | 'IPv6' }

/** --proxy-protocol as the native bit set of versions (proxy_protocol.h). */
const PROXY_VERSIONS = { off: 0, v1: 1, v2: 2, any: 3 } as const;

/**
 * Queued output above this stops reading a connection's input and calling its
 * module until the queue is down to half of it: a quarter of the per-connection
 * bound, at most 1 MiB (enough to keep a fast reader's socket full).
 */
export function highWater(maxOutputBuffer: number): number {
  return Math.min(1 << 20, Math.floor(maxOutputBuffer / 4));
}

export class Listener {
  epfd = -1;
  listenFd = -1;
  listenId = -1;
  timerFd = -1;
  wakeFd = -1;
  addr: AddressInfo | null = null;

  /** Makes the epoll set and the listener on `host` (an address): throws a SysError naming the call that failed. */
  open(o: ResolvedOptions, host: string): void {
    native.spareInit();
    this.epfd = check(native.epollCreate(), 'epoll_create1');
    this.timerFd = check(native.timersConfigure(this.epfd, o.readTimeoutMs ?? 0, o.frameTimeoutMs ?? 0), 'timerfd_create');
    check(native.epollCtl(this.epfd, C.EPOLL_CTL_ADD, this.timerFd, C.EPOLLIN | C.EPOLLONESHOT, C.KIND_TIMER), 'epoll_ctl');
    check(native.queueConfigure(this.epfd, o.sendMode === 'queued' ? 1 : 0, o.sendTimeoutMs, highWater(o.maxOutputBuffer),
      o.maxOutputBuffer, o.maxOutputMemory, o.maxInputMemory), 'queueConfigure');
    check(native.lingerConfigure(this.epfd, o.lingeringTimeMs ?? 0, o.lingeringTimeoutMs), 'lingerConfigure');
    check(native.proxyConfigure(this.epfd, PROXY_VERSIONS[o.proxyProtocol]), 'proxyConfigure');
    check(native.topicsConfigure(this.epfd, o.maxMailbox), 'topicsConfigure');
    check(native.batchConfigure(this.epfd, CONN_EVENTS, LISTEN_EVENTS, BATCH_BUDGET_MS), 'batchConfigure');
    // Named upstreams (--upstream): what modules of this server may open; queued bytes per upstream bounded as a client's.
    check(native.upstreamsConfigure(this.epfd, nativeUpstreams(o), o.upstreamConnectTimeoutMs, o.maxOutputBuffer, o.maxUpstreams, o.upstreamReadTimeoutMs ?? 0, o.upstreamFrameTimeoutMs ?? 0), 'upstreamsConfigure');
    this.wakeFd = check(native.eventfdCreate(), 'eventfd');
    // Level-triggered and never read: once written, it wakes every waiter in turn.
    check(native.epollCtl(this.epfd, C.EPOLL_CTL_ADD, this.wakeFd, C.EPOLLIN, C.KIND_WAKE), 'epoll_ctl');
    this.listenFd = check(native.listenTcp(host, o.port, o.backlog, o.reusePort ? 1 : 0), 'listen', `${o.host}:${o.port}`);
    const name = native.sockName(this.listenFd);
    if (typeof name === 'number') throw new SysError(name, 'getsockname');
    this.addr = name;
    // The listener is an entry of the connection table, handed from worker to worker like a connection.
    this.listenId = check(native.connOpen(this.listenFd, this.epfd, 0, 0, C.KIND_LISTEN), 'connOpen');
  }

  /** Closes what open() made, as far as it got; every fd is -1 after. */
  close(): void {
    if (this.listenId >= 0) native.connClose(this.listenFd, this.listenId);
    else if (this.listenFd >= 0) native.close(this.listenFd);
    if (this.timerFd >= 0) native.timersForget(this.epfd);
    if (this.epfd >= 0) native.upstreamsForget(this.epfd);
    for (const fd of [this.wakeFd, this.epfd]) if (fd >= 0) native.close(fd);
    this.listenFd = this.wakeFd = this.epfd = this.listenId = this.timerFd = -1;
  }
}
