/**
 * tcpmod SDK: a thin AssemblyScript layer over ABI v1 (docs/abi.md; every
 * function is listed in docs/sdk.md). The ABI is the contract; this only
 * removes the bookkeeping.
 *
 * A module is one entry file that does three things:
 *
 *   import { Conn, Action, configure } from "tcpmod/assembly/sdk";
 *   export * from "tcpmod/assembly/sdk/exports";  // the ABI exports, always all of them
 *   configure(inCap, outCap, stateSize, onData);
 *
 * Import it by that package path only, in every file of a module: asc resolves
 * it through node_modules (AssemblyScript 0.28 reads no `ascMain`; a bare
 * "tcpmod" would need an index.ts at the package root), and the same files
 * reached by a relative path would be a second copy of the SDK with its own
 * globals. Build with `tcpmod build` or a config that extends the package's
 * asconfig.json (the compiler options the ABI needs, and the abort redirection).
 *
 * Contracts:
 * - configure() runs once, at top level (i.e. during `_initialize`). It reserves
 *   the input, output and state regions for the life of the instance; no SDK
 *   call allocates afterwards, so memory stays flat however many calls run.
 * - The data handler gets the current connection as a Conn: `input`/`inputLen`
 *   (also `byte(i)`, `indexOf(b)`), `eof`, `id`, `state`/`stateSize`. It calls
 *   `consume(n)` for the bytes it handled (the rest comes back next call, after
 *   the bytes that arrive meanwhile) and returns an Action. "Need more bytes" is
 *   consuming nothing and returning Continue.
 * - `write`, `writeByte`, `writeString` (UTF-8), `writeInt`/`writeU64` (decimal) append to
 *   the out region and spill through `tcpmod.send` when it is full, so output of
 *   any size keeps its order. A failed send makes the call end with Abort.
 * - Conn and the regions are only valid during the callback that received them;
 *   anything that must survive goes in the state slot or the key-value store.
 * - setStateVersion(v) (or configure's 5th argument) lets open connections move
 *   to a reloaded module whose state slot means the same (docs/sdk.md).
 * - Hooks are optional: setOnOpen, setOnClose, setOnInit, setOnTimer (with
 *   Conn.setTimer/cancelTimer: one timer per connection, ABI v1.1), setOnMessage
 *   (with subscribe/publish: topics between connections, ABI v1.2, topics.ts).
 * - Any abort()/assert failure reaches the host as `tcpmod.abort` and is a
 *   module fault: the connection is closed and the instance replaced.
 */

export { Action, CloseReason, Conn, FLAG_EOF } from "./conn";
export {
  configure, setOnOpen, setOnClose, setOnInit, setOnTimer, setOnUpstream, setStateVersion,
  DataHandler, OpenHandler, CloseHandler, InitHandler, TimerHandler, UpstreamHandler,
} from "./hooks";
export { UPSTREAM_CONNECTED, UPSTREAM_DATA, UPSTREAM_CLOSED, UPSTREAM_FAILED, UPSTREAM_UNKNOWN, UPSTREAM_TOO_MANY, UPSTREAM_UNAVAILABLE, UPSTREAM_FULL, UPSTREAM_EOF, UPSTREAM_SHUT, upstreamAddr } from "./upstream";
export { LogLevel, log, logString, nowMs } from "./host";
export {
  subscribe, unsubscribe, unsubscribeAll, publish, publishFrame, topicCount, topicsList, setOnMessage, Message, MessageHandler,
  TOPIC_EXACT, TOPIC_GLOB, TOPIC_MQTT, TOPIC_DIRECT, TOPIC_NOT_HANDLED, TOPIC_TOO_MANY, TOPIC_INVALID, TOPIC_TOO_BIG,
} from "./topics";
export { kv_get, kv_set, kv_del, kv_incr, KV_MISSING, KV_FULL, KV_UNAVAILABLE } from "./abi";
export { decimalLength, decimalLengthU64, formatI64, formatU64, parseI64, parseU64, PARSE_NONE, PARSE_OVERFLOW } from "./decimal";
export {
  kv_get_ver, kv_getdel, kv_set_ex, kv_cas, kv_expire, kv_persist, kv_ttl, kv_append, kv_incr_ex, kv_scan, kv_del_prefix,
  kv_get_range, kv_send, KV_NOT_SENT, kv_expire_ex, KV_GT, KV_LT, kv_incr_at, KV_DECR,
  KV_INVALID, KV_EXISTS, KV_NOT_INTEGER, KV_TOO_SMALL, KV_NX, KV_XX, KV_KEEPTTL, KV_PREPEND, KV_TTL_MAX,
} from "./kv";
