// A Redis sharding proxy in the spirit of twemproxy (nutcracker), on upstreams
// (docs/abi.md §16).
//
// Set-up, two ways:
// - By address (the default): the upstream `redis` (or the one --config's
//   upstream=NAME names) and each of its addresses is a shard, in the order
//   listed: `--upstream redis=127.0.0.1:6380,127.0.0.1:6381` is the whole
//   set-up. Each shard is opened alone (upstream_open of "redis#I", no
//   failover) and named for ketama as nutcracker names a server listed with
//   no name: "HOST:PORT" (tcpmod.upstream_addr gives the text). Keys go where
//   nutcracker with `hash: fnv1a_64`, the same distribution and the same
//   servers (`- 127.0.0.1:6380:1`, in the same order) puts them. A name with
//   one address is one shard.
// - By name: each shard is an upstream the operator names (--upstream
//   s0=IP:PORT, --upstream s1=…; several addresses under one name are that
//   shard's failover list, tried in order), and --config lists them in order:
//   servers=s0,s1,s2; a server may carry a weight: s0:2. Keys go where
//   nutcracker puts them with servers named like the upstreams
//   (`- 127.0.0.1:6380:1 s0`).
// Both take [distribution=ketama|modula] [hash_tag={}] (proxy/hash.ts). At
// most 8 shards (8 upstreams per connection).
//
// Per client connection: one upstream per shard, opened at its first key. A
// request is routed by its key and passed on unchanged (a large value streams
// through, never held whole); MGET, DEL/UNLINK/EXISTS/TOUCH and MSET over
// several keys are split into one command per key and their replies joined
// (an array, a sum, one +OK); PING and QUIT are answered here; anything else
// is refused with an error (a whitelist, proxy/commands.ts).
//
// Order: pipelined requests are answered in order. The 256-byte state slot
// holds a ring of what each outstanding reply is (an entry per reply: shard
// and kind). A reply that comes from a shard before the reply owed at the
// front is left unconsumed ("not yet"); when the front moves to a shard
// whose reply is held, upstream_resume offers it again. When the ring is full
// the client's input waits, and upstream_resume(conn, 0) takes it again once
// replies went out.
//
// Failures: a shard that cannot be connected, or closes, has every reply
// still owed to it answered with "-ERR proxy: shard NAME unavailable" (inside
// an MGET's array, the element; in a sum or MSET, the whole reply is an
// error); the next request for it connects again. A shard that closes in the
// middle of a reply already partly sent closes the client (the reply cannot be
// completed). Keys on other shards are unaffected.

import { Conn, Action, configure, setOnInit, setOnUpstream, upstreamAddr, UPSTREAM_CONNECTED, UPSTREAM_DATA } from "tcpmod/assembly/sdk";
export * from "tcpmod/assembly/sdk/exports";
import { MAX_SERVERS, KETAMA, MODULA, addServer, buildContinuum, names, nServers, resetServers, serverOf, setDistribution, setHashTag } from "./proxy/hash";
import { initCommands, classify, SINGLE, MGET, SUM, MSET, PING, QUIT } from "./proxy/commands";

const IN_CAP: i32 = 256 * 1024;
const OUT_CAP: i32 = 64 * 1024;
const STATE_SIZE: i32 = 256;

// --- Configuration ---

function onInit(cfg: usize, len: i32): i32 {
  initCommands();
  resetServers();
  const text = String.UTF8.decodeUnsafe(cfg, <usize>len).trim();
  let servers = "";
  let upstream = "redis";
  setDistribution(KETAMA);
  setHashTag(0, 0);
  if (text.length > 0) {
    const words = text.split(" ");
    for (let i = 0; i < words.length; i++) {
      const w = words[i];
      if (w.length == 0) continue;
      const eq = w.indexOf("=");
      if (eq < 0) return -1;
      const k = w.substring(0, eq), v = w.substring(eq + 1);
      if (k == "servers") servers = v;
      else if (k == "upstream") upstream = v;
      else if (k == "distribution") {
        if (v == "ketama") setDistribution(KETAMA);
        else if (v == "modula") setDistribution(MODULA);
        else return -1;
      } else if (k == "hash_tag") {
        if (v.length != 2) return -1;
        setHashTag(<u8>v.charCodeAt(0), <u8>v.charCodeAt(1));
      } else return -1;
    }
  }
  if (servers.length == 0) {
    // By address: each address of the one upstream is a shard (see the top).
    let n = 0;
    while (n <= MAX_SERVERS && upstreamAddr(upstream, n) !== null) n++;
    if (n > MAX_SERVERS) return -1;
    if (n <= 1) {
      addServer(upstream, 1);
      opens[0] = upstream;
    }
    for (let i = 0; n > 1 && i < n; i++) {
      const a = upstreamAddr(upstream, i)!;
      // nutcracker leaves out the port of the libmemcached default (11211) from the name.
      addServer(a.endsWith(":11211") ? a.substring(0, a.length - 6) : a, 1);
      opens[i] = upstream + "#" + i.toString();
    }
    buildContinuum();
    return 0;
  }
  const list = servers.split(",");
  if (list.length > MAX_SERVERS) return -1;
  for (let i = 0; i < list.length; i++) {
    const s = list[i];
    const colon = s.indexOf(":");
    let weight = 1;
    let name = s;
    if (colon >= 0) {
      name = s.substring(0, colon);
      weight = I32.parseInt(s.substring(colon + 1));
      if (weight < 1 || weight > 8) return -1;
    }
    if (name.length == 0) return -1;
    opens[i] = name;
    addServer(name, weight);
  }
  buildContinuum();
  return 0;
}

// --- The state slot (256 bytes, little-endian) ---
// 0   handles: i32[8]  the shard's upstream handle on this connection (0: none)
// 32  owed:    u16[8]  how many of the shard's next entries get an error (it failed)
// 48  head u16, count u16: the ring
// 52  rpend i32, rbulk i32: progress in the reply owed at the front
// 60  qmode i32 (0 none, 1 + shard: pass on, DISCARD: drop), qpend i32, qbulk i32: the rest of a request
// 72  acc i64, 80 accErr u8, 81 flags u8 (bit 0: client input held)
// 84  ring: RING entries of one byte
const O_HANDLES = 0, O_OWED = 32, O_HEAD = 48, O_COUNT = 50, O_RPEND = 52, O_RBULK = 56;
const DISCARD: i32 = 99;
const O_QMODE = 60, O_QPEND = 64, O_QBULK = 68, O_ACC = 72, O_ACCERR = 80, O_FLAGS = 81, O_RING = 84;
const RING: i32 = STATE_SIZE - O_RING;
const HELD: u8 = 1;

// An entry: bits 0-2 the shard (or the local reply's code, or a HEAD's part kind), bits 3-5 the kind, bit 6 the last part.
const FWD: i32 = 0, LOCAL: i32 = 1, HEAD: i32 = 2, PMGET: i32 = 3, PSUM: i32 = 4, PMSET: i32 = 5;
const LAST: i32 = 0x40;
// A HEAD is followed by two raw bytes: the number of parts (little-endian).
const L_PONG: i32 = 0, L_QUIT: i32 = 1, L_UNSUPPORTED: i32 = 2, L_ARGS: i32 = 3, L_TOO_MANY: i32 = 4, L_INLINE: i32 = 5;

/** The upstream each shard opens: its name, or "NAME#I" (one address of NAME) when sharding by address. */
const opens = new StaticArray<string>(MAX_SERVERS);

let st: usize = 0;
function handle(s: i32): i32 { return load<i32>(st + O_HANDLES + <usize>(s * 4)); }
function setHandle(s: i32, h: i32): void { store<i32>(st + O_HANDLES + <usize>(s * 4), h); }
function owed(s: i32): i32 { return load<u16>(st + O_OWED + <usize>(s * 2)); }
function setOwed(s: i32, n: i32): void { store<u16>(st + O_OWED + <usize>(s * 2), <u16>n); }
function count(): i32 { return load<u16>(st + O_COUNT); }
function at(i: i32): i32 { return load<u8>(st + O_RING + <usize>((load<u16>(st + O_HEAD) + i) % RING)); }
function push(e: i32): void {
  const n = count();
  store<u8>(st + O_RING + <usize>((load<u16>(st + O_HEAD) + n) % RING), <u8>e);
  store<u16>(st + O_COUNT, <u16>(n + 1));
}
function pop(n: i32): void {
  store<u16>(st + O_HEAD, <u16>((load<u16>(st + O_HEAD) + n) % RING));
  store<u16>(st + O_COUNT, <u16>(count() - n));
}
function flags(): u8 { return load<u8>(st + O_FLAGS); }
function setFlags(f: u8): void { store<u8>(st + O_FLAGS, f); }
function kindOf(e: i32): i32 { return (e >> 3) & 7; }

function shardOfHandle(h: i32): i32 {
  for (let s = 0; s < nServers; s++) if (handle(s) == h) return s;
  return -1;
}

/** The shard's upstream, opened at its first use: a handle, or < 0 (its replies become errors). */
function ensureOpen(c: Conn, s: i32): i32 {
  let h = handle(s);
  if (h > 0) return h;
  h = c.openUpstream(opens[s]);
  if (h > 0) setHandle(s, h);
  return h;
}

// --- A RESP value, streamed: how far it goes in the bytes at hand ---
let sp: i32 = 0;      // items left in the value (0 with sb 0: a new value starts)
let sb: i32 = 0;      // payload bytes (CRLF included) left of a bulk string
let done: bool = false;
let bad: bool = false;
let started: bool = false; // the value's first header was read in this skip()
let firstType: u8 = 0;
let firstInt: i64 = 0;

/** The end of a line starting at `pos` (offset of its CR), -1 when not complete. */
function lineEnd(base: usize, pos: i32, end: i32): i32 {
  for (let i = pos; i + 1 < end; i++) if (load<u8>(base + <usize>i) == 0x0D) return load<u8>(base + <usize>(i + 1)) == 0x0A ? i : -2;
  return -1;
}

function parseInt(base: usize, from: i32, to: i32): i64 {
  let neg = false, v: i64 = 0, i = from;
  if (i < to && load<u8>(base + <usize>i) == 0x2D) { neg = true; i++; }
  if (i == to) bad = true;
  for (; i < to; i++) {
    const d = <i32>load<u8>(base + <usize>i) - 0x30;
    if (d < 0 || d > 9 || v > 100000000000000) { bad = true; return 0; }
    v = v * 10 + d;
  }
  return neg ? -v : v;
}

/** Advances over the value (sp, sb) from pos; the new position. `done` when it ended, `bad` when malformed. */
function skip(base: usize, pos: i32, end: i32): i32 {
  done = false;
  bad = false;
  started = false;
  if (sp == 0 && sb == 0) sp = -1; // a new value: its first header tells
  while (true) {
    if (sb > 0) {
      const take = min(sb, end - pos);
      pos += take;
      sb -= take;
      if (sb > 0) return pos;
      sp--;
      if (sp == 0) { done = true; return pos; }
      continue;
    }
    if (pos >= end) return pos;
    const e = lineEnd(base, pos, end);
    if (e == -1) {
      if (end - pos > 64 * 1024) bad = true;
      return pos;
    }
    if (e == -2) { bad = true; return pos; }
    const t = load<u8>(base + <usize>pos);
    const first = sp == -1;
    if (first) { sp = 1; started = true; firstType = t; firstInt = 0; }
    if (t == 0x2B || t == 0x2D || t == 0x5F || t == 0x2C || t == 0x23 || t == 0x28) { // + - _ , # (
      sp--;
    } else if (t == 0x3A) { // :
      const v = parseInt(base, pos + 1, e);
      if (first) firstInt = v;
      sp--;
    } else if (t == 0x24 || t == 0x21 || t == 0x3D) { // $ ! =
      const n = parseInt(base, pos + 1, e);
      if (n < -1 || n > 512 * 1024 * 1024) bad = true;
      if (n < 0) sp--;
      else sb = <i32>n + 2;
    } else if (t == 0x2A || t == 0x7E || t == 0x3E || t == 0x25 || t == 0x7C) { // * ~ > % |
      let n = parseInt(base, pos + 1, e);
      if (n > 1 << 24) bad = true;
      sp--;
      if (n > 0) sp += <i32>(t == 0x25 || t == 0x7C ? n * 2 : n);
    } else bad = true;
    if (bad) return pos;
    pos = e + 2;
    if (sp == 0 && sb == 0) { done = true; return pos; }
  }
}

// --- Replies, in order ---

let quitting = false;

function localReply(c: Conn, code: i32): void {
  if (code == L_PONG) c.writeString("+PONG\r\n");
  else if (code == L_QUIT) { c.writeString("+OK\r\n"); quitting = true; }
  else if (code == L_UNSUPPORTED) c.writeString("-ERR proxy: command not supported (only single-key commands, MGET, MSET, DEL, UNLINK, EXISTS, TOUCH, PING, QUIT)\r\n");
  else if (code == L_ARGS) c.writeString("-ERR proxy: wrong number of arguments\r\n");
  else if (code == L_TOO_MANY) c.writeString("-ERR proxy: too many keys in one command\r\n");
  else c.writeString("-ERR proxy: inline commands are not supported (use RESP arrays)\r\n");
}

function unavailable(c: Conn, s: i32): void {
  c.writeString("-ERR proxy: shard ");
  c.writeString(names[s]);
  c.writeString(" unavailable\r\n");
}

/** A part of a SUM or MSET group got its reply (or an error): folded into the accumulator; the last one answers. */
function fold(c: Conn, kind: i32, last: bool, ok: bool, v: i64): void {
  if (!ok) store<u8>(st + O_ACCERR, 1);
  else store<i64>(st + O_ACC, load<i64>(st + O_ACC) + v);
  if (!last) return;
  if (load<u8>(st + O_ACCERR) != 0) c.writeString("-ERR proxy: a shard failed part of this command\r\n");
  else if (kind == PSUM) { c.writeByte(0x3A); c.writeInt(load<i64>(st + O_ACC)); c.writeString("\r\n"); }
  else c.writeString("+OK\r\n");
}

/**
 * Answers what can be answered at the front of the ring, with the bytes of
 * shard `s` at [pos, end) (s = -1: none). Returns how far those bytes were
 * used. When the front moved and now waits on a shard whose bytes may be
 * held, that shard is resumed; in an upstream event, held client input too.
 */
function answer(c: Conn, s: i32, base: usize, pos: i32, end: i32, inUpstream: bool): i32 {
  let advanced = false;
  while (count() > 0 && !quitting) {
    const e = at(0);
    const kind = kindOf(e);
    const v = e & 7;
    if (kind == LOCAL) { localReply(c, v); pop(1); advanced = true; continue; }
    if (kind == HEAD) {
      const n = at(1) | (at(2) << 8);
      if (v == PMGET) { c.writeByte(0x2A); c.writeInt(n); c.writeString("\r\n"); }
      store<i64>(st + O_ACC, 0);
      store<u8>(st + O_ACCERR, 0);
      pop(3);
      advanced = true;
      continue;
    }
    const last = (e & LAST) != 0;
    const midReply = load<i32>(st + O_RPEND) != 0 || load<i32>(st + O_RBULK) != 0;
    if (owed(v) > 0 && !midReply) {
      setOwed(v, owed(v) - 1);
      if (kind == PSUM || kind == PMSET) fold(c, kind, last, false, 0);
      else unavailable(c, v);
      pop(1);
      advanced = true;
      continue;
    }
    if (v != s || pos >= end) break;
    sp = load<i32>(st + O_RPEND);
    sb = load<i32>(st + O_RBULK);
    const np = skip(base, pos, end);
    if (bad) { quitting = true; c.writeString("-ERR proxy: malformed reply from a shard\r\n"); return end; }
    if (kind == FWD || kind == PMGET) c.write(base + <usize>pos, np - pos);
    else if (started) fold(c, kind, false, firstType == 0x3A || firstType == 0x2B, firstType == 0x3A ? firstInt : 0);
    pos = np;
    if (!done) {
      if (sp == -1) sp = 0; // not even its first line yet
      store<i32>(st + O_RPEND, sp);
      store<i32>(st + O_RBULK, sb);
      break;
    }
    store<i32>(st + O_RPEND, 0);
    store<i32>(st + O_RBULK, 0);
    if (last && (kind == PSUM || kind == PMSET)) fold(c, kind, true, true, 0);
    pop(1);
    advanced = true;
  }
  if (advanced && !quitting) {
    if (count() > 0) {
      const e = at(0);
      const k = kindOf(e);
      if (k != LOCAL && k != HEAD && (e & 7) != s && handle(e & 7) > 0) c.resumeUpstream(handle(e & 7));
    }
    if (inUpstream && (flags() & HELD) != 0) {
      setFlags(flags() & ~HELD);
      c.resumeUpstream(0);
    }
  }
  return pos;
}

function onUpstream(c: Conn, up: i32, event: i32): Action {
  st = c.state;
  quitting = false;
  const s = shardOfHandle(up);
  const len = c.inputLen;
  if (s < 0 || event == UPSTREAM_CONNECTED) {
    c.consume(len);
    return Action.Continue;
  }
  const pos = answer(c, s, c.input, 0, len, true);
  if (event == UPSTREAM_DATA) {
    c.consume(pos);
    return quitting ? Action.Close : Action.Continue;
  }
  // CLOSED or FAILED: the rest of its bytes can never be answered in order; every reply still owed by it is an error.
  c.consume(len);
  if (count() > 0 && (at(0) & 7) == s && kindOf(at(0)) != LOCAL && kindOf(at(0)) != HEAD &&
      (load<i32>(st + O_RPEND) != 0 || load<i32>(st + O_RBULK) != 0)) return Action.Close; // a reply cut in the middle
  setHandle(s, 0);
  let n = 0;
  for (let i = 0; i < count(); i++) {
    const e = at(i);
    const k = kindOf(e);
    if (k == HEAD) { i += 2; continue; }
    if (k != LOCAL && (e & 7) == s) n++;
  }
  setOwed(s, n);
  answer(c, -1, 0, 0, 0, true);
  return quitting ? Action.Close : Action.Continue;
}

// --- Requests ---

// Where split commands are composed (a key and value fit: the whole request was in the input region).
const scratchBuf = new StaticArray<u8>(IN_CAP + 256);
const scratch = changetype<usize>(scratchBuf);
const MAX_ARGS: i32 = RING * 2 + 2;
const argPtr = new StaticArray<i32>(MAX_ARGS);
const argLen = new StaticArray<i32>(MAX_ARGS);
let argc: i32 = 0;   // arguments the request has
let parsed: i32 = 0; // of which parse() read (their offsets in argPtr/argLen)
let reqEnd: i32 = 0; // just past the last argument read
const NEED: i32 = 0, OK: i32 = 1, BAD: i32 = 2;

/** Reads the request's header and its first `want` arguments (bulk strings). */
function parse(base: usize, pos: i32, end: i32, want: i32): i32 {
  let e = lineEnd(base, pos, end);
  if (e == -1) return NEED;
  bad = false;
  const n = parseInt(base, pos + 1, e);
  if (e == -2 || bad || n < 1 || n > 1024 * 1024) return BAD;
  argc = <i32>n;
  parsed = 0;
  let p = e + 2;
  const upto = min(argc, want);
  while (parsed < upto) {
    if (p >= end) return NEED;
    if (load<u8>(base + <usize>p) != 0x24) return BAD;
    e = lineEnd(base, p, end);
    if (e == -1) return NEED;
    const l = parseInt(base, p + 1, e);
    if (e == -2 || bad || l < 0 || l > 512 * 1024 * 1024) return BAD;
    const start = e + 2;
    if (<i64>start + l + 2 > <i64>end) return NEED;
    argPtr[parsed] = start;
    argLen[parsed] = <i32>l;
    parsed++;
    p = start + <i32>l + 2;
  }
  reqEnd = p;
  return OK;
}

/** Sends one command of `argn` arguments (a name and the given args) to shard s; false when its queue is full. */
let cmdLen: i32 = 0;
function put(p: usize, len: i32): void {
  store<u8>(scratch + <usize>cmdLen, 0x24);
  cmdLen += 1;
  cmdLen += writeDec(scratch + <usize>cmdLen, len);
  store<u16>(scratch + <usize>cmdLen, 0x0A0D);
  memory.copy(scratch + <usize>(cmdLen + 2), p, <usize>len);
  store<u16>(scratch + <usize>(cmdLen + 2 + len), 0x0A0D);
  cmdLen += len + 4;
}
function writeDec(p: usize, v: i32): i32 {
  let n = 1;
  for (let x = v; x >= 10; x /= 10) n++;
  for (let i = n - 1; i >= 0; i--) { store<u8>(p + <usize>i, <u8>(0x30 + v % 10)); v /= 10; }
  return n;
}

/** Queues entry `e` for shard s, whose upstream is h (< 0: it could not be had, the reply is an error). */
function route(s: i32, h: i32, e: i32): void {
  if (h <= 0) setOwed(s, owed(s) + 1);
  push(e);
}

// Consecutive requests for one shard go to it in one upstream_send (one host call and one
// syscall for a pipelined batch, not one per request): [pendStart, pendEnd) of the input, for
// upstream pendH, whose pendN entries are the ring's last. Sent before anything else is queued or
// sent; when the shard's queue is full (-2) the entries are taken back and the requests wait.
// At most CHUNK bytes per upstream_send: a send larger than what the shard's queue may hold
// (--max-output-buffer, at least 64 KiB) would be refused however long the module waits.
const CHUNK: i32 = 32 * 1024;
let pendH: i32 = 0, pendStart: i32 = 0, pendEnd: i32 = 0, pendN: i32 = 0;
let undoneAt: i32 = -1;

/** Sends the pending run; false when the shard's queue was full: its entries are undone and undoneAt is where its requests start. */
function flush(c: Conn, base: usize): bool {
  const h = pendH;
  if (h == 0) return true;
  pendH = 0;
  if (c.sendUpstream(h, base + <usize>pendStart, pendEnd - pendStart) != -2) return true;
  store<u16>(st + O_COUNT, <u16>(count() - pendN));
  store<i32>(st + O_QMODE, 0); // the last request's rest, if any, is read again with it
  undoneAt = pendStart;
  return false;
}

function onData(c: Conn): Action {
  st = c.state;
  pendH = 0;
  quitting = false;
  const base = c.input;
  const len = c.inputLen;
  let pos = 0;
  let held = false;
  let action = Action.Continue;
  while (pos < len && !quitting) {
    const qm = load<i32>(st + O_QMODE);
    if (qm != 0) {
      // The rest of a request: passed on to its shard as it comes (or dropped).
      sp = load<i32>(st + O_QPEND);
      sb = load<i32>(st + O_QBULK);
      const lim = min(len, pos + CHUNK);
      let np = skip(base, pos, lim);
      if (np == pos && lim < len && !bad) np = skip(base, pos, len); // a header line across the cut: taken whole
      if (bad) { c.writeString("-ERR proxy: protocol error\r\n"); action = Action.Close; pos = len; break; }
      if (!flush(c, base)) { pos = undoneAt; held = true; break; }
      if (qm != DISCARD && np > pos) {
        const h = handle(qm - 1);
        if (h > 0 && c.sendUpstream(h, base + <usize>pos, np - pos) == -2) { held = true; break; }
      }
      const progressed = np > pos;
      pos = np;
      store<i32>(st + O_QPEND, sp);
      store<i32>(st + O_QBULK, sb);
      if (!done) {
        if (np < len && progressed) continue; // cut at CHUNK: the next piece
        break;
      }
      store<i32>(st + O_QMODE, 0);
      continue;
    }
    if (count() + 1 > RING) { held = true; break; }
    const b = load<u8>(base + <usize>pos);
    if (b != 0x2A) {
      // Inline command: refused, the line skipped.
      let lf = -1;
      for (let i = pos; i < len; i++) if (load<u8>(base + <usize>i) == 0x0A) { lf = i; break; }
      if (lf < 0) {
        if (len - pos >= IN_CAP) { c.writeString("-ERR proxy: protocol error\r\n"); action = Action.Close; pos = len; }
        break;
      }
      if (!flush(c, base)) { pos = undoneAt; held = true; break; }
      push((LOCAL << 3) | L_INLINE);
      pos = lf + 1;
      continue;
    }
    let r = parse(base, pos, len, 2);
    if (r == NEED) {
      if (pos == 0 && len >= IN_CAP) { c.writeString("-ERR proxy: request too large\r\n"); action = Action.Close; pos = len; }
      break;
    }
    if (r == BAD) { c.writeString("-ERR Protocol error: invalid request\r\n"); action = Action.Close; pos = len; break; }
    const cls = classify(base + <usize>argPtr[0], argLen[0]);
    if (cls == SINGLE && argc >= 2) {
      const s = serverOf(base + <usize>argPtr[1], argLen[1]);
      const h = ensureOpen(c, s);
      // The arguments after the key: when they are all here the request joins the run whole; else they stream after it.
      let end = reqEnd;
      let rest = argc - 2;
      if (rest > 0) {
        sp = rest;
        sb = 0;
        const np = skip(base, reqEnd, len);
        if (done && !bad && np - pos <= CHUNK) { end = np; rest = 0; }
      }
      if (h > 0 && pendH == h && pendEnd == pos && end - pendStart <= CHUNK) {
        pendEnd = end;
        pendN++;
      } else {
        if (!flush(c, base)) { pos = undoneAt; held = true; break; }
        if (h > 0) {
          pendH = h;
          pendStart = pos;
          pendEnd = end;
          pendN = 1;
        }
      }
      route(s, h, (FWD << 3) | s);
      pos = end;
      if (rest > 0) {
        store<i32>(st + O_QMODE, h > 0 ? s + 1 : DISCARD);
        store<i32>(st + O_QPEND, rest);
        store<i32>(st + O_QBULK, 0);
      }
      continue;
    }
    if (!flush(c, base)) { pos = undoneAt; held = true; break; }
    if (cls == MGET || cls == SUM || cls == MSET) {
      r = parse(base, pos, len, MAX_ARGS);
      if (r == BAD) { c.writeString("-ERR Protocol error: invalid request\r\n"); action = Action.Close; pos = len; break; }
      const keys = cls == MSET ? (argc - 1) / 2 : argc - 1;
      const argsOk = keys >= 1 && (cls != MSET || (argc - 1) % 2 == 0);
      if (argsOk && keys + 3 <= RING && argc <= MAX_ARGS) {
        if (r == NEED) {
          if (pos == 0 && len >= IN_CAP) { c.writeString("-ERR proxy: multi-key command larger than the proxy's 256 KiB input region\r\n"); action = Action.Close; pos = len; }
          break;
        }
        if (count() + keys + 3 > RING) { held = true; break; }
        splitMulti(c, base, cls, keys);
        if (overloaded) { overloaded = false; return Action.Abort; }
        pos = reqEnd;
        continue;
      }
      // Refused: answered in order, its arguments skipped as they come.
      r = OK;
      push((LOCAL << 3) | (argsOk ? L_TOO_MANY : L_ARGS));
    } else if (cls == PING && argc == 1) push((LOCAL << 3) | L_PONG);
    else if (cls == QUIT) push((LOCAL << 3) | L_QUIT);
    else push((LOCAL << 3) | (cls == SINGLE || cls == PING || cls == MGET || cls == SUM || cls == MSET ? L_ARGS : L_UNSUPPORTED));
    // The arguments not read: dropped as they come.
    const first = min(parsed, 2);
    pos = first == 0 ? reqEnd : argPtr[first - 1] + argLen[first - 1] + 2;
    if (argc > first) {
      store<i32>(st + O_QMODE, DISCARD);
      store<i32>(st + O_QPEND, argc - first);
      store<i32>(st + O_QBULK, 0);
    }
  }
  if (!flush(c, base)) { pos = undoneAt; held = true; }
  if (held) setFlags(flags() | HELD);
  c.consume(pos);
  answer(c, -1, 0, 0, 0, false);
  if (quitting) return Action.Close;
  if (c.eof) return Action.Close;
  return action;
}

let overloaded = false;
const SUBCMD_GET = "GET", SUBCMD_SET = "SET";

/** MGET / DEL… / MSET over its keys: one command per key to its shard, a HEAD and one part per key. */
function splitMulti(c: Conn, base: usize, cls: i32, keys: i32): void {
  const partKind = cls == MGET ? PMGET : cls == SUM ? PSUM : PMSET;
  push((HEAD << 3) | partKind);
  push(keys & 0xFF);
  push(keys >> 8);
  const name = cls == MGET ? String.UTF8.encode(SUBCMD_GET) : cls == MSET ? String.UTF8.encode(SUBCMD_SET) : new ArrayBuffer(0);
  for (let k = 0; k < keys; k++) {
    const ai = cls == MSET ? 1 + k * 2 : 1 + k;
    const kp = base + <usize>argPtr[ai];
    const kl = argLen[ai];
    const s = serverOf(kp, kl);
    let h = ensureOpen(c, s);
    if (h > 0) {
      cmdLen = 0;
      store<u8>(scratch, 0x2A);
      store<u8>(scratch + 1, cls == MSET ? 0x33 : 0x32);
      store<u16>(scratch + 2, 0x0A0D);
      cmdLen = 4;
      if (cls == SUM) put(base + <usize>argPtr[0], argLen[0]);
      else put(changetype<usize>(name), name.byteLength);
      put(kp, kl);
      if (cls == MSET) put(base + <usize>argPtr[ai + 1], argLen[ai + 1]);
      // A full queue (8 MiB waiting for this shard) part-way through a split: no order can be kept, the client goes.
      if (c.sendUpstream(h, scratch, cmdLen) == -2) overloaded = true;
    }
    route(s, h, (partKind << 3) | s | (k == keys - 1 ? LAST : 0));
  }
}

// Registered last: the hooks refer to globals above, initialised first.
configure(IN_CAP, OUT_CAP, STATE_SIZE, onData);
setOnInit(onInit);
setOnUpstream(onUpstream);
