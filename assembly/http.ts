// HTTP/1.1 server module.
//
// Routes:
//   GET|HEAD /            -> 200 "Hello, World!" (text/plain)
//   GET|HEAD /whoami      -> 200 the client's address, IP:PORT or [IPv6]:PORT and a newline
//                            (text/plain; tcpmod.peer_addr: behind a PROXY-protocol
//                            balancer, the address its header carried)
//   GET|HEAD /kv/<key>    -> 200 the stored bytes (application/octet-stream), or 404
//   PUT /kv/<key>         -> 201 Created when the key was new, 200 (empty body) when it
//                            was replaced; 507 when the store is full
//   DELETE /kv/<key>      -> 200 (empty body), or 404 when missing
//   any /kv/ route        -> 503 when the store is unavailable (ABI v1.1 KV_UNAVAILABLE:
//                            a remote store down or timed out; nothing changed)
//   other methods on those paths -> 405 with Allow; other paths -> 404
// The key is the raw bytes of the path after "/kv/" up to any '?' (no
// percent-decoding; '/' is allowed). Query strings are ignored.
//
// Framing decisions (the parser is in http/parser.ts):
// - A request head is at most 8 KiB (MAX_HEAD): a request line that does not
//   end within it gets 414, any other oversized head 431; malformed heads 400,
//   an HTTP major version other than 1 gets 505, a Transfer-Encoding other than
//   "chunked" 501. All of these are answered with `Connection: close` and the
//   connection closes (the rest of the stream cannot be framed any more).
// - Bodies (Content-Length or chunked, extensions and trailers skipped) are
//   limited to MAX_BODY = 1 MiB of data; more gets 413 and a close. A
//   Content-Length over the limit is refused as soon as the head is in.
// - in_cap is 2 MiB: any request within the limits fits in the input region
//   whole (8 KiB head + 1 MiB body), and the remaining 1 MiB - 8 KiB leaves room
//   for chunked framing overhead. A chunked request whose *wire* size still
//   fills the region before it completes gets 413 instead of the host's
//   overflow close. Keeping requests whole in the host-held input is what lets
//   the body be stored with one kv_set: a module instance may not keep bytes
//   between calls (the ABI lets any instance take the next event).
// - The state slot holds parse progress while a body arrives (see ST_*), so a
//   body trickling in over many calls costs time proportional to its size, not
//   its size squared. The head is re-parsed on each call until it is complete;
//   that is bounded by 8 KiB per call.
// - Keep-alive: HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
//   `Connection: keep-alive` (then echoed). Once the server drains (a graceful
//   stop), every answer says `Connection: close` and the connection closes. Pipelined requests are answered in
//   order, as many per call as are complete. At EOF, complete requests are
//   answered and the connection closes.
// - `Expect: 100-continue` on an HTTP/1.1 request with a body acceptable by
//   its framing gets one interim "100 Continue" as soon as the head is in
//   (also when the body already came with it: RFC 9110 §10.1.1 allows either,
//   and answering the same way whatever the packet boundaries keeps the output
//   independent of them).
// - Every final response has Server, Date and Content-Length. That is why
//   replace and delete answer 200 with an empty body rather than 204, which
//   RFC 9110 §8.6 forbids to carry Content-Length.
// - GET of a value longer than MAX_VALUE (only possible when another module
//   stored it; PUT here is capped at MAX_BODY) gets 500: the value is read
//   through one scratch buffer allocated at start.
//
// Memory: the regions, the scratch buffer and the static response bytes are
// reserved once during _initialize; handling a request allocates nothing.

import { Conn, Action, configure, nowMs, kv_get, kv_set, kv_del, KV_UNAVAILABLE } from "tcpmod/assembly/sdk";
export * from "tcpmod/assembly/sdk/exports";
import { DATE_LEN, formatImfDate } from "./http/date";
import {
  MAX_HEAD, PARSE_BAD, PARSE_MORE, PARSE_TOO_LARGE,
  parseHead, scanChunks, decodeChunks, equalsLower,
  methodOff, methodLen, targetOff, targetLen, versionMinor, contentLength,
  chunkedCount, teOther, connClose, connKeepAlive, hostCount, expectContinue,
  badStatus, inRequestLine, chunkPos, chunkDecoded,
} from "./http/parser";

const MAX_BODY: i32 = 1 << 20;
const MAX_VALUE: i32 = MAX_BODY;
const IN_CAP: i32 = 2 << 20;
const OUT_CAP: i32 = 64 << 10;
const STATE_SIZE: i32 = 32;

/** Chunked bodies are decoded here, and GET values read here. */
const SCRATCH: usize = heap.alloc(<usize>MAX_BODY);

// ---- the state slot: progress of a request whose head is in but body is not ----
// Offsets are relative to the start of that request, which is always the start
// of the input: requests are consumed whole, so the host hands the partial one
// back first. Zeroed by the host for a new connection (= PHASE_NONE).
const ST_PHASE = 0;     // u8: PHASE_NONE or PHASE_BODY
const ST_KIND = 1;      // u8: BODY_LENGTH or BODY_CHUNKED
const ST_HEAD_LEN = 4;  // u32: bytes of the request head
const ST_LENGTH = 8;    // u32: Content-Length
const ST_CHUNK_POS = 12; // u32: offset of the first chunk not yet complete
const ST_DECODED = 16;  // u32: data bytes in the chunks before it
const PHASE_NONE: u8 = 0;
const PHASE_BODY: u8 = 1;

const BODY_NONE: i32 = 0;
const BODY_LENGTH: i32 = 1;
const BODY_CHUNKED: i32 = 2;

const M_OTHER = 0;
const M_GET = 1;
const M_HEAD = 2;
const M_PUT = 3;
const M_DELETE = 4;

const CT_NONE = 0;
const CT_TEXT = 1;
const CT_OCTET = 2;

const ALLOW_NONE = 0;
const ALLOW_ROOT = 1;
const ALLOW_KV = 2;
const ALLOW_WHOAMI = ALLOW_ROOT;

const CONN_NONE = 0;
const CONN_CLOSE = 1;
const CONN_KEEP_ALIVE = 2;

// handleRequest results other than a byte count.
const NEED_MORE: i32 = 0;
const CLOSE: i32 = -1;

// ---- static response bytes (filled once at start; the Date is patched in place) ----

function putAscii(dst: usize, s: string): i32 {
  for (let i = 0; i < s.length; i++) store<u8>(dst + <usize>i, <u8>s.charCodeAt(i));
  return s.length;
}

/** "Server: tcpmod\r\nDate: <IMF-fixdate>\r\n": the headers every response starts with. */
const COMMON: usize = memory.data(64);
let commonLen: i32 = 0;
let commonDateOff: i32 = 0;
/** The whole keep-alive answer to GET / (HEAD / sends its first hotHeadLen bytes). */
const HOT: usize = memory.data(256);
let hotLen: i32 = 0;
let hotHeadLen: i32 = 0;
let hotDateOff: i32 = 0;
/** The path of an absolute-form target without a path ("http://host"). */
const SLASH: usize = memory.data(1);
const HELLO = "Hello, World!";
let cachedSec: i64 = -1;

{
  let n = putAscii(COMMON, "Server: tcpmod\r\nDate: ");
  commonDateOff = n;
  n += DATE_LEN;
  n += putAscii(COMMON + <usize>n, "\r\n");
  commonLen = n;
  formatImfDate(0, COMMON + <usize>commonDateOff);

  n = putAscii(HOT, "HTTP/1.1 200 OK\r\n");
  hotDateOff = n + commonDateOff;
  memory.copy(HOT + <usize>n, COMMON, <usize>commonLen);
  n += commonLen;
  n += putAscii(HOT + <usize>n, "Content-Type: text/plain\r\nContent-Length: 13\r\n\r\n");
  hotHeadLen = n;
  n += putAscii(HOT + <usize>n, HELLO);
  hotLen = n;
  store<u8>(SLASH, 0x2F);
}

/** Re-formats the Date when the second changed since the last call; one clock read per call. */
function refreshDate(): void {
  let ms = nowMs();
  if (!(ms >= 0)) ms = 0;        // NaN or before 1970: never trap on the conversion below
  if (ms > 1e15) ms = 1e15;      // keeps the i64 conversion in range; the formatter clamps to year 9999
  const sec = <i64>(ms / 1000);
  if (sec == cachedSec) return;
  cachedSec = sec;
  formatImfDate(sec, COMMON + <usize>commonDateOff);
  memory.copy(HOT + <usize>hotDateOff, COMMON + <usize>commonDateOff, <usize>DATE_LEN);
}

function reason(status: i32): string {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
  }
  return "Unknown";
}

// Per-request response facts, set before anything is written for the request.
let respConn: i32 = CONN_NONE;
let respHeadOnly: bool = false;

/** Status line, common headers, the optional ones, and the empty line.
 *  Every final response carries Content-Length. */
function writeHead(c: Conn, status: i32, ctype: i32, length: i32, allow: i32): void {
  c.writeString("HTTP/1.1 ");
  c.writeInt(status);
  c.writeByte(0x20);
  c.writeString(reason(status));
  c.writeString("\r\n");
  c.write(COMMON, commonLen);
  if (ctype == CT_TEXT) c.writeString("Content-Type: text/plain\r\n");
  else if (ctype == CT_OCTET) c.writeString("Content-Type: application/octet-stream\r\n");
  c.writeString("Content-Length: ");
  c.writeInt(length);
  c.writeString("\r\n");
  if (allow == ALLOW_ROOT) c.writeString("Allow: GET, HEAD\r\n");
  else if (allow == ALLOW_KV) c.writeString("Allow: GET, HEAD, PUT, DELETE\r\n");
  if (respConn == CONN_CLOSE) c.writeString("Connection: close\r\n");
  else if (respConn == CONN_KEEP_ALIVE) c.writeString("Connection: keep-alive\r\n");
  c.writeString("\r\n");
}

/** A response whose body is its reason phrase and a newline. */
function statusResponse(c: Conn, status: i32, allow: i32 = ALLOW_NONE): void {
  const text = reason(status);
  writeHead(c, status, CT_TEXT, text.length + 1, allow);
  if (!respHeadOnly) {
    c.writeString(text);
    c.writeByte(0x0A);
  }
}

/** Answers with `status` and `Connection: close`; the connection then closes. */
function fail(c: Conn, status: i32): i32 {
  respConn = CONN_CLOSE;
  statusResponse(c, status);
  return CLOSE;
}

function methodCode(p: usize, len: i32): i32 {
  const b0 = load<u8>(p);
  if (len == 3) {
    if (b0 == 0x47 && load<u8>(p, 1) == 0x45 && load<u8>(p, 2) == 0x54) return M_GET;
    if (b0 == 0x50 && load<u8>(p, 1) == 0x55 && load<u8>(p, 2) == 0x54) return M_PUT;
  } else if (len == 4) {
    if (b0 == 0x48 && load<u8>(p, 1) == 0x45 && load<u8>(p, 2) == 0x41 && load<u8>(p, 3) == 0x44) return M_HEAD;
  } else if (len == 6 && b0 == 0x44) {
    if (load<u8>(p, 1) == 0x45 && load<u8>(p, 2) == 0x4C && load<u8>(p, 3) == 0x45 &&
        load<u8>(p, 4) == 0x54 && load<u8>(p, 5) == 0x45) return M_DELETE;
  }
  return M_OTHER;
}

/** Framing rules of RFC 9112 §6 that need the whole head; 0 or the status to fail with. */
function checkFraming(): i32 {
  if (chunkedCount > 0 || teOther) {
    if (versionMinor == 0) return 400;     // Transfer-Encoding in HTTP/1.0 is faulty framing
    if (teOther) return 501;               // a coding this server does not implement
    if (chunkedCount > 1) return 400;      // chunked applied twice
    if (contentLength >= 0) return 400;    // both framings: refuse rather than guess
  }
  if (hostCount > 1 || (versionMinor >= 1 && hostCount == 0)) return 400;
  return 0;
}

// The path of the request target: set by findPath.
let pathPtr: usize = 0;
let pathLen: i32 = 0;

/** Origin-form ("/p?q") or absolute-form ("http://host/p?q"); the query is
 *  dropped. False for any other form (authority-form, "*", garbage). */
function findPath(t: usize, len: i32): bool {
  let start = 0;
  if (load<u8>(t) != 0x2F) {
    let skip = 0;
    if (len >= 7 && equalsLower(t, 7, "http://")) skip = 7;
    else if (len >= 8 && equalsLower(t, 8, "https://")) skip = 8;
    else return false;
    start = skip;
    while (start < len) {
      const b = load<u8>(t + <usize>start);
      if (b == 0x2F || b == 0x3F) break;
      start++;
    }
    if (start == skip) return false;  // no authority
    if (start == len || load<u8>(t + <usize>start) == 0x3F) {
      pathPtr = SLASH;
      pathLen = 1;
      return true;
    }
  }
  let stop = start;
  while (stop < len && load<u8>(t + <usize>stop) != 0x3F) stop++;
  pathPtr = t + <usize>start;
  pathLen = stop - start;
  return true;
}

/**
 * Handles the request at the front of [p, p + n): its head, its body, and the
 * answer. Returns the request's length when it was answered and the
 * connection stays open, NEED_MORE when it is incomplete (progress saved in
 * the state slot), or CLOSE when it was answered and the connection must
 * close. `full` says the input region is full, so no more bytes can arrive
 * before something is consumed.
 */
function handleRequest(c: Conn, p: usize, n: i32, full: bool): i32 {
  const st = c.state;
  respConn = CONN_NONE;
  respHeadOnly = false;
  let headLen: i32 = 0;
  let kind: i32 = BODY_NONE;
  let length: i32 = 0;
  let chunkAt: i32 = 0;
  let decoded: i32 = 0;
  const resumed = load<u8>(st, ST_PHASE) == PHASE_BODY && savedStateFits(st, n);
  if (resumed) {
    headLen = <i32>load<u32>(st, ST_HEAD_LEN);
    kind = <i32>load<u8>(st, ST_KIND);
    length = <i32>load<u32>(st, ST_LENGTH);
    chunkAt = <i32>load<u32>(st, ST_CHUNK_POS);
    decoded = <i32>load<u32>(st, ST_DECODED);
  } else {
    store<u8>(st, PHASE_NONE, ST_PHASE);
    const h = parseHead(p, n);
    if (h == PARSE_MORE) {
      if (n < MAX_HEAD) return NEED_MORE;
      return fail(c, inRequestLine ? 414 : 431);
    }
    if (h == PARSE_BAD) return fail(c, badStatus);
    respHeadOnly = methodCode(p + <usize>methodOff, methodLen) == M_HEAD;
    const framing = checkFraming();
    if (framing != 0) return fail(c, framing);
    headLen = h;
    if (chunkedCount > 0) {
      kind = BODY_CHUNKED;
      chunkAt = headLen;
    } else if (contentLength > 0) {
      if (contentLength > <i64>MAX_BODY) return fail(c, 413);
      kind = BODY_LENGTH;
      length = <i32>contentLength;
    }
    if (kind != BODY_NONE && expectContinue && versionMinor >= 1) c.writeString("HTTP/1.1 100 Continue\r\n\r\n");
  }

  let end = headLen;
  if (kind == BODY_LENGTH) {
    if (n - headLen < length) {
      saveBody(st, headLen, kind, length, 0, 0);
      // The request's length is known: let the host collect the body without calling again.
      c.want(headLen + length);
      return NEED_MORE;
    }
    end = headLen + length;
  } else if (kind == BODY_CHUNKED) {
    const r = scanChunks(p, n, chunkAt, decoded, MAX_BODY);
    if (r == PARSE_MORE) {
      // The wire form (data plus framing) outgrew the region before the body ended.
      if (full) return fail(c, 413);
      saveBody(st, headLen, kind, 0, chunkPos, chunkDecoded);
      return NEED_MORE;
    }
    if (r == PARSE_TOO_LARGE) return fail(c, 413);
    if (r == PARSE_BAD) return fail(c, 400);
    end = r;
  }
  store<u8>(st, PHASE_NONE, ST_PHASE);
  // After a resume the head's fields are gone with the previous call; the bytes are the same.
  if (resumed && parseHead(p, headLen) != headLen) return fail(c, 400);
  return answer(c, p, headLen, end, kind);
}

function saveBody(st: usize, headLen: i32, kind: i32, length: i32, chunkAt: i32, decoded: i32): void {
  store<u8>(st, PHASE_BODY, ST_PHASE);
  store<u8>(st, <u8>kind, ST_KIND);
  store<u32>(st, <u32>headLen, ST_HEAD_LEN);
  store<u32>(st, <u32>length, ST_LENGTH);
  store<u32>(st, <u32>chunkAt, ST_CHUNK_POS);
  store<u32>(st, <u32>decoded, ST_DECODED);
}

/** The saved progress is consistent with `n` input bytes (it always is with an
 *  honest host; otherwise the request is parsed from scratch). */
function savedStateFits(st: usize, n: i32): bool {
  const headLen = load<u32>(st, ST_HEAD_LEN);
  const kind = <i32>load<u8>(st, ST_KIND);
  if (headLen == 0 || headLen > <u32>MAX_HEAD || headLen > <u32>n) return false;
  if (kind == BODY_LENGTH) return load<u32>(st, ST_LENGTH) <= <u32>MAX_BODY;
  if (kind == BODY_CHUNKED) {
    const at = load<u32>(st, ST_CHUNK_POS);
    return at >= headLen && at <= <u32>n && load<u32>(st, ST_DECODED) <= <u32>MAX_BODY;
  }
  return false;
}

/** Routes a complete request (head fields from the last parseHead) and writes the answer. */
function answer(c: Conn, p: usize, headLen: i32, end: i32, kind: i32): i32 {
  // A server that is stopping answers this request and closes (ABI v1.1 draining).
  const keep = (versionMinor >= 1 ? !connClose : connKeepAlive && !connClose) && !c.draining;
  const m = methodCode(p + <usize>methodOff, methodLen);
  respHeadOnly = m == M_HEAD;
  respConn = !keep ? CONN_CLOSE : versionMinor == 0 ? CONN_KEEP_ALIVE : CONN_NONE;
  if (!findPath(p + <usize>targetOff, targetLen)) return fail(c, 400);

  if (pathLen == 1) {
    if (m == M_GET || m == M_HEAD) {
      if (respConn == CONN_NONE) {
        // The hot path: one precomputed response with the cached Date.
        c.write(HOT, m == M_GET ? hotLen : hotHeadLen);
      } else {
        writeHead(c, 200, CT_TEXT, HELLO.length, ALLOW_NONE);
        if (m == M_GET) c.writeString(HELLO);
      }
    } else {
      statusResponse(c, 405, ALLOW_ROOT);
    }
  } else if (pathLen == 7 && memory.compare(pathPtr, WHOAMI, 7) == 0) {
    whoami(c, m);
  } else if (pathLen > 4 && load<u32>(pathPtr) == 0x2F766B2F) { // "/kv/" little-endian
    kvRoute(c, m, pathPtr + 4, pathLen - 4, p, headLen, end, kind);
  } else {
    statusResponse(c, 404);
  }
  return keep ? end : CLOSE;
}

/** The path of the client-address route. */
const WHOAMI: usize = memory.data<u8>([0x2F, 0x77, 0x68, 0x6F, 0x61, 0x6D, 0x69]); // "/whoami"
/** Longest address peer_addr writes is an IPv6 one with a zone and a port, well under this. */
const ADDR_CAP: i32 = 128;

function whoami(c: Conn, m: i32): void {
  if (m != M_GET && m != M_HEAD) return statusResponse(c, 405, ALLOW_WHOAMI);
  const n = c.peerAddress(SCRATCH, ADDR_CAP);
  if (n < 0) return statusResponse(c, 500);
  store<u8>(SCRATCH + <usize>n, 0x0A);
  writeHead(c, 200, CT_TEXT, n + 1, ALLOW_NONE);
  if (m == M_GET) c.write(SCRATCH, n + 1);
}

function kvRoute(c: Conn, m: i32, key: usize, keyLen: i32, p: usize, headLen: i32, end: i32, kind: i32): void {
  if (m == M_GET || m == M_HEAD) {
    // HEAD asks for the length only (capacity 0 copies nothing).
    const n = kv_get(key, keyLen, SCRATCH, m == M_HEAD ? 0 : MAX_VALUE);
    if (n == KV_UNAVAILABLE) return statusResponse(c, 503);
    if (n < 0) return statusResponse(c, 404);
    if (n > MAX_VALUE) return statusResponse(c, 500);
    writeHead(c, 200, CT_OCTET, n, ALLOW_NONE);
    if (m == M_GET) c.write(SCRATCH, n);
  } else if (m == M_PUT) {
    let body = p + <usize>headLen;
    let bodyLen = end - headLen;
    if (kind == BODY_CHUNKED) {
      bodyLen = decodeChunks(p, headLen, end, SCRATCH, MAX_BODY);
      if (bodyLen < 0) return statusResponse(c, 500);
      body = SCRATCH;
    }
    // New or replaced is decided by a look-up just before the store; two
    // clients creating the same key at once may both be told 201.
    const before = kv_get(key, keyLen, SCRATCH, 0);
    if (before == KV_UNAVAILABLE) return statusResponse(c, 503);
    const existed = before >= 0;
    const rc = kv_set(key, keyLen, body, bodyLen);
    if (rc == KV_UNAVAILABLE) return statusResponse(c, 503);
    if (rc == -2) return statusResponse(c, 507);
    if (existed) writeHead(c, 200, CT_NONE, 0, ALLOW_NONE);
    else writeHead(c, 201, CT_NONE, 0, ALLOW_NONE);
  } else if (m == M_DELETE) {
    const rc = kv_del(key, keyLen);
    if (rc == 1) writeHead(c, 200, CT_NONE, 0, ALLOW_NONE);
    else if (rc == KV_UNAVAILABLE) statusResponse(c, 503);
    else statusResponse(c, 404);
  } else {
    statusResponse(c, 405, ALLOW_KV);
  }
}

/** Bytes of replies after which one call stops answering pipelined requests. */
const YIELD_AFTER: i32 = 1 << 20;

function onData(c: Conn): Action {
  refreshDate();
  const total = c.inputLen;
  let pos = 0;
  while (pos < total) {
    const r = handleRequest(c, c.input + <usize>pos, total - pos, pos == 0 && total == IN_CAP);
    if (r == CLOSE) {
      c.consume(total);
      return Action.Close;
    }
    if (r == NEED_MORE) break;
    pos += r;
    // A failed send means the rest would go unanswered: stop (the SDK turns the call into Abort).
    if (c.failed) break;
    // Large replies (GET of big values, pipelined): answer the rest in later calls, so the
    // host can hold them back while the client has not taken these (queued output).
    if (c.written >= YIELD_AFTER) break;
  }
  c.consume(pos);
  // At EOF nothing more will complete a partial request; all complete ones were answered.
  return c.eof ? Action.Close : Action.Continue;
}

// Last, after every global above is declared: AssemblyScript compiles onData
// where it is first referenced, and top-level code runs in order.
configure(IN_CAP, OUT_CAP, STATE_SIZE, onData);
