// The command table, dispatch (name lookup, arity, subcommands, Redis-worded
// errors) and COMMAND, which describes the table to clients.
//
// The table is built once at start-up. Lookup packs the name's first 8 bytes,
// case-folded, into a u64 and scans the table, hottest commands first, so a
// GET or SET is found on the first or second comparison.

import { Conn } from "tcpmod/assembly/sdk";
import { argPtr, argLen } from "./limits";
import { beginCommand, storeUnavailable } from "./store";
import { nameKey, keyOf, bytesEqualIgnoreCase } from "./args";
import { out, replyInt, replyArray, replyBulkStr, replyStatus, writeErrorText, R_NIL, E_SYNTAX, E_UNAVAILABLE } from "./reply";
import {
  argCount, setArgCount, cmdGet, cmdSet, cmdDel, cmdExists, cmdIncr, cmdDecr, cmdIncrBy, cmdDecrBy,
  cmdMget, cmdMset, cmdStrlen, cmdAppend, cmdTtl, cmdPttl,
  cmdSetnx, cmdGetset, cmdGetdel, cmdExpire, cmdPexpire, cmdPersist,
} from "./strings";
import { cmdScan, cmdKeys } from "./keys";
import {
  cmdPing, cmdEcho, cmdQuit, cmdSelect, cmdAuth, cmdHello, cmdInfo, cmdFlushall, cmdDbsize,
  cmdConfigGet, cmdConfigSet, cmdConfigResetstat,
  cmdClientSetname, cmdClientGetname, cmdClientId, cmdClientSetinfo, cmdClientInfo, cmdClientList,
  cmdCommandHelp, cmdConfigHelp, cmdClientHelp,
} from "./server";
import {
  cmdSubscribe, cmdUnsubscribe, cmdPsubscribe, cmdPunsubscribe, cmdPublish, subscribedMode,
  cmdPubsubChannels, cmdPubsubNumsub, cmdPubsubNumpat, cmdPubsubHelp,
} from "./pubsub";

/** Runs a command; returns 0 to carry on, 1 to close the connection after the reply. */
export type Handler = (c: Conn) => i32;

// Records are unmanaged memory taken once at start-up and hold only static
// string literals and function references: the host runs the AssemblyScript
// collector after every callback, and it visits every managed object each
// time, so a table of managed objects would cost microseconds per call.
@final @unmanaged
class Cmd {
  key: u64;
  name: string;
  /** "config|get" for a subcommand: the name Redis uses in errors and COMMAND. */
  full: string;
  /** Redis convention: n = exactly n args, -n = at least n (the name counts). */
  arity: i32;
  handler: Handler;
  /** Space-separated flags and ACL categories, reported by COMMAND. */
  flags: string;
  acl: string;
  firstKey: i32;
  lastKey: i32;
  keyStep: i32;
  group: string;
  since: string;
  summary: string;
  complexity: string;
  /** false: recognised but not advertised by COMMAND. */
  listed: bool;
  /** Subcommand table (a List), or 0. */
  subs: usize;
}

/** A fixed-capacity list of Cmd pointers in unmanaged memory. */
@final @unmanaged
class List {
  count: i32;
  items: usize;
  @inline at(i: i32): Cmd { return changetype<Cmd>(load<usize>(this.items + (<usize>i << alignof<usize>()))); }
}

function newList(capacity: i32): List {
  const l = changetype<List>(heap.alloc(offsetof<List>()));
  l.count = 0;
  l.items = heap.alloc(<usize>capacity << alignof<usize>());
  return l;
}

function push(l: List, cmd: Cmd, capacity: i32): void {
  if (l.count == capacity) abort("resp: command table full");
  store<usize>(l.items + (<usize>l.count << alignof<usize>()), changetype<usize>(cmd));
  l.count++;
}

function noop(c: Conn): i32 { return 0; }

/** How many commands COMMAND advertises (set once the table is built). */
let LISTED: i32 = 0;

const TABLE_CAP = 64;
const SUBS_CAP = 8;
const TABLE = newList(TABLE_CAP);

function make(name: string, full: string, arity: i32, handler: Handler, flags: string, first: i32, last: i32, step: i32,
              acl: string, group: string, since: string, summary: string, complexity: string, listed: bool): Cmd {
  const cmd = changetype<Cmd>(heap.alloc(offsetof<Cmd>()));
  cmd.key = keyOf(name);
  cmd.name = name;
  cmd.full = full;
  cmd.arity = arity;
  cmd.handler = handler;
  cmd.flags = flags;
  cmd.acl = acl;
  cmd.firstKey = first;
  cmd.lastKey = last;
  cmd.keyStep = step;
  cmd.group = group;
  cmd.since = since;
  cmd.summary = summary;
  cmd.complexity = complexity;
  cmd.listed = listed;
  cmd.subs = 0;
  return cmd;
}

function add(name: string, arity: i32, handler: Handler, flags: string, first: i32, last: i32, step: i32,
             acl: string, group: string, since: string, summary: string, complexity: string): Cmd {
  const cmd = make(name, name, arity, handler, flags, first, last, step, acl, group, since, summary, complexity, true);
  push(TABLE, cmd, TABLE_CAP);
  return cmd;
}

/** `full` is spelled out ("config|get") because building it would allocate a managed string. */
function sub(parent: Cmd, name: string, full: string, arity: i32, handler: Handler, flags: string, acl: string, summary: string, complexity: string): void {
  if (!parent.subs) parent.subs = changetype<usize>(newList(SUBS_CAP));
  push(changetype<List>(parent.subs), make(name, full, arity, handler, flags, 0, 0, 0, acl, parent.group, parent.since, summary, complexity, true), SUBS_CAP);
}

// Hottest first: lookup is a linear scan.
add("get", 2, cmdGet, "readonly fast", 1, 1, 1, "@read @string @fast", "string", "1.0.0",
  "Returns the value stored at a key, or nil.", "O(1)");
add("set", -3, cmdSet, "write denyoom", 1, 1, 1, "@write @string @slow", "string", "1.0.0",
  "Stores a value at a key, optionally only if it is absent or present, with an expiry, or returning the old value.", "O(1)");
add("ping", -1, cmdPing, "fast", 0, 0, 0, "@fast @connection", "connection", "1.0.0",
  "Answers PONG, or echoes the argument.", "O(1)");
add("incr", 2, cmdIncr, "write denyoom fast", 1, 1, 1, "@write @string @fast", "string", "1.0.0",
  "Adds one to the integer stored at a key.", "O(1)");
add("mget", -2, cmdMget, "readonly fast", 1, -1, 1, "@read @string @fast", "string", "1.0.0",
  "Returns the values of several keys.", "O(N) where N is the number of keys");
add("mset", -3, cmdMset, "write denyoom", 1, -1, 2, "@write @string @slow", "string", "1.0.1",
  "Stores several key-value pairs.", "O(N) where N is the number of keys");
add("del", -2, cmdDel, "write", 1, -1, 1, "@keyspace @write @slow", "generic", "1.0.0",
  "Removes keys; replies how many existed.", "O(N) where N is the number of keys");
add("decr", 2, cmdDecr, "write denyoom fast", 1, 1, 1, "@write @string @fast", "string", "1.0.0",
  "Subtracts one from the integer stored at a key.", "O(1)");
add("incrby", 3, cmdIncrBy, "write denyoom fast", 1, 1, 1, "@write @string @fast", "string", "1.0.0",
  "Adds an integer to the integer stored at a key.", "O(1)");
add("decrby", 3, cmdDecrBy, "write denyoom fast", 1, 1, 1, "@write @string @fast", "string", "1.0.0",
  "Subtracts an integer from the integer stored at a key.", "O(1)");
add("exists", -2, cmdExists, "readonly fast", 1, -1, 1, "@keyspace @read @fast", "generic", "3.0.3",
  "Counts how many of the given keys exist (repeats count again).", "O(N) where N is the number of keys");
add("strlen", 2, cmdStrlen, "readonly fast", 1, 1, 1, "@read @string @fast", "string", "2.2.0",
  "Returns the length of the value stored at a key.", "O(1)");
add("append", 3, cmdAppend, "write denyoom fast", 1, 1, 1, "@write @string @fast", "string", "2.0.0",
  "Appends bytes to the value stored at a key, creating it if needed.", "O(1)");
add("echo", 2, cmdEcho, "fast", 0, 0, 0, "@fast @connection", "connection", "1.0.0",
  "Replies with the argument.", "O(1)");
add("ttl", 2, cmdTtl, "readonly fast", 1, 1, 1, "@keyspace @read @fast", "generic", "1.0.0",
  "Returns the seconds a key has left to live, -1 without expiry, -2 when absent.", "O(1)");
add("pttl", 2, cmdPttl, "readonly fast", 1, 1, 1, "@keyspace @read @fast", "generic", "2.6.0",
  "Returns the milliseconds a key has left to live, -1 without expiry, -2 when absent.", "O(1)");
add("quit", -1, cmdQuit, "noscript loading stale fast no_auth allow_busy", 0, 0, 0, "@fast @connection", "connection", "1.0.0",
  "Replies OK and closes the connection.", "O(1)");
add("select", 2, cmdSelect, "loading stale fast", 0, 0, 0, "@fast @connection", "connection", "1.0.0",
  "Selects a database; only database 0 exists here.", "O(1)");
add("auth", -2, cmdAuth, "noscript loading stale fast no_auth allow_busy", 0, 0, 0, "@fast @connection", "connection", "1.0.0",
  "Authenticates; this server has no passwords.", "O(N) where N is the number of passwords defined for the user");
add("hello", -1, cmdHello, "noscript loading stale fast no_auth allow_busy", 0, 0, 0, "@fast @connection", "connection", "6.0.0",
  "Handshake: replies server facts; only protocol 2 is available.", "O(1)");
add("info", -1, cmdInfo, "loading stale", 0, 0, 0, "@slow @dangerous", "server", "1.0.0",
  "Returns a few facts about the server.", "O(1)");
const COMMAND = add("command", -1, cmdCommand, "loading stale", 0, 0, 0, "@slow @connection", "server", "2.8.13",
  "Describes the commands this server knows.", "O(N) where N is the number of commands");
const CONFIG = add("config", -2, noop, "", 0, 0, 0, "@slow", "server", "2.0.0",
  "Container for configuration subcommands.", "Depends on subcommand.");
const CLIENT = add("client", -2, noop, "", 0, 0, 0, "@slow", "connection", "2.4.0",
  "Container for connection subcommands.", "Depends on subcommand.");

add("setnx", 3, cmdSetnx, "write denyoom fast", 1, 1, 1, "@write @string @fast", "string", "1.0.0",
  "Stores a value at a key only if it is absent: 1 stored, 0 not.", "O(1)");
add("getset", 3, cmdGetset, "write denyoom fast", 1, 1, 1, "@write @string @fast", "string", "1.0.0",
  "Stores a value at a key and returns the value it replaced, or nil.", "O(1)");
add("getdel", 2, cmdGetdel, "write fast", 1, 1, 1, "@write @string @fast", "string", "6.2.0",
  "Returns the value at a key and deletes the key, or nil.", "O(1)");
add("expire", -3, cmdExpire, "write fast", 1, 1, 1, "@keyspace @write @fast", "generic", "1.0.0",
  "Sets a key's time to live in seconds (<= 0 deletes it): 1 set, 0 absent.", "O(1)");
add("pexpire", -3, cmdPexpire, "write fast", 1, 1, 1, "@keyspace @write @fast", "generic", "2.6.0",
  "Sets a key's time to live in milliseconds (<= 0 deletes it): 1 set, 0 absent.", "O(1)");
add("persist", 2, cmdPersist, "write fast", 1, 1, 1, "@keyspace @write @fast", "generic", "2.2.0",
  "Removes a key's time to live: 1 removed, 0 none or absent.", "O(1)");
add("scan", -2, cmdScan, "readonly", 0, 0, 0, "@keyspace @read @slow", "generic", "2.8.0",
  "One step of listing the keys (MATCH pattern, COUNT hint, TYPE string): the next cursor and the keys.", "O(1) for every call. O(N) for a complete iteration.");
add("keys", 2, cmdKeys, "readonly", 0, 0, 0, "@keyspace @read @slow @dangerous", "generic", "1.0.0",
  "Returns every key matching the pattern.", "O(N) with N being the number of keys in the store");
add("dbsize", 1, cmdDbsize, "readonly fast", 0, 0, 0, "@keyspace @read @fast", "server", "1.0.0",
  "Returns the number of keys in the store (lists them in steps).", "O(N) where N is the number of keys in the store");
add("flushall", -1, cmdFlushall, "write", 0, 0, 0, "@keyspace @write @slow @dangerous", "server", "1.0.0",
  "Deletes every key in the store; ASYNC and SYNC are accepted and both flush before replying. Each key atomically, not all at once.", "O(N) where N is the number of keys in the store");
add("flushdb", -1, cmdFlushall, "write", 0, 0, 0, "@keyspace @write @slow @dangerous", "server", "1.0.0",
  "Same as FLUSHALL: only database 0 exists.", "O(N) where N is the number of keys in the store");
add("publish", 3, cmdPublish, "pubsub loading stale fast", 0, 0, 0, "@pubsub @fast", "pubsub", "2.0.0",
  "Posts a message to a channel; replies how many subscriptions in this server it reached.", "O(N+M) where N is the number of clients subscribed to the receiving channel and M is the total number of subscribed patterns");
add("subscribe", -2, cmdSubscribe, "pubsub noscript loading stale", 0, 0, 0, "@pubsub @slow", "pubsub", "2.0.0",
  "Listens for messages published to channels.", "O(N) where N is the number of channels to subscribe to");
add("unsubscribe", -1, cmdUnsubscribe, "pubsub noscript loading stale", 0, 0, 0, "@pubsub @slow", "pubsub", "2.0.0",
  "Stops listening to channels (without arguments: all of them, in one reply).", "O(N) where N is the number of channels to unsubscribe");
add("psubscribe", -2, cmdPsubscribe, "pubsub noscript loading stale", 0, 0, 0, "@pubsub @slow", "pubsub", "2.0.0",
  "Listens for messages published to channels that match glob patterns.", "O(N) where N is the number of patterns to subscribe to");
const PUBSUB = add("pubsub", -2, noop, "", 0, 0, 0, "@slow", "pubsub", "2.8.0",
  "Container for pub/sub introspection subcommands (this server's subscriptions).", "Depends on subcommand.");
add("punsubscribe", -1, cmdPunsubscribe, "pubsub noscript loading stale", 0, 0, 0, "@pubsub @slow", "pubsub", "2.0.0",
  "Stops listening to patterns (without arguments: all of them, in one reply).", "O(N) where N is the number of patterns to unsubscribe");

sub(COMMAND, "count", "command|count", 2, cmdCommandCount, "loading stale", "@slow @connection", "Returns the number of commands.", "O(1)");
sub(COMMAND, "info", "command|info", -2, cmdCommandInfo, "loading stale", "@slow @connection", "Describes the named commands, or all of them.", "O(N) where N is the number of commands to look up");
sub(COMMAND, "docs", "command|docs", -2, cmdCommandDocs, "loading stale", "@slow @connection", "Documents the named commands, or all of them.", "O(N) where N is the number of commands to look up");
sub(COMMAND, "list", "command|list", -2, cmdCommandList, "loading stale", "@slow @connection", "Lists the command names.", "O(N) where N is the total number of commands");
sub(COMMAND, "help", "command|help", 2, cmdCommandHelp, "loading stale", "@slow @connection", "Shows the COMMAND subcommands.", "O(1)");
sub(CONFIG, "get", "config|get", -3, cmdConfigGet, "admin noscript loading stale", "@admin @slow @dangerous", "Returns the parameters matching the glob patterns.", "O(N) when N is the number of configuration parameters provided");
sub(CONFIG, "set", "config|set", -4, cmdConfigSet, "admin noscript loading stale", "@admin @slow @dangerous", "Refused: parameters cannot be changed here.", "O(N) when N is the number of configuration parameters provided");
sub(CONFIG, "resetstat", "config|resetstat", 2, cmdConfigResetstat, "admin noscript loading stale", "@admin @slow @dangerous", "Accepted; there are no statistics to reset.", "O(1)");
sub(CONFIG, "help", "config|help", 2, cmdConfigHelp, "loading stale", "@slow", "Shows the CONFIG subcommands.", "O(1)");
sub(PUBSUB, "channels", "pubsub|channels", -2, cmdPubsubChannels, "pubsub loading stale", "@pubsub @slow", "Returns the channels with a subscriber in this server, matching the pattern.", "O(N) where N is the number of active channels, and assuming constant time pattern matching (relatively short channels and patterns)");
sub(PUBSUB, "numsub", "pubsub|numsub", -2, cmdPubsubNumsub, "pubsub loading stale", "@pubsub @slow", "Returns the subscribers of each channel in this server (pattern subscriptions not counted).", "O(N) for the NUMSUB subcommand, where N is the number of requested channels");
sub(PUBSUB, "numpat", "pubsub|numpat", 2, cmdPubsubNumpat, "pubsub loading stale", "@pubsub @slow", "Returns the number of distinct patterns subscribed to in this server.", "O(1)");
sub(PUBSUB, "help", "pubsub|help", 2, cmdPubsubHelp, "loading stale", "@slow", "Shows the PUBSUB subcommands.", "O(1)");
sub(CLIENT, "setname", "client|setname", 3, cmdClientSetname, "noscript loading stale", "@slow @connection", "Names the connection.", "O(1)");
sub(CLIENT, "getname", "client|getname", 2, cmdClientGetname, "noscript loading stale", "@slow @connection", "Returns the connection's name, or nil.", "O(1)");
sub(CLIENT, "id", "client|id", 2, cmdClientId, "noscript loading stale", "@slow @connection", "Returns the connection's id.", "O(1)");
sub(CLIENT, "info", "client|info", 2, cmdClientInfo, "noscript loading stale", "@slow @connection", "Describes this connection (id, addr, name) the way CLIENT LIST does.", "O(1)");
sub(CLIENT, "list", "client|list", -2, cmdClientList, "admin noscript loading stale", "@admin @slow @dangerous @connection", "Lists the connections: only the calling one, the only one a module can see.", "O(N) where N is the number of client connections");
sub(CLIENT, "setinfo", "client|setinfo", 4, cmdClientSetinfo, "noscript loading stale", "@slow @connection", "Accepts client library name and version.", "O(1)");
sub(CLIENT, "help", "client|help", 2, cmdClientHelp, "loading stale", "@slow", "Shows the CLIENT subcommands.", "O(1)");

for (let i = 0; i < TABLE.count; i++) if (TABLE.at(i).listed) LISTED++;

function find(list: List, p: usize, len: i32): Cmd | null {
  const k = nameKey(p, len);
  for (let i = 0, n = list.count; i < n; i++) {
    const cmd = list.at(i);
    if (cmd.key == k && cmd.name.length == len && (len <= 8 || bytesEqualIgnoreCase(p, len, cmd.name))) return cmd;
  }
  return null;
}

/** Executes the parsed command of `argc` (> 0) arguments. */
export function execute(c: Conn, argc: i32): i32 {
  setArgCount(argc);
  const p0 = argPtr(0);
  const l0 = argLen(0);
  let cmd = find(TABLE, p0, l0);
  if (!cmd) {
    // A browser or HTTP client talking to this port: drop it without a reply, as Redis does.
    if (bytesEqualIgnoreCase(p0, l0, "post") || bytesEqualIgnoreCase(p0, l0, "host:")) return 1;
    replyUnknownCommand(c, argc);
    return 0;
  }
  if (!arityOk(cmd.arity, argc)) {
    replyArity(c, cmd);
    return 0;
  }
  const subs = cmd.subs;
  if (subs && argc >= 2) {
    const s = find(changetype<List>(subs), argPtr(1), argLen(1));
    if (!s) {
      c.writeString("-ERR unknown subcommand '");
      writeErrorText(c, argPtr(1), argLen(1), 128);
      c.writeString("'. Try ");
      for (let j = 0; j < l0; j++) {
        const b = load<u8>(p0 + <usize>j);
        c.writeByte(b >= 0x61 && b <= 0x7A ? b - 0x20 : b);
      }
      c.writeString(" HELP.\r\n");
      return 0;
    }
    if (!arityOk(s.arity, argc)) {
      replyArity(c, s);
      return 0;
    }
    cmd = s;
  }
  if (subscribedMode(c, p0, l0, cmd.full)) return 0;  // RESP2 subscribed mode: PING's form, or a refusal
  return run(c, cmd);
}

/**
 * Runs a handler. When one of its store calls found the store unavailable (ABI v1.1, -3;
 * store.ts stops the command's store calls there), its answer came from reads that failed:
 * it is taken back and the command answered "-ERR store unavailable" instead. If part of
 * that answer has already left (only a reply over the out region, e.g. a huge MGET), the
 * client could not tell where the wrong reply ends, so the connection closes.
 */
function run(c: Conn, cmd: Cmd): i32 {
  beginCommand();
  const mark = c.written;
  const r = cmd.handler(c);
  if (!storeUnavailable()) return r;
  if (!c.rewind(mark)) return 1;
  out(c, E_UNAVAILABLE);
  return r;
}

@inline function arityOk(arity: i32, argc: i32): bool {
  return arity > 0 ? argc == arity : argc >= -arity;
}

function replyArity(c: Conn, cmd: Cmd): void {
  c.writeString("-ERR wrong number of arguments for '");
  c.writeString(cmd.full);
  c.writeString("' command\r\n");
}

/** Redis 7's wording: the name, then the arguments quoted, each followed by a
 *  space, until about 128 bytes of them have been shown. */
function replyUnknownCommand(c: Conn, argc: i32): void {
  c.writeString("-ERR unknown command '");
  writeErrorText(c, argPtr(0), argLen(0), 128);
  c.writeString("', with args beginning with: ");
  let shown = 0;
  for (let i = 1; i < argc && shown < 128; i++) {
    c.writeByte(0x27);
    shown += writeErrorText(c, argPtr(i), argLen(i), 128 - shown) + 3;
    c.writeString("' ");
  }
  c.writeString("\r\n");
}

// ---- COMMAND ----------------------------------------------------------------

function countWords(s: string): i32 {
  let n = 0;
  let inWord = false;
  for (let i = 0; i < s.length; i++) {
    const space = s.charCodeAt(i) == 0x20;
    if (!space && !inWord) n++;
    inWord = !space;
  }
  return n;
}

/** The words of `s` as an array of status replies. */
function replyWords(c: Conn, s: string): void {
  replyArray(c, countWords(s));
  let start = -1;
  for (let i = 0; i <= s.length; i++) {
    const end = i == s.length || s.charCodeAt(i) == 0x20;
    if (!end && start < 0) start = i;
    if (end && start >= 0) {
      c.writeByte(0x2B);
      for (let j = start; j < i; j++) c.writeByte(<u8>s.charCodeAt(j));
      c.writeString("\r\n");
      start = -1;
    }
  }
}

/** One COMMAND / COMMAND INFO entry, in Redis 7's ten-field shape. */
function replyInfo(c: Conn, cmd: Cmd): void {
  replyArray(c, 10);
  replyBulkStr(c, cmd.full);
  replyInt(c, cmd.arity);
  replyWords(c, cmd.flags);
  replyInt(c, cmd.firstKey);
  replyInt(c, cmd.lastKey);
  replyInt(c, cmd.keyStep);
  replyWords(c, cmd.acl);
  replyArray(c, 0); // tips
  replyArray(c, 0); // key specifications
  if (cmd.subs) {
    const subs = changetype<List>(cmd.subs);
    replyArray(c, subs.count);
    for (let i = 0; i < subs.count; i++) replyInfo(c, subs.at(i));
  } else {
    replyArray(c, 0);
  }
}

/** One COMMAND DOCS value: a flat map of doc fields. */
function replyDocs(c: Conn, cmd: Cmd): void {
  replyArray(c, cmd.subs ? 10 : 8);
  replyBulkStr(c, "summary"); replyBulkStr(c, cmd.summary);
  replyBulkStr(c, "since"); replyBulkStr(c, cmd.since);
  replyBulkStr(c, "group"); replyBulkStr(c, cmd.group);
  replyBulkStr(c, "complexity"); replyBulkStr(c, cmd.complexity);
  if (cmd.subs) {
    const subs = changetype<List>(cmd.subs);
    replyBulkStr(c, "subcommands");
    replyArray(c, subs.count * 2);
    for (let i = 0; i < subs.count; i++) {
      replyBulkStr(c, subs.at(i).full);
      replyDocs(c, subs.at(i));
    }
  }
}

function cmdCommand(c: Conn): i32 {
  if (argCount == 1) {
    replyArray(c, LISTED);
    for (let i = 0; i < TABLE.count; i++) if (TABLE.at(i).listed) replyInfo(c, TABLE.at(i));
    return 0;
  }
  return 0; // COMMAND <subcommand> never gets here: execute() routes it
}

function cmdCommandCount(c: Conn): i32 {
  replyInt(c, LISTED);
  return 0;
}

function lookupListed(i: i32): Cmd | null {
  const cmd = find(TABLE, argPtr(i), argLen(i));
  return cmd && cmd.listed ? cmd : null;
}

function cmdCommandInfo(c: Conn): i32 {
  if (argCount == 2) {
    replyArray(c, LISTED);
    for (let i = 0; i < TABLE.count; i++) if (TABLE.at(i).listed) replyInfo(c, TABLE.at(i));
    return 0;
  }
  replyArray(c, argCount - 2);
  for (let i = 2; i < argCount; i++) {
    const cmd = lookupListed(i);
    if (cmd) replyInfo(c, cmd);
    else out(c, R_NIL);
  }
  return 0;
}

function cmdCommandDocs(c: Conn): i32 {
  if (argCount == 2) {
    replyArray(c, LISTED * 2);
    for (let i = 0; i < TABLE.count; i++) {
      const cmd = TABLE.at(i);
      if (!cmd.listed) continue;
      replyBulkStr(c, cmd.full);
      replyDocs(c, cmd);
    }
    return 0;
  }
  // Unknown names are left out, as Redis does.
  let found = 0;
  for (let i = 2; i < argCount; i++) if (lookupListed(i)) found++;
  replyArray(c, found * 2);
  for (let i = 2; i < argCount; i++) {
    const cmd = lookupListed(i);
    if (!cmd) continue;
    replyBulkStr(c, cmd.full);
    replyDocs(c, cmd);
  }
  return 0;
}

function cmdCommandList(c: Conn): i32 {
  if (argCount != 2) {
    // FILTERBY is not offered.
    out(c, E_SYNTAX);
    return 0;
  }
  replyArray(c, LISTED);
  for (let i = 0; i < TABLE.count; i++) if (TABLE.at(i).listed) replyBulkStr(c, TABLE.at(i).full);
  return 0;
}
