// ABI v1 in data: the names, signatures and numbers of docs/abi.md (the contract)
// that the host checks modules against. Changing anything here breaks modules
// built elsewhere; it only ever grows with a new ABI version.

export const PAGE = 65536;

export const Action = { CONTINUE: 0, CLOSE: 1, ABORT: 2 } as const;

/**
 * Close reasons (tcpmod_on_close), the one list every part of the host uses: the
 * index is the number a module sees, the name is what stats and metrics call it.
 * 7 and 8 are compatible additions of v1.1.
 */
export const CLOSE_REASONS = ['peer', 'module', 'socket_error', 'overflow', 'send_timeout', 'shutdown', 'fault', 'timeout', 'tls'] as const;
export type CloseReasonName = (typeof CLOSE_REASONS)[number];
export const CloseReason = {
  PEER: 0, MODULE: 1, SOCKET_ERROR: 2, OVERFLOW: 3, SEND_TIMEOUT: 4, SHUTDOWN: 5, FAULT: 6, TIMEOUT: 7, TLS: 8,
} as const;

export const FLAG_EOF = 1;

/** tcpmod.log levels 0..3, named as the host logger names them. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/** Host functions a module may import, with their exact signatures. */
export const TCPMOD_IMPORTS: Record<string, string> = {
  send: '(i32, i32, i32) -> i32',
  log: '(i32, i32, i32) -> ()',
  now_ms: '() -> f64',
  abort: '(i32, i32, i32, i32) -> ()',
  kv_get: '(i32, i32, i32, i32) -> i32',
  kv_set: '(i32, i32, i32, i32) -> i32',
  kv_del: '(i32, i32) -> i32',
  kv_incr: '(i32, i32, i64, i32) -> i32',
  // v1.1: transport details of the connection being handled (0 TCP/TLS, 1 ALPN, 2 client certificate).
  conn_info: '(i32, i32, i32, i32) -> i32',
  // v1.1: the connection's single timer (ms from now, 0 cancels); needs the export tcpmod_on_timer.
  set_timer: '(i32, i32) -> i32',
  // v1.1: 1 once the server has begun a graceful stop.
  draining: '() -> i32',
  // v1.1: a hint: do not call on_data before n bytes are pending (or in_cap, EOF, a timer).
  want: '(i32, i32) -> i32',
  // v1.1: the client's address as text, IP:PORT or [IPv6]:PORT.
  peer_addr: '(i32, i32, i32) -> i32',
  // v1.2 store calls (docs/abi.md §14): versions, conditions, expiry, atomic updates, listing.
  kv_get_ver: '(i32, i32, i32, i32, i32) -> i32',
  kv_getdel: '(i32, i32, i32, i32) -> i32',
  kv_set_ex: '(i32, i32, i32, i32, i32, i64) -> i32',
  kv_cas: '(i32, i32, i32, i32, i32, i64, i64) -> i32',
  kv_expire: '(i32, i32, i64) -> i32',
  kv_persist: '(i32, i32) -> i32',
  kv_ttl: '(i32, i32, i32) -> i32',
  kv_append: '(i32, i32, i32, i32, i32) -> i32',
  kv_incr_ex: '(i32, i32, i64, i32, i32) -> i32',
  kv_scan: '(i32, i32, i64, i32, i32, i32, i32) -> i32',
  kv_del_prefix: '(i32, i32) -> i32',
  // v1.2 stored values to the output (docs/abi.md §17): a range of a value, and a range sent without passing through module memory.
  kv_get_range: '(i32, i32, i32, i32, i32, i32) -> i32',
  kv_send: '(i32, i32, i32, i32, i32, i64, i32, i32) -> i32',
  // v1.2 conditional expiry (docs/abi.md §17): kv_expire with Redis 7's NX/XX/GT/LT.
  kv_expire_ex: '(i32, i32, i64, i32) -> i32',
  // v1.2 counters inside a value (docs/abi.md §18): memcached's incr/decr at an offset.
  kv_incr_at: '(i32, i32, i32, i64, i32, i32) -> i32',
  // v1.2 topics (docs/abi.md §15): (conn, kind, ptr, len) for the connection being handled; publish from any callback.
  subscribe: '(i32, i32, i32, i32) -> i32',
  unsubscribe: '(i32, i32, i32, i32) -> i32',
  publish: '(i32, i32, i32, i32) -> i32',
  // PUBSUB NUMSUB / NUMPAT and CHANNELS of this server (docs/abi.md §15): counts and the exact topics subscribed.
  topic_count: '(i32, i32, i32) -> i32',
  topics_list: '(i32, i32, i32, i32, i32) -> i32',
  // v1.2 direct delivery (docs/abi.md §19): a publish with a pre-formatted frame that direct subscriptions take instead of the message.
  publish_frame: '(i32, i32, i32, i32, i32, i32) -> i32',
  // v1.2 upstreams (docs/abi.md, Upstreams): open a named backend for the connection, send to it, close it.
  upstream_open: '(i32, i32, i32) -> i32',
  upstream_send: '(i32, i32, i32, i32) -> i32',
  upstream_close: '(i32, i32) -> i32',
  // v1.2 (§16): offer the bytes held for an upstream (up > 0) or the client's held input (up = 0) again, with nothing new.
  upstream_resume: '(i32, i32) -> i32',
  // v1.2 (§16): address `index` of an upstream name as text (how many a name has, and what a sharding module names its shards by).
  upstream_addr: '(i32, i32, i32, i32, i32) -> i32',
  // v1.2 half-close (§20): end the sending side to an upstream, or to the client, after what is queued.
  upstream_shutdown: '(i32, i32) -> i32',
  shutdown_output: '(i32) -> i32',
};

/** Host functions that are compatible additions (v1.1): a module using none of them is a plain v1 module. */
export const V1_1_IMPORTS = ['conn_info', 'set_timer', 'draining', 'want', 'peer_addr'] as const;

/** Host functions of the v1.2 additions, by part (docs/abi.md §14 store, §15 topics, §16 upstreams). */
export const V1_2_STORE_IMPORTS = [
  'kv_get_ver', 'kv_getdel', 'kv_set_ex', 'kv_cas', 'kv_expire', 'kv_persist', 'kv_ttl', 'kv_append', 'kv_incr_ex', 'kv_scan', 'kv_del_prefix',
  'kv_get_range', 'kv_send', 'kv_expire_ex', 'kv_incr_at',
] as const;
export const V1_2_TOPIC_IMPORTS = ['subscribe', 'unsubscribe', 'publish', 'topic_count', 'topics_list', 'publish_frame'] as const;
export const V1_2_UPSTREAM_IMPORTS = ['upstream_open', 'upstream_send', 'upstream_close', 'upstream_resume', 'upstream_addr'] as const;
/** Every v1.2 host function: a module using one of them is listed as v1.2. */
/** Half-close (docs/abi.md §20): importing either keeps a client open after an EOF call answered with CONTINUE. */
export const V1_2_HALF_CLOSE_IMPORTS = ['upstream_shutdown', 'shutdown_output'] as const;
export const V1_2_IMPORTS = [...V1_2_STORE_IMPORTS, ...V1_2_TOPIC_IMPORTS, ...V1_2_UPSTREAM_IMPORTS, ...V1_2_HALF_CLOSE_IMPORTS] as const;

/** Topic subscription kinds (docs/abi.md §15) and topic result codes. */
export const TOPIC_EXACT = 0, TOPIC_GLOB = 1, TOPIC_MQTT = 2;
/** A flag added to subscribe's kind: the subscription takes publish_frame's frame, written to the output with no module call (§19). */
export const TOPIC_DIRECT = 0x100;
export const TOPIC = { NOT_HANDLED: -1, TOO_MANY: -2, INVALID: -3, TOO_BIG: -4 } as const;

/** tcpmod_on_upstream's events, and upstream_open / upstream_send results (docs/abi.md, Upstreams). */
export const UPSTREAM = { CONNECTED: 1, DATA: 2, CLOSED: 3, FAILED: 4, EOF: 5 } as const;
export const UPSTREAM_UNKNOWN = -1, UPSTREAM_TOO_MANY = -2, UPSTREAM_UNAVAILABLE = -3, UPSTREAM_FULL = -2;
/** upstream_send after upstream_shutdown (docs/abi.md §20). */
export const UPSTREAM_SHUT = -3;
/** Upstreams one connection may have open at once (upstream.h kMaxUpstreamsPerConn). */
export const MAX_UPSTREAMS_PER_CONN = 8;

/** kv result codes (docs/abi.md §10, §14). */
export const KV = { MISSING: -1, FULL: -2, UNAVAILABLE: -3, INVALID: -4, EXISTS: -5, NOT_INTEGER: -6, TOO_SMALL: -7, NOT_SENT: -8 } as const;
/** kv_set_ex / kv_cas / kv_append / kv_incr_ex flags. */
export const KV_NX = 1, KV_XX = 2, KV_KEEPTTL = 4, KV_PREPEND = 1;
/** kv_expire_ex flags beside NX and XX (docs/abi.md §17): only a later / an earlier expiry than the key's. */
export const KV_GT = 8, KV_LT = 16;
/** kv_incr_at flag (docs/abi.md §18): subtract, stopping at 0, instead of adding. */
export const KV_DECR = 32;
/** The longest TTL a kv call accepts, in ms (2^46, about 2,200 years). */
export const KV_TTL_MAX = 2 ** 46;

/** The only WASI functions a module may import (fd_write for fds 1 and 2 only). */
export const WASI_IMPORTS: Record<string, string> = {
  fd_write: '(i32, i32, i32, i32) -> i32',
  clock_time_get: '(i32, i64, i32) -> i32',
  random_get: '(i32, i32) -> i32',
  proc_exit: '(i32) -> ()',
};

export const REQUIRED_EXPORTS: Record<string, string> = {
  tcpmod_abi_v1: '() -> ()',
  tcpmod_io_desc: '() -> i32',
  tcpmod_on_data: '(i32, i32, i32) -> i32',
};

export const OPTIONAL_EXPORTS: Record<string, string> = {
  _initialize: '() -> ()',
  tcpmod_init: '(i32) -> i32',
  tcpmod_on_open: '(i32) -> i32',
  tcpmod_on_close: '(i32, i32) -> ()',
  // v1.1: the connection's timer fired; carry-over at in_ptr; result and action as for on_data.
  tcpmod_on_timer: '(i32, i32) -> i32',
  // v1.2: a message for one of the connection's subscriptions: (conn, in_len, topic_len, pattern_len, msg_len).
  tcpmod_on_message: '(i32, i32, i32, i32, i32) -> i32',
  // v1.1 (live reload): what the state slot means; equal versions let a connection move to a new module.
  tcpmod_state_version: '() -> i32',
  // v1.2: an upstream's event (connected, data, closed, failed); its bytes at in_ptr; result and action as for on_data.
  tcpmod_on_upstream: '(i32, i32, i32, i32) -> i32',
  __collect: '() -> ()',
};

/** IoDesc bounds. */
export const IO_MIN = 1024;
export const IO_MAX = 4 * 1024 * 1024;
export const STATE_MAX = 256;
export const RESULT_SIZE = 8;
export const IODESC_SIZE = 32;

/** The `conn` a module sees is the host id modulo this (docs/abi.md §7): an i32, never 0. */
export const MODULE_ID_SPACE = 2 ** 31;
/** The longest tcpmod.set_timer arms a timer for, in ms (docs/abi.md §11): 24 h. */
export const TIMER_MAX_MS = 86_400_000;
/** Topics (docs/abi.md §15): the longest topic or pattern in bytes, and the subscriptions one connection may hold. */
export const TOPIC_MAX = 1024;
export const SUBSCRIPTIONS_MAX = 1024;

export const DEFAULT_MEMORY_CAP = 32 * 1024 * 1024;
