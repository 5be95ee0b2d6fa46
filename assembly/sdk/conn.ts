// The connection being handled by the current callback, and its output path.
//
// A single static Conn stands for "the current call": callbacks never overlap
// inside one instance, so per-call facts live in module globals that
// beginCall() resets, and the Conn object itself is a zero-field unmanaged
// value in static data (no allocation, nothing for the GC to track). Authors
// must not keep a Conn, pointers into the regions, or state across calls: the
// host owns everything between calls.

import { conn_info, host_draining, host_peer_addr, host_send, host_set_timer, host_upstream_close, host_upstream_open, host_upstream_resume, host_upstream_send, host_upstream_shutdown, host_shutdown_output, host_want } from "./abi";
import { fail } from "./fail";
import { inPtr, outPtr, outCap, statePtr, stateSize, RESULT } from "./regions";
import { encodeUtf8 } from "./utf8";
import { decimalLengthU64, formatU64 } from "./decimal";
import { kv_send, KV_NOT_SENT } from "./kv";

/** What the host does after a callback. */
export enum Action {
  /** Send the output, keep unconsumed input, wait for more. */
  Continue = 0,
  /** Send the output, then close. */
  Close = 1,
  /** Close at once, dropping the output. */
  Abort = 2,
}

/** Why a connection ended (the `reason` passed to the close hook). */
export enum CloseReason {
  PeerClosed = 0,
  ModuleAsked = 1,
  SocketError = 2,
  Overflow = 3,
  SendTimeout = 4,
  Shutdown = 5,
  Fault = 6,
  /** v1.1: the connection's read or frame timeout expired. */
  Timeout = 7,
  /** v1.1: a TLS record failed. */
  Tls = 8,
}

/** Bit 0 of the on_data flags: the peer will send nothing more. */
export const FLAG_EOF: i32 = 1;

let curId: i32 = 0;
let curLen: i32 = 0;
let curFlags: i32 = 0;
let consumed: i32 = 0;
let outLen: i32 = 0;
// Bytes handed to tcpmod.send during this call (the out region's are in outLen).
let spilled: i32 = 0;
// Output is accepted only inside on_open/on_data and until a send fails;
// otherwise writes are dropped (on_close output is ignored by the host anyway).
let writable: bool = false;
let sendFailed: bool = false;

/** Starts a callback: resets the per-call bookkeeping. */
export function beginCall(id: i32, inLen: i32, flags: i32, canWrite: bool): void {
  curId = id;
  curLen = inLen;
  curFlags = flags;
  consumed = 0;
  outLen = 0;
  spilled = 0;
  writable = canWrite;
  sendFailed = false;
}

/** Ends an on_open/on_data callback: fills the result record and returns the
 *  action for the host. A failed `tcpmod.send` turns any action into Abort, as
 *  the ABI asks, because part of the output is lost. */
export function endCall(action: Action): i32 {
  store<u32>(RESULT, <u32>consumed, 0);
  store<u32>(RESULT, <u32>outLen, 4);
  writable = false;
  return sendFailed ? Action.Abort : action;
}

function sendNow(ptr: usize, len: i32): void {
  spilled += len;
  if (host_send(curId, ptr, len) < 0) {
    sendFailed = true;
    writable = false;
  }
}

/** Hands the buffered out region to the host now (keeps output in order). */
function flushOut(): void {
  if (outLen > 0) {
    const n = outLen;
    outLen = 0;
    sendNow(outPtr, n);
  }
}

/** The connection being handled. Obtain it only as a callback argument. */
@final @unmanaged
export class Conn {
  /** Connection id, unique for the server's lifetime (not a file descriptor). */
  get id(): i32 { return curId; }
  /** Address of the input bytes (unconsumed leftovers first, then new data). */
  get input(): usize { return inPtr; }
  /** Number of input bytes at `input`. */
  get inputLen(): i32 { return curLen; }
  /** Raw flags of this call (bit 0 = EOF). */
  get flags(): i32 { return curFlags; }
  /** True when the peer closed its sending side: no more input will follow. */
  get eof(): bool { return (curFlags & FLAG_EOF) != 0; }
  /** Bytes consumed so far in this call. */
  get consumed(): i32 { return consumed; }
  /** Address of the per-connection state slot (0 when stateSize is 0). The host
   *  saves it after each call and restores it before the next one. */
  get state(): usize { return statePtr; }
  /** Size of the state slot in bytes, as passed to configure(). */
  get stateSize(): i32 { return stateSize; }
  /** True once a `tcpmod.send` failed in this call; the call will end with Abort. */
  get failed(): bool { return sendFailed; }

  /** Bytes written in this call so far (sent through tcpmod.send and in the out region). A module
   *  that answers many pipelined requests in one call can stop after a few MiB, leaving the rest
   *  unconsumed: the host calls again once the client has taken the replies. */
  get written(): i32 { return spilled + outLen; }

  /** Arms this connection's timer to fire in `ms` milliseconds (1..86,400,000), replacing any;
   *  the timer handler (setOnTimer) runs then. False when the host refused. */
  setTimer(ms: i32): bool { return host_set_timer(curId, ms) == 0; }

  /** A hint: call the data handler again only once `n` bytes of input are pending (counting from
   *  the first byte not consumed), the input region is full, or the peer finished. Use it when a
   *  frame's length is known (a Content-Length body, a RESP bulk string): the host then collects
   *  the bytes without calling the module. The handler must still cope with being called earlier. */
  want(n: i32): void { host_want(curId, n); }

  /** v1.2: opens the upstream the operator named `name` (--upstream NAME=…) for this connection:
   *  a handle > 0, whose CONNECTED or FAILED comes to the upstream handler (setOnUpstream); or
   *  UPSTREAM_UNKNOWN, UPSTREAM_TOO_MANY, UPSTREAM_UNAVAILABLE. */
  openUpstream(name: string): i32 {
    const bytes = String.UTF8.encode(name);
    return host_upstream_open(curId, changetype<usize>(bytes), bytes.byteLength);
  }
  /** v1.2: queues `len` bytes at `ptr` for upstream `up`, in order: 0, -1 (no such upstream) or
   *  UPSTREAM_FULL (nothing taken: its queue is at the bound; try again later). */
  sendUpstream(up: i32, ptr: usize, len: i32): i32 { return host_upstream_send(curId, up, ptr, len); }
  /** v1.2: closes upstream `up` at once; nothing more is reported for it. */
  closeUpstream(up: i32): i32 { return host_upstream_close(curId, up); }
  /** v1.2: the module waits no more for what it left unconsumed of upstream `up`: those bytes come
   *  again (UPSTREAM_DATA) after this call, even if nothing new arrives (e.g. a reply held until an
   *  earlier one was answered). With up = 0, from the upstream handler only: the client's unconsumed
   *  input comes again to the data handler. True when accepted. */
  resumeUpstream(up: i32): bool { return host_upstream_resume(curId, up) == 0; }
  /** v1.2 (§20): ends the sending side to upstream `up` once what is queued for it has gone (the
   *  backend reads EOF); its DATA and end still come. A module using it keeps a connection after the
   *  client's EOF when it returns Continue. True when accepted. */
  shutdownUpstream(up: i32): bool { return host_upstream_shutdown(curId, up) == 0; }
  /** v1.2 (§20): ends the sending side to the client after this call's output and what is queued
   *  (the client reads EOF); its input still comes. Output given in later calls is discarded. */
  shutdownOutput(): bool { return host_shutdown_output(curId) == 0; }

  /** Cancels this connection's timer (a firing not yet delivered included). */
  cancelTimer(): void { host_set_timer(curId, 0); }

  /** True once the server has begun a graceful stop: finish the exchange and close. */
  get draining(): bool { return host_draining() == 1; }

  /** Writes the client's address (`IP:PORT`, `[IPv6]:PORT`) at `out`; returns its length, or -2
   *  when `cap` is too small. */
  peerAddress(out: usize, cap: i32): i32 { return host_peer_addr(curId, out, cap); }

  /** True when the host terminates TLS for this connection (the module sees plaintext either way). */
  get tls(): bool { return conn_info(curId, 0, 0, 0) == 1; }

  /** True when the client presented a certificate that verified against the server's CA (mutual TLS). */
  get clientCertificate(): bool { return conn_info(curId, 2, 0, 0) == 1; }

  /** Writes the ALPN protocol the TLS handshake chose (e.g. "http/1.1") at `out`; returns its length,
   *  0 when none was negotiated, or -2 when `cap` is too small. */
  alpn(out: usize, cap: i32): i32 { return conn_info(curId, 1, out, cap); }

  /** Input byte `i` (0 <= i < inputLen); out of range is a module fault. */
  @inline byte(i: i32): u8 {
    if (<u32>i >= <u32>curLen) fail("tcpmod sdk: Conn.byte() index out of range");
    return load<u8>(inPtr + <usize>i);
  }

  /** Index of the first input byte equal to `b` at or after `from`, or -1. */
  indexOf(b: u8, from: i32 = 0): i32 {
    for (let i = max(from, 0); i < curLen; i++) {
      if (load<u8>(inPtr + <usize>i) == b) return i;
    }
    return -1;
  }

  /** Marks `n` more input bytes as handled. The total may not exceed inputLen.
   *  Bytes not consumed are handed back on the next call; consuming nothing and
   *  returning Continue means "wait for more input". */
  consume(n: i32): void {
    if (n < 0 || n > curLen - consumed) fail("tcpmod sdk: consume() past the end of input");
    consumed += n;
  }

  /** Appends `len` bytes from `ptr`. Output that does not fit in the out region
   *  is flushed through `tcpmod.send`, so any length works. */
  write(ptr: usize, len: i32): void {
    if (len < 0) fail("tcpmod sdk: write() with a negative length");
    if (!writable || len == 0) return;
    if (len <= outCap - outLen) {
      memory.copy(outPtr + <usize>outLen, ptr, <usize>len);
      outLen += len;
      return;
    }
    flushOut();
    if (!writable) return;
    if (len > outCap) {
      // Larger than the whole region: send straight from the caller's buffer.
      sendNow(ptr, len);
      return;
    }
    memory.copy(outPtr, ptr, <usize>len);
    outLen = len;
  }

  /** Appends one byte. */
  writeByte(b: u8): void {
    if (!writable) return;
    if (outLen == outCap) {
      flushOut();
      if (!writable) return;
    }
    store<u8>(outPtr + <usize>outLen, b);
    outLen += 1;
  }

  /** Appends `s` encoded as UTF-8 (ASCII stays one byte a character). */
  writeString(s: string): void {
    const len = s.length;
    let i = 0;
    while (writable) {
      const r = encodeUtf8(s, i, outPtr + <usize>outLen, outCap - outLen);
      outLen += <i32>(r & 0xFFFFFFFF);
      i = <i32>(r >>> 32);
      if (i >= len) break;
      flushOut();
    }
  }

  /** Appends `n` in decimal ASCII (a leading '-' when negative). */
  writeInt(n: i64): void {
    if (n < 0) this.writeByte(0x2D);
    // Negating i64.MIN_VALUE wraps to itself, whose u64 reading is the right magnitude.
    this.writeU64(n < 0 ? <u64>(-n) : <u64>n);
  }

  /** Appends `u` in decimal ASCII, read as unsigned (0 to 18446744073709551615): memcached flags,
   *  CAS values, counters. */
  writeU64(u: u64): void {
    if (!writable) return;
    if (outCap - outLen < decimalLengthU64(u)) {
      flushOut();
      if (!writable) return;
    }
    outLen += formatU64(outPtr + <usize>outLen, u);
  }

  /** Takes back the output written since `written` was `mark` (a value read earlier in this call),
   *  when none of it has been handed to the host yet: it is all still in the out region, which
   *  holds the newest bytes. False, and nothing taken back, when some of it has already gone
   *  through tcpmod.send (a flush, a write larger than the region). For answers that turn out
   *  wrong after they were written, e.g. a reply composed from store reads, one of which failed. */
  rewind(mark: i32): bool {
    const drop = spilled + outLen - mark;
    if (mark < 0 || drop < 0) fail("tcpmod sdk: rewind() to a mark past the output written in this call");
    if (drop > outLen) return false;
    outLen -= drop;
    return true;
  }

  /** Sends everything buffered so far now instead of at the end of the call. */
  flush(): void {
    if (writable) flushOut();
  }

  /** Sends `headLen` bytes at `head`, then bytes [offset, offset + len) of the stored value of `key`
   *  (kv_send, docs/abi.md §17): the value goes from the store to the connection without passing
   *  through this memory. What was written before goes first (the out region is flushed).
   *  `version` 0: any; else only that version (KV_EXISTS: nothing was sent, read it again).
   *  The value bytes sent, or kv_send's result code; KV_NOT_SENT ends the call as a failed send. */
  sendStored(key: usize, keyLen: i32, offset: i32, len: i32, version: u64, head: usize, headLen: i32): i32 {
    if (!writable) return KV_NOT_SENT;
    flushOut();
    if (!writable) return KV_NOT_SENT;
    const rc = kv_send(curId, key, keyLen, offset, len, version, head, headLen);
    if (rc >= 0) spilled += headLen + rc;
    else if (rc == KV_NOT_SENT) {
      sendFailed = true;
      writable = false;
    }
    return rc;
  }
}

/** The one Conn value; 8 bytes of static data so its address is never null. */
export const CONN = changetype<Conn>(memory.data(8, 8));
