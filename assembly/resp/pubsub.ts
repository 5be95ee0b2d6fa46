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
// PUBSUB CHANNELS / NUMSUB / NUMPAT answer from the host's topic table
// (topic_count, topics_list): this server's subscriptions, as Redis Cluster's
// PUBSUB answers for one node.
//
// Not as Redis: UNSUBSCRIBE / PUNSUBSCRIBE without arguments end every channel
// (pattern) in one step and reply once, with a nil name and the count left —
// the host keeps the names, and a module cannot list one connection's; PUBLISH
// counts the subscriptions it reached in this server (with --bus the message
// also goes to the other processes, which are not counted); RESP3 (HELLO 3) is
// not offered, so there are no RESP3 push frames.

import { Action, Conn, Message, subscribe, unsubscribe, publishFrame, topicCount, topicsList, TOPIC_EXACT, TOPIC_GLOB, TOPIC_DIRECT, TOPIC_INVALID, TOPIC_TOO_MANY } from "tcpmod/assembly/sdk";
import { argPtr, argLen, STATE_SIZE } from "./limits";
import { argCount } from "./strings";
import { replyArray, replyBulk, replyBulkStr, replyInt, replyError, writeErrorText, out, R_NIL } from "./reply";
import { bytesEqualIgnoreCase } from "./args";
import { replyHelp } from "./server";

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
 *  refused as Redis refuses it, by its full name (a subcommand's as "pubsub|numpat"): true when
 *  it replied (the command is not run). */
export function subscribedMode(c: Conn, name: usize, len: i32, full: string): bool {
  if (!subscribed(c)) return false;
  if (bytesEqualIgnoreCase(name, len, "ping")) return subscribedPing(c);
  if (bytesEqualIgnoreCase(name, len, "subscribe") || bytesEqualIgnoreCase(name, len, "unsubscribe") ||
      bytesEqualIgnoreCase(name, len, "psubscribe") || bytesEqualIgnoreCase(name, len, "punsubscribe") ||
      bytesEqualIgnoreCase(name, len, "ping") || bytesEqualIgnoreCase(name, len, "quit") || bytesEqualIgnoreCase(name, len, "reset")) return false;
  c.writeString("-ERR Can't execute '");
  c.writeString(full);
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
    // A channel's pushes are the same bytes for every subscriber: a direct subscription takes PUBLISH's
    // frame as output, with no on_message call (docs/abi.md §19); a host without it refuses the flag.
    let r = kind == TOPIC_EXACT ? subscribe(c, TOPIC_EXACT | TOPIC_DIRECT, argPtr(i), argLen(i)) : TOPIC_INVALID;
    if (r == TOPIC_INVALID) r = subscribe(c, kind, argPtr(i), argLen(i));
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

/** PUBLISH's "message" push, built once for every direct subscriber (onMessage writes the same bytes). */
let frame: usize = 0;
let frameCap: usize = 0;
/** "*3\r\n$7\r\nmessage\r\n" */
const MESSAGE_HEAD = memory.data<u8>([42, 51, 13, 10, 36, 55, 13, 10, 109, 101, 115, 115, 97, 103, 101, 13, 10]);

function putDecimal(at: usize, n: i32): usize {
  let digits = 1;
  for (let v = n; v >= 10; v /= 10) digits++;
  for (let i = digits - 1, v = n; i >= 0; i--, v /= 10) store<u8>(at + <usize>i, <u8>(48 + v % 10));
  return at + <usize>digits;
}

function putBulk(at: usize, p: usize, len: i32): usize {
  store<u8>(at, 36); // $
  at = putDecimal(at + 1, len);
  store<u16>(at, 0x0a0d);
  memory.copy(at + 2, p, <usize>len);
  store<u16>(at + 2 + <usize>len, 0x0a0d);
  return at + 4 + <usize>len;
}

/** *3 $7 message $topic $message: its length, written at `frame` (grown as needed). */
function buildMessageFrame(tp: usize, tl: i32, mp: usize, ml: i32): i32 {
  const need = <usize>(tl + ml + 64);
  if (need > frameCap) {
    if (frame != 0) heap.free(frame);
    frameCap = need < 256 ? 256 : need;
    frame = heap.alloc(frameCap);
  }
  memory.copy(frame, MESSAGE_HEAD, 17);
  let at = putBulk(frame + 17, tp, tl);
  at = putBulk(at, mp, ml);
  return <i32>(at - frame);
}

export function cmdPublish(c: Conn): i32 {
  let n = 0;
  if (argLen(1) > 0) {
    const fl = buildMessageFrame(argPtr(1), argLen(1), argPtr(2), argLen(2));
    n = publishFrame(argPtr(1), argLen(1), argPtr(2), argLen(2), frame, fl);
  }
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

/** PUBSUB CHANNELS [pattern]: the channels with a subscriber in this server (matching the glob). */
export function cmdPubsubChannels(c: Conn): i32 {
  if (argCount > 3) {
    // Redis 7's wording for this one (its arity is checked inside the command there).
    c.writeString("-ERR unknown subcommand or wrong number of arguments for '");
    writeErrorText(c, argPtr(1), argLen(1), 128);
    c.writeString("'. Try PUBSUB HELP.\r\n");
    return 0;
  }
  const gp: usize = argCount == 3 ? argPtr(2) : 0;
  const gl: i32 = argCount == 3 ? argLen(2) : 0;
  // An empty pattern matches only an empty channel name, which no subscription has (topics_list
  // would take length 0 as "all").
  if (argCount == 3 && gl == 0) {
    replyArray(c, 0);
    return 0;
  }
  // The names are gathered first (the reply starts with their count), in a buffer that grows
  // until the next one fits; a channel added or dropped between two pages may be missed or listed
  // once more, as with SCAN.
  let cap: i32 = 4096;
  let buf = heap.alloc(<usize>cap);
  let used: i32 = 0, count: i32 = 0;
  for (;;) {
    const n = topicsList(gp, gl, count, buf + <usize>used, cap - used);
    if (n == -2) {
      cap *= 2;
      buf = heap.realloc(buf, <usize>cap);
      continue;
    }
    if (n <= 0) break;  // 0: none left; -3: a pattern longer than any channel can be matched by
    for (let i = 0; i < n; i++) used += 4 + load<i32>(buf + <usize>used);
    count += n;
  }
  replyArray(c, count);
  let at: i32 = 0;
  for (let i = 0; i < count; i++) {
    const len = load<i32>(buf + <usize>at);
    replyBulk(c, buf + <usize>(at + 4), len);
    at += 4 + len;
  }
  heap.free(buf);
  return 0;
}

/** PUBSUB NUMSUB [channel ...]: each channel and its subscribers in this server (patterns not counted). */
export function cmdPubsubNumsub(c: Conn): i32 {
  replyArray(c, 2 * (argCount - 2));
  for (let i = 2; i < argCount; i++) {
    replyBulk(c, argPtr(i), argLen(i));
    const n = argLen(i) > 0 ? topicCount(TOPIC_EXACT, argPtr(i), argLen(i)) : 0;
    replyInt(c, n > 0 ? n : 0);
  }
  return 0;
}

/** PUBSUB NUMPAT: the distinct patterns subscribed to in this server (Redis 7 counts them so). */
export function cmdPubsubNumpat(c: Conn): i32 {
  const n = topicCount(TOPIC_GLOB, 0, 0);
  replyInt(c, n > 0 ? n : 0);
  return 0;
}

const PUBSUB_HELP = "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\nCHANNELS [<pattern>]\n    Return the currently active channels matching a <pattern> (default: '*').\nNUMPAT\n    Return number of subscriptions to patterns.\nNUMSUB [<channel> ...]\n    Return the number of subscribers for the specified channels, excluding\n    pattern subscriptions(default: no channels).\nHELP\n    Prints this help.";
export function cmdPubsubHelp(c: Conn): i32 { replyHelp(c, PUBSUB_HELP); return 0; }
