// Topics (ABI v1.2, docs/abi.md §15): publish/subscribe between the
// connections of one server. A connection subscribes (Conn-less calls act on
// the connection being handled); a publish from any callback reaches every
// matching subscription; each message then comes to the subscriber's message
// hook (setOnMessage), one call per message, never beside another callback of
// that connection. A module that subscribes must register the hook.

import { Action, Conn } from "./conn";
import { inPtr } from "./regions";

@external("tcpmod", "subscribe")
declare function host_subscribe(conn: i32, kind: i32, ptr: usize, len: i32): i32;
@external("tcpmod", "unsubscribe")
declare function host_unsubscribe(conn: i32, kind: i32, ptr: usize, len: i32): i32;
@external("tcpmod", "publish")
declare function host_publish(topic: usize, topicLen: i32, msg: usize, msgLen: i32): i32;
@external("tcpmod", "publish_frame")
declare function host_publish_frame(topic: usize, topicLen: i32, msg: usize, msgLen: i32, frame: usize, frameLen: i32): i32;
@external("tcpmod", "topic_count")
declare function host_topic_count(kind: i32, ptr: usize, len: i32): i32;
@external("tcpmod", "topics_list")
declare function host_topics_list(glob: usize, globLen: i32, skip: i32, out: usize, outCap: i32): i32;

/** What a subscription's text means: the topic itself, a Redis glob (PSUBSCRIBE), an MQTT filter (+, #). */
export const TOPIC_EXACT: i32 = 0;
export const TOPIC_GLOB: i32 = 1;
export const TOPIC_MQTT: i32 = 2;
/** Added to a kind: a direct subscription, which takes publishFrame's frame as output with no message hook call (docs/abi.md §19). */
export const TOPIC_DIRECT: i32 = 0x100;
/** Results: not the connection being handled, too many subscriptions (1,024), invalid text, message too large. */
export const TOPIC_NOT_HANDLED: i32 = -1;
export const TOPIC_TOO_MANY: i32 = -2;
export const TOPIC_INVALID: i32 = -3;
export const TOPIC_TOO_BIG: i32 = -4;

/** Subscribes c to `len` bytes at `ptr`: 1 subscribed, 0 already, or a negative TOPIC_* result. */
export function subscribe(c: Conn, kind: i32, ptr: usize, len: i32): i32 { return host_subscribe(c.id, kind, ptr, len); }
/** Ends that subscription: 1 ended, 0 there was none, or negative. */
export function unsubscribe(c: Conn, kind: i32, ptr: usize, len: i32): i32 { return host_unsubscribe(c.id, kind, ptr, len); }
/** Ends every subscription of c: how many. */
export function unsubscribeAll(c: Conn): i32 { return host_unsubscribe(c.id, -1, 0, 0); }
/** Publishes `msgLen` bytes at `msg` to the topic: the number of subscriptions reached, or negative. */
export function publish(topic: usize, topicLen: i32, msg: usize, msgLen: i32): i32 { return host_publish(topic, topicLen, msg, msgLen); }
/** publish, except that direct subscriptions (TOPIC_DIRECT) get the `frameLen` bytes at `frame` appended to their
 *  output as they are, with no message hook call (docs/abi.md §19): the bytes every such client must receive. */
export function publishFrame(topic: usize, topicLen: i32, msg: usize, msgLen: i32, frame: usize, frameLen: i32): i32 {
  return host_publish_frame(topic, topicLen, msg, msgLen, frame, frameLen);
}

/** This server's subscriptions of (kind, `len` bytes at `ptr`); with len 0, the distinct texts of that kind
 *  that have one (Redis PUBSUB NUMSUB, NUMPAT). Negative: TOPIC_INVALID. */
export function topicCount(kind: i32, ptr: usize, len: i32): i32 { return host_topic_count(kind, ptr, len); }
/** The exact topics with a subscriber that the Redis glob accepts (globLen 0: all), in byte order, from the
 *  skip-th on, written at out as many as fit (a 4-byte little-endian length, then the bytes, each): how many;
 *  0 none left; -2 not even the next fits; TOPIC_INVALID (glob too long). Redis PUBSUB CHANNELS. */
export function topicsList(glob: usize, globLen: i32, skip: i32, out: usize, outCap: i32): i32 { return host_topics_list(glob, globLen, skip, out, outCap); }

/** The message of the running message hook; valid only during that call (it lies in the input region). */
export class Message {
  /** The topic it was published to. */
  get topic(): usize { return inPtr + <usize>msgIn; }
  get topicLen(): i32 { return msgTopic; }
  /** The pattern of the subscription that matched (length 0: an exact subscription). */
  get pattern(): usize { return inPtr + <usize>(msgIn + msgTopic); }
  get patternLen(): i32 { return msgPattern; }
  /** The message bytes. */
  get body(): usize { return inPtr + <usize>(msgIn + msgTopic + msgPattern); }
  get bodyLen(): i32 { return msgBody; }
}

let msgIn: i32 = 0, msgTopic: i32 = 0, msgPattern: i32 = 0, msgBody: i32 = 0;
/** The one Message object (no allocation per call). */
export const MESSAGE = new Message();

/** Sets the running message's lengths (exports.ts, before the hook runs). */
export function beginMessage(inLen: i32, topicLen: i32, patternLen: i32, bodyLen: i32): void {
  msgIn = inLen;
  msgTopic = topicLen;
  msgPattern = patternLen;
  msgBody = bodyLen;
}

/** Runs with each message for one of the connection's subscriptions; the unconsumed input is c's as in a timer call. */
export type MessageHandler = (c: Conn, m: Message) => Action;
export let messageHandler: MessageHandler | null = null;
/** Registers the message hook (needed by modules that subscribe). */
export function setOnMessage(h: MessageHandler): void { messageHandler = h; }
