// The broker's state outside the state slot: sessions, wills, retained
// messages and in-flight QoS 1 messages in the host's key-value store, and
// what a connection does when it connects, subscribes, receives and closes.
//
// Keys (cid = the client id, conn = the 4 bytes of the connection id):
//   mqtt:o:<cid>          the connection that owns the client id now (conn, 4 bytes LE)
//   mqtt:p:<cid>          present while a persistent session (clean session 0) exists
//   mqtt:s:<cid>\0<filter> the QoS granted for a subscription: every one of a persistent
//                         session; of a clean session only those whose QoS differs from its first
//   mqtt:q:<cid>\0<pid>   a QoS 1 message sent to a persistent session and not acknowledged yet
//   mqtt:c:<conn>         [flags][cid] of a connected connection, for its close (on_close has no state slot)
//   mqtt:w:<conn>         its will: [qos | retain << 2][u16 topic length][topic][payload]
//   mqtt:r:<topic>        a retained message: [qos][payload]
//   mqtt:x:<conn><pid>    a QoS 2 PUBLISH received and not released yet (exactly once, 60 s TTL)
//
// Takeover (MQTT 3.1.1 §3.1.4: a second CONNECT with the same client id
// disconnects the first): every connected connection subscribes to the exact
// topic "$\0t/<cid>", which no client can publish or subscribe to (a client's
// topics and filters are UTF-8 without U+0000). A connecting client makes itself
// the owner (mqtt:o), publishes its id to that topic, subscribes to it, and
// then reads the owner back. Whoever receives such a message, or reads back an
// owner that is not itself, closes: the owner key decides, so whatever the
// interleaving of two connecting clients exactly one survives, the last to
// write the owner key. It closes as any abnormal end does: its will is published.
// Topics are per server process: a takeover does not reach a connection of
// another process, even when they share a Redis store.

import {
  Conn, Action, subscribe, publish, publishFrame, TOPIC_MQTT, TOPIC_EXACT, TOPIC_DIRECT, TOPIC_INVALID,
  kv_get, kv_set, kv_del, kv_getdel, kv_scan, kv_del_prefix, kv_set_ex, KV_NX,
} from "tcpmod/assembly/sdk";
import { filterMatches, literalPrefix, writePublish, CONNACK } from "./codec";

/** The largest remaining length accepted; a packet past it closes the connection. */
export const MAX_PACKET: i32 = 256 * 1024;
/** Topics and filters longer than this are refused (the host's topic limit, docs/abi.md §15). */
export const TOPIC_MAX: i32 = 1024;
/** Client ids longer than this are refused with CONNACK 2 (the id lives in the state slot). */
export const CID_MAX: i32 = 128;

// The state slot.
export const STATE_SIZE: i32 = 144;
const S_PHASE: usize = 0; // u8: 0 before CONNECT, 1 connected
const S_FLAGS: usize = 1; // u8: F_*
const S_KEEP: usize = 2; // u16: keep-alive seconds
const S_PID: usize = 4; // u16: the last packet id used towards the client
const S_CIDLEN: usize = 6; // u8
const S_CID: usize = 8; // the client id, CID_MAX bytes

const F_CLEAN: u8 = 1;
const F_ANYSUB: u8 = 2; // a subscription was made: F_BASE1 says its QoS
const F_BASE1: u8 = 4; // the first subscription's granted QoS was 1
const F_KVQOS: u8 = 8; // look granted QoS up in mqtt:s: (persistent, or mixed QoS)

// mqtt:c: flags.
const CR_CLEAN: u8 = 1;
const CR_KEYS: u8 = 2; // mqtt:s: keys exist for this clean session: delete them at close

// Scratch memory, reserved once (like the SDK's regions): keys, values, scan output.
const KEY_CAP: i32 = 2048;
const VAL_CAP: i32 = MAX_PACKET + 16;
const SCAN_CAP: i32 = 128 * 1024;
const KEY = heap.alloc(<usize>KEY_CAP);
const VAL = heap.alloc(<usize>VAL_CAP);
const BODY = heap.alloc(<usize>VAL_CAP);
/** A QoS 0 PUBLISH packet, the same for every subscriber (publishMessage). */
const FRAME = heap.alloc(<usize>VAL_CAP + 16);
const SCAN = heap.alloc(<usize>SCAN_CAP);
const NEXT = heap.alloc(8);
let keyLen: i32 = 0;

function keyBegin(prefix: string): void {
  keyLen = 0;
  for (let i = 0; i < prefix.length; i++) store<u8>(KEY + <usize>(keyLen++), <u8>prefix.charCodeAt(i));
}
function keyBytes(p: usize, n: i32): void {
  memory.copy(KEY + <usize>keyLen, p, <usize>n);
  keyLen += n;
}
function keyByte(b: u8): void { store<u8>(KEY + <usize>(keyLen++), b); }
function keyU32(v: i32): void {
  store<i32>(KEY + <usize>keyLen, v);
  keyLen += 4;
}

// State slot accessors.
@inline export function connected(c: Conn): bool { return load<u8>(c.state + S_PHASE) == 1; }
@inline function flags(c: Conn): u8 { return load<u8>(c.state + S_FLAGS); }
@inline function setFlags(c: Conn, f: u8): void { store<u8>(c.state + S_FLAGS, f); }
@inline export function keepAlive(c: Conn): i32 { return <i32>load<u16>(c.state + S_KEEP); }
@inline function cidPtr(c: Conn): usize { return c.state + S_CID; }
@inline function cidLen(c: Conn): i32 { return <i32>load<u8>(c.state + S_CIDLEN); }
@inline function persistent(c: Conn): bool { return (flags(c) & F_CLEAN) == 0; }

function keyCid(prefix: string, c: Conn): void {
  keyBegin(prefix);
  keyBytes(cidPtr(c), cidLen(c));
}

/** The next packet id towards the client (1..65535). */
function nextPid(c: Conn): i32 {
  const v = (<i32>load<u16>(c.state + S_PID)) % 65535 + 1;
  store<u16>(c.state + S_PID, <u16>v);
  return v;
}

/**
 * Publishes an application message (a client's PUBLISH, or a will) to the
 * subscribers and, with retain, keeps it (an empty payload deletes the
 * retained one). Subscribers get [qos][payload] and cap the QoS at what they were granted.
 */
export function publishMessage(topic: usize, topicLen: i32, payload: usize, payloadLen: i32, qos: i32, retain: bool): void {
  store<u8>(BODY, <u8>qos);
  memory.copy(BODY + 1, payload, <usize>payloadLen);
  if (retain) {
    keyBegin("mqtt:r:");
    keyBytes(topic, topicLen);
    if (payloadLen == 0) kv_del(KEY, keyLen);
    else kv_set(KEY, keyLen, BODY, payloadLen + 1);
  }
  if (qos == 0) {
    // Every subscriber gets it at QoS 0 (min of 0 and what it was granted), retain 0: one packet for all,
    // which direct subscriptions take as output with no on_message call (docs/abi.md §19).
    publishFrame(topic, topicLen, BODY, payloadLen + 1, FRAME, qos0Packet(topic, topicLen, payload, payloadLen));
  } else {
    publish(topic, topicLen, BODY, payloadLen + 1);
  }
}

/** Writes PUBLISH QoS 0 (no packet id, DUP 0, RETAIN 0) at FRAME: its length. writePublish's bytes for qos 0. */
function qos0Packet(topic: usize, tl: i32, payload: usize, pl: i32): i32 {
  store<u8>(FRAME, 0x30);
  let at = FRAME + 1;
  let n = 2 + tl + pl;
  do {
    let b = <u8>(n & 0x7F);
    n >>>= 7;
    if (n > 0) b |= 0x80;
    store<u8>(at++, b);
  } while (n > 0);
  store<u8>(at, <u8>(tl >> 8));
  store<u8>(at, <u8>tl, 1);
  memory.copy(at + 2, topic, <usize>tl);
  memory.copy(at + 2 + <usize>tl, payload, <usize>pl);
  return <i32>(at + 2 + <usize>tl + <usize>pl - FRAME);
}

/** Subscribes c to an MQTT filter, direct (QoS 0 packets as output, no on_message call: §19) where the host has it. */
export function subscribeFilter(c: Conn, f: usize, fl: i32): i32 {
  const r = subscribe(c, TOPIC_MQTT | TOPIC_DIRECT, f, fl);
  return r == TOPIC_INVALID ? subscribe(c, TOPIC_MQTT, f, fl) : r;
}

/** The CONNECT's outcome the parser hands over. */
export class Connect {
  clean: bool = false;
  keep: i32 = 0;
  cid: usize = 0;
  cidLen: i32 = 0;
  will: bool = false;
  willQos: i32 = 0;
  willRetain: bool = false;
  willTopic: usize = 0;
  willTopicLen: i32 = 0;
  willMsg: usize = 0;
  willMsgLen: i32 = 0;
}

function connack(c: Conn, present: bool, code: u8): void {
  c.writeByte(CONNACK << 4);
  c.writeByte(2);
  c.writeByte(present ? 1 : 0);
  c.writeByte(code);
}

/** A refused CONNECT: CONNACK with the code, then close (§3.2.2.3). */
export function refuse(c: Conn, code: u8): Action {
  connack(c, false, code);
  return Action.Close;
}

/** Accepts a well-formed CONNECT: session, takeover, will, CONNACK. */
export function accept(c: Conn, k: Connect): Action {
  const me = c.id;
  // The client id goes to the state slot (an empty one with clean session gets "tcpmod-<conn>").
  let n = k.cidLen;
  if (n > 0) memory.copy(cidPtr(c), k.cid, <usize>n);
  else {
    const auto = "tcpmod-";
    for (let i = 0; i < auto.length; i++) store<u8>(cidPtr(c) + <usize>i, <u8>auto.charCodeAt(i));
    n = auto.length;
    let v = <u32>me;
    let digits = 1;
    for (let t = v; t >= 10; t /= 10) digits++;
    for (let i = digits - 1; i >= 0; i--) {
      store<u8>(cidPtr(c) + <usize>(n + i), <u8>(0x30 + v % 10));
      v /= 10;
    }
    n += digits;
  }
  store<u8>(c.state + S_CIDLEN, <u8>n);
  store<u8>(c.state + S_PHASE, 1);
  store<u16>(c.state + S_KEEP, <u16>k.keep);
  setFlags(c, k.clean ? F_CLEAN : F_KVQOS);

  // Ownership of the client id, and what was left of an earlier session.
  keyCid("mqtt:o:", c);
  const hadOwner = kv_get(KEY, keyLen, VAL, 4) >= 0;
  store<i32>(VAL, me);
  kv_set(KEY, keyLen, VAL, 4);
  keyCid("mqtt:p:", c);
  let hadSession = false;
  if (k.clean) hadSession = kv_del(KEY, keyLen) > 0;
  else {
    hadSession = kv_get(KEY, keyLen, VAL, 0) >= 0;
    if (!hadSession) kv_set(KEY, keyLen, VAL, 0);
  }
  // What an earlier session of this id left (its subscriptions' QoS, its unacknowledged
  // messages) goes, unless this connection resumes that session.
  if (k.clean ? hadSession || hadOwner : !hadSession && hadOwner) dropSessionKeys(c);

  // Takeover: announce to the connection holding the id, then listen for the next one, then
  // read the owner back. A later owner writes the key after this read, and so announces after
  // this subscription: it is heard. (Announcing first, the connection does not hear itself.)
  controlTopic(c);
  store<i32>(VAL, me);
  publish(KEY, keyLen, VAL, 4);
  subscribe(c, TOPIC_EXACT, KEY, keyLen);
  if (!ownsId(c)) return Action.Close;

  // What on_close needs: the client id and whether to drop the session.
  keyBegin("mqtt:c:");
  keyU32(me);
  store<u8>(VAL, k.clean ? CR_CLEAN : 0);
  memory.copy(VAL + 1, cidPtr(c), <usize>n);
  kv_set(KEY, keyLen, VAL, n + 1);
  if (k.will) {
    keyBegin("mqtt:w:");
    keyU32(me);
    store<u8>(BODY, <u8>(k.willQos | (k.willRetain ? 4 : 0)));
    store<u8>(BODY, <u8>(k.willTopicLen >> 8), 1);
    store<u8>(BODY, <u8>k.willTopicLen, 2);
    memory.copy(BODY + 3, k.willTopic, <usize>k.willTopicLen);
    memory.copy(BODY + 3 + <usize>k.willTopicLen, k.willMsg, <usize>k.willMsgLen);
    kv_set(KEY, keyLen, BODY, 3 + k.willTopicLen + k.willMsgLen);
  }
  connack(c, !k.clean && hadSession, 0);
  if (!k.clean && hadSession) resume(c);
  return Action.Continue;
}

/** Makes KEY the control topic "$\0t/<cid>" of c. */
function controlTopic(c: Conn): void {
  keyLen = 0;
  keyByte(0x24);
  keyByte(0);
  keyByte(0x74);
  keyByte(0x2F);
  keyBytes(cidPtr(c), cidLen(c));
}

/** Whether c still owns its client id (a missing owner counts as c's: nobody took it). */
function ownsId(c: Conn): bool {
  keyCid("mqtt:o:", c);
  return kv_get(KEY, keyLen, VAL, 4) != 4 || load<i32>(VAL) == c.id;
}

function dropSessionKeys(c: Conn): void {
  keyCid("mqtt:s:", c);
  keyByte(0);
  kv_del_prefix(KEY, keyLen);
  keyCid("mqtt:q:", c);
  keyByte(0);
  kv_del_prefix(KEY, keyLen);
}

/** A persistent session comes back: its subscriptions, then its unacknowledged QoS 1 messages again with DUP. */
function resume(c: Conn): void {
  keyCid("mqtt:s:", c);
  keyByte(0);
  let prefix = keyLen;
  let cursor: i64 = 0;
  let base: u8 = 0;
  do {
    const got = kv_scan(KEY, prefix, cursor, 64, SCAN, SCAN_CAP, NEXT);
    if (got < 0) break;
    let p = SCAN;
    for (let i = 0; i < got; i++) {
      const kl = load<i32>(p);
      subscribeFilter(c, p + 4 + <usize>prefix, kl - prefix);
      base = F_ANYSUB;
      p += 4 + <usize>kl;
    }
    cursor = load<i64>(NEXT);
  } while (cursor != 0);
  setFlags(c, flags(c) | base);

  keyCid("mqtt:q:", c);
  keyByte(0);
  prefix = keyLen;
  cursor = 0;
  let top = 0;
  do {
    const got = kv_scan(KEY, prefix, cursor, 64, SCAN, SCAN_CAP, NEXT);
    if (got < 0) break;
    let p = SCAN;
    for (let i = 0; i < got; i++) {
      const kl = load<i32>(p);
      const key = p + 4;
      const vl = kv_get(key, kl, VAL, VAL_CAP);
      if (kl == prefix + 2 && vl >= 2 && vl <= VAL_CAP) {
        const pid = (<i32>load<u8>(key + <usize>prefix) << 8) | <i32>load<u8>(key + <usize>prefix + 1);
        const tl = (<i32>load<u8>(VAL) << 8) | <i32>load<u8>(VAL, 1);
        if (2 + tl <= vl) writePublish(c, VAL + 2, tl, VAL + 2 + <usize>tl, vl - 2 - tl, 1, pid, true, false);
        if (pid > top) top = pid;
      }
      p += 4 + <usize>kl;
    }
    cursor = load<i64>(NEXT);
  } while (cursor != 0);
  if (top > 0) store<u16>(c.state + S_PID, <u16>top);
}

/** Remembers the QoS granted for a subscription where deliveries will look for it. */
export function grant(c: Conn, f: usize, fl: i32, g: i32): void {
  let fs = flags(c);
  if ((fs & F_ANYSUB) == 0) {
    fs |= F_ANYSUB | (g == 1 ? F_BASE1 : 0);
    setFlags(c, fs);
  }
  const base = (fs & F_BASE1) != 0 ? 1 : 0;
  keyCid("mqtt:s:", c);
  keyByte(0);
  keyBytes(f, fl);
  if (persistent(c) || g != base) {
    store<u8>(VAL, <u8>g);
    kv_set(KEY, keyLen, VAL, 1);
    if ((fs & F_KVQOS) == 0) {
      setFlags(c, fs | F_KVQOS);
      markKeys(c);
    }
  } else if ((fs & F_KVQOS) != 0) {
    kv_del(KEY, keyLen);
  }
}

/** A clean session now has mqtt:s: keys: its close must delete them. */
function markKeys(c: Conn): void {
  keyBegin("mqtt:c:");
  keyU32(c.id);
  store<u8>(VAL, CR_CLEAN | CR_KEYS);
  memory.copy(VAL + 1, cidPtr(c), <usize>cidLen(c));
  kv_set(KEY, keyLen, VAL, cidLen(c) + 1);
}

/** Forgets a subscription's QoS (UNSUBSCRIBE). */
export function ungrant(c: Conn, f: usize, fl: i32): void {
  if ((flags(c) & F_KVQOS) == 0) return;
  keyCid("mqtt:s:", c);
  keyByte(0);
  keyBytes(f, fl);
  kv_del(KEY, keyLen);
}

/** The QoS granted for the subscription with this filter. */
function granted(c: Conn, f: usize, fl: i32): i32 {
  const fs = flags(c);
  const base = (fs & F_BASE1) != 0 ? 1 : 0;
  if ((fs & F_KVQOS) == 0) return base;
  keyCid("mqtt:s:", c);
  keyByte(0);
  keyBytes(f, fl);
  return kv_get(KEY, keyLen, VAL, 1) == 1 ? <i32>load<u8>(VAL) : base;
}

/** Sends a message to c at QoS `qos` (0 or 1); a QoS 1 message to a persistent session is kept until PUBACK. */
function deliver(c: Conn, topic: usize, tl: i32, payload: usize, pl: i32, qos: i32, retain: bool): void {
  let pid = 0;
  if (qos > 0) {
    pid = nextPid(c);
    if (persistent(c)) {
      keyCid("mqtt:q:", c);
      keyByte(0);
      keyByte(<u8>(pid >> 8));
      keyByte(<u8>pid);
      store<u8>(VAL, <u8>(tl >> 8));
      store<u8>(VAL, <u8>tl, 1);
      memory.copy(VAL + 2, topic, <usize>tl);
      memory.copy(VAL + 2 + <usize>tl, payload, <usize>pl);
      kv_set(KEY, keyLen, VAL, 2 + tl + pl);
    }
  }
  writePublish(c, topic, tl, payload, pl, qos, pid, false, retain);
}

/** A message for one of c's subscriptions: the control topic, or an application message. */
export function onMessage(c: Conn, topic: usize, tl: i32, pattern: usize, patl: i32, body: usize, bl: i32): Action {
  if (tl >= 2 && load<u8>(topic) == 0x24 && load<u8>(topic, 1) == 0) {
    // Another connection connected with this client id: close unless this one is still the owner.
    return ownsId(c) ? Action.Continue : Action.Close;
  }
  if (bl < 1 || !connected(c)) return Action.Continue;
  const q = <i32>(load<u8>(body) & 3);
  const g = granted(c, pattern, patl);
  deliver(c, topic, tl, body + 1, bl - 1, q < g ? q : g, false);
  return Action.Continue;
}

/** PUBACK from the client: a persistent session's message is delivered. */
export function acked(c: Conn, pid: i32): void {
  if (!persistent(c)) return;
  keyCid("mqtt:q:", c);
  keyByte(0);
  keyByte(<u8>(pid >> 8));
  keyByte(<u8>pid);
  kv_del(KEY, keyLen);
}

/** A QoS 2 PUBLISH: true the first time its packet id is seen (until PUBREL), so it is published once. */
export function firstQos2(c: Conn, pid: i32): bool {
  keyBegin("mqtt:x:");
  keyU32(c.id);
  keyByte(<u8>(pid >> 8));
  keyByte(<u8>pid);
  return kv_set_ex(KEY, keyLen, VAL, 0, KV_NX, 60_000) == 0;
}

/** PUBREL: the QoS 2 exchange is over. */
export function released(c: Conn, pid: i32): void {
  keyBegin("mqtt:x:");
  keyU32(c.id);
  keyByte(<u8>(pid >> 8));
  keyByte(<u8>pid);
  kv_del(KEY, keyLen);
}

/** DISCONNECT: the will is dropped (§3.14.4). */
export function dropWill(c: Conn): void {
  keyBegin("mqtt:w:");
  keyU32(c.id);
  kv_del(KEY, keyLen);
}

/** Sends the retained messages matching a new subscription, at most at QoS g. */
export function sendRetained(c: Conn, f: usize, fl: i32, g: i32): void {
  keyBegin("mqtt:r:");
  const lit = literalPrefix(f, fl);
  keyBytes(f, lit);
  if (lit == fl) {
    // No wildcard: one key.
    const vl = kv_get(KEY, keyLen, BODY, VAL_CAP);
    if (vl >= 1 && vl <= VAL_CAP) retained(c, f, fl, vl, g);
    return;
  }
  const prefix = keyLen;
  let cursor: i64 = 0;
  do {
    // Scanning reuses SCAN; keys are read from it, values into BODY.
    keyBegin("mqtt:r:");
    keyBytes(f, lit);
    const got = kv_scan(KEY, prefix, cursor, 64, SCAN, SCAN_CAP, NEXT);
    if (got < 0) return;
    cursor = load<i64>(NEXT);
    let p = SCAN;
    for (let i = 0; i < got; i++) {
      const kl = load<i32>(p);
      const topic = p + 4 + 7;
      const tl = kl - 7;
      if (filterMatches(f, fl, topic, tl)) {
        const vl = kv_get(p + 4, kl, BODY, VAL_CAP);
        if (vl >= 1 && vl <= VAL_CAP) retained(c, topic, tl, vl, g);
      }
      p += 4 + <usize>kl;
    }
  } while (cursor != 0);
}

function retained(c: Conn, topic: usize, tl: i32, vl: i32, g: i32): void {
  const q = <i32>(load<u8>(BODY) & 3);
  deliver(c, topic, tl, BODY + 1, vl - 1, q < g ? q : g, true);
}

/**
 * The connection is gone (any reason): its will, unless DISCONNECT dropped it,
 * is published; a clean session it still owns ends. The state slot is not
 * loaded here (docs/abi.md §7): what is needed was kept under mqtt:c:/mqtt:w:.
 */
export function closed(conn: i32): void {
  keyBegin("mqtt:w:");
  keyU32(conn);
  let n = kv_getdel(KEY, keyLen, VAL, VAL_CAP);
  if (n >= 3 && n <= VAL_CAP) {
    const fl = <i32>load<u8>(VAL);
    const tl = (<i32>load<u8>(VAL, 1) << 8) | <i32>load<u8>(VAL, 2);
    if (3 + tl <= n) publishMessage(VAL + 3, tl, VAL + 3 + <usize>tl, n - 3 - tl, fl & 3, (fl & 4) != 0);
  }
  keyBegin("mqtt:c:");
  keyU32(conn);
  n = kv_getdel(KEY, keyLen, VAL, CID_MAX + 1);
  if (n < 1 || n > CID_MAX + 1) return;
  const cf = load<u8>(VAL);
  keyBegin("mqtt:o:");
  keyBytes(VAL + 1, n - 1);
  if (kv_get(KEY, keyLen, SCAN, 4) != 4 || load<i32>(SCAN) != conn) return; // taken over: the session is the new owner's
  kv_del(KEY, keyLen);
  if ((cf & (CR_CLEAN | CR_KEYS)) == (CR_CLEAN | CR_KEYS)) {
    keyBegin("mqtt:s:");
    keyBytes(VAL + 1, n - 1);
    keyByte(0);
    kv_del_prefix(KEY, keyLen);
  }
}
