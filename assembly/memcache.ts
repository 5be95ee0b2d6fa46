// A memcached server (the text protocol) on the tcpmod SDK and the v1.2 store.
//
// Items live in the host's shared store under "mc:" + key, as [u32 flags][data];
// the store's TTLs are memcached's exptimes and its versions are the CAS
// uniques, so every command is one or two atomic store calls and correct
// across connections and workers:
// - set/add/replace: kv_set_ex (add NX, replace XX); cas: kv_cas on the version;
// - append: kv_append XX (after the header); incr, decr: kv_incr_at on the
//   number after the header; prepend: a get-version / compare-and-set loop
//   (the data sits after the header);
// - touch, gat: kv_expire (or kv_persist for exptime 0); flush_all: kv_del_prefix.
//
// Decisions:
// - exptime as memcached reads it: 0 never, negative already expired, up to
//   30 days relative seconds, beyond that an absolute Unix time.
// - Items up to 1 MiB of data; a larger set is answered "SERVER_ERROR object
//   too large for cache" and its data skipped (the state slot counts what is
//   left to skip, so it may arrive in any number of calls).
// - flush_all with a delay arms this connection's timer; the flush runs when it
//   fires (it is lost if the connection closes first: memcached remembers it).
// - Errors are worded as memcached words them: ERROR for an unknown command,
//   CLIENT_ERROR for bad input, SERVER_ERROR for the store's failures.

import { Conn, Action, configure, setOnTimer, nowMs } from "tcpmod/assembly/sdk";
import {
  kv_get_ver, kv_set_ex, kv_cas, kv_expire, kv_persist, kv_append, kv_del_prefix,
  KV_NX, KV_XX, KV_KEEPTTL, KV_EXISTS, KV_TTL_MAX, kv_incr_at, KV_DECR, KV_NOT_INTEGER,
} from "tcpmod/assembly/sdk";
import { kv_del, kv_get_range, KV_MISSING, KV_FULL } from "tcpmod/assembly/sdk";
import { parseU64 as decimalU64, formatU64 } from "tcpmod/assembly/sdk";
export * from "tcpmod/assembly/sdk/exports";

/** Largest item data, as memcached's default item size (1 MiB). */
const ITEM_MAX: i32 = 1024 * 1024;
/** Longest command line (memcached's key limit is 250 bytes; a get of many keys is longer). */
const LINE_MAX: i32 = 64 * 1024;
const IN_CAP: i32 = ITEM_MAX + LINE_MAX;
const OUT_CAP: i32 = 256 * 1024;
/** State slot: u32 bytes still to skip of a refused item's data. */
const STATE_SIZE: i32 = 4;
const KEY_MAX: i32 = 250;
const MAX_TOKENS: i32 = 1024;
const PREFIX_LEN: i32 = 3;
const THIRTY_DAYS: i64 = 60 * 60 * 24 * 30;

const PREFIX = memory.data<u8>([0x6d, 0x63, 0x3a]); // "mc:"
const KEY = heap.alloc(<usize>(PREFIX_LEN + KEY_MAX));
const VAL = heap.alloc(<usize>(ITEM_MAX + 4));
const VER = memory.data(8);
/** Where decimalU64 stores what it read. */
const NUM = memory.data(8, 8);
const TOK_AT = heap.alloc(<usize>MAX_TOKENS * 4);
const TOK_LEN = heap.alloc(<usize>MAX_TOKENS * 4);
let ntok: i32 = 0;
let line: usize = 0;
let startedSec: i64 = 0;

let parsedU64: u64 = 0;
let parsedI64: i64 = 0;
let parsedFlags: u64 = 0;
let parsedExptime: i64 = 0;
let parsedCas: u64 = 0;

function tokAt(i: i32): usize { return line + <usize>load<i32>(TOK_AT + (<usize>i << 2)); }
function tokLen(i: i32): i32 { return load<i32>(TOK_LEN + (<usize>i << 2)); }

function tokIs(i: i32, s: string): bool {
  const n = tokLen(i);
  if (n != s.length) return false;
  const p = tokAt(i);
  for (let j = 0; j < n; j++) if (<i32>load<u8>(p + j) != s.charCodeAt(j)) return false;
  return true;
}

/** Splits [line, line + len) at spaces into tokens; false when there are too many. */
function tokenize(len: i32): bool {
  ntok = 0;
  let i = 0;
  while (i < len) {
    while (i < len && load<u8>(line + i) == 32) i++;
    if (i >= len) break;
    const start = i;
    while (i < len && load<u8>(line + i) != 32) i++;
    if (ntok == MAX_TOKENS) return false;
    store<i32>(TOK_AT + (<usize>ntok << 2), start);
    store<i32>(TOK_LEN + (<usize>ntok << 2), i - start);
    ntok++;
  }
  return true;
}

/** Token i as an unsigned decimal (u64, wrapping is refused) into parsedU64; false when it is not one. */
function parseU64(i: i32): bool {
  if (!wholeU64(tokAt(i), tokLen(i))) return false;
  parsedU64 = load<u64>(NUM);
  return true;
}

/**
 * Whether the n bytes at p are all digits, at most 20 of them, naming a u64 (the SDK's
 * parseU64 refuses what does not fit); the value is then at NUM. The 20 stays as
 * before: the SDK alone would take a longer run of leading zeros.
 */
function wholeU64(p: usize, n: i32): bool {
  return n > 0 && n <= 20 && decimalU64(p, n, NUM) == n;
}

/**
 * Token i as a signed decimal into parsedI64; false when it is not one, or
 * when it lies outside the i64 range (refused, never wrapped). Not the SDK's
 * parseI64: this one takes a run of up to 20 digits (leading zeros included),
 * as memcache.wasm always has.
 */
function parseI64(i: i32): bool {
  const p = tokAt(i);
  const n = tokLen(i);
  if (n == 0) return false;
  const neg = load<u8>(p) == 45;
  // The magnitude's limit: 2^63 for a negative number, 2^63 - 1 otherwise.
  const limit: u64 = neg ? <u64>0x8000000000000000 : <u64>0x7FFFFFFFFFFFFFFF;
  let v: u64 = 0;
  for (let j = neg ? 1 : 0; j < n; j++) {
    const d = <i32>load<u8>(p + j) - 48;
    if (d < 0 || d > 9 || j > 19) return false;
    if (v > (limit - <u64>d) / 10) return false;
    v = v * 10 + <u64>d;
  }
  if (neg && n == 1) return false;
  parsedI64 = neg ? <i64>(0 - v) : <i64>v;
  return true;
}

/** Puts "mc:" + token i at KEY; its length, or -1 when the key is too long. */
function keyOf(i: i32): i32 {
  const n = tokLen(i);
  if (n > KEY_MAX) return -1;
  memory.copy(KEY + PREFIX_LEN, tokAt(i), <usize>n);
  return PREFIX_LEN + n;
}

/**
 * An exptime as a store TTL in ms: 0 none, -1 already expired. A time further
 * away than the store's longest TTL (about 2,200 years) gets that TTL: any
 * i64 is accepted, and exptime * 1000 is never computed where it would wrap.
 */
function ttlOf(exptime: i64): i64 {
  if (exptime == 0) return 0;
  if (exptime < 0) return -1;
  if (exptime <= THIRTY_DAYS) return exptime * 1000;
  const nowSec = <i64>(nowMs() / 1000);
  if (exptime - nowSec > KV_TTL_MAX / 1000) return KV_TTL_MAX;
  const ms = exptime * 1000 - <i64>nowMs();
  return ms > 0 ? ms : -1;
}

function reply(c: Conn, s: string, noreply: bool): void {
  if (noreply) return;
  c.writeString(s);
}

function storeFailed(c: Conn, rc: i32, noreply: bool): void {
  if (rc == KV_FULL) reply(c, "SERVER_ERROR out of memory storing object\r\n", noreply);
  else reply(c, "SERVER_ERROR store unavailable\r\n", noreply);
}

const SET: i32 = 0, ADD: i32 = 1, REPLACE: i32 = 2, APPEND: i32 = 3, PREPEND: i32 = 4, CAS: i32 = 5;

function storageKind(): i32 {
  if (tokIs(0, "set")) return SET;
  if (tokIs(0, "add")) return ADD;
  if (tokIs(0, "replace")) return REPLACE;
  if (tokIs(0, "append")) return APPEND;
  if (tokIs(0, "prepend")) return PREPEND;
  if (tokIs(0, "cas")) return CAS;
  return -1;
}

/** A storage command whose line is tokenized; data at [data, data + bytes) (checked complete). */
function storage(c: Conn, kind: i32, data: usize, bytes: i32, noreply: bool): void {
  const klen = keyOf(1);
  const flags = <u32>parsedFlags;
  const ttl = ttlOf(parsedExptime);
  // The item [u32 flags][data] is built in place: the flags overwrite the last
  // 4 bytes of the command line (tokenized and read by now; a storage line is
  // longer than that), so a large value is not copied once more in here.
  const item = data - 4;
  store<u32>(item, flags);
  const vlen = bytes + 4;
  let rc: i32 = 0;
  if (kind == SET || kind == ADD || kind == REPLACE) {
    const mode = kind == ADD ? KV_NX : kind == REPLACE ? KV_XX : 0;
    rc = kv_set_ex(KEY, klen, item, vlen, mode, ttl < 0 ? 0 : ttl);
    if (rc == 0 && ttl < 0) kv_del(KEY, klen); // stored already expired: as memcached, gone at once
    if (rc == 0) return reply(c, "STORED\r\n", noreply);
    if (rc == KV_EXISTS || rc == KV_MISSING) return reply(c, "NOT_STORED\r\n", noreply);
    return storeFailed(c, rc, noreply);
  }
  if (kind == CAS) {
    rc = kv_cas(KEY, klen, item, vlen, 0, ttl < 0 ? 0 : ttl, parsedCas);
    if (rc == 0 && ttl < 0) kv_del(KEY, klen);
    if (rc == 0) return reply(c, "STORED\r\n", noreply);
    if (rc == KV_EXISTS) return reply(c, "EXISTS\r\n", noreply);
    if (rc == KV_MISSING) return reply(c, "NOT_FOUND\r\n", noreply);
    return storeFailed(c, rc, noreply);
  }
  if (kind == APPEND) {
    rc = kv_append(KEY, klen, data, bytes, KV_XX);
    if (rc >= 0) return reply(c, "STORED\r\n", noreply);
    if (rc == KV_MISSING) return reply(c, "NOT_STORED\r\n", noreply);
    return storeFailed(c, rc, noreply);
  }
  // prepend: the data goes after the header, so read, build, compare-and-set.
  for (let attempt = 0; attempt < 1000; attempt++) {
    const n = kv_get_ver(KEY, klen, VAL, ITEM_MAX + 4, VER);
    if (n == KV_MISSING) return reply(c, "NOT_STORED\r\n", noreply);
    if (n < 0) return storeFailed(c, n, noreply);
    if (n - 4 + bytes > ITEM_MAX) return reply(c, "SERVER_ERROR object too large for cache\r\n", noreply);
    memory.copy(VAL + 4 + <usize>bytes, VAL + 4, <usize>(n - 4));
    memory.copy(VAL + 4, data, <usize>bytes);
    rc = kv_cas(KEY, klen, VAL, n + bytes, KV_KEEPTTL, 0, load<u64>(VER));
    if (rc == 0) return reply(c, "STORED\r\n", noreply);
    if (rc == KV_MISSING) return reply(c, "NOT_STORED\r\n", noreply);
    if (rc != KV_EXISTS) return storeFailed(c, rc, noreply);
  }
  reply(c, "SERVER_ERROR too much contention\r\n", noreply);
}

/**
 * Values up to this many bytes are copied into this memory and written with the
 * reply (one store call); larger ones go from the store straight to the
 * connection (kv_send), which saves copying them through here twice.
 */
const SEND_DIRECT_OVER: i32 = 16 * 1024;
/** "VALUE <key> <flags> <bytes> <cas>\r\n" of a value sent with kv_send. */
const HEAD = heap.alloc(<usize>(KEY_MAX + 64));

/** Writes s at p; its length. */
function putString(p: usize, s: string): i32 {
  for (let j = 0; j < s.length; j++) store<u8>(p + j, <u8>s.charCodeAt(j));
  return s.length;
}

/**
 * Sends item i (its key at KEY, klen bytes) straight from the store: its header
 * from a read of the 4 flag bytes, then the data, both of one version (a write
 * in between makes kv_send refuse and the item is read again). False when it is
 * gone (or no item of ours) by then.
 */
function sendItem(c: Conn, i: i32, klen: i32, withCas: bool): bool {
  for (let attempt = 0; attempt < 100; attempt++) {
    const n = kv_get_range(KEY, klen, 0, VAL, 4, VER);
    if (n < 4) return false;
    let h = putString(HEAD, "VALUE ");
    memory.copy(HEAD + <usize>h, tokAt(i), <usize>tokLen(i));
    h += tokLen(i);
    h += putString(HEAD + <usize>h, " ");
    h += formatU64(HEAD + <usize>h, <u64>load<u32>(VAL));
    h += putString(HEAD + <usize>h, " ");
    h += formatU64(HEAD + <usize>h, <u64>(n - 4));
    if (withCas) {
      h += putString(HEAD + <usize>h, " ");
      h += formatU64(HEAD + <usize>h, load<u64>(VER));
    }
    h += putString(HEAD + <usize>h, "\r\n");
    const rc = c.sendStored(KEY, klen, 4, n - 4, load<u64>(VER), HEAD, h);
    if (rc == KV_EXISTS) continue;
    if (rc < 0) return false;
    c.writeString("\r\n");
    return true;
  }
  return false;
}

/** get/gets/gat/gats: keys from token `first`; with versions for gets/gats. */
function retrieve(c: Conn, first: i32, withCas: bool, touch: bool, ttl: i64): void {
  for (let i = first; i < ntok && !c.failed; i++) {
    const klen = keyOf(i);
    if (klen < 0) {
      c.writeString("CLIENT_ERROR bad command line format\r\n");
      return;
    }
    if (touch) {
      const t = ttl < 0 ? kv_del(KEY, klen) - 1 : ttl == 0 ? kv_persist(KEY, klen) : kv_expire(KEY, klen, ttl);
      if (t == KV_MISSING || ttl < 0) continue;
    }
    const n = kv_get_ver(KEY, klen, VAL, SEND_DIRECT_OVER + 4, VER);
    if (n < 4) continue; // missing (or not an item of ours)
    if (n > SEND_DIRECT_OVER + 4) {
      sendItem(c, i, klen, withCas);
      continue;
    }
    c.writeString("VALUE ");
    c.write(tokAt(i), tokLen(i));
    c.writeByte(32);
    c.writeInt(<i64>load<u32>(VAL));
    c.writeByte(32);
    c.writeInt(<i64>(n - 4));
    if (withCas) {
      c.writeByte(32);
      c.writeU64(load<u64>(VER));
    }
    c.writeString("\r\n");
    c.write(VAL + 4, n - 4);
    c.writeString("\r\n");
  }
  c.writeString("END\r\n");
}

/**
 * incr/decr by parsedU64 with memcached's rules (u64, incr wraps, decr stops at 0):
 * one kv_incr_at on the number after the item's 4-byte flags header.
 */
function arith(c: Conn, incr: bool, noreply: bool): void {
  const klen = keyOf(1);
  const rc = kv_incr_at(KEY, klen, 4, parsedU64, incr ? 0 : KV_DECR, NUM);
  if (rc == KV_MISSING) return reply(c, "NOT_FOUND\r\n", noreply);
  if (rc == KV_NOT_INTEGER) return reply(c, "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n", noreply);
  if (rc < 0) return storeFailed(c, rc, noreply);
  if (!noreply) {
    c.writeU64(load<u64>(NUM));
    c.writeString("\r\n");
  }
}

function flushAll(): void {
  kv_del_prefix(PREFIX, PREFIX_LEN);
}

function onTimer(c: Conn): Action {
  flushAll();
  return Action.Continue;
}

function stats(c: Conn): void {
  const now = <i64>(nowMs() / 1000);
  if (startedSec == 0) startedSec = now;
  c.writeString("STAT pid 1\r\nSTAT uptime ");
  c.writeInt(now - startedSec);
  c.writeString("\r\nSTAT time ");
  c.writeInt(now);
  c.writeString("\r\nSTAT version 1.6.21-tcpmod\r\nSTAT pointer_size 32\r\nSTAT threads 1\r\nEND\r\n");
}

/** Skips what is left of a refused item's data; true when done. */
function skipping(c: Conn): bool {
  const left = load<u32>(c.state);
  if (left == 0) return true;
  const avail = <u32>(c.inputLen - c.consumed);
  const n = avail < left ? avail : left;
  c.consume(<i32>n);
  store<u32>(c.state, left - n);
  return left == n;
}

function onData(c: Conn): Action {
  if (startedSec == 0) startedSec = <i64>(nowMs() / 1000);
  const base = c.input;
  const len = c.inputLen;
  while (!c.failed) {
    if (!skipping(c)) return Action.Continue;
    const pos = c.consumed;
    if (pos >= len) break;
    const nl = c.indexOf(10, pos);
    if (nl < 0) {
      if (len - pos > LINE_MAX) {
        c.writeString("CLIENT_ERROR line too long\r\n");
        return Action.Close;
      }
      break;
    }
    line = base + <usize>pos;
    let llen = nl - pos;
    if (llen > 0 && load<u8>(line + <usize>(llen - 1)) == 13) llen--;
    if (!tokenize(llen) || ntok == 0) {
      c.consume(nl + 1 - pos);
      c.writeString("ERROR\r\n");
      continue;
    }
    const kind = storageKind();
    if (kind >= 0) {
      const want = kind == CAS ? 6 : 5;
      const noreply = ntok == want + 1 && tokIs(want, "noreply");
      if (ntok != want && !noreply) {
        c.consume(nl + 1 - pos);
        c.writeString("ERROR\r\n");
        continue;
      }
      const okNums = parseU64(2) && parsedU64 <= 0xFFFFFFFF && ((parsedFlags = parsedU64), true) &&
        parseI64(3) && ((parsedExptime = parsedI64), true) && parseI64(4) && (kind != CAS || parseU64(5));
      if (kind == CAS) parsedCas = parsedU64;
      const bytes = parsedI64;
      // A length past memcached's own (a signed 32-bit count, less the \r\n) is a bad line, as there.
      if (!okNums || bytes < 0 || bytes > <i64>0x7FFFFFFD || tokLen(1) > KEY_MAX) {
        c.consume(nl + 1 - pos);
        c.writeString("CLIENT_ERROR bad command line format\r\n");
        continue;
      }
      if (bytes > <i64>ITEM_MAX) {
        c.consume(nl + 1 - pos);
        store<u32>(c.state, <u32>(bytes + 2));
        reply(c, "SERVER_ERROR object too large for cache\r\n", noreply);
        continue;
      }
      const data = nl + 1;
      const need = data + <i32>bytes + 2;
      if (need > len) {
        if (need - pos > 64 * 1024) c.want(need - pos);
        break;
      }
      if (load<u8>(base + <usize>(data + <i32>bytes)) != 13 || load<u8>(base + <usize>(data + <i32>bytes + 1)) != 10) {
        // As memcached: the line was read; the data is refused and skipped up to its end.
        c.consume(need - pos);
        c.writeString("CLIENT_ERROR bad data chunk\r\n");
        continue;
      }
      storage(c, kind, base + <usize>data, <i32>bytes, noreply);
      c.consume(need - pos);
      continue;
    }
    c.consume(nl + 1 - pos);
    if (command(c) == Action.Close) return Action.Close;
  }
  return Action.Continue;
}

/** Every command but storage ones; Close for quit. */
function command(c: Conn): Action {
  const last = ntok - 1;
  const noreply = ntok > 1 && tokIs(last, "noreply");
  const n = noreply ? ntok - 1 : ntok;
  if (tokIs(0, "get") || tokIs(0, "gets")) {
    if (ntok < 2) c.writeString("ERROR\r\n");
    else retrieve(c, 1, tokIs(0, "gets"), false, 0);
  } else if (tokIs(0, "gat") || tokIs(0, "gats")) {
    if (ntok < 3 || !parseI64(1)) c.writeString(ntok < 3 ? "ERROR\r\n" : "CLIENT_ERROR invalid exptime argument\r\n");
    else retrieve(c, 2, tokIs(0, "gats"), true, ttlOf(parsedI64));
  } else if (tokIs(0, "delete")) {
    if (n < 2 || n > 3 || (n == 3 && !tokIs(2, "0"))) {
      c.writeString("CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n");
    } else {
      const klen = keyOf(1);
      if (klen < 0) c.writeString("CLIENT_ERROR bad command line format\r\n");
      else {
        const rc = kv_del(KEY, klen);
        if (rc == 1) reply(c, "DELETED\r\n", noreply);
        else if (rc == 0) reply(c, "NOT_FOUND\r\n", noreply);
        else storeFailed(c, rc, noreply);
      }
    }
  } else if (tokIs(0, "incr") || tokIs(0, "decr")) {
    if (n != 3) c.writeString("ERROR\r\n");
    else if (tokLen(1) > KEY_MAX) c.writeString("CLIENT_ERROR bad command line format\r\n");
    else if (!parseU64(2)) c.writeString("CLIENT_ERROR invalid numeric delta argument\r\n");
    else arith(c, tokIs(0, "incr"), noreply);
  } else if (tokIs(0, "touch")) {
    if (n != 3) c.writeString("ERROR\r\n");
    else if (!parseI64(2)) c.writeString("CLIENT_ERROR invalid exptime argument\r\n");
    else {
      const klen = keyOf(1);
      const ttl = ttlOf(parsedI64);
      const rc = klen < 0 ? KV_MISSING : ttl < 0 ? kv_del(KEY, klen) - 1 : ttl == 0 ? kv_persist(KEY, klen) : kv_expire(KEY, klen, ttl);
      if (rc >= 0) reply(c, "TOUCHED\r\n", noreply);
      else if (rc == KV_MISSING) reply(c, "NOT_FOUND\r\n", noreply);
      else storeFailed(c, rc, noreply);
    }
  } else if (tokIs(0, "flush_all")) {
    if (n > 2 || (n == 2 && !parseI64(1))) c.writeString("CLIENT_ERROR bad command line format\r\n");
    else {
      const delay = n == 2 ? ttlOf(parsedI64) : 0;
      if (delay > 0) c.setTimer(<i32>min(delay, 86_400_000));
      else flushAll();
      reply(c, "OK\r\n", noreply);
    }
  } else if (tokIs(0, "version")) {
    c.writeString("VERSION 1.6.21-tcpmod\r\n");
  } else if (tokIs(0, "verbosity")) {
    // As memcached: with noreply nothing at all, whatever the arguments.
    if (!noreply) c.writeString(ntok == 2 ? "OK\r\n" : "ERROR\r\n");
  } else if (tokIs(0, "stats")) {
    if (ntok == 1) stats(c);
    else if (tokIs(1, "settings") || tokIs(1, "items") || tokIs(1, "slabs") || tokIs(1, "sizes") || tokIs(1, "conns")) c.writeString("END\r\n");
    else c.writeString("ERROR\r\n");
  } else if (tokIs(0, "quit")) {
    return Action.Close;
  } else {
    c.writeString("ERROR\r\n");
  }
  return Action.Continue;
}

memory.copy(KEY, PREFIX, PREFIX_LEN);
configure(IN_CAP, OUT_CAP, STATE_SIZE, onData);
setOnTimer(onTimer);
