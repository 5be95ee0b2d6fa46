// MQTT 3.1.1 wire helpers: big-endian reads, the remaining-length varint,
// UTF-8 string checks (MQTT 3.1.1 §1.5.3), topic and filter rules (§4.7) and
// the packets the broker writes. Nothing here allocates.

import { Conn } from "tcpmod/assembly/sdk";

/** Packet types (the high nibble of the first byte). */
export const CONNECT: u8 = 1;
export const CONNACK: u8 = 2;
export const PUBLISH: u8 = 3;
export const PUBACK: u8 = 4;
export const PUBREC: u8 = 5;
export const PUBREL: u8 = 6;
export const PUBCOMP: u8 = 7;
export const SUBSCRIBE: u8 = 8;
export const SUBACK: u8 = 9;
export const UNSUBSCRIBE: u8 = 10;
export const UNSUBACK: u8 = 11;
export const PINGREQ: u8 = 12;
export const PINGRESP: u8 = 13;
export const DISCONNECT: u8 = 14;

const SLASH: u8 = 0x2F;
const PLUS: u8 = 0x2B;
const HASH: u8 = 0x23;
const DOLLAR: u8 = 0x24;

@inline export function rd16(p: usize): i32 { return (<i32>load<u8>(p) << 8) | <i32>load<u8>(p, 1); }

/** Result of readHeader: the remaining length and the header's own length. */
export let remaining: i32 = 0;
export let headerLen: i32 = 0;
/** readHeader: not enough bytes yet / a malformed length (five bytes, or past the broker's limit). */
export const HDR_NEED: i32 = 0;
export const HDR_BAD: i32 = -1;
export const HDR_OK: i32 = 1;

/** Reads the remaining length after the first byte at p (avail bytes there, the first byte included). */
export function readHeader(p: usize, avail: i32, maxRemaining: i32): i32 {
  let value = 0;
  let mult = 1;
  for (let i = 1; i <= 4; i++) {
    if (i >= avail) return HDR_NEED;
    const b = <i32>load<u8>(p + <usize>i);
    value += (b & 0x7F) * mult;
    if ((b & 0x80) == 0) {
      if (value > maxRemaining) return HDR_BAD;
      remaining = value;
      headerLen = i + 1;
      return HDR_OK;
    }
    mult <<= 7;
  }
  return HDR_BAD; // a fifth length byte: MQTT 3.1.1 §2.2.3 allows four
}

/** Whether [p, p+len) is well-formed UTF-8 without U+0000 and without surrogates (§1.5.3). */
export function validUtf8(p: usize, len: i32): bool {
  let i = 0;
  while (i < len) {
    const b = <u32>load<u8>(p + <usize>i);
    if (b < 0x80) {
      if (b == 0) return false;
      i++;
      continue;
    }
    let n = 0;
    let cp: u32 = 0;
    if ((b & 0xE0) == 0xC0) { n = 1; cp = b & 0x1F; }
    else if ((b & 0xF0) == 0xE0) { n = 2; cp = b & 0x0F; }
    else if ((b & 0xF8) == 0xF0) { n = 3; cp = b & 0x07; }
    else return false;
    if (i + n >= len) return false; // truncated sequence
    for (let k = 1; k <= n; k++) {
      const cb = <u32>load<u8>(p + <usize>(i + k));
      if ((cb & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cb & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF))) return false;
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;
    i += n + 1;
  }
  return true;
}

/** A topic name a client may publish to: not empty, valid UTF-8, no wildcards (§4.7.3). */
export function validTopic(p: usize, len: i32): bool {
  if (len == 0 || !validUtf8(p, len)) return false;
  for (let i = 0; i < len; i++) {
    const b = load<u8>(p + <usize>i);
    if (b == PLUS || b == HASH) return false;
  }
  return true;
}

/** A topic filter: not empty, valid UTF-8, `+` alone in its level, `#` alone and last (§4.7.1). */
export function validFilter(p: usize, len: i32): bool {
  if (len == 0 || !validUtf8(p, len)) return false;
  for (let i = 0; i < len; i++) {
    const b = load<u8>(p + <usize>i);
    if (b != PLUS && b != HASH) continue;
    if (i > 0 && load<u8>(p + <usize>(i - 1)) != SLASH) return false;
    if (b == HASH) return i == len - 1;
    if (i + 1 < len && load<u8>(p + <usize>(i + 1)) != SLASH) return false;
  }
  return true;
}

/** Bytes of the filter before its first wildcard: the prefix every matching topic starts with. */
export function literalPrefix(p: usize, len: i32): i32 {
  for (let i = 0; i < len; i++) {
    const b = load<u8>(p + <usize>i);
    if (b == PLUS || b == HASH) return i;
  }
  return len;
}

function levelEnd(p: usize, from: i32, len: i32): i32 {
  for (let i = from; i < len; i++) if (load<u8>(p + <usize>i) == SLASH) return i;
  return len;
}

/** Whether topic t matches filter f (both valid), with §4.7.2's rule for topics starting with `$`. */
export function filterMatches(f: usize, fl: i32, t: usize, tl: i32): bool {
  if (tl > 0 && load<u8>(t) == DOLLAR && fl > 0) {
    const f0 = load<u8>(f);
    if (f0 == PLUS || f0 == HASH) return false;
  }
  let fi = 0, ti = 0;
  while (true) {
    const fe = levelEnd(f, fi, fl);
    if (fe - fi == 1 && load<u8>(f + <usize>fi) == HASH) return true; // the rest, the parent level included
    if (ti > tl) return false; // the topic has no level left for this one
    const te = levelEnd(t, ti, tl);
    if (!(fe - fi == 1 && load<u8>(f + <usize>fi) == PLUS)) {
      if (fe - fi != te - ti || memory.compare(f + <usize>fi, t + <usize>ti, <usize>(fe - fi)) != 0) return false;
    }
    fi = fe + 1;
    ti = te + 1;
    if (fi > fl) return ti > tl;
  }
}

/** Writes a remaining length. */
export function writeLength(c: Conn, n: i32): void {
  do {
    let b = <u8>(n & 0x7F);
    n >>>= 7;
    if (n > 0) b |= 0x80;
    c.writeByte(b);
  } while (n > 0);
}

@inline export function write16(c: Conn, v: i32): void {
  c.writeByte(<u8>(v >> 8));
  c.writeByte(<u8>v);
}

/** A packet of only a packet id: PUBACK, PUBREC, PUBCOMP, UNSUBACK. */
export function writeAck(c: Conn, first: u8, pid: i32): void {
  c.writeByte(first);
  c.writeByte(2);
  write16(c, pid);
}

/** A PUBLISH to this client. */
export function writePublish(c: Conn, topic: usize, topicLen: i32, payload: usize, payloadLen: i32, qos: i32, pid: i32, dup: bool, retain: bool): void {
  c.writeByte(<u8>(0x30 | (dup ? 8 : 0) | (qos << 1) | (retain ? 1 : 0)));
  writeLength(c, 2 + topicLen + (qos > 0 ? 2 : 0) + payloadLen);
  write16(c, topicLen);
  c.write(topic, topicLen);
  if (qos > 0) write16(c, pid);
  c.write(payload, payloadLen);
}
