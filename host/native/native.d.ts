// Types of every export of the native shim (host/native/src). Conventions:
// a syscall failure is returned as a negative errno (-11 is EAGAIN); a wrong
// argument type or a region outside its buffer throws (a programming error).
// Regions are (buffer, offset, length) triples; a buffer is usually a module's
// `memory.buffer`, so bytes move between sockets and WebAssembly memory with
// no intermediate copy.

export type Buf = ArrayBuffer | ArrayBufferView;

export interface NativeConstants {
  EPOLLIN: number; EPOLLOUT: number; EPOLLERR: number; EPOLLHUP: number; EPOLLRDHUP: number;
  EPOLLET: number; EPOLLONESHOT: number;
  EPOLL_CTL_ADD: number; EPOLL_CTL_MOD: number; EPOLL_CTL_DEL: number;
  SOL_SOCKET: number; SO_REUSEADDR: number; SO_KEEPALIVE: number; SO_SNDBUF: number; SO_RCVBUF: number;
  SO_ERROR: number;
  IPPROTO_TCP: number; TCP_NODELAY: number; TCP_KEEPIDLE: number; TCP_KEEPINTVL: number; TCP_KEEPCNT: number;
  SHUT_RD: number; SHUT_WR: number; SHUT_RDWR: number;
  /** What an epoll item is (conn_table.h). */
  KIND_CONN: number; KIND_LISTEN: number; KIND_WAKE: number; KIND_TIMER: number;
  /** In connHeld/connList listings: a connection whose on_open has not started. */
  KIND_UNOPENED: number;
}

export interface ConnTlsInfo {
  tls: boolean;
  handshaken: boolean;
  /** The negotiated ALPN protocol, '' when none. */
  alpn: string;
  /** The client presented a certificate (which then verified). */
  peerCert: boolean;
  /** Why the session failed, a stable label ('' while nothing failed): protocol, version, certificate, alpn, timeout, socket, other. */
  failure: string;
  /** OpenSSL's words for the failure, for logs. */
  detail: string;
  /** Handshake time in microseconds (0 until done). */
  micros: number;
}

export interface SockName { address: string; port: number; family: 'IPv4' | 'IPv6' }

export interface NativeBinding {
  readonly constants: NativeConstants;

  // sockets (sockets.cc)
  /** socket + SO_REUSEADDR + bind + listen; non-blocking, close-on-exec. `host` is a numeric address. */
  listenTcp(host: string, port: number, backlog: number, reusePort?: number): number;
  /** Raises the soft RLIMIT_NOFILE to the hard limit; returns the limits in force. */
  raiseNofile(): { soft: number; hard: number };
  /** Takes the process's reserve descriptor (idempotent): 0 or -errno. */
  spareInit(): number;
  /** At EMFILE: releases the reserve, accepts one waiting connection and closes it, retakes the reserve.
   *  1 refused one, 0 none was waiting, -EMFILE no reserve to spend. */
  acceptRefuse(listenFd: number): number;
  /** Blocking connect; for tests and tools. */
  connectTcp(host: string, port: number): number;
  sockName(fd: number): SockName | number;
  /** accept4(SOCK_NONBLOCK|SOCK_CLOEXEC); -EAGAIN when nothing is pending. */
  accept(listenFd: number): number;
  setsockoptInt(fd: number, level: number, name: number, value: number): number;
  /** The option's value (never negative for the options used here), or -errno. */
  getsockoptInt(fd: number, level: number, name: number): number;
  shutdown(fd: number, how: number): number;
  close(fd: number): number;
  /** Bytes received, 0 at EOF, or -errno. */
  recv(fd: number, buf: Buf, offset: number, length: number): number;
  /** Sends the whole region, waiting for POLLOUT on EAGAIN up to timeoutMs (restarted on progress).
   *  Returns length, -ETIMEDOUT, or -errno; waited[0] = milliseconds spent waiting for writability. */
  send(fd: number, buf: Buf, offset: number, length: number, timeoutMs: number, waited?: Int32Array): number;

  // epoll and eventfd (poller.cc); an item's data is (kind << 32) | fd, kind one of KIND_*
  epollCreate(): number;
  /** For items outside the connection table (the wake eventfd, with KIND_WAKE). */
  epollCtl(epfd: number, op: number, fd: number, events: number, kind: number): number;
  /** One event per call. Returns 1 with out = [fd, kind, events, id, due], 0 on timeout, or -errno; timeoutMs < 0
   *  waits forever. A connection or listener event is claimed for `holder` in the connection table before it
   *  returns (events that cannot be claimed are dropped); `due` has the DUE_* bits the connection carried. The
   *  server's timer item is handled inside (due connections are marked and made to report). With maxEvents
   *  (1..256, default 1) above 1, one epoll_wait claims up to that many and the next calls return the rest
   *  (lent to `holder`; the timer gives back any left past the batch budget, see batchConfigure).
   *  cells[busySlot] is 1 while the worker holds anything (from the event returned until a call that finds
   *  nothing lent), with cells[busyGlobal] counting the busy workers.
   *  With a load target (mem, inPtr, inCap, statePtr: a module memory and its regions; generation: whose instance
   *  it is), a plain input event of a connection on that generation (no due bits) is also loaded, as connLoad would
   *  load it, in the same call: out[5] = 1, out[6] = connLoad's result, out[7] = the bytes received; otherwise
   *  out[5] = 0 and the caller loads it. out must then be a Float64Array(8). */
  epollWait(epfd: number, timeoutMs: number, out: Float64Array, holder: number, cells: Int32Array,
    busyGlobal: number, busySlot: number, maxEvents?: number,
    mem?: ArrayBuffer, inPtr?: number, inCap?: number, statePtr?: number, generation?: number): number;
  /** epollWait's arguments bound once for this thread (the worker loop): the epoll set, holder, the busy cells,
   *  cells[workersCell] (the pool's workers: a batch arms its steal timer only while another worker is not busy), maxEvents, out (a Float64Array(8), or (9): then out[8] is the wall-clock ms (Date.now's clock) when the wait loaded the event), the pending save record `save` (a Float64Array(9): [fd, id, restPtr,
   *  restLen, statePtr, events, outPtr, outLen, pending]) and totals[bytesOutCell], the output byte counter the
   *  pending save adds to. No load target and nothing pending after it. The caller keeps the arrays alive. */
  waitBind(epfd: number, holder: number, workersCell: number, busyGlobal: number, busySlot: number, maxEvents: number, bytesOutCell: number,
    out: Float64Array, cells: Int32Array, save: Float64Array, totals: Float64Array): number;
  /** The load target of waitNext (as epollWait's), or none (mem undefined); rebind whenever the instance or its
   *  memory.buffer changes (the binding holds a pointer into that memory: the caller keeps the buffer). A save still
   *  pending is made first, with the memory bound so far: returns 0, or its result when it did not complete (as
   *  waitNext's KIND_SAVE event). */
  waitTarget(mem?: ArrayBuffer, inPtr?: number, inCap?: number, statePtr?: number, generation?: number): number;
  /** epollWait with the bound arguments, after the pending save (save[8] = 1: connSave of that record with the bound
   *  memory, out region included, re-arming on the bound set; the bytes it sends are added to the bound counter).
   *  A save that does not complete ends the call at once: 1 with out = [fd, KIND_SAVE, 0, id, 0, 0, result, 0],
   *  result = the out region's bytes left unsent (nothing saved), -errno, or SAVE_OUTSIDE (the state slot or a
   *  region outside the bound memory); the connection is still the caller's. */
  waitNext(timeoutMs: number): number;
  readonly KIND_SAVE: number;
  readonly SAVE_OUTSIDE: number;
  eventfdCreate(): number;
  eventfdWrite(fd: number): number;

  // connection table (conn_table.h; registry.cc, ownership.cc, conn_input.cc, ... napi_conn.cc): the host-owned per-connection state of ABI v1, and who holds each
  // entry. Every call names an entry by (fd, id); a stale pair finds nothing (-EBADF). Ids are below 2^53
  // and never repeat; a module sees id mod 2^31 (never 0, never that of another open connection).
  /** Registers a socket held by `holder` (worker slot + 1); kind KIND_CONN (default) or KIND_LISTEN; with
   *  tlsCtx (from tlsContextCreate) the connection speaks TLS. Returns its id, -EEXIST, or -EINVAL (unknown context). */
  connOpen(fd: number, group: number, stateSize: number, holder: number, kind?: number, tlsCtx?: number, generation?: number): number;
  /** The module generation of the connection (holder only), or -EBADF. */
  connGeneration(fd: number, id: number): number;
  /** Holder only: moves the connection to another generation, carry-over and state unchanged. 0, -EBADF,
   *  -EOVERFLOW (the carry-over is above inCap), -EINVAL (opened, and the state size differs). */
  connMigrate(fd: number, id: number, generation: number, stateSize: number, inCap: number): number;
  /** [generation, connections, ...] of the group's open connections. */
  generationCounts(group: number): number[];
  /** Marks every opened connection of that generation due for a close with reason 5; returns how many. */
  connDrainGeneration(group: number, generation: number): number;
  /** The compatibility verdict for connections of `from` continuing on `to` (generations.ts compatibility()), told
   *  once per pair when a generation is added, with what `to` needs of a connection that moves. 0 | -EBADF. */
  generationVerdict(group: number, from: number, to: number, moves: number, toStateSize: number, toInCap: number): number;
  /** The generation is gone: every verdict naming it is dropped. Returns how many. */
  generationForget(group: number, generation: number): number;
  /** Holder only, at an event: moves the connection to `to` when its pair's verdict allows and its carry-over fits
   *  `to`'s in_cap, else leaves it pinned. Returns the generation it is on now, or -EBADF. */
  connMoveTo(fd: number, id: number, to: number): number;
  /** Writes carried-over input at inPtr, receives after it up to inCap, copies the state slot to statePtr.
   *  Returns the input length, with LOAD_EOF set when the peer closed its side, or -errno;
   *  received[0] = bytes newly received by this call. */
  connLoad(fd: number, id: number, mem: ArrayBuffer, inPtr: number, inCap: number, statePtr: number, received?: Int32Array,
    noRecv?: number): number;
  /** Keeps [restPtr, restPtr + restLen) as unconsumed input and saves the state slot from statePtr; with epfd and
   *  events, then re-arms like connRearm in the same call (-errno when that fails: the caller stays holder).
   *  With an out region of the same memory, first sends it without waiting (plain or TLS, nothing queued) and
   *  returns how many of its bytes the socket did not take: 0 = all sent, then saved and re-armed; > 0 = the last
   *  that many bytes are unsent and nothing was saved (the caller sends them its own way, then saves again without
   *  an out region; always the whole region when output is queued); -errno when the send failed. */
  connSave(fd: number, id: number, mem: ArrayBuffer, restPtr: number, restLen: number, statePtr: number,
    epfd?: number, events?: number, outPtr?: number, outLen?: number): number;
  /** EPOLL_CTL_ADD for a new entry; the caller stays its holder. */
  connAdd(epfd: number, fd: number, id: number, events: number): number;
  /** Clears the holder and re-arms (EPOLL_CTL_MOD) in one call; on failure the caller stays holder. */
  connRearm(epfd: number, fd: number, id: number, events: number): number;
  /** Since the process started (for tests): [re-arms done over -- a claim met an entry whose re-arm was in flight
   *  outside the table lock and was turned away, so the holder re-armed it again under the lock; claims that met a
   *  re-arm in flight which finished before they could mark it, and so took the entry; re-arms that made no epoll_ctl
   *  because the entry, taken from the due list, was still armed with the same events]. */
  rearmStats(): [number, number, number];
  /** Test hook: a claim that meets a re-arm in flight waits `us` µs (0: off) before it marks it, so that the
   *  re-arming thread finishes in between (the claim must then take the entry, not lose the event). */
  testClaimPause(us: number): number;
  /** Test hook: epollWait sleeps `us` µs (0: off; < 0 only reads) between epoll_wait's return and its claims, so a
   *  test can close the connection an event was for and reuse its fd meanwhile. Returns the pauses begun so far. */
  testWaitPause(us: number): number;
  /** Timer events handled by this process so far (empty 0), or those that found nothing to do (empty 1: no item
   *  due, no memory scan, no batch loan past its budget): with no deadlines configured, a steal timer set for
   *  nothing. */
  timerWakes(empty: 0 | 1): number;
  /** Batches: what an entry given back is re-armed with (a connection, the listener), and how long (ms) the rest
   *  of a batch may wait untouched before the timer gives it back. Call after timersConfigure. 0 | -EBADF. */
  batchConfigure(group: number, connEvents: number, listenEvents: number, budgetMs: number): number;
  /** Gives back (re-arms) every batch entry `holder` took and has not been handed yet: for a worker that is gone
   *  or stopped. Returns how many. */
  batchRelease(group: number, holder: number): number;
  /** Forgets the entry and closes the socket: 0, 1 when it was lingering (its close was counted already), -EBADF when
   *  it was gone already. With drainBytes > 0 it first
   *  shuts down writing and discards up to that much received input, so the close does not reset a reply. */
  connClose(fd: number, id: number, drainBytes?: number): number;
  /** shutdown(how) of the entry's socket if (fd, id) is still open; safe from any thread. */
  connShutdown(fd: number, id: number, how: number): number;
  /** shutdown(how) on every connection of the group, leaving the fds to their holders; returns the count. */
  connShutdownGroup(group: number, how: number): number;
  /** [fd, id, kind, ...] of the group's connections (not the listener). */
  connList(group: number): number[];
  /** [fd, id, kind, ...] of every entry `holder` holds. */
  connHeld(group: number, holder: number): number[];
  /** The group's open connections (the table's size for it). */
  connCount(group: number): number;
  /** The connection's peer as text, IP:PORT or [IPv6]:PORT, or -errno. */
  connPeer(fd: number, id: number): string | number;
  /** Holder only: the event of a connection the module has not met, in one call: its PROXY header step
   *  (--proxy-protocol; never reads past the header, never waits), once read its TLS handshake step (writes wait up
   *  to timeoutMs), then with `open` = 1 the move to open (on_open must follow; with 0 the caller calls connOpened).
   *  1 ready for on_open; 0 a step needs more input and the entry was re-armed with `events`; negative: close it
   *  without on_close (-ENOTCONN the peer closed before its first byte; out[1] < 0: the PROXY phase failed, -EPROTO
   *  not a valid header; out[1] >= 0: the handshake failed, out[1] its TLS_FAILURE_LABELS index).
   *  out[0]: the handshake's µs when it completed in this call, else -1. */
  connPhase(fd: number, id: number, epfd: number, events: number, timeoutMs: number, open: number, out: Float64Array): number;
  /** The labels a failed handshake is counted under (connPhase's out[1] indexes it). */
  readonly TLS_FAILURE_LABELS: readonly string[];
  /** Sends a region in full like send(), through TLS when the connection has it; waited[0] = ms spent waiting. */
  connSend(fd: number, id: number, mem: ArrayBuffer, ptr: number, len: number, timeoutMs: number, waited?: Int32Array): number;
  connTlsInfo(fd: number, id: number): ConnTlsInfo | number;
  /** Connections accepted from now on must start with a PROXY header of `versions` (1 v1, 2 v2, 3 either, 0 none). */
  proxyConfigure(group: number, versions: number): number;
  /** The PROXY header parser alone (tests): src and dst as IP:PORT, '' when the header names no client (UNKNOWN, LOCAL). */
  proxyParse(bytes: Uint8Array, versions?: number): { status: 'done' | 'more' | 'bad'; consumed: number; version: number; src: string; dst: string };
  /** Test hook: ids continue from at least `id`; returns the next id. */
  connSetNextId(id: number): number;
  readonly LOAD_EOF: number;

  // upstreams (upstream.cc, docs/abi.md "Upstreams (v1.2)"): named backends a module opens for the client it handles.
  /** The server's named upstreams (numeric addresses) and limits. 0 | -EINVAL (an address that is not numeric). */
  /** tls: the upstream speaks TLS; its certificate must verify against `ca` (PEM) and name `servername`, or each address. -EINVAL: a non-numeric address or no usable CA. */
  upstreamsConfigure(group: number, list: { name: string; addresses: { host: string; port: number }[]; tls?: { ca: string; servername?: string } }[], connectTimeoutMs: number, maxQueued: number, maxOpen?: number, readTimeoutMs?: number, frameTimeoutMs?: number): number;
  upstreamsForget(group: number): number;
  /** tcpmod.upstream_addr (§16): address `index` of the upstream `name` as HOST:PORT ([V6]:PORT), or -1 (no such name or address). */
  upstreamAddr(group: number, name: string, index: number): string | -1;
  /** For the held client (fd, id): a handle > 0, or -1 unknown name, -2 too many, -3 no socket. The result comes as an event. */
  /** half: the module half-closes (docs/abi.md §20): the upstream's EOF is reported as EOF (5) and the handle stays. */
  upstreamOpen(fd: number, id: number, group: number, mem: ArrayBuffer, namePtr: number, nameLen: number, half?: boolean): number;
  /** upstream_shutdown (§20): the FIN once its queue has drained; later sends -3. 0 | -1 no such upstream. */
  upstreamShutdown(fd: number, id: number, handle: number): number;
  /** 0, -1 no such upstream, -2 its queue would pass the bound. */
  upstreamSend(fd: number, id: number, handle: number, mem: ArrayBuffer, ptr: number, len: number): number;
  upstreamClose(fd: number, id: number, handle: number): number;
  /** The upstream's unconsumed bytes are offered again (DATA) at the client's next look, even with nothing new. 0 | -1 no such upstream. */
  upstreamResume(fd: number, id: number, handle: number): number;
  /** shutdown_output (§20) for the held connection: its output ends after this event's, the FIN after the queue. 0 | -EBADF. */
  connEndOutput(fd: number, id: number): number;
  /** A due bit: half-closed both ways with no upstream left (§20): close with reason 0. */
  readonly DUE_PEER_DONE: number;
  /** The held client's next upstream event (0: none now): out[0] handle, out[1] in_len at inPtr; state loaded at statePtr. */
  upstreamNext(fd: number, id: number, mem: ArrayBuffer, inPtr: number, inCap: number, statePtr: number, out: Int32Array): number;
  /** Added to upstreamNext's event when no other upstream of the client is flagged: a next call would find nothing. */
  readonly UPSTREAM_LAST: number;
  /** Saves the upstream's unconsumed bytes (if it is still open) and the client's state slot. 0 | -EBADF. */
  upstreamKeep(fd: number, id: number, handle: number, mem: ArrayBuffer, restPtr: number, restLen: number, statePtr: number): number;
  upstreamStats(): { open: number; connects: number; refused: number; timeouts: number; failed: number; closed: number; bytesIn: number; bytesOut: number; tlsVerify: number; tlsHandshake: number; reads: number; tooMany: number; readTimeouts: number; frameTimeouts: number };
  /** conn_info keys 3 and 4 (docs/abi.md §16): why the last FAILED this thread delivered to connection `id` failed (a code, or its text). */
  upstreamFailure(id: number, key: 3): number;
  upstreamFailure(id: number, key: 4): string;
  readonly DUE_UPSTREAM: number;
  readonly KIND_UPSTREAM: number;

  // timers (due.cc, timers.cc): one timerfd per server in its epoll set, a heap of wake times per server.
  /** Creates the server's timerfd (add it with KIND_TIMER, EPOLLIN | EPOLLONESHOT) and sets its timeouts (0: off). */
  timersConfigure(group: number, readTimeoutMs: number, frameTimeoutMs: number): number;
  /** Closes the timerfd and drops the heap. */
  timersForget(group: number): number;
  /** The connection's module timer: ms from now (0 cancels). 0, -EINVAL for ms outside 0..86,400,000, -EBADF. */
  timerSet(fd: number, id: number, ms: number): number;
  /** Starts the drain grace: idle connections are marked DUE_DRAIN_IDLE after graceMs. */
  timersDrain(group: number, graceMs: number): number;
  /** Connections with a module timer armed. */
  timersArmed(group: number): number;
  /** Items in the server's timer heap: at most one per open connection with a deadline (read, frame, send, drain,
   *  module timer), whatever set_timer calls its module makes; a closed connection's item leaves with it. */
  timerHeapSize(group: number): number;
  // queued output and memory bounds (conn_output.cc)
  /** Queued send mode, plain or TLS: sends what the socket takes now, queues the rest in order; never waits.
   *  Bytes queued after it, -ENOBUFS past the per-connection bound, -ENOMEM, or -errno. */
  connWrite(fd: number, id: number, mem: ArrayBuffer, ptr: number, len: number): number;
  /** Do not call the module before n bytes are pending (or in_cap, or EOF); connLoad returns -EAGAIN meanwhile. */
  connWant(fd: number, id: number, n: number): number;
  /** Holder only, after on_close: with lingerEpfd >= 0 (the module closed after its reply) the close phase begins (no
   *  deadline but send/linger, no module timer) and, when it keeps the entry (queued output to drain, then lingering),
   *  the entry is re-armed with `events`: CLOSE_KEPT (its close counts now). Otherwise it is closed now as
   *  connClose(fd, id, drainBytes): 0, 1 (counted already), -EBADF. */
  connEnd(fd: number, id: number, lingerEpfd: number, events: number, drainBytes: number): number;
  /** Holder only: an event of a connection in its close phase (DUE_CLOSING) with its due bits: its step, then the
   *  re-arm with `events` (CLOSE_KEPT) or the close (connClose with drainBytes once all is done, else none): 0, 1
   *  (counted already, the usual case), -EBADF. step[0]: 1 kept, 0 done, -ETIMEDOUT its send timeout passed, -ENOBUFS
   *  a memory bound chose it, -errno. */
  connClosing(fd: number, id: number, due: number, epfd: number, events: number, drainBytes: number, step: Int32Array): number;
  /** connEnd/connClosing: the entry stays in its close phase (re-armed). */
  readonly CLOSE_KEPT: number;
  /** Linger bounds in ms (timeMs 0: no lingering): after its reply a closed connection reads and discards its client's input. */
  lingerConfigure(group: number, timeMs: number, timeoutMs: number): number;
  /** Sends queued output now: bytes still queued, or -errno. */
  connFlush(fd: number, id: number): number;
  /** Bounds in bytes (0: none). */
  queueConfigure(group: number, queued: number, sendTimeoutMs: number, highWater: number, maxPerConn: number,
    maxOutputTotal: number, maxInputTotal: number): number;
  /** Bytes queued and held as carry-over (output, input), and the memory their buffers hold (what the bounds count). */
  groupMemory(group: number): { output: number; input: number; outputAllocated: number; inputAllocated: number };
  /** The module is being told of the connection (on_open starts); until then a dead acceptor's heir opens it. */
  connOpened(fd: number, id: number): number;
  readonly DUE_OPEN: number;
  readonly DUE_SEND_TIMEOUT: number;
  readonly DUE_OVERFLOW: number;
  readonly DUE_CLOSING: number;
  readonly DUE_TIMER: number;
  // pub/sub (pubsub.cc, topics.cc, mailbox.cc; docs/abi.md §15): one topic table per server, a mailbox per subscriber.
  /** The per-connection mailbox bound in bytes (a message costs its bytes + 64); past it the subscriber is closed (reason 3). */
  topicsConfigure(group: number, maxMailbox: number): number;
  /** kind 0 exact, 1 Redis glob, 2 MQTT filter: 1 subscribed, 0 already, -2 too many, -3 invalid, -EBADF. Holder only. */
  topicSubscribe(fd: number, id: number, kind: number, mem: ArrayBuffer, ptr: number, len: number): number;
  /** 1 removed, 0 not subscribed, -3 invalid kind; kind -1: all, the result how many. Holder only. */
  topicUnsubscribe(fd: number, id: number, kind: number, mem: ArrayBuffer, ptr: number, len: number): number;
  /** Subscriptions reached, -3 invalid topic, -4 message larger than any mailbox can take. */
  topicPublish(group: number, mem: ArrayBuffer, topicPtr: number, topicLen: number, msgMem: ArrayBuffer, msgPtr: number, msgLen: number,
    frameMem?: ArrayBuffer, framePtr?: number, frameLen?: number): number;
  /** Takes the oldest message into [ptr, ptr+cap): 1 (lens: topic, pattern, body lengths), 2 a direct frame (lens[2] its length), 0 none, -EMSGSIZE dropped (too big). */
  connMessage(fd: number, id: number, mem: ArrayBuffer, ptr: number, cap: number, lens: Int32Array): number;
  topicsStats(group: number): { topics: number; patterns: number; subscriptions: number; published: number; delivered: number; overflows: number; tooBig: number; direct: number };
  readonly DUE_MESSAGE: number;
  /** PUBSUB NUMSUB / NUMPAT: subscriptions of (kind, text); with len 0 the distinct texts of that kind subscribed; -3 invalid. */
  topicCount(group: number, kind: number, mem: ArrayBuffer, ptr: number, len: number): number;
  /** PUBSUB CHANNELS: exact topics with a subscriber matching the glob (len 0: all), byte order, from `skip` on, as many as fit at out
   *  (4-byte LE length + bytes each): how many; -2 not even the next fits; -3 invalid. */
  topicsList(group: number, mem: ArrayBuffer, globPtr: number, globLen: number, skip: number, outMem: ArrayBuffer, outPtr: number, outCap: number): number;
  /** --bus (bus.cc): starts the server's bus thread (two Redis connections); its Redis subscriptions follow the topic table. */
  busStart(group: number, target: BusTarget): number;
  /** Stops the bus thread (waits for it) and closes its connections. */
  busStop(group: number): number;
  busStats(group: number): BusStats | null;
  /** -3 the subscription (kind, text) is invalid; else 1 when it matches `topic` (or, without one, is valid), 0 not. */
  topicCheck(kind: number, text: Uint8Array, topic?: Uint8Array): number;
  readonly DUE_TIMEOUT: number;
  readonly DUE_DRAIN_IDLE: number;
  readonly DUE_HANDSHAKE: number;
  readonly DUE_PROXY: number;

  // TLS contexts (tls.cc): process-wide, shared by every worker; a session keeps its context alive.
  /** Returns a context id (> 0) or a one-line error message. */
  tlsContextCreate(o: { cert: string; key: string; ca?: string; clientAuth?: 'none' | 'request' | 'require';
    minVersion?: '1.2' | '1.3'; alpn?: string[] }): number | string;
  tlsContextFree(id: number): number;
  /** The first certificate of a PEM text, or a one-line error message. */
  tlsCertInfo(pem: string): { subject: string; issuer: string; notBefore: number; notAfter: number; selfSigned: boolean } | string;

  // key-value store (kv_store.cc): one per process
  /** Value length (copied only if it fits outCap) or -1 when missing. */
  kvGet(key: Buf, keyOff: number, keyLen: number, out: Buf, outOff: number, outCap: number): number;
  /** Binds [buf+off, +len) as the calling thread's memory for kvGetBound/kvSetBound/kvDelBound. */
  kvBindMemory(buf: Buf, off: number, len: number): void;
  /** kvGet, kvSet, kvDel on the bound memory (addresses within it); -EFAULT for a region outside it. */
  kvGetBound(key: number, keyLen: number, out: number, outCap: number): number;
  kvSetBound(key: number, keyLen: number, val: number, valLen: number): number;
  kvDelBound(key: number, keyLen: number): number;
  kvIncrBound(key: number, keyLen: number, delta: bigint, out: number): number;
  /** 0, or -2 when the byte budget would be exceeded. */
  kvSet(key: Buf, keyOff: number, keyLen: number, val: Buf, valOff: number, valLen: number): number;
  /** 1 deleted, 0 missing. */
  kvDel(key: Buf, keyOff: number, keyLen: number): number;
  /** 0 with the new value as little-endian i64 at out; -1 not an integer or overflow; -2 store full. */
  kvIncr(key: Buf, keyOff: number, keyLen: number, delta: bigint, out: Buf, outOff: number): number;
  // v1.2 (docs/abi.md §14): results as the imports of the same name; -3 on a Redis-backed thread
  /** As kvGet; the value's version (u64 LE) at ver when found. */
  kvGetVer(key: Buf, keyOff: number, keyLen: number, out: Buf, outOff: number, outCap: number, ver: Buf, verOff: number): number;
  /** The value's length; bytes [offset, offset + outCap) of it (those there are) at out; its version (u64 LE) at ver. -1; -4 offset < 0. */
  kvGetRange(key: Buf, keyOff: number, keyLen: number, offset: bigint | number, out: Buf, outOff: number, outCap: number, ver: Buf, verOff: number): number;
  /**
   * kv_send on the process store, queued send mode (docs/abi.md §17.1): head then value bytes [offset, offset + len)
   * written from the store entry (pinned, not copied) in one sendmsg; what the socket does not take is queued.
   * The value bytes sent; -1, -4, -5; -8 the write failed (-errno at out[0]); -100 the store is Redis (send it yourself).
   * out[0]: bytes queued after it.
   */
  kvSendStored(fd: number, id: number, key: Buf, keyOff: number, keyLen: number, offset: number, len: number, version: bigint, head: Buf, headOff: number, headLen: number, out: Int32Array): number;
  /** As kvGet, deleting the key when the value fitted. */
  kvGetDel(key: Buf, keyOff: number, keyLen: number, out: Buf, outOff: number, outCap: number): number;
  kvSetEx(key: Buf, keyOff: number, keyLen: number, val: Buf, valOff: number, valLen: number, flags: number, ttlMs: bigint | number): number;
  kvCas(key: Buf, keyOff: number, keyLen: number, val: Buf, valOff: number, valLen: number, flags: number, ttlMs: bigint | number, version: bigint): number;
  kvExpire(key: Buf, keyOff: number, keyLen: number, ttlMs: bigint | number): number;
  /** kv_expire_ex: 1 set, 0 the NX/XX/GT/LT condition did not hold, -1, -4. */
  kvExpireIf(key: Buf, keyOff: number, keyLen: number, ttlMs: bigint | number, flags: number): number;
  kvPersist(key: Buf, keyOff: number, keyLen: number): number;
  /** 1 with the ms left (i64 LE) at out; 0 no TTL; -1 missing. */
  kvTtl(key: Buf, keyOff: number, keyLen: number, out: Buf, outOff: number): number;
  kvAppend(key: Buf, keyOff: number, keyLen: number, val: Buf, valOff: number, valLen: number, flags: number): number;
  kvIncrEx(key: Buf, keyOff: number, keyLen: number, delta: bigint, flags: number, out: Buf, outOff: number): number;
  kvIncrAt(key: Buf, keyOff: number, keyLen: number, offset: number, delta: bigint, flags: number, out: Buf, outOff: number): number;
  /** Keys as [u32 LE len][bytes] records at out; the next cursor (i64 LE) at next. */
  kvScan(prefix: Buf, prefixOff: number, prefixLen: number, cursor: bigint | number, count: number, out: Buf, outOff: number, outCap: number, next: Buf, nextOff: number): number;
  kvDelPrefix(prefix: Buf, prefixOff: number, prefixLen: number): number;
  /** Sets the byte budget and the eviction policy (default noeviction); returns the previous budget. */
  kvConfigure(maxBytes: number, policy?: 'noeviction' | 'allkeys-lru' | 'volatile-lru' | 'allkeys-lfu'): number;
  kvClear(): number;
  /** bytes: what the store has allocated (entries, tables, TTL index); expired, evicted: totals since start. */
  kvStats(): { keys: number; bytes: number; maxBytes: number; expired: number; evicted: number; withTtl: number };
  /** One run of the active expiry, for at most budgetUs; keys deleted. */
  kvExpireCycle(budgetUs: number): number;
  /** Test hook: fixes the store's clock at ms (>= 0), or -1 for the real one. */
  kvClock(ms: number): void;
  // Redis backend (kv_redis.cc): per thread; every kv function above may then also return -3 (unavailable)
  /** Points this thread's kv calls at Redis (null: the in-process store). The worker's SEND_SEQ/SEND_START/
   *  CALL_EXCLUDED cells mark its waits as blocked; errors are counted in totals[errorsBase + KV_ERROR_KINDS index]. */
  kvBackend(target: KvTarget | null, cells?: Int32Array, seqCell?: number, startCell?: number, excludedCell?: number,
    totals?: Float64Array, errorsBase?: number): number;
  /** The last failure any thread met ('' if none since the last call); reading it clears it. */
  kvLastError(): string;
  /** Parses one RESP2 reply at the region's start: used > 0 bytes, 0 needs more, -1 bad; off is relative to the region. */
  kvParseReply(buf: Buf, off: number, len: number): { used: number; type?: string; nil?: boolean; integer?: number; off?: number; len?: number };
}

/** The Redis server of busStart: host is a numeric address. */
/** tls: rediss:// (the certificate verified against `ca`, PEM, and naming `servername`). */
export interface BusTarget { host: string; port: number; username: string; password: string; connectTimeoutMs?: number; tls?: { ca: string; servername: string } }
/** What the bus did (bus.h BusStats): publishes acknowledged by Redis, messages received from other processes,
 *  own echoes dropped, publishes never sent (Redis down or 16 MiB waiting), sent but unacknowledged when the
 *  connection was lost, connections lost or refused, Redis subscriptions held. */
export interface BusStats {
  connected: boolean; published: number; received: number; echoes: number; dropped: number; unconfirmed: number;
  failures: number; channels: number; patterns: number; lastError: string;
}

/** A Redis server for kvBackend: host is a numeric address (the host layer resolves names). */
export interface KvTarget {
  host: string; port: number; db: number; username: string; password: string; timeoutMs: number;
  /** rediss://: PEM CAs to verify the server against, and the name (or IP) its certificate must carry. */
  tls?: { ca: string; servername: string };
}
