// Connection and server commands: PING ECHO QUIT SELECT AUTH HELLO INFO,
// FLUSHALL FLUSHDB DBSIZE (over the store's own listing, store.ts), and
// the CONFIG and CLIENT subcommands. Handlers return 0 to carry on or 1 to
// close after the reply.

import { Conn } from "tcpmod/assembly/sdk";
import { argPtr, argLen, MAX_NAME } from "./limits";
import { parseI64, parsed, formatI64 } from "./num";
import { argIs } from "./args";
import { globMatch } from "./glob";
import { argCount } from "./strings";
import { flushAll, dbSize } from "./store";
import {
  out, replyInt, replyArray, replyBulk, replyBulkStr, replyError, replyStatus,
  R_OK, R_PONG, R_NIL, E_NOT_INT, E_SYNTAX,
} from "./reply";

/** The version this server answers to (HELLO, INFO). */
export const VERSION = "7.0.0";

export function cmdPing(c: Conn): i32 {
  if (argCount > 2) replyError(c, "ERR wrong number of arguments for 'ping' command");
  else if (argCount == 1) out(c, R_PONG);
  else replyBulk(c, argPtr(1), argLen(1));
  return 0;
}

export function cmdEcho(c: Conn): i32 {
  replyBulk(c, argPtr(1), argLen(1));
  return 0;
}

export function cmdQuit(c: Conn): i32 {
  out(c, R_OK);
  return 1;
}

export function cmdSelect(c: Conn): i32 {
  // One shared store: only database 0 exists.
  if (!parseI64(argPtr(1), argLen(1))) out(c, E_NOT_INT);
  else if (parsed < i32.MIN_VALUE || parsed > i32.MAX_VALUE) replyError(c, "ERR value is out of range, value must between -2147483648 and 2147483647");
  else if (parsed != 0) replyError(c, "ERR DB index is out of range");
  else out(c, R_OK);
  return 0;
}

/** Checks credentials as a server without passwords does: the default user
 *  accepts any password, nobody else exists. Replies only on failure. */
function authOk(c: Conn, user: i32): bool {
  if (argIs(user, "default")) return true;
  replyError(c, "WRONGPASS invalid username-password pair or user is disabled.");
  return false;
}

export function cmdAuth(c: Conn): i32 {
  if (argCount == 2) {
    replyError(c, "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
  } else if (argCount == 3) {
    if (authOk(c, 1)) out(c, R_OK);
  } else {
    out(c, E_SYNTAX);
  }
  return 0;
}

// ---- client name (kept in the connection's state slot: length byte, then bytes)

/** Validates argument i as a client name and stores it; replies only on failure. */
function setName(c: Conn, i: i32): bool {
  const p = argPtr(i);
  const n = argLen(i);
  for (let j = 0; j < n; j++) {
    const b = load<u8>(p + <usize>j);
    if (b < 0x21 || b > 0x7E) {
      replyError(c, "ERR Client names cannot contain spaces, newlines or special characters.");
      return false;
    }
  }
  if (n > MAX_NAME) {
    replyError(c, "ERR Client names longer than 127 bytes are not supported by this server");
    return false;
  }
  store<u8>(c.state, <u8>n);
  memory.copy(c.state + 1, p, <usize>n);
  return true;
}

export function cmdHello(c: Conn): i32 {
  let i = 1;
  if (argCount > 1) {
    if (!parseI64(argPtr(1), argLen(1))) {
      replyError(c, "ERR Protocol version is not an integer or out of range");
      return 0;
    }
    // Only RESP2 is spoken here.
    if (parsed != 2) {
      replyError(c, "NOPROTO unsupported protocol version");
      return 0;
    }
    i = 2;
  }
  let authUser = -1;
  let nameArg = -1;
  for (; i < argCount; i++) {
    const left = argCount - i - 1;
    if (argIs(i, "auth") && left >= 2) { authUser = i + 1; i += 2; }
    else if (argIs(i, "setname") && left >= 1) { nameArg = i + 1; i += 1; }
    else {
      c.writeString("-ERR Syntax error in HELLO option '");
      writeArgText(c, i);
      c.writeString("'\r\n");
      return 0;
    }
  }
  if (authUser >= 0 && !authOk(c, authUser)) return 0;
  if (nameArg >= 0 && !setName(c, nameArg)) return 0;
  replyArray(c, 14);
  replyBulkStr(c, "server"); replyBulkStr(c, "redis");
  replyBulkStr(c, "version"); replyBulkStr(c, VERSION);
  replyBulkStr(c, "proto"); replyInt(c, 2);
  replyBulkStr(c, "id"); replyInt(c, c.id);
  replyBulkStr(c, "mode"); replyBulkStr(c, "standalone");
  replyBulkStr(c, "role"); replyBulkStr(c, "master");
  replyBulkStr(c, "modules"); replyArray(c, 0);
  return 0;
}

/** An argument inside an error message (Redis cuts at 128 bytes and NUL, CR/LF become spaces). */
function writeArgText(c: Conn, i: i32): void {
  const p = argPtr(i);
  const n = argLen(i);
  for (let j = 0; j < n && j < 128; j++) {
    let b = load<u8>(p + <usize>j);
    if (b == 0) break;
    if (b == 0x0D || b == 0x0A) b = 0x20;
    c.writeByte(b);
  }
}

// One literal (static data): concatenating would build a managed string.
const INFO_TEXT = "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\nmultiplexing_api:epoll\r\nserver_software:tcpmod resp.wasm\r\n\r\n# Persistence\r\nloading:0\r\naof_enabled:0\r\n";

export function cmdInfo(c: Conn): i32 {
  replyBulkStr(c, INFO_TEXT);
  return 0;
}

/** FLUSHALL and FLUSHDB [ASYNC|SYNC] (only database 0 exists, so they are the
 *  same). Both modes flush before replying; neither is atomic against
 *  concurrent writers (see store.ts). */
export function cmdFlushall(c: Conn): i32 {
  if (argCount > 2 || (argCount == 2 && !argIs(1, "async") && !argIs(1, "sync"))) {
    out(c, E_SYNTAX);
    return 0;
  }
  flushAll();
  out(c, R_OK);
  return 0;
}

/** DBSIZE: the store's keys, counted in bounded listing steps (store.ts). */
export function cmdDbsize(c: Conn): i32 {
  replyInt(c, dbSize());
  return 0;
}

// ---- CONFIG -----------------------------------------------------------------

// The parameters CONFIG GET knows: what benchmarking tools and clients look for,
// answered with what this server actually does (no persistence, one database).
// A function rather than arrays of strings, which would be managed objects.
const PARAMS: i32 = 3;
function paramName(k: i32): string {
  if (k == 0) return "save";
  if (k == 1) return "appendonly";
  return "databases";
}
function paramValue(k: i32): string {
  if (k == 0) return "";
  if (k == 1) return "no";
  return "1";
}

export function cmdConfigGet(c: Conn): i32 {
  // A parameter matching several patterns is listed once.
  let count = 0;
  for (let k = 0; k < PARAMS; k++) if (paramWanted(k)) count++;
  replyArray(c, count * 2);
  for (let k = 0; k < PARAMS; k++) {
    if (!paramWanted(k)) continue;
    replyBulkStr(c, paramName(k));
    replyBulkStr(c, paramValue(k));
  }
  return 0;
}

function paramWanted(k: i32): bool {
  for (let i = 2; i < argCount; i++) {
    if (globMatch(argPtr(i), argLen(i), paramName(k))) return true;
  }
  return false;
}

export function cmdConfigSet(c: Conn): i32 {
  replyError(c, "ERR CONFIG SET is not supported by this server");
  return 0;
}

export function cmdConfigResetstat(c: Conn): i32 {
  out(c, R_OK);
  return 0;
}

// ---- CLIENT -----------------------------------------------------------------

export function cmdClientSetname(c: Conn): i32 {
  if (setName(c, 2)) out(c, R_OK);
  return 0;
}

export function cmdClientGetname(c: Conn): i32 {
  const n = <i32>load<u8>(c.state);
  if (n == 0) out(c, R_NIL);
  else replyBulk(c, c.state + 1, n);
  return 0;
}

export function cmdClientId(c: Conn): i32 {
  replyInt(c, c.id);
  return 0;
}

// CLIENT INFO and CLIENT LIST describe a client as Redis does, one line of
// space-separated key=value fields, with the fields this server knows, in
// Redis' order: id, addr (tcpmod.peer_addr, ABI v1.1: the client's IP:PORT or
// [IPv6]:PORT, or what a PROXY header said), name, flags, db, cmd, user, resp.
// A module sees only the connection it is handling, so CLIENT LIST lists that
// one. The line is composed in a static buffer (a bulk reply needs its length
// first): 512 bytes hold the longest (a 127-byte name, a 128-byte address).
const LINE_CAP: i32 = 512;
const LINE: usize = memory.data(LINE_CAP);
const ADDR_CAP: i32 = 128;
let lineLen: i32 = 0;

function put(p: usize, n: i32): void {
  memory.copy(LINE + <usize>lineLen, p, <usize>n);
  lineLen += n;
}

function putStr(s: string): void {
  for (let i = 0; i < s.length; i++) store<u8>(LINE + <usize>(lineLen + i), <u8>s.charCodeAt(i));
  lineLen += s.length;
}

/** Composes the calling connection's line (ending in "\n") in LINE; `cmd` is its cmd= field. */
function clientLine(c: Conn, cmd: string): void {
  lineLen = 0;
  putStr("id=");
  lineLen += formatI64(LINE + <usize>lineLen, c.id);
  putStr(" addr=");
  // Written in place; an address that does not fit (it always does) is left empty.
  const n = c.peerAddress(LINE + <usize>lineLen, ADDR_CAP);
  if (n > 0) lineLen += n;
  putStr(" name=");
  put(c.state + 1, <i32>load<u8>(c.state));
  putStr(" flags=N db=0 cmd=");
  putStr(cmd);
  putStr(" user=default resp=2\n");
}

export function cmdClientInfo(c: Conn): i32 {
  clientLine(c, "client|info");
  replyBulk(c, LINE, lineLen);
  return 0;
}

/** CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...]: the calling connection when
 *  the filter takes it (it is a normal client), else an empty list. */
export function cmdClientList(c: Conn): i32 {
  let listed = true;
  for (let i = 2; i < argCount; ) {
    if (argIs(i, "type") && i + 1 < argCount) {
      const t = i + 1;
      if (argIs(t, "master") || argIs(t, "replica") || argIs(t, "slave") || argIs(t, "pubsub")) listed = false;
      else if (!argIs(t, "normal")) {
        c.writeString("-ERR Unknown client type '");
        writeArgText(c, t);
        c.writeString("'\r\n");
        return 0;
      }
      i += 2;
    } else if (argIs(i, "id") && i + 1 < argCount) {
      // The ids run to the end of the command.
      let found = false;
      for (let j = i + 1; j < argCount; j++) {
        if (!parseI64(argPtr(j), argLen(j)) || parsed <= 0) {
          replyError(c, "ERR Invalid client ID");
          return 0;
        }
        if (parsed == <i64>c.id) found = true;
      }
      if (!found) listed = false;
      i = argCount;
    } else {
      out(c, E_SYNTAX);
      return 0;
    }
  }
  lineLen = 0;
  if (listed) clientLine(c, "client|list");
  replyBulk(c, LINE, lineLen);
  return 0;
}

export function cmdClientSetinfo(c: Conn): i32 {
  // Library name/version are informational; accepted and not kept.
  if (argIs(2, "lib-name") || argIs(2, "lib-ver")) out(c, R_OK);
  else {
    c.writeString("-ERR Unrecognized option '");
    writeArgText(c, 2);
    c.writeString("'\r\n");
  }
  return 0;
}

// HELP texts, one status reply per line; single literals (static data).
const COMMAND_HELP = "COMMAND <subcommand> [<arg> ...]. Subcommands are:\n(no subcommand)\n    Describe every command.\nCOUNT\n    Number of commands.\nINFO [<command> ...]\n    Describe the named commands (all of them without names).\nDOCS [<command> ...]\n    Document the named commands (all of them without names).\nLIST\n    Names of all commands.\nHELP\n    This text.";
const CONFIG_HELP = "CONFIG <subcommand> [<arg> ...]. Subcommands are:\nGET <pattern> [<pattern> ...]\n    Parameters whose names match a glob pattern, with their values.\nSET <parameter> <value> ...\n    Not available: this server's parameters are fixed.\nRESETSTAT\n    Accepted; nothing to reset.\nHELP\n    This text.";
const CLIENT_HELP = "CLIENT <subcommand> [<arg> ...]. Subcommands are:\nSETNAME <name>\n    Name this connection (up to 127 printable bytes; empty clears it).\nGETNAME\n    This connection's name, or nil.\nID\n    This connection's id.\nINFO\n    This connection, as CLIENT LIST describes it.\nLIST [TYPE <NORMAL|MASTER|REPLICA|PUBSUB>] [ID <id> [<id> ...]]\n    The connections this module can see: only the calling one.\nSETINFO <LIB-NAME|LIB-VER> <value>\n    Accepted and ignored.\nHELP\n    This text.";

export function cmdCommandHelp(c: Conn): i32 { replyHelp(c, COMMAND_HELP); return 0; }
export function cmdConfigHelp(c: Conn): i32 { replyHelp(c, CONFIG_HELP); return 0; }
export function cmdClientHelp(c: Conn): i32 { replyHelp(c, CLIENT_HELP); return 0; }

/** HELP output: an array with one status reply per line of `text`. */
export function replyHelp(c: Conn, text: string): void {
  let lines = 1;
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) == 0x0A) lines++;
  replyArray(c, lines);
  c.writeByte(0x2B);
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch == 0x0A) c.writeString("\r\n+");
    else c.writeByte(<u8>ch);
  }
  c.writeString("\r\n");
}
