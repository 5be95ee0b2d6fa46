// Redis pub/sub on tcpmod topics (docs/abi.md §15): SUBSCRIBE, UNSUBSCRIBE,
// PSUBSCRIBE, PUNSUBSCRIBE and PUBLISH, with RESP2 replies and pushes as Redis
// sends them. Channels are exact topics, patterns are Redis globs: the host's
// matching is Redis's, so PSUBSCRIBE needs no translation. A message arrives
// through the SDK's message hook (onMessage) and is written as a "message" or
// "pmessage" push. The connection's channel and pattern counts are kept in its
// state slot (the counts Redis puts in every (un)subscribe reply); while either
// is non-zero the connection is in subscribed mode, where only (P)(UN)SUBSCRIBE,
// PING, QUIT and RESET run (subscribedMode).
//
// Not as Redis: UNSUBSCRIBE / PUNSUBSCRIBE without arguments end every channel
// (pattern) in one step and reply once, with a nil name and the count left —
// the host keeps the names, and a module cannot list them; PUBLISH counts the
// subscriptions it reached in this server (one process, no --bus yet); RESP3
// (HELLO 3) is not offered.

import { Action, Conn, Message, subscribe, unsubscribe, publish, TOPIC_EXACT, TOPIC_GLOB, TOPIC_TOO_MANY } from "tcpmod/assembly/sdk";
import { argPtr, argLen, STATE_SIZE } from "./limits";
import { argCount } from "./strings";
import { replyArray, replyBulk, replyBulkStr, replyInt, replyError, out, R_NIL } from "./reply";
import { bytesEqualIgnoreCase } from "./args";

/** Where the counts live in the state slot: channels (u32), then patterns (u32). */
const SUBS_AT: i32 = STATE_SIZE - 8;

@inline function channels(c: Conn): i32 { return load<i32>(c.state + <usize>SUBS_AT); }
@inline function patterns(c: Conn): i32 { return load<i32>(c.state + <usize>SUBS_AT, 4); }
function setCounts(c: Conn, ch: i32, pa: i32): void {
  store<i32>(c.state + <usize>SUBS_AT, ch);
  store<i32>(c.state + <usize>SUBS_AT, pa, 4);
}

/** Whether the connection is in subscribed mode. */
export function subscribed(c: Conn): bool { return channels(c) + patterns(c) > 0; }

/** In subscribed mode, PING answers as there, and a command other than the allowed ones is
 *  refused as Redis refuses it: true when it replied (the command is not run). */
export function subscribedMode(c: Conn, name: usize, len: i32): bool {
  if (!subscribed(c)) return false;
  if (bytesEqualIgnoreCase(name, len, "ping")) return subscribedPing(c);
  if (bytesEqualIgnoreCase(name, len, "subscribe") || bytesEqualIgnoreCase(name, len, "unsubscribe") ||
      bytesEqualIgnoreCase(name, len, "psubscribe") || bytesEqualIgnoreCase(name, len, "punsubscribe") ||
      bytesEqualIgnoreCase(name, len, "ping") || bytesEqualIgnoreCase(name, len, "quit") || bytesEqualIgnoreCase(name, len, "reset")) return false;
  c.writeString("-ERR Can't execute '");
  for (let j = 0; j < len && j < 64; j++) {
    const b = load<u8>(name + <usize>j);
    c.writeByte(b >= 0x41 && b <= 0x5A ? b + 0x20 : b);
  }
  c.writeString("': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n");
  return true;
}

/** PING in subscribed mode: ["pong", arg or ""], as Redis answers it there. */
function subscribedPing(c: Conn): bool {
  replyArray(c, 2);
  replyBulkStr(c, "pong");
  if (argCount > 1) replyBulk(c, argPtr(1), argLen(1));
  else replyBulkStr(c, "");
  return true;
}

/** One (un)subscribe confirmation: [kind, name or nil, count]. */
function confirm(c: Conn, kind: string, p: usize, len: i32, count: i32): void {
  replyArray(c, 3);
  replyBulkStr(c, kind);
  if (len < 0) out(c, R_NIL);
  else replyBulk(c, p, len);
  replyInt(c, count);
}

function subscribeAll(c: Conn, kind: i32, word: string): i32 {
  let ch = channels(c), pa = patterns(c);
  for (let i = 1; i < argCount; i++) {
    const r = subscribe(c, kind, argPtr(i), argLen(i));
    if (r == TOPIC_TOO_MANY) {
      replyError(c, "ERR too many subscriptions on this connection (1024)");
      continue;
    }
    if (r < 0) {
      replyError(c, "ERR invalid channel or pattern (empty, or longer than 1024 bytes)");
      continue;
    }
    if (r == 1) {
      if (kind == TOPIC_EXACT) ch++;
      else pa++;
      setCounts(c, ch, pa);
    }
    confirm(c, word, argPtr(i), argLen(i), ch + pa);
  }
  return 0;
}

function unsubscribeAll(c: Conn, kind: i32, word: string): i32 {
  let ch = channels(c), pa = patterns(c);
  if (argCount == 1) {
    const n = unsubscribe(c, kind, 0, 0);
    if (kind == TOPIC_EXACT) ch -= n > 0 ? n : 0;
    else pa -= n > 0 ? n : 0;
    setCounts(c, ch, pa);
    confirm(c, word, 0, -1, ch + pa);
    return 0;
  }
  for (let i = 1; i < argCount; i++) {
    const r = argLen(i) > 0 ? unsubscribe(c, kind, argPtr(i), argLen(i)) : 0;
    if (r == 1) {
      if (kind == TOPIC_EXACT) ch--;
      else pa--;
      setCounts(c, ch, pa);
    }
    confirm(c, word, argPtr(i), argLen(i), ch + pa);
  }
  return 0;
}

export function cmdSubscribe(c: Conn): i32 { return subscribeAll(c, TOPIC_EXACT, "subscribe"); }
export function cmdPsubscribe(c: Conn): i32 { return subscribeAll(c, TOPIC_GLOB, "psubscribe"); }
export function cmdUnsubscribe(c: Conn): i32 { return unsubscribeAll(c, TOPIC_EXACT, "unsubscribe"); }
export function cmdPunsubscribe(c: Conn): i32 { return unsubscribeAll(c, TOPIC_GLOB, "punsubscribe"); }

export function cmdPublish(c: Conn): i32 {
  const n = argLen(1) > 0 ? publish(argPtr(1), argLen(1), argPtr(2), argLen(2)) : 0;
  if (n < 0) replyError(c, n == -4 ? "ERR message larger than a subscriber's mailbox (--max-mailbox)" : "ERR invalid channel (longer than 1024 bytes)");
  else replyInt(c, n);
  return 0;
}

/** A published message: a "message" push for a channel, a "pmessage" push for a pattern. */
export function onMessage(c: Conn, m: Message): Action {
  if (m.patternLen > 0) {
    replyArray(c, 4);
    replyBulkStr(c, "pmessage");
    replyBulk(c, m.pattern, m.patternLen);
  } else {
    replyArray(c, 3);
    replyBulkStr(c, "message");
  }
  replyBulk(c, m.topic, m.topicLen);
  replyBulk(c, m.body, m.bodyLen);
  return Action.Continue;
}
