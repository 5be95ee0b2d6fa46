// HTTP/1.x request framing: the request head and the chunked body coding.
//
// Contracts, shared by every function here:
// - Input is `len` bytes at `buf` in linear memory; nothing is read outside
//   [buf, buf + len), whatever the bytes are (the unit tests feed garbage).
// - Nothing is allocated: results are offsets (relative to `buf`) and flags
//   in module globals, valid until the next call of the same function. The
//   module's callbacks never overlap, so globals are as good as out-params.
// - Results are decided byte by byte, left to right, so the verdict for a
//   prefix never contradicts the verdict for the whole: "bad" on a prefix
//   stays "bad", and "need more" only ever turns into a real answer. That is
//   what makes the module's output independent of how TCP splits the input.
// - The head is looked at only up to MAX_HEAD bytes, so a head that does not
//   end within MAX_HEAD bytes is "too large" no matter what comes later.

/** Longest request head accepted (request line, header lines, final empty line). */
export const MAX_HEAD: i32 = 8192;
/** Longest chunk-size line (size, extensions, line end) accepted. */
export const MAX_CHUNK_LINE: i32 = 4096;

export const PARSE_BAD: i32 = -1;
export const PARSE_MORE: i32 = -2;
/** scanChunks only: the decoded body would exceed the caller's limit. */
export const PARSE_TOO_LARGE: i32 = -3;

const CR: u8 = 13;
const LF: u8 = 10;
const SP: u8 = 32;
const HT: u8 = 9;

/** Content-Length values at or above this are kept as this (they are over any limit). */
export const LENGTH_SATURATED: i64 = 1 << 40;

// ---- results of parseHead (offsets relative to buf) ----
export let methodOff: i32 = 0;
export let methodLen: i32 = 0;
export let targetOff: i32 = 0;
export let targetLen: i32 = 0;
/** The y of HTTP/1.y (only major version 1 parses). */
export let versionMinor: i32 = 0;
/** -1 when absent, else the value (saturated at LENGTH_SATURATED). */
export let contentLength: i64 = -1;
/** Transfer-Encoding header lines whose value is exactly "chunked" (any case). */
export let chunkedCount: i32 = 0;
/** Some Transfer-Encoding header line has another value (e.g. "gzip, chunked"). */
export let teOther: bool = false;
export let connClose: bool = false;
export let connKeepAlive: bool = false;
export let hostCount: i32 = 0;
export let expectContinue: bool = false;
/** With PARSE_BAD: the status to answer (400, or 505 for an HTTP major version other than 1). */
export let badStatus: i32 = 400;
/** With PARSE_MORE: the request line itself is still incomplete. */
export let inRequestLine: bool = false;

// tchar (RFC 9110 §5.6.2): the bytes allowed in methods and field names.
const TCHAR: usize = memory.data(256);
{
  for (let b = 0x30; b <= 0x39; b++) store<u8>(TCHAR + b, 1);
  for (let b = 0x41; b <= 0x5A; b++) store<u8>(TCHAR + b, 1);
  for (let b = 0x61; b <= 0x7A; b++) store<u8>(TCHAR + b, 1);
  const extra = "!#$%&'*+-.^_`|~";
  for (let i = 0; i < extra.length; i++) store<u8>(TCHAR + extra.charCodeAt(i), 1);
}

// @ts-ignore: decorator
@inline function at(buf: usize, i: i32): u8 {
  return load<u8>(buf + <usize>i);
}

// @ts-ignore: decorator
@inline function isTchar(b: u8): bool {
  return load<u8>(TCHAR + <usize>b) != 0;
}

// A byte allowed in a field value: HTAB, SP, VCHAR and obs-text (not CTLs or DEL).
// @ts-ignore: decorator
@inline function isValueByte(b: u8): bool {
  return b >= SP ? b != 0x7F : b == HT;
}

/** Case-insensitive comparison of `len` bytes at `p` with a lower-case ASCII
 *  literal made of letters, digits and '-' (OR-ing 0x20 folds only A-Z onto
 *  a-z among the bytes that can occur here). */
export function equalsLower(p: usize, len: i32, lower: string): bool {
  if (len != lower.length) return false;
  for (let i = 0; i < len; i++) {
    const b = <u32>load<u8>(p + <usize>i);
    const l = <u32>lower.charCodeAt(i);
    if (b != l && ((b | 0x20) != l || l < 0x61 || l > 0x7A)) return false;
  }
  return true;
}

// At a CR or LF that ends a line at `p`: the offset after the line end,
// PARSE_MORE when the LF after a CR has not arrived, PARSE_BAD for a lone CR.
// @ts-ignore: decorator
@inline function afterLineEnd(buf: usize, p: i32, end: i32): i32 {
  if (at(buf, p) == LF) return p + 1;
  if (p + 1 >= end) return PARSE_MORE;
  return at(buf, p + 1) == LF ? p + 2 : PARSE_BAD;
}

function reset(): void {
  methodOff = methodLen = targetOff = targetLen = 0;
  versionMinor = 0;
  contentLength = -1;
  chunkedCount = 0;
  teOther = false;
  connClose = connKeepAlive = false;
  hostCount = 0;
  expectContinue = false;
  badStatus = 400;
  inRequestLine = true;
}

/**
 * Parses the request head at the start of [buf, buf + len).
 * Returns its length in bytes (request line through the empty line) when it
 * is complete and well formed, PARSE_MORE when the bytes so far are a valid
 * beginning, PARSE_BAD (see badStatus) when they cannot start a valid head.
 * Empty lines before the request line are skipped and counted in the length;
 * lines may end in CRLF or a bare LF (RFC 9112 §2.2).
 */
export function parseHead(buf: usize, len: i32): i32 {
  reset();
  const end = len < MAX_HEAD ? len : MAX_HEAD;
  let p = 0;
  let b: u8 = 0;

  // Leading empty lines (RFC 9112 §2.2: a server SHOULD ignore at least one).
  while (p < end) {
    b = at(buf, p);
    if (b != CR && b != LF) break;
    const q = afterLineEnd(buf, p, end);
    if (q < 0) return q;
    p = q;
  }

  // method SP
  methodOff = p;
  while (true) {
    if (p >= end) return PARSE_MORE;
    b = at(buf, p);
    if (b == SP) break;
    if (!isTchar(b)) return PARSE_BAD;
    p++;
  }
  methodLen = p - methodOff;
  if (methodLen == 0) return PARSE_BAD;
  p++;

  // request-target SP: visible ASCII and obs-text; its form is checked by the caller.
  targetOff = p;
  while (true) {
    if (p >= end) return PARSE_MORE;
    b = at(buf, p);
    if (b == SP) break;
    if (b < 0x21 || b == 0x7F) return PARSE_BAD;
    p++;
  }
  targetLen = p - targetOff;
  if (targetLen == 0) return PARSE_BAD;
  p++;

  // "HTTP/" DIGIT "." DIGIT
  const proto = "HTTP/";
  for (let i = 0; i < 5; i++) {
    if (p >= end) return PARSE_MORE;
    if (<i32>at(buf, p) != proto.charCodeAt(i)) return PARSE_BAD;
    p++;
  }
  if (p >= end) return PARSE_MORE;
  b = at(buf, p++);
  if (b < 0x30 || b > 0x39) return PARSE_BAD;
  if (b != 0x31) {
    badStatus = 505;
    return PARSE_BAD;
  }
  if (p >= end) return PARSE_MORE;
  if (at(buf, p++) != 0x2E) return PARSE_BAD;
  if (p >= end) return PARSE_MORE;
  b = at(buf, p++);
  if (b < 0x30 || b > 0x39) return PARSE_BAD;
  versionMinor = <i32>b - 0x30;
  if (p >= end) return PARSE_MORE;
  b = at(buf, p);
  if (b != CR && b != LF) return PARSE_BAD;
  p = afterLineEnd(buf, p, end);
  if (p < 0) return p;
  inRequestLine = false;

  // header lines, then the empty line
  while (true) {
    if (p >= end) return PARSE_MORE;
    b = at(buf, p);
    if (b == CR || b == LF) return afterLineEnd(buf, p, end);
    // A name must start the line: leading whitespace is obsolete line folding
    // (RFC 9112 §5.2), rejected here; so is whitespace before the colon (§5.1).
    const nameOff = p;
    while (true) {
      if (!isTchar(b)) return PARSE_BAD;
      p++;
      if (p >= end) return PARSE_MORE;
      b = at(buf, p);
      if (b == 0x3A) break;
    }
    const nameLen = p - nameOff;
    p++;
    while (true) {
      if (p >= end) return PARSE_MORE;
      b = at(buf, p);
      if (b != SP && b != HT) break;
      p++;
    }
    const valueOff = p;
    while (true) {
      if (b == CR || b == LF) break;
      if (!isValueByte(b)) return PARSE_BAD;
      p++;
      if (p >= end) return PARSE_MORE;
      b = at(buf, p);
    }
    let valueEnd = p;
    while (valueEnd > valueOff) {
      const t = at(buf, valueEnd - 1);
      if (t != SP && t != HT) break;
      valueEnd--;
    }
    p = afterLineEnd(buf, p, end);
    if (p < 0) return p;
    if (!interpret(buf + <usize>nameOff, nameLen, buf + <usize>valueOff, valueEnd - valueOff)) return PARSE_BAD;
  }
  // Not reached (the loop only returns); AssemblyScript's flow analysis wants it.
  return PARSE_BAD;
}

// Records what the server needs from one complete header line. Returns false
// when a value it relies on is malformed (the request is then a 400).
function interpret(name: usize, nameLen: i32, value: usize, valueLen: i32): bool {
  switch (nameLen) {
    case 4:
      if (equalsLower(name, 4, "host")) hostCount++;
      return true;
    case 6:
      if (equalsLower(name, 6, "expect")) expectContinue = equalsLower(value, valueLen, "100-continue");
      return true;
    case 10:
      if (equalsLower(name, 10, "connection")) connectionTokens(value, valueLen);
      return true;
    case 14:
      if (equalsLower(name, 14, "content-length")) return recordContentLength(value, valueLen);
      return true;
    case 17:
      if (equalsLower(name, 17, "transfer-encoding")) {
        if (equalsLower(value, valueLen, "chunked")) chunkedCount++;
        else teOther = true;
      }
      return true;
  }
  return true;
}

// Content-Length = 1*DIGIT (RFC 9110 §8.6). Repeated headers must agree.
function recordContentLength(value: usize, len: i32): bool {
  if (len == 0) return false;
  let v: i64 = 0;
  for (let i = 0; i < len; i++) {
    const d = <i32>load<u8>(value + <usize>i) - 0x30;
    if (<u32>d > 9) return false;
    v = v * 10 + d;
    if (v >= LENGTH_SATURATED) v = LENGTH_SATURATED;
  }
  if (contentLength >= 0 && contentLength != v) return false;
  contentLength = v;
  return true;
}

// Connection = #token: looks for "close" and "keep-alive" among the comma-separated options.
function connectionTokens(value: usize, len: i32): void {
  let i = 0;
  while (i < len) {
    while (i < len) {
      const b = load<u8>(value + <usize>i);
      if (b != SP && b != HT && b != 0x2C) break;
      i++;
    }
    const start = i;
    while (i < len && load<u8>(value + <usize>i) != 0x2C) i++;
    let stop = i;
    while (stop > start) {
      const t = load<u8>(value + <usize>(stop - 1));
      if (t != SP && t != HT) break;
      stop--;
    }
    const p = value + <usize>start;
    if (equalsLower(p, stop - start, "close")) connClose = true;
    else if (equalsLower(p, stop - start, "keep-alive")) connKeepAlive = true;
  }
}

// ---- chunked transfer coding (RFC 9112 §7.1) ----

/** Progress of the last scanChunks call: the offset of the first chunk not yet
 *  complete, and the data bytes in the chunks before it. */
export let chunkPos: i32 = 0;
export let chunkDecoded: i32 = 0;

// @ts-ignore: decorator
@inline function hexValue(b: u8): i32 {
  if (b >= 0x30 && b <= 0x39) return <i32>b - 0x30;
  const l = b | 0x20;
  if (l >= 0x61 && l <= 0x66) return <i32>l - 0x61 + 10;
  return -1;
}

/**
 * Checks the chunked body that starts at offset `pos` in [buf, buf + len),
 * resuming from a previous call's progress (`pos` at a chunk boundary and
 * `decoded` data bytes before it; 0 at the start of the body).
 * Returns the offset just past the body (last chunk and trailer section
 * included) when it is complete; PARSE_MORE when it needs more bytes, with
 * chunkPos/chunkDecoded set to resume from; PARSE_BAD when it is malformed;
 * PARSE_TOO_LARGE when the data would exceed `limit` bytes.
 * Chunk extensions are skipped; trailer fields are skipped (not interpreted),
 * but the trailer section may not exceed MAX_HEAD bytes.
 */
export function scanChunks(buf: usize, len: i32, pos: i32, decoded: i32, limit: i32): i32 {
  chunkPos = pos;
  chunkDecoded = decoded;
  while (true) {
    // chunk-size [ chunk-ext ] line end
    let p = pos;
    let size: i32 = 0;
    let b: u8 = 0;
    while (true) {
      if (p >= len) return PARSE_MORE;
      b = at(buf, p);
      const h = hexValue(b);
      if (h < 0) break;
      // Leading zeros are harmless; the value is checked as it grows, so it never overflows.
      size = (size << 4) | h;
      if (size > limit - decoded) return PARSE_TOO_LARGE;
      p++;
      if (p - pos >= MAX_CHUNK_LINE) return PARSE_BAD;
    }
    if (p == pos) return PARSE_BAD;
    // BWS ";" ext ... up to the line end; anything else after the size is malformed.
    while (true) {
      if (b == SP || b == HT) {
        p++;
      } else if (b == 0x3B) {
        p++;
        while (true) {
          if (p - pos >= MAX_CHUNK_LINE) return PARSE_BAD;
          if (p >= len) return PARSE_MORE;
          b = at(buf, p);
          if (b == CR || b == LF) break;
          if (!isValueByte(b)) return PARSE_BAD;
          p++;
        }
        break;
      } else if (b == CR || b == LF) {
        break;
      } else {
        return PARSE_BAD;
      }
      if (p - pos >= MAX_CHUNK_LINE) return PARSE_BAD;
      if (p >= len) return PARSE_MORE;
      b = at(buf, p);
    }
    p = afterLineEnd(buf, p, len);
    if (p < 0) return p;

    if (size == 0) return scanTrailers(buf, len, p);

    // chunk-data line end
    const dataEnd = p + size;
    if (dataEnd >= len) return PARSE_MORE;
    b = at(buf, dataEnd);
    if (b != CR && b != LF) return PARSE_BAD;
    const next = afterLineEnd(buf, dataEnd, len);
    if (next < 0) return next;
    decoded += size;
    pos = next;
    chunkPos = pos;
    chunkDecoded = decoded;
  }
}

// The trailer section after the last chunk: lines of field-value bytes up to
// an empty line. Fields are not interpreted, only kept from being unbounded.
function scanTrailers(buf: usize, len: i32, start: i32): i32 {
  let p = start;
  while (true) {
    if (p - start >= MAX_HEAD) return PARSE_BAD;
    if (p >= len) return PARSE_MORE;
    let b = at(buf, p);
    if (b == CR || b == LF) return afterLineEnd(buf, p, len);
    while (true) {
      if (!isValueByte(b)) return PARSE_BAD;
      p++;
      if (p - start >= MAX_HEAD) return PARSE_BAD;
      if (p >= len) return PARSE_MORE;
      b = at(buf, p);
      if (b == CR || b == LF) break;
    }
    p = afterLineEnd(buf, p, len);
    if (p < 0) return p;
  }
}

/**
 * Copies the data of a chunked body that scanChunks accepted (from offset
 * `pos` up to `end` of buf) to `dst`, at most `cap` bytes, and returns its
 * length. It walks framing that was already validated (possibly over several
 * calls), so it only guards its bounds: -1 if the bytes do not match what was
 * validated, which would mean the host handed back different input.
 */
export function decodeChunks(buf: usize, pos: i32, end: i32, dst: usize, cap: i32): i32 {
  let n = 0;
  while (true) {
    let size = 0;
    while (true) {
      if (pos >= end) return -1;
      const h = hexValue(at(buf, pos));
      if (h < 0) break;
      size = (size << 4) | h;
      if (size > cap - n) return -1;
      pos++;
    }
    while (pos < end && at(buf, pos) != LF) pos++;
    pos++;
    if (size == 0) return n;
    if (pos + size > end) return -1;
    memory.copy(dst + <usize>n, buf + <usize>pos, <usize>size);
    n += size;
    pos += size;
    if (pos >= end) return -1;
    pos += at(buf, pos) == CR ? 2 : 1;
  }
}
