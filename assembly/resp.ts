// A Redis server (RESP2) on the tcpmod SDK: strings in the host's shared
// key-value store, plus what redis-cli and redis-benchmark expect to find.
//
// Each on_data call answers every complete command in the input, in order,
// into the out region (so a pipelined batch leaves in one send), consumes
// exactly those bytes and leaves an incomplete command for the next call.
// Nothing is allocated per command: arguments are offsets into the input
// region, replies are written straight to the out region.
//
// Layout: resp/parser.ts frames requests, resp/dispatch.ts finds the command
// (and answers COMMAND), resp/strings.ts and resp/server.ts run them,
// resp/store.ts keeps values (and expiry) in the store, resp/reply.ts encodes.
//
// Decisions:
// - A request must fit in the 1 MiB input region (resp/limits.ts); a larger
//   one is answered with a protocol error and the connection closed.
// - Values are the client's bytes under the client's key, with the store's own
//   TTLs (ABI v1.2): EX/PX/EXAT/PXAT/KEEPTTL, NX/XX, EXPIRE, APPEND and INCR
//   are one atomic store call each; SET ... GET is a read of the value and its
//   version, then a compare-and-set on it (retried if another writer came
//   between), so the old value it replies is exactly the one it replaced.
// - SCAN, KEYS, DBSIZE, FLUSHALL and FLUSHDB list and clear the store itself
//   (kv_scan, kv_del_prefix): every key, whoever wrote it, and no extra store
//   call on any write. DBSIZE, KEYS and FLUSHALL are O(keys), in bounded steps,
//   and not atomic against concurrent writers (each key is, on its own).
// - One database (SELECT 0 only), RESP2 only (HELLO 3 gets NOPROTO).
// - CLIENT INFO and CLIENT LIST report the client's address (addr=IP:PORT, from
//   tcpmod.peer_addr); a module sees only the connection it handles, so CLIENT
//   LIST lists just the calling one.
// - A store call that answers KV_UNAVAILABLE (ABI v1.1, a remote store down)
//   fails the whole command with "-ERR store unavailable"; nothing after it
//   touches the store (resp/store.ts, resp/dispatch.ts).

import { Conn, Action, configure } from "tcpmod/assembly/sdk";
export * from "tcpmod/assembly/sdk/exports";
import { IN_CAP, OUT_CAP, STATE_SIZE } from "./resp/limits";
import {
  parse, NEED, BAD, argc, next, errCode, errByte, needAtLeast,
  ERR_MBULK_LEN, ERR_BULK_LEN, ERR_EXPECTED_DOLLAR, ERR_MBULK_LINE, ERR_BULK_LINE,
  ERR_INLINE_BIG, ERR_QUOTES, ERR_TOO_BIG, ERR_CRLF, ERR_TOO_MANY,
} from "./resp/parser";
import { execute } from "./resp/dispatch";
import { onMessage } from "./resp/pubsub";
import { setOnMessage } from "tcpmod/assembly/sdk";

/** Bulk strings longer than this are collected by the host (tcpmod.want) rather than re-parsed per packet. */
const WANT_FROM: i32 = 64 * 1024;

configure(IN_CAP, OUT_CAP, STATE_SIZE, onData);
setOnMessage(onMessage);

function onData(c: Conn): Action {
  const base = c.input;
  const len = c.inputLen;
  let pos = 0;
  while (pos < len && !c.failed) {
    const r = parse(base, pos, len);
    if (r == NEED) {
      // A large bulk string on its way (SET of a big value): let the host collect it without calling.
      if (needAtLeast > WANT_FROM) c.want(needAtLeast);
      break;
    }
    if (r == BAD) {
      protocolError(c);
      c.consume(len);
      return Action.Close;
    }
    const end = next;
    if (argc > 0 && execute(c, argc) != 0) {
      c.consume(end);
      return Action.Close;
    }
    pos = end;
    // Big replies (pipelined GETs of large values): answer the rest in later calls, so the host
    // can hold them back while the client has not read these (queued output).
    if (c.written >= 1 << 20) break;
  }
  if (pos == 0 && len >= IN_CAP) {
    // The region is full and still holds no complete command: it can never
    // complete, so say so rather than let the host cut the connection silently.
    tooBig(c);
    c.consume(len);
    return Action.Close;
  }
  c.consume(pos);
  return Action.Continue;
}

function tooBig(c: Conn): void {
  c.writeString("-ERR Protocol error: request larger than the server's 1048576-byte limit\r\n");
}

function protocolError(c: Conn): void {
  const e = errCode;
  if (e == ERR_TOO_BIG) {
    tooBig(c);
    return;
  }
  c.writeString("-ERR Protocol error: ");
  if (e == ERR_MBULK_LEN) c.writeString("invalid multibulk length");
  else if (e == ERR_BULK_LEN) c.writeString("invalid bulk length");
  else if (e == ERR_EXPECTED_DOLLAR) {
    c.writeString("expected '$', got '");
    // Keep the reply one line.
    const b = errByte;
    c.writeByte(b == 0x0D || b == 0x0A ? 0x20 : b);
    c.writeString("'");
  }
  else if (e == ERR_MBULK_LINE) c.writeString("too big mbulk count string");
  else if (e == ERR_BULK_LINE) c.writeString("too big bulk count string");
  else if (e == ERR_INLINE_BIG) c.writeString("too big inline request");
  else if (e == ERR_QUOTES) c.writeString("unbalanced quotes in request");
  else if (e == ERR_CRLF) c.writeString("expected CRLF");
  else if (e == ERR_TOO_MANY) c.writeString("too many arguments");
  c.writeString("\r\n");
}
