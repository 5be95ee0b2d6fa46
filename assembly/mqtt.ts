// An MQTT 3.1.1 broker on the tcpmod SDK (protocol level 4; "MQIsdp" level 3
// is accepted too). Clients publish and subscribe through the host's topics
// (docs/abi.md §15): a SUBSCRIBE is an MQTT-filter subscription of the
// connection, a PUBLISH a host publish of [qos][payload] to the topic, and
// each message reaches a subscriber's on_message, which writes the PUBLISH at
// the lower of the message's QoS and the QoS it was granted.
//
// Each on_data call handles every complete packet in the input, in order,
// consumes exactly those bytes and leaves a partial packet for the next call.
//
// Decisions (README: "mqtt.wasm"):
// - QoS 0 and 1 both ways. A QoS 2 PUBLISH from a client is answered PUBREC /
//   PUBCOMP and published once (its packet id is remembered until PUBREL);
//   subscriptions are granted at most QoS 1.
// - Retained messages, wills, sessions and in-flight messages live in the
//   store (mqtt/session.ts); the state slot keeps the client id, flags, the
//   keep-alive and the packet id counter.
// - Persistent sessions (clean session 0) keep their subscriptions and their
//   unacknowledged QoS 1 messages, sent again with DUP on reconnect. Messages
//   published while such a client is away are not queued for it.
// - Keep-alive: a timer at 1.5 × the client's value, re-armed by every call
//   that received a packet; when it fires the connection closes and its will is published.
// - A malformed packet, or one larger than 256 KiB, closes the connection
//   (MQTT 3.1.1 answers protocol errors by closing); a CONNECT with an
//   unsupported level or a refused client id gets its CONNACK code first.
// - No authentication: user names and passwords are accepted and ignored.

import { Conn, Action, configure, setOnMessage, setOnTimer, setOnClose, Message, unsubscribe, TOPIC_MQTT } from "tcpmod/assembly/sdk";
export * from "tcpmod/assembly/sdk/exports";
import {
  CONNECT, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT,
  readHeader, remaining, headerLen, HDR_NEED, HDR_BAD, rd16, validUtf8, validTopic, validFilter, writeAck, writeLength, write16,
} from "./mqtt/codec";
import {
  MAX_PACKET, TOPIC_MAX, CID_MAX, STATE_SIZE, Connect, accept, refuse, connected, keepAlive,
  publishMessage, subscribeFilter, grant, ungrant, sendRetained, onMessage as deliverMessage, acked, firstQos2, released, dropWill, closed,
} from "./mqtt/session";

/** Input: two largest packets and room for a message beside a partial packet (docs/abi.md §15). */
const IN_CAP: i32 = 1024 * 1024;
const OUT_CAP: i32 = 64 * 1024;
/** Packets larger than this are collected by the host (tcpmod.want) rather than re-parsed per read. */
const WANT_FROM: i32 = 16 * 1024;
/** The longest keep-alive timer the host allows (docs/abi.md §11). */
const TIMER_MAX: i32 = 86_400_000;

/** The length field() read; the CONNECT being parsed. */
let fieldLen: i32 = 0;
const K = new Connect();

configure(IN_CAP, OUT_CAP, STATE_SIZE, onData, 1);
setOnMessage(onMessage);
setOnTimer(onTimer);
setOnClose(onClose);

/** Flags of the fixed header each packet type must carry (§2.2.2); PUBLISH is checked on its own. */
function flagsOk(type: u8, fl: u8): bool {
  if (type == PUBREL || type == SUBSCRIBE || type == UNSUBSCRIBE) return fl == 2;
  return fl == 0;
}

function onData(c: Conn): Action {
  const base = c.input;
  const len = c.inputLen;
  let pos = 0;
  let action = Action.Continue;
  while (pos < len && !c.failed) {
    const first = load<u8>(base + <usize>pos);
    const type = first >> 4;
    // The first packet must be a CONNECT, and no other may be (§3.1): say so at its first byte.
    if (connected(c) ? type == CONNECT : type != CONNECT) return close(c, len);
    const h = readHeader(base + <usize>pos, len - pos, MAX_PACKET);
    if (h == HDR_BAD) return close(c, len);
    if (h == HDR_NEED) break;
    const total = headerLen + remaining;
    if (pos + total > len) {
      if (total > WANT_FROM) {
        c.consume(pos);
        c.want(total);
        armKeepAlive(c, pos);
        return Action.Continue;
      }
      break;
    }
    action = packet(c, type, first & 15, base + <usize>(pos + headerLen), remaining);
    pos += total;
    if (action != Action.Continue) break;
  }
  c.consume(action == Action.Continue ? pos : len);
  if (action == Action.Continue) armKeepAlive(c, pos);
  return action;
}

/** A protocol error: close at once (what MQTT 3.1.1 prescribes), the will is published. */
function close(c: Conn, len: i32): Action {
  c.consume(len);
  return Action.Close;
}

/** A call that received a packet restarts the keep-alive timer (1.5 × the client's keep-alive). */
function armKeepAlive(c: Conn, progressed: i32): void {
  const k = keepAlive(c);
  if (progressed == 0 || k == 0) return;
  const ms = k * 1500;
  c.setTimer(ms < TIMER_MAX ? ms : TIMER_MAX);
}

function packet(c: Conn, type: u8, fl: u8, p: usize, n: i32): Action {
  if (type == PUBLISH) return onPublish(c, fl, p, n);
  if (!flagsOk(type, fl)) return Action.Close;
  if (type == CONNECT) return onConnect(c, p, n);
  if (type == PUBACK) {
    if (n != 2) return Action.Close;
    acked(c, rd16(p));
    return Action.Continue;
  }
  if (type == PUBREL) {
    if (n != 2) return Action.Close;
    released(c, rd16(p));
    writeAck(c, PUBCOMP << 4, rd16(p));
    return Action.Continue;
  }
  if (type == PUBREC || type == PUBCOMP) return n == 2 ? Action.Continue : Action.Close; // we never send QoS 2
  if (type == SUBSCRIBE) return onSubscribe(c, p, n);
  if (type == UNSUBSCRIBE) return onUnsubscribe(c, p, n);
  if (type == PINGREQ) {
    if (n != 0) return Action.Close;
    c.writeByte(PINGRESP << 4);
    c.writeByte(0);
    return Action.Continue;
  }
  if (type == DISCONNECT) {
    if (n != 0) return Action.Close;
    dropWill(c);
    return Action.Close;
  }
  return Action.Close; // 0, 15, and what only a server sends (CONNACK, SUBACK, UNSUBACK, PINGRESP)
}

/** A UTF-8 string or binary field with its 2-byte length: where it starts (its length in fieldLen), or -1 when it overruns. */
function field(p: usize, at: i32, n: i32): i32 {
  if (at + 2 > n) return -1;
  fieldLen = rd16(p + <usize>at);
  if (at + 2 + fieldLen > n) return -1;
  return at + 2;
}


function onConnect(c: Conn, p: usize, n: i32): Action {
  let at = field(p, 0, n);
  if (at < 0) return Action.Close;
  const name = p + <usize>at;
  const nameLen = fieldLen;
  at += nameLen;
  if (at + 4 > n) return Action.Close;
  const level = load<u8>(p + <usize>at);
  const cf = load<u8>(p + <usize>at + 1);
  const isMqtt = nameLen == 4 && load<u32>(name) == 0x5454514D; // "MQTT"
  const isMqisdp = nameLen == 6 && load<u32>(name) == 0x7349514D && load<u16>(name, 4) == 0x7064; // "MQIsdp"
  if (!isMqtt && !isMqisdp) return Action.Close; // §3.1.2.1: not MQTT at all
  if ((isMqtt && level != 4) || (isMqisdp && level != 3)) return refuse(c, 1); // unacceptable protocol version
  if ((cf & 1) != 0) return Action.Close; // reserved flag
  K.clean = (cf & 2) != 0;
  K.will = (cf & 4) != 0;
  K.willQos = (cf >> 3) & 3;
  K.willRetain = (cf & 0x20) != 0;
  const hasPassword = (cf & 0x40) != 0;
  const hasUser = (cf & 0x80) != 0;
  if (K.willQos == 3 || (!K.will && (K.willQos != 0 || K.willRetain))) return Action.Close;
  if (hasPassword && !hasUser && isMqtt) return Action.Close; // §3.1.2.9
  K.keep = rd16(p + <usize>at + 2);
  at = field(p, at + 4, n);
  if (at < 0) return Action.Close;
  K.cid = p + <usize>at;
  K.cidLen = fieldLen;
  at += fieldLen;
  if (!validUtf8(K.cid, K.cidLen)) return Action.Close;
  if (K.will) {
    at = field(p, at, n);
    if (at < 0) return Action.Close;
    K.willTopic = p + <usize>at;
    K.willTopicLen = fieldLen;
    at += fieldLen;
    if (!validTopic(K.willTopic, K.willTopicLen) || K.willTopicLen > TOPIC_MAX) return Action.Close;
    at = field(p, at, n);
    if (at < 0) return Action.Close;
    K.willMsg = p + <usize>at;
    K.willMsgLen = fieldLen;
    at += fieldLen;
  }
  if (hasUser) {
    at = field(p, at, n);
    if (at < 0 || !validUtf8(p + <usize>at, fieldLen)) return Action.Close;
    at += fieldLen;
  }
  if (hasPassword) {
    at = field(p, at, n);
    if (at < 0) return Action.Close;
    at += fieldLen;
  }
  if (at != n) return Action.Close; // bytes after the payload
  if (K.cidLen > CID_MAX || (K.cidLen == 0 && !K.clean)) return refuse(c, 2); // identifier rejected
  return accept(c, K);
}

function onPublish(c: Conn, fl: u8, p: usize, n: i32): Action {
  const qos = <i32>((fl >> 1) & 3);
  const dup = (fl & 8) != 0;
  if (qos == 3 || (qos == 0 && dup)) return Action.Close; // §3.3.1.2, §3.3.1.1
  const at = field(p, 0, n);
  if (at < 0) return Action.Close;
  const topic = p + <usize>at;
  const tl = fieldLen;
  if (!validTopic(topic, tl) || tl > TOPIC_MAX) return Action.Close;
  let body = at + tl;
  let pid = 0;
  if (qos > 0) {
    if (body + 2 > n) return Action.Close;
    pid = rd16(p + <usize>body);
    if (pid == 0) return Action.Close;
    body += 2;
  }
  if (qos == 2) {
    // Published once per packet id, however often the client sends it again before PUBREL.
    if (firstQos2(c, pid)) publishMessage(topic, tl, p + <usize>body, n - body, 1, (fl & 1) != 0);
    writeAck(c, PUBREC << 4, pid);
    return Action.Continue;
  }
  publishMessage(topic, tl, p + <usize>body, n - body, qos, (fl & 1) != 0);
  if (qos == 1) writeAck(c, PUBACK << 4, pid);
  return Action.Continue;
}

/** Checks a SUBSCRIBE or UNSUBSCRIBE payload's framing: the number of filters, or -1 when malformed. */
function countFilters(p: usize, n: i32, withQos: bool): i32 {
  let at = 2;
  let count = 0;
  while (at < n) {
    at = field(p, at, n);
    if (at < 0) return -1;
    if (!validUtf8(p + <usize>at, fieldLen)) return -1;
    at += fieldLen;
    if (withQos) {
      if (at >= n) return -1;
      if ((load<u8>(p + <usize>at) & 0xFC) != 0 || (load<u8>(p + <usize>at) & 3) == 3) return -1; // §3.8.3.1
      at++;
    }
    count++;
  }
  return count;
}

function onSubscribe(c: Conn, p: usize, n: i32): Action {
  if (n < 2) return Action.Close;
  const pid = rd16(p);
  const count = countFilters(p, n, true);
  if (pid == 0 || count <= 0) return Action.Close; // §3.8.3: at least one filter
  c.writeByte(SUBACK << 4);
  writeLength(c, 2 + count);
  write16(c, pid);
  // Subscribe them all (the SUBACK's codes), then send what is retained for each.
  let at = 2;
  for (let i = 0; i < count; i++) {
    at = field(p, at, n);
    const f = p + <usize>at;
    const fl = fieldLen;
    at += fl;
    const req = <i32>load<u8>(p + <usize>(at++));
    const g = req > 1 ? 1 : req;
    if (fl > TOPIC_MAX || !validFilter(f, fl) || subscribeFilter(c, f, fl) < 0) {
      c.writeByte(0x80);
      continue;
    }
    grant(c, f, fl, g);
    c.writeByte(<u8>g);
  }
  at = 2;
  for (let i = 0; i < count; i++) {
    at = field(p, at, n);
    const f = p + <usize>at;
    const fl = fieldLen;
    at += fl;
    const req = <i32>load<u8>(p + <usize>(at++));
    if (fl <= TOPIC_MAX && validFilter(f, fl)) sendRetained(c, f, fl, req > 1 ? 1 : req);
  }
  return Action.Continue;
}

function onUnsubscribe(c: Conn, p: usize, n: i32): Action {
  if (n < 2) return Action.Close;
  const pid = rd16(p);
  const count = countFilters(p, n, false);
  if (pid == 0 || count <= 0) return Action.Close;
  let at = 2;
  for (let i = 0; i < count; i++) {
    at = field(p, at, n);
    const f = p + <usize>at;
    const fl = fieldLen;
    at += fl;
    if (fl > 0 && fl <= TOPIC_MAX && unsubscribe(c, TOPIC_MQTT, f, fl) > 0) ungrant(c, f, fl);
  }
  writeAck(c, UNSUBACK << 4, pid);
  return Action.Continue;
}

function onMessage(c: Conn, m: Message): Action {
  return deliverMessage(c, m.topic, m.topicLen, m.pattern, m.patternLen, m.body, m.bodyLen);
}

/** Nothing from the client for 1.5 × its keep-alive (§3.1.2.10): close; the will is published. */
function onTimer(c: Conn): Action {
  return Action.Close;
}

function onClose(c: Conn, reason: i32): void {
  closed(c.id);
}
