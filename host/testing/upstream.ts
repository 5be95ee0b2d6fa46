// Upstreams in tcpmod/testing (docs/abi.md §16), without sockets: the test
// plays each upstream a module opens. `loadModule(…, { upstreams: ['redis'] })`
// names what the module may open (as `serve --upstream`); an upstream_open of
// a listed name gives a TestUpstream on its connection (`c.upstream('redis')`),
// connecting until the test accepts or refuses it; what the module sends to
// it collects there (`u.take()`); the test answers bytes (`u.reply()`), closes
// it (`u.close()`), or fails it (`u.refuse('tls_verify')`), each one
// tcpmod_on_upstream call (or several, when bytes exceed the input region)
// through the one ABI driver, with the host's carry-over rules: what the
// module leaves unconsumed of an upstream comes back with its next bytes, or
// at once after upstream_resume; a full region taken nothing of closes the
// client (overflow) unless the module imports upstream_resume, and then the
// rest of what the test answered waits until the module takes some. Closing
// the client drops its upstreams without events, as the host does.
// Half-close (docs/abi.md §20): `u.shutdown` tells that the module ended its
// sending side (upstream_shutdown: the backend reads EOF after what take()
// gives); `u.end()` is the backend ending its own: EOF for a module that
// half-closes while its side is open (the handle stays), else CLOSED. When
// both sides have ended the host reports CLOSED once the socket closes: the
// test plays that with `u.close()`.
import { MAX_UPSTREAMS_PER_CONN, UPSTREAM, UPSTREAM_FULL, UPSTREAM_SHUT, UPSTREAM_TOO_MANY, UPSTREAM_UNKNOWN } from '../module/abi.js';
import { DEFAULTS } from '../options.js';
import type { SendResult, TestConn } from './module.js';

/** Why an upstream failed, as conn_info key 3/4 tell the module (docs/abi.md §16). */
export type UpstreamFailure = 'refused' | 'timeout' | 'tls_verify' | 'tls_handshake';
export const UPSTREAM_FAILURES: readonly UpstreamFailure[] = ['refused', 'timeout', 'tls_verify', 'tls_handshake'];

/** Where a scripted upstream stands. `dropped`: its client closed (no event), or the module closed it (upstream_close). */
export type UpstreamState = 'connecting' | 'open' | 'closed' | 'failed' | 'dropped';

/** One upstream a module opened: the test plays the backend. */
export class TestUpstream {
  /** Where it stands; events are allowed while it is connecting (accept, refuse) or open (reply, close). */
  state: UpstreamState = 'connecting';
  /** @internal Bytes the module sent, not yet taken by the test. */
  sent: Uint8Array[] = [];
  /** @internal What the module left unconsumed (carry-over). */
  pending: Uint8Array = new Uint8Array(0);
  /** @internal Bytes the test answered that did not fit the input region yet (a module holding a full region). */
  unread: Uint8Array = new Uint8Array(0);
  /** @internal upstream_resume: offer the held bytes again after the current call. */
  reoffer = false;
  /** @internal The reason of its FAILED (conn_info key 3/4 in that call). */
  failure: UpstreamFailure | null = null;
  /** @internal Bytes queued to it: upstream_send answers -2 past --max-output-buffer's default, as the host does. */
  queued = 0;
  /** The module ended its sending side to it (upstream_shutdown, docs/abi.md §20): after what take() gives, the backend reads EOF. */
  shutdown = false;
  /** The backend ended its sending side (end() gave EOF): it sends nothing more, and still reads. */
  ended = false;
  /** @internal Bytes were sent to it since its last reply (what --upstream-read-timeout waits on). */
  awaited = false;
  /** @internal conn_info key 4's text for the call that ends it, when the test's default does not fit. */
  failureText: string | null = null;
  /** The host of the address it connects to, when loadModule's upstreams listed addresses (NAME=IP:PORT): as the host names it in its texts. */
  host: string | null = null;

  /** @internal The connection's upstream_open makes it. */
  constructor(readonly conn: TestConn, readonly name: string, readonly handle: number) {}

  /** Everything the module has sent to this upstream since the last take(), and forgets it. */
  take(): Uint8Array {
    const all = new Uint8Array(Buffer.concat(this.sent));
    this.sent = [];
    this.queued = 0;
    return all;
  }

  /** take() decoded as UTF-8. */
  takeText(): string {
    return new TextDecoder().decode(this.take());
  }

  /** The connect succeeded: tcpmod_on_upstream CONNECTED. */
  accept(): SendResult {
    this.expect('connecting', 'accept');
    this.state = 'open';
    return this.conn.upstreamEvent(this, UPSTREAM.CONNECTED, new Uint8Array(0));
  }

  /** No address connected: tcpmod_on_upstream FAILED (the last call for this handle), `why` for conn_info keys 3 and 4. */
  refuse(why: UpstreamFailure = 'refused'): SendResult {
    this.expect('connecting', 'refuse');
    if (!UPSTREAM_FAILURES.includes(why)) throw new RangeError(`refuse(why): why must be one of ${UPSTREAM_FAILURES.join(', ')}, got ${JSON.stringify(why)}`);
    this.state = 'failed';
    this.failure = why;
    return this.conn.upstreamEvent(this, UPSTREAM.FAILED, new Uint8Array(0));
  }

  /** The upstream sends `bytes`: DATA with the carry-over first, as many calls as the input region needs. */
  reply(bytes: Uint8Array | string): SendResult {
    this.expect('open', 'reply');
    this.awaited = false;
    if (this.ended) throw new Error(`reply(): upstream ${this.name} (handle ${this.handle}) ended its sending side (end())`);
    const data = typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes;
    if (!(data instanceof Uint8Array)) throw new TypeError(`reply(bytes): bytes must be a string or a Uint8Array, got ${typeof bytes}`);
    return this.conn.upstreamEvent(this, UPSTREAM.DATA, data);
  }

  /** The upstream shuts down: what the module still holds goes with CLOSED, the last call for this handle. */
  close(): SendResult {
    this.expect('open', 'close');
    this.state = 'closed';
    return this.conn.upstreamEvent(this, UPSTREAM.CLOSED, new Uint8Array(0));
  }

  /**
   * The host ends it at one of its timeouts (docs/abi.md §16): CLOSED with what the module still
   * holds, the last call for this handle, conn_info key 3 = 2 (timeout) and key 4 the host's text.
   * 'read' (--upstream-read-timeout) only while bytes sent to it are unanswered (sent since its
   * last reply); 'frame' (--upstream-frame-timeout) only while the module holds a carry-over of it.
   * The test says when the time has passed; scripting a timeout the host could not have is an error.
   */
  timeout(kind: 'read' | 'frame' = 'read'): SendResult {
    this.expect('open', 'timeout');
    if (kind !== 'read' && kind !== 'frame') throw new RangeError(`timeout(kind): kind must be 'read' or 'frame', got ${JSON.stringify(kind)}`);
    if (kind === 'read' && !this.awaited) throw new Error(`timeout('read'): nothing was sent to upstream ${this.name} (handle ${this.handle}) since its last reply, so the read timeout cannot fire`);
    if (kind === 'frame' && this.pending.length === 0) throw new Error(`timeout('frame'): the module holds nothing of upstream ${this.name} (handle ${this.handle}), so the frame timeout cannot fire`);
    // Held input is exempt while another upstream of the client is within its own timeouts: connecting, or awaited.
    const busy = kind === 'frame' ? this.conn.upstreams.find((o) => o !== this && (o.state === 'connecting' || (o.state === 'open' && o.awaited))) : undefined;
    if (busy) throw new Error(`timeout('frame'): upstream ${busy.name} (handle ${busy.handle}) of the same client is ${busy.state === 'connecting' ? 'connecting' : 'awaited'}, so what the module holds of ${this.name} is exempt (end ${busy.name} first)`);
    this.state = 'closed';
    this.failure = 'timeout';
    const where = this.host ?? this.name;
    this.failureText = kind === 'read' ? `timeout: no reply within the read timeout (${where})` : `timeout: frame incomplete within the frame timeout (${where})`;
    return this.conn.upstreamEvent(this, UPSTREAM.CLOSED, new Uint8Array(0));
  }

  /**
   * The backend ends its sending side (its FIN): for a module that half-closes (docs/abi.md §20)
   * whose own side to it is still open, EOF with what the module still holds, and the handle stays
   * (it can still be sent to); otherwise as close().
   */
  end(): SendResult {
    this.expect('open', 'end');
    if (this.ended) throw new Error(`end(): upstream ${this.name} (handle ${this.handle}) has ended already`);
    if (this.shutdown || !this.conn.module.instance.halfCloses) return this.close();
    this.ended = true;
    return this.conn.upstreamEvent(this, UPSTREAM.EOF, new Uint8Array(0));
  }

  private expect(state: UpstreamState, what: string): void {
    if (this.conn.closed !== null) throw new Error(`${what}(): connection ${this.conn.id} is closed (${this.conn.closed}), and its upstreams with it`);
    if (this.state !== state) throw new Error(`${what}(): upstream ${this.name} (handle ${this.handle}) is ${this.state}, not ${state}`);
  }
}

/** A connection's upstreams as the host keeps them: open (by handle), at most 8, each name a listed one. */
export class ConnUpstreams {
  /** Every upstream the connection opened, in order (those closed or failed included). */
  readonly all: TestUpstream[] = [];
  /** upstream_resume(conn, 0) asked in this claim: -1 outside on_upstream. */
  clientResume = -1;

  constructor(private readonly conn: TestConn, private readonly names: ReadonlyMap<string, readonly string[]>, private readonly nextHandle: () => number) {}

  /** The live ones (connecting or open). */
  live(): TestUpstream[] {
    return this.all.filter((u) => u.state === 'connecting' || u.state === 'open');
  }

  find(handle: number): TestUpstream | null {
    return this.live().find((u) => u.handle === handle) ?? null;
  }

  open(name: string): number {
    // NAME#I: address I of NAME alone (docs/abi.md §16), known when loadModule listed NAME's addresses.
    const hash = name.indexOf('#');
    const base = hash < 0 ? name : name.slice(0, hash);
    const index = hash < 0 ? 0 : /^[0-9]{1,3}$/.test(name.slice(hash + 1)) ? Number(name.slice(hash + 1)) : -1;
    if (!this.names.has(base) || index < 0 || (hash >= 0 && index >= this.names.get(base)!.length)) return UPSTREAM_UNKNOWN;
    if (this.live().length >= MAX_UPSTREAMS_PER_CONN) return UPSTREAM_TOO_MANY;
    const u = new TestUpstream(this.conn, name, this.nextHandle());
    const addr = this.names.get(base)![index];
    if (addr !== undefined) u.host = addr.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
    this.all.push(u);
    return u.handle;
  }

  send(handle: number, bytes: Uint8Array): number {
    const u = this.find(handle);
    if (!u) return UPSTREAM_UNKNOWN;
    if (u.shutdown) return UPSTREAM_SHUT;
    if (u.queued + bytes.length > DEFAULTS.maxOutputBuffer) return UPSTREAM_FULL;
    u.sent.push(bytes);
    u.queued += bytes.length;
    if (bytes.length > 0) u.awaited = true;
    return 0;
  }

  close(handle: number): number {
    const u = this.find(handle);
    if (!u) return UPSTREAM_UNKNOWN;
    u.state = 'dropped';
    return 0;
  }

  /** upstream_shutdown: the module's sending side to it ends after what it sent (docs/abi.md §20). */
  shutdown(handle: number): number {
    const u = this.find(handle);
    if (!u || u.state !== 'open' && u.state !== 'connecting') return UPSTREAM_UNKNOWN;
    u.shutdown = true;
    return 0;
  }

  resume(handle: number): number {
    if (handle === 0) {
      if (this.clientResume < 0) return -1;
      this.clientResume = 1;
      return 0;
    }
    const u = this.find(handle);
    if (!u) return UPSTREAM_UNKNOWN;
    u.reoffer = true;
    return 0;
  }

  /** The client closed: its upstreams go without events. */
  drop(): void {
    for (const u of this.live()) u.state = 'dropped';
  }
}
