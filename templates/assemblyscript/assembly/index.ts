// A line protocol to start from. One command per line (LF or CRLF), one reply
// line each:
//   PING             PONG
//   SET key value    OK            (the shared key-value store)
//   GET key          the value, or (nil)
//   INCR key         the new count
//   SEEN             lines this connection has sent, this one included
//                    (kept in the per-connection state slot)
//   QUIT             BYE, then the connection closes
// A line longer than MAX_LINE gets "ERR line too long" and the connection closes.
import { Action, Conn, configure, kv_get, kv_incr, kv_set } from "tcpmod/assembly/sdk";
export * from "tcpmod/assembly/sdk/exports";

const MAX_LINE = 1024;
// Scratch for kv_get and kv_incr: a value longer than this is reported, not copied.
const VALUE_CAP = 512;
const scratch = memory.data(VALUE_CAP);

// in: up to 4 KiB of pending input; out: 4 KiB before the SDK flushes; state: one u32.
configure(4096, 4096, 4, onData);

function onData(c: Conn): Action {
  let start = 0;
  for (;;) {
    const nl = c.indexOf(0x0a, start);
    if (nl < 0) break;
    let end = nl;
    if (end > start && c.byte(end - 1) == 0x0d) end--;
    store<u32>(c.state, load<u32>(c.state) + 1);
    const done = command(c, c.input + <usize>start, end - start);
    c.consume(nl + 1 - start);
    start = nl + 1;
    if (done) return Action.Close;
  }
  if (c.inputLen - start > MAX_LINE) {
    c.writeString("ERR line too long\n");
    return Action.Close;
  }
  return c.eof ? Action.Close : Action.Continue;
}

/** Answers one line at `p` (`n` bytes, no line end); true when the connection should close. */
function command(c: Conn, p: usize, n: i32): bool {
  const sp = find(p, n, 0x20);
  const verb = String.UTF8.decodeUnsafe(p, sp < 0 ? n : sp).toUpperCase();
  const rest = sp < 0 ? p + <usize>n : p + <usize>sp + 1;
  const restLen = sp < 0 ? 0 : n - sp - 1;
  if (verb == "PING") c.writeString("PONG\n");
  else if (verb == "SEEN") { c.writeInt(load<u32>(c.state)); c.writeString("\n"); }
  else if (verb == "QUIT") { c.writeString("BYE\n"); return true; }
  else if (verb == "GET" && restLen > 0) {
    const len = kv_get(rest, restLen, scratch, VALUE_CAP);
    if (len == -1) c.writeString("(nil)\n");
    else if (len < 0) c.writeString("ERR store unavailable\n");
    else if (len > VALUE_CAP) c.writeString("ERR value too long\n");
    else { c.write(scratch, len); c.writeString("\n"); }
  } else if (verb == "SET" && restLen > 0) {
    const k = find(rest, restLen, 0x20);
    if (k <= 0) c.writeString("ERR usage: SET key value\n");
    else if (kv_set(rest, k, rest + <usize>k + 1, restLen - k - 1) == 0) c.writeString("OK\n");
    else c.writeString("ERR store full or unavailable\n");
  } else if (verb == "INCR" && restLen > 0) {
    if (kv_incr(rest, restLen, 1, scratch) == 0) { c.writeInt(load<i64>(scratch)); c.writeString("\n"); }
    else c.writeString("ERR not an integer\n");
  } else c.writeString("ERR unknown command\n");
  return false;
}

function find(p: usize, n: i32, b: u8): i32 {
  for (let i = 0; i < n; i++) if (load<u8>(p + <usize>i) == b) return i;
  return -1;
}
