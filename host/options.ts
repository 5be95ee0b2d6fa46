// Every server option in one table: its API name, CLI flag, kind of value,
// default and help line. resolveOptions checks options against it, the CLI
// builds `serve`'s flags and help from it, and DEFAULTS is read off it, so an
// option's default and meaning are written in one place.
//
// Options are validated at the door: a bad one throws an OptionError whose
// message names the option and says what it accepts, and the CLI prints that
// one line with the option's flag in place of its API name.
import type { LoggerOption } from './logger.js';
import { availableParallelism } from 'node:os';
import { isIP } from 'node:net';
import { MAX_WORKERS } from './pool/counters.js';
import { parseDuration } from './duration.js';
import { parseSize } from './size.js';

/** Spells an option's name: the API's camelCase, or the CLI's flag. */
export type OptionNamer = (option: string) => string;

export class OptionError extends Error {
  readonly code = 'TCPMOD_INVALID_OPTION';
  private readonly text: (name: OptionNamer) => string;
  /** `message` is a function when it mentions other options, so the CLI can name them by flag too. */
  constructor(readonly option: string, message: string | ((name: OptionNamer) => string)) {
    const text = typeof message === 'string' ? () => message : message;
    super(`${option} ${text((n) => n)}`);
    this.name = 'OptionError';
    this.text = text;
  }

  /** The message with every option it mentions spelled by `name`. */
  describe(name: OptionNamer): string {
    return `${name(this.option)} ${this.text(name)}`;
  }
}

export type Duration = number | string;

/** What an option's value is, and the bounds it is checked against. */
export type Kind =
  | { readonly type: 'integer'; readonly min: number; readonly max: number }
  /**
   * `off`, when set, is the word (or `false` in the API) that disables the timer: it resolves to null.
   * `max` bounds every duration: each ends up in a native timeout or a timer (an int of ms there,
   * which overflows past 24.8 days: a poll() that would then wait forever).
   */
  | { readonly type: 'duration'; readonly min: number; readonly max: number; readonly off?: string }
  /** Bytes as a number, or a string with a unit (32MiB); the bounds apply to the bytes. */
  | { readonly type: 'size'; readonly min: number; readonly max: number }
  /** A non-empty string; `what` completes "must be …" in its error. */
  | { readonly type: 'string'; readonly what: string }
  | { readonly type: 'choice'; readonly choices: readonly string[] }
  | { readonly type: 'keepalive' }
  | { readonly type: 'flag' }
  /** Bytes handed on unchanged: a Uint8Array, or a string taken as UTF-8 (the CLI also reads @file). */
  | { readonly type: 'bytes' }
  /** TLS ALPN protocol names: "h2,http/1.1" or a string[]. */
  | { readonly type: 'protocols' }
  /** HOST:PORT. */
  | { readonly type: 'address' }
  /** NAME=IP:PORT[,IP:PORT…], repeatable: the upstreams a module may open (by name). */
  | { readonly type: 'upstreams' }
  /** NAME[=SERVERNAME], repeatable: upstreams spoken to over TLS, and the name their certificates must have. */
  | { readonly type: 'upstreamTls' };

export interface OptionSpec {
  readonly flag: `--${string}`;
  /** The value's placeholder in help, e.g. "<n>"; none for flags. */
  readonly arg?: string;
  readonly kind: Kind;
  /** The default as a user would write it (on the command line or to createServer). */
  readonly default?: string | number;
  /** A default worked out from other options or the machine, described for help. */
  readonly defaultNote?: string;
  readonly help: string;
  /** The CLI has it, the API does not. */
  readonly cliOnly?: true;
}

const TLS_ONLY = 'only applies with --tls-cert';
/**
 * A callback's whole time, waits on a Redis-backed store included, is capped
 * at this many --handler-timeouts (the store's waits alone are not the
 * watchdog's business): a kv call made past it faults the callback (timeout).
 */
export const STORE_TIMEOUT_MULTIPLE = 3;
/** The longest duration an option takes (24 h): far past any useful timeout, and far inside a native int of ms. */
export const MAX_DURATION_MS = 86_400_000;

/** --kv-eviction's values, spelled as Redis' maxmemory-policy spells them. */
export const KV_EVICTION_POLICIES = ['noeviction', 'allkeys-lru', 'volatile-lru', 'allkeys-lfu'] as const;
export type KvEviction = (typeof KV_EVICTION_POLICIES)[number];

/** Bounds of --upstream: names a server may list, addresses per name. */
export const MAX_UPSTREAM_NAMES = 64;
export const MAX_UPSTREAM_ADDRESSES = 16;
const UPSTREAM_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,31}$/;
/** One named upstream: the addresses tried in order; `tls` when --upstream-tls names it. */
export interface Upstream { name: string; addresses: { host: string; port: number }[]; tls?: UpstreamTls }
/** --upstream-tls NAME[=SERVERNAME]: servername null means each address's certificate must name that address. */
export interface UpstreamTls { name: string; servername: string | null }
/** A DNS name (labels of letters, digits and -) or a numeric address: what a certificate can name. */
const SERVERNAME = /^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** --upstream-tls values (a string or a list), each NAME or NAME=SERVERNAME; names unique (checked against --upstream later). */
export function parseUpstreamTls(name: string, v: unknown): UpstreamTls[] {
  const list = typeof v === 'string' ? [v] : Array.isArray(v) ? v : null;
  if (!list || list.some((e) => typeof e !== 'string'))
    throw new OptionError(name, `must be NAME or NAME=SERVERNAME (an --upstream name) or a list of them, got ${JSON.stringify(v)}`);
  const out: UpstreamTls[] = [];
  for (const entry of list as string[]) {
    const eq = entry.indexOf('=');
    const n = eq < 0 ? entry : entry.slice(0, eq);
    const servername = eq < 0 ? null : entry.slice(eq + 1);
    if (!UPSTREAM_NAME.test(n)) throw new OptionError(name, `must start with an upstream NAME (1 to 32 of A-Z a-z 0-9 _ . -, starting with a letter); ${JSON.stringify(entry)} does not`);
    if (servername !== null && !SERVERNAME.test(servername) && isIP(servername.replace(/^\[|\]$/g, '')) === 0)
      throw new OptionError(name, `must give SERVERNAME as a DNS name or an IP address; ${JSON.stringify(servername)} in ${JSON.stringify(entry)} is not one`);
    if (out.some((u) => u.name === n)) throw new OptionError(name, `must name each upstream once; ${JSON.stringify(n)} is given twice`);
    out.push({ name: n, servername: servername === null ? null : servername.replace(/^\[|\]$/g, '') });
  }
  return out;
}

/** `ip:port` (IPv4, or [IPv6]): a numeric address, so that opening never waits on a resolver in a worker. */
function upstreamAddress(name: string, entry: string, a: string): { host: string; port: number } {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3})|\[([0-9A-Fa-f:.]+)\]):(\d{1,5})$/.exec(a);
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535 || (m[1] !== undefined && m[1].split('.').some((o) => Number(o) > 255)))
    throw new OptionError(name, `must give addresses as IPv4:PORT or [IPv6]:PORT (PORT 1 to 65535); ${JSON.stringify(a)} in ${JSON.stringify(entry)} is not one`);
  return { host: m[1] ?? m[2], port };
}

/** --upstream values (a string or a list of them), each NAME=ADDR[,ADDR…]; names unique. */
export function parseUpstreams(name: string, v: unknown): Upstream[] {
  const list = typeof v === 'string' ? [v] : Array.isArray(v) ? v : null;
  if (!list || list.some((e) => typeof e !== 'string'))
    throw new OptionError(name, `must be NAME=IP:PORT[,IP:PORT…] or a list of them, got ${JSON.stringify(v)}`);
  if (list.length > MAX_UPSTREAM_NAMES) throw new OptionError(name, `must name at most ${MAX_UPSTREAM_NAMES} upstreams, got ${list.length}`);
  const out: Upstream[] = [];
  for (const entry of list as string[]) {
    const eq = entry.indexOf('=');
    const n = eq < 0 ? '' : entry.slice(0, eq);
    if (eq < 0) throw new OptionError(name, `must be NAME=IP:PORT[,IP:PORT…], got ${JSON.stringify(entry)}`);
    if (!UPSTREAM_NAME.test(n))
      throw new OptionError(name, `must have a NAME of 1 to 32 of A-Z a-z 0-9 _ . - starting with a letter; ${JSON.stringify(n)} in ${JSON.stringify(entry)} is not one`);
    if (out.some((u) => u.name === n)) throw new OptionError(name, `must name each upstream once; ${JSON.stringify(n)} is given twice`);
    const addrs = entry.slice(eq + 1).split(',');
    if (addrs.length > MAX_UPSTREAM_ADDRESSES)
      throw new OptionError(name, `must give at most ${MAX_UPSTREAM_ADDRESSES} addresses per name; ${JSON.stringify(n)} has ${addrs.length}`);
    out.push({ name: n, addresses: addrs.map((a) => upstreamAddress(name, entry, a.trim())) });
  }
  return out;
}

export const OPTIONS = {
  host: { flag: '--host', arg: '<host>', kind: { type: 'string', what: 'a host name or address' }, default: '127.0.0.1', help: 'address to listen on (IPv4 or IPv6)' },
  port: { flag: '--port', arg: '<port>', kind: { type: 'integer', min: 0, max: 65535 }, default: 7000, help: 'TCP port; 0 lets the kernel choose' },
  reusePort: {
    flag: '--reuse-port', kind: { type: 'flag' },
    help: 'set SO_REUSEPORT: several tcpmod processes share the port and the kernel spreads connections across them',
  },
  proxyProtocol: {
    flag: '--proxy-protocol', arg: '<version>', kind: { type: 'choice', choices: ['off', 'v1', 'v2', 'any'] }, default: 'off',
    help: 'every connection starts with a PROXY protocol header (from a load balancer such as HAProxy): it is stripped, and the client it names is what tcpmod.peer_addr reports; a connection without a valid one is closed (refused, reason proxy)',
  },
  threads: { flag: '--threads', arg: '<n>', kind: { type: 'integer', min: 1, max: MAX_WORKERS }, help: 'fixed number of worker threads (sets min and max)' },
  minThreads: { flag: '--min-threads', arg: '<n>', kind: { type: 'integer', min: 1, max: MAX_WORKERS }, defaultNote: 'CPUs', help: 'workers kept even when idle' },
  maxThreads: {
    flag: '--max-threads', arg: '<n>', kind: { type: 'integer', min: 1, max: MAX_WORKERS },
    defaultNote: `4 x min, at most ${MAX_WORKERS}`, help: 'most workers the pool grows to',
  },
  batch: {
    flag: '--batch', arg: '<n>', kind: { type: 'integer', min: 1, max: 256 }, default: 8,
    help: 'ready connections a worker takes per wait; 1 takes one event per wait (the seed\'s loop)',
  },
  workerIdleTimeout: { flag: '--idle-timeout', arg: '<duration>', kind: { type: 'duration', min: 1, max: MAX_DURATION_MS }, default: '20s', help: 'an idle worker above min leaves after this' },
  sendMode: {
    flag: '--send-mode', arg: '<mode>', kind: { type: 'choice', choices: ['queued', 'blocking'] }, default: 'queued',
    help: 'queued: output a client does not take yet waits in a per-connection queue and the worker goes on; blocking: the worker waits (the seed\'s sender)',
  },
  sendTimeout: { flag: '--send-timeout', arg: '<duration>', kind: { type: 'duration', min: 1, max: MAX_DURATION_MS }, default: '20s', help: 'output that makes no progress this long closes its connection (reason 4)' },
  maxOutputBuffer: {
    flag: '--max-output-buffer', arg: '<size>', kind: { type: 'size', min: 65536, max: 2 ** 40 }, default: '8MiB',
    help: 'queued output one connection may hold; past it tcpmod.send fails (queued mode)',
  },
  maxOutputMemory: {
    flag: '--max-output-memory', arg: '<size>', kind: { type: 'size', min: 1 << 20, max: 2 ** 50 }, default: '256MiB',
    help: 'queued output of all connections; past it the connections holding most are closed (reason 3)',
  },
  maxMailbox: {
    flag: '--max-mailbox', arg: '<size>', kind: { type: 'size', min: 16384, max: 2 ** 40 }, default: '4MiB',
    help: 'published messages one subscriber may have waiting (bytes, + 64 per message); past it the subscriber is closed (reason 3)',
  },
  maxInputMemory: {
    flag: '--max-input-memory', arg: '<size>', kind: { type: 'size', min: 1 << 20, max: 2 ** 50 }, default: '512MiB',
    help: 'unconsumed input of all connections; past it the connections holding most are closed (reason 3)',
  },
  handlerTimeout: {
    flag: '--handler-timeout', arg: '<duration>', kind: { type: 'duration', min: 1, max: MAX_DURATION_MS }, default: '1s',
    help: `a module callback running longer is stopped (waits on a Redis store excluded, but never more than ${STORE_TIMEOUT_MULTIPLE}x this in all)`,
  },
  // Start-up runs in a thread of its own that is terminated when it passes this; an hour keeps it far
  // inside the int of ms a timer takes, and far past any start-up worth waiting for.
  startupTimeout: {
    flag: '--startup-timeout', arg: '<duration>', kind: { type: 'duration', min: 1, max: 3_600_000 }, default: '5s',
    help: "a module's start-up (_initialize, its start function, tcpmod_io_desc, tcpmod_init) running longer is stopped: the module is refused at start and on reload; in a worker making a new instance it is a handler timeout",
  },
  drainTimeout: { flag: '--drain-timeout', arg: '<duration>', kind: { type: 'duration', min: 0, max: MAX_DURATION_MS }, default: '5s', help: 'on SIGINT/SIGTERM, open connections get this long' },
  readTimeout: {
    flag: '--read-timeout', arg: '<duration|off>', kind: { type: 'duration', min: 1, max: MAX_DURATION_MS, off: 'off' }, default: '5m',
    help: 'a connection that sends nothing for this long is closed (close reason 7)',
  },
  frameTimeout: {
    flag: '--frame-timeout', arg: '<duration|off>', kind: { type: 'duration', min: 1, max: MAX_DURATION_MS, off: 'off' }, default: '30s',
    help: 'a connection whose module has left input unconsumed (an incomplete frame, a TLS handshake, a PROXY header) this long is closed (reason 7)',
  },
  maxConnections: {
    flag: '--max-connections', arg: '<n>', kind: { type: 'integer', min: 1, max: 16_777_216 },
    defaultNote: 'the file-descriptor limit (raised to its hard limit) minus a reserve',
    help: 'connections beyond this are accepted and closed at once; never more than the descriptor limit allows with a reserve for the server itself (metrics, reloads, workers)',
  },
  drainIdle: {
    flag: '--drain-idle', arg: '<duration>', kind: { type: 'duration', min: 0, max: MAX_DURATION_MS }, default: '1s',
    help: 'while draining, a connection with nothing pending that stays idle this long is closed',
  },
  // A closed connection's lingering (nginx's lingering_time / lingering_timeout): after the module's
  // last reply, writing is shut down and what the client still sends is read and discarded, so that
  // it reads the reply instead of a reset.
  lingeringTime: {
    flag: '--lingering-time', arg: '<duration|off>', kind: { type: 'duration', min: 1, max: 3_600_000, off: 'off' }, default: '30s',
    help: 'after the module closes a connection, its client\'s further input is read and discarded for at most this long (at most 1h), so it gets the reply instead of a reset',
  },
  lingeringTimeout: {
    flag: '--lingering-timeout', arg: '<duration>', kind: { type: 'duration', min: 1, max: 3_600_000 }, default: '5s',
    help: 'a lingering connection whose client sends nothing for this long (at most 1h) is closed',
  },
  reloadDrain: {
    flag: '--reload-drain', arg: '<duration|off>', kind: { type: 'duration', min: 1, max: MAX_DURATION_MS, off: 'off' }, default: 'off',
    help: 'after a reload, connections pinned to an older module (their state cannot move to the new one) that stay open this long are closed (reason 5)',
  },
  reloadFaultLimit: {
    flag: '--reload-fault-limit', arg: '<n>', kind: { type: 'integer', min: 0, max: 1_000_000 }, default: 10,
    help: 'a reloaded module that faults more often than this within --reload-watch is rolled back to the previous one',
  },
  reloadWatch: {
    flag: '--reload-watch', arg: '<duration>', kind: { type: 'duration', min: 1, max: MAX_DURATION_MS }, default: '30s',
    help: 'how long after a reload its faults are counted toward --reload-fault-limit',
  },
  watch: { flag: '--watch', kind: { type: 'flag' }, help: 'reload the module when its file changes (a file still being written is retried, never served)', cliOnly: true },
  keepalive: { flag: '--keepalive', arg: '<spec>', kind: { type: 'keepalive' }, default: '1800,5,3', help: 'TCP keepalive IDLE,INTERVAL,COUNT in seconds/probes, or "off"' },
  // The kernel caps the backlog at net.core.somaxconn; bursts of connects overflow 511.
  backlog: { flag: '--backlog', arg: '<n>', kind: { type: 'integer', min: 1, max: 65535 }, default: 4096, help: 'listen backlog (the kernel caps it at net.core.somaxconn)' },
  moduleMemory: { flag: '--module-memory', arg: '<size>', kind: { type: 'size', min: 65536, max: 4 * 1024 ** 3 }, default: '32MiB', help: 'largest memory a module may have' },
  config: { flag: '--config', arg: '<string|@file>', kind: { type: 'bytes' }, help: "bytes given to the module's tcpmod_init (@path reads a file)" },
  kv: {
    flag: '--kv', arg: '<memory|redis://…>', kind: { type: 'string', what: 'memory or a redis:// URL' }, default: 'memory',
    help: 'the key-value store: in-process (memory), or a Redis/Valkey server at redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] shared by several processes (rediss:// for TLS)',
  },
  // A kv call blocks its worker for up to this long; an hour is far past any useful wait, and keeps
  // the native poll() timeout (an int of ms, which overflows past 24.8 days) in range.
  kvTimeout: {
    flag: '--kv-timeout', arg: '<duration>', kind: { type: 'duration', min: 1, max: 3_600_000 }, default: '200ms',
    help: 'bounds each call to the Redis store (connect, send, reply), at most 1h; past it the call returns -3',
  },
  kvPasswordFile: { flag: '--kv-password-file', arg: '<file>', kind: { type: 'string', what: 'a file path' }, help: 'the Redis password, read from this file at start (one trailing newline stripped)' },
  kvTlsCa: {
    flag: '--kv-tls-ca', arg: '<file>', kind: { type: 'string', what: 'a file path' }, defaultNote: "Node's bundled root certificates",
    help: 'PEM CA certificates that a rediss:// server\'s certificate is checked against',
  },
  bus: {
    flag: '--bus', arg: '<redis://…|off>', kind: { type: 'string', what: 'off or a redis:// URL' }, defaultNote: 'the --kv Redis when it is a redis:// or rediss:// one, else off',
    help: 'topics across processes: publishes also go through this Redis/Valkey server (PUBLISH/SUBSCRIBE, one subscriber connection per process), at most once; redis[s]://[[USER]:PASSWORD@]HOST[:PORT] (rediss:// for TLS)',
  },
  busTlsCa: {
    flag: '--bus-tls-ca', arg: '<file>', kind: { type: 'string', what: 'a file path' }, defaultNote: "Node's bundled root certificates (with a bus that follows a rediss:// --kv: --kv-tls-ca)",
    help: 'PEM CA certificates that a rediss:// bus server\'s certificate is checked against',
  },
  kvMaxBytes: { flag: '--kv-max-bytes', arg: '<size>', kind: { type: 'size', min: 0, max: Number.MAX_SAFE_INTEGER }, default: '64MiB', help: 'byte budget of the shared key-value store' },
  kvEviction: {
    flag: '--kv-eviction', arg: '<policy>', kind: { type: 'choice', choices: KV_EVICTION_POLICIES }, default: 'noeviction',
    help: 'what the in-process store does at --kv-max-bytes: refuse writes (noeviction), or evict sampled keys, least recently used of all (allkeys-lru) or of those with a TTL (volatile-lru), or least frequently used (allkeys-lfu), as Redis does',
  },
  tlsCert: { flag: '--tls-cert', arg: '<file>', kind: { type: 'string', what: 'a file path' }, help: 'serve TLS with this PEM certificate chain (needs --tls-key)' },
  tlsKey: { flag: '--tls-key', arg: '<file>', kind: { type: 'string', what: 'a file path' }, help: "the certificate's PEM private key" },
  tlsCa: { flag: '--tls-ca', arg: '<file>', kind: { type: 'string', what: 'a file path' }, help: `PEM CA certificates that client certificates are checked against; ${TLS_ONLY}` },
  tlsClientAuth: {
    flag: '--tls-client-auth', arg: '<mode>', kind: { type: 'choice', choices: ['none', 'request', 'require'] }, default: 'none',
    help: `ask clients for a certificate (request) or refuse those without a valid one (require); needs --tls-ca`,
  },
  tlsMinVersion: { flag: '--tls-min-version', arg: '<version>', kind: { type: 'choice', choices: ['1.2', '1.3'] }, default: '1.2', help: `oldest TLS version accepted; ${TLS_ONLY}` },
  alpn: {
    flag: '--alpn', arg: '<list>', kind: { type: 'protocols' }, defaultNote: 'none',
    help: `ALPN protocols offered, most preferred first, e.g. h2,http/1.1; ${TLS_ONLY}`,
  },
  metrics: { flag: '--metrics', arg: '<host:port>', kind: { type: 'address' }, help: 'serve Prometheus metrics at http://HOST:PORT/metrics', cliOnly: true },
  upstream: {
    flag: '--upstream', arg: '<name=ip:port[,ip:port…]>', kind: { type: 'upstreams' },
    help: `a backend a module may open by NAME (repeatable); a module can reach nothing else. Several addresses are tried in order, the next on refusal or timeout; at most ${MAX_UPSTREAM_ADDRESSES} per name, ${MAX_UPSTREAM_NAMES} names`,
  },
  upstreamConnectTimeout: {
    flag: '--upstream-connect-timeout', arg: '<duration>', kind: { type: 'duration', min: 1, max: 60_000 }, default: '2s',
    help: 'an upstream address that has not connected after this is given up (the next one is tried, or the module gets a failed event)',
  },
  upstreamReadTimeout: {
    flag: '--upstream-read-timeout', arg: '<duration|off>', kind: { type: 'duration', min: 1, max: MAX_DURATION_MS, off: 'off' }, default: '30s',
    help: 'an open upstream sent bytes that has received nothing since for this long is closed (the module gets a closed event, why timeout); one with nothing sent since its last bytes never times out',
  },
  upstreamFrameTimeout: {
    flag: '--upstream-frame-timeout', arg: '<duration|off>', kind: { type: 'duration', min: 1, max: MAX_DURATION_MS, off: 'off' }, default: '30s',
    help: 'an open upstream whose reply the module has left incomplete (carry-over, nothing of it consumed) this long is closed (the module gets a closed event, why timeout), measured from when the carry-over began; not while another upstream of the client is still connecting, awaited or within its own frame timeout (held replies)',
  },
  maxUpstreams: {
    flag: '--max-upstreams', arg: '<n>', kind: { type: 'integer', min: 1, max: 16_777_216 }, default: '10000',
    help: 'upstream connections open (connecting or connected) at once by this server; past it a module\'s upstream_open returns -2 (too many), as past 8 on one connection',
  },
  upstreamTls: {
    flag: '--upstream-tls', arg: '<name[=servername]>', kind: { type: 'upstreamTls' },
    help: 'speak TLS to the --upstream NAME (repeatable); its certificate must verify against --upstream-ca and name SERVERNAME (sent as SNI), or without one the address connected to',
  },
  upstreamCa: {
    flag: '--upstream-ca', arg: '<file>', kind: { type: 'string', what: 'a file path' }, defaultNote: "Node's bundled root certificates",
    help: 'PEM CA certificates that --upstream-tls upstreams\' certificates are checked against',
  },
  logLevel: { flag: '--log-level', arg: '<level>', kind: { type: 'choice', choices: ['debug', 'info', 'warn', 'error', 'silent'] }, default: 'info', help: 'log level on stderr' },
} as const satisfies Record<string, OptionSpec>;

type Table = typeof OPTIONS;
type Name = keyof Table;
/** Options createServer takes (all but the CLI's conveniences). */
type ApiName = { [N in Name]: Table[N] extends { cliOnly: true } ? never : N }[Name];

/** What a value of this kind is after checking. */
export type Value<K extends Kind> =
  K extends { type: 'integer' | 'size' } ? number :
  K extends { type: 'duration'; off: string } ? number | null :
  K extends { type: 'duration' } ? number :
  K extends { type: 'string' } ? string :
  K extends { type: 'choice'; choices: readonly (infer C)[] } ? C :
  K extends { type: 'keepalive' } ? [number, number, number] | null :
  K extends { type: 'flag' } ? boolean :
  K extends { type: 'bytes' } ? Uint8Array :
  K extends { type: 'protocols' } ? string[] :
  K extends { type: 'address' } ? { host: string; port: number } :
  K extends { type: 'upstreams' } ? Upstream[] :
  K extends { type: 'upstreamTls' } ? UpstreamTls[] :
  never;

/** What createServer accepts for this kind. */
type Input<K extends Kind> =
  K extends { type: 'integer' } ? number :
  K extends { type: 'duration'; off: string } ? Duration | false :
  K extends { type: 'duration' } ? Duration :
  K extends { type: 'size' } ? number | string :
  K extends { type: 'string' } ? string :
  K extends { type: 'choice'; choices: readonly (infer C)[] } ? C :
  K extends { type: 'keepalive' } ? [number, number, number] | string | false :
  K extends { type: 'flag' } ? boolean :
  K extends { type: 'bytes' } ? Uint8Array | string :
  K extends { type: 'protocols' } ? string | readonly string[] :
  K extends { type: 'address' } ? string :
  K extends { type: 'upstreams' } ? string | readonly string[] :
  K extends { type: 'upstreamTls' } ? string | readonly string[] :
  never;

/**
 * Options of createServer: `module` (the path of the .wasm file) and any option of
 * the table (see OPTIONS for each one's meaning and default; `threads` is shorthand
 * for minThreads = maxThreads).
 */
export type ServerOptions = {
  module: string;
  /** Who hears the server (host/logger.ts): a pino logger, a level of the built-in stderr logger, or false. Default: warnings and errors on stderr. */
  logger?: LoggerOption;
} & { [N in ApiName]?: Input<Table[N]['kind']> };

export interface TlsOptions {
  cert: string;
  key: string;
  ca: string | null;
  clientAuth: 'none' | 'request' | 'require';
  minVersion: '1.2' | '1.3';
  alpn: string[];
}

/** A Redis (or Valkey) server holding the key-value store; host may be a name until the server resolves it. */
export interface RedisTarget { host: string; port: number; db: number; username: string; password: string | null; tls: boolean }
export type KvBackend = { type: 'memory' } | ({ type: 'redis' } & RedisTarget);

export interface ResolvedOptions {
  module: string;
  host: string;
  port: number;
  reusePort: boolean;
  /** The PROXY protocol versions a connection must start with ('off': none expected). */
  proxyProtocol: 'off' | 'v1' | 'v2' | 'any';
  backlog: number;
  minThreads: number;
  maxThreads: number;
  workerIdleTimeoutMs: number;
  batch: number;
  sendTimeoutMs: number;
  sendMode: 'queued' | 'blocking';
  maxOutputBuffer: number;
  maxOutputMemory: number;
  maxInputMemory: number;
  maxMailbox: number;
  handlerTimeoutMs: number;
  startupTimeoutMs: number;
  drainTimeoutMs: number;
  /** null: off. */
  readTimeoutMs: number | null;
  frameTimeoutMs: number | null;
  /** null: the default, worked out at listen from the descriptor limit. */
  maxConnections: number | null;
  drainIdleMs: number;
  /** Lingering after the module closes (null: off), and its wait between two reads. */
  lingeringTimeMs: number | null;
  lingeringTimeoutMs: number;
  /** Live reload: close pinned old-generation connections after this (null: off); rollback after more faults than the limit within the watch. */
  reloadDrainMs: number | null;
  reloadFaultLimit: number;
  reloadWatchMs: number;
  keepalive: [number, number, number] | null;
  moduleMemory: number;
  config: Uint8Array;
  kvMaxBytes: number;
  kvEviction: KvEviction;
  kv: KvBackend;
  kvTimeoutMs: number;
  /** Read when the server starts; never together with a password in the URL. */
  kvPasswordFile: string | null;
  /** rediss:// only: a CA file read at start; null: Node's bundled roots. */
  kvTlsCa: string | null;
  /** The Redis topics also travel through (--bus); null: off. fromKv: the --kv default (its password file applies). */
  bus: (RedisTarget & { fromKv: boolean }) | null;
  /** A rediss:// bus only: a CA file read at start; null: the --kv-tls-ca of a bus that follows --kv, else Node's bundled roots. */
  busTlsCa: string | null;
  logLevel: string;
  /** File paths only: the server reads (and reports on) the files when it starts. */
  tls: TlsOptions | null;
  /** The backends modules may open, by name (--upstream, with --upstream-tls), and the connect timeout of one address. */
  upstreams: Upstream[];
  /** --upstream-tls only: a CA file read at listen; null: Node's bundled roots. */
  upstreamCa: string | null;
  upstreamConnectTimeoutMs: number;
  /** --upstream-read-timeout; null: off. */
  upstreamReadTimeoutMs: number | null;
  /** --upstream-frame-timeout; null: off. */
  upstreamFrameTimeoutMs: number | null;
  maxUpstreams: number;
}

function int(name: string, v: unknown, min: number, max: number): number {
  const n = typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max)
    throw new OptionError(name, `must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
}

const ALPN_NAME = /^[\x21-\x7e]{1,255}$/; // ALPN allows any bytes; we keep to visible ASCII so names survive a command line

/** Checks one value against its kind; `name` is what errors call the option. */
export function parseOptionValue(name: string, kind: Kind, v: unknown): unknown {
  switch (kind.type) {
    case 'integer':
      return int(name, v, kind.min, kind.max);
    case 'duration': {
      if (kind.off !== undefined && (v === kind.off || v === false)) return null;
      const ms = typeof v === 'number' || typeof v === 'string' ? parseDuration(v) : NaN;
      const off = kind.off === undefined ? '' : ` or ${JSON.stringify(kind.off)}`;
      if (!Number.isFinite(ms)) throw new OptionError(name, `must be a duration (milliseconds, or a number with ms, s, m or h)${off}, got ${JSON.stringify(v)}`);
      if (ms < kind.min) throw new OptionError(name, `must be at least ${kind.min} ms${off}, got ${JSON.stringify(v)}`);
      if (kind.max !== undefined && ms > kind.max) throw new OptionError(name, `must be at most ${kind.max} ms${off}, got ${JSON.stringify(v)}`);
      return Math.round(ms);
    }
    case 'size': {
      // A number goes straight to the range check, so its error shows the number as given.
      if (typeof v !== 'string') return int(name, v, kind.min, kind.max);
      const n = parseSize(v);
      if (!(n >= 0)) throw new OptionError(name, `must be a size in bytes (e.g. 65536, 512KiB, 32MiB), got ${JSON.stringify(v)}`);
      return int(name, n, kind.min, kind.max);
    }
    case 'string':
      if (typeof v !== 'string' || v === '') throw new OptionError(name, `must be ${kind.what}, got ${JSON.stringify(v)}`);
      return v;
    case 'choice':
      if (typeof v !== 'string' || !kind.choices.includes(v))
        throw new OptionError(name, `must be one of ${kind.choices.join(', ')}; got ${JSON.stringify(v)}`);
      return v;
    case 'keepalive':
      return parseKeepalive(name, v as ServerOptions['keepalive']);
    case 'flag':
      if (typeof v !== 'boolean') throw new OptionError(name, `must be true or false, got ${JSON.stringify(v)}`);
      return v;
    case 'bytes':
      if (typeof v === 'string') return new TextEncoder().encode(v);
      if (v instanceof Uint8Array) return v;
      throw new OptionError(name, 'must be a string or a Uint8Array');
    case 'protocols': {
      const names = typeof v === 'string' ? v.split(',').map((s) => s.trim()) : Array.isArray(v) ? v : null;
      if (!names || !names.every((p) => typeof p === 'string' && ALPN_NAME.test(p)))
        throw new OptionError(name, `must be protocol names separated by commas, each 1 to 255 printable ASCII characters (e.g. h2,http/1.1), got ${JSON.stringify(v)}`);
      return [...names] as string[];
    }
    case 'address': {
      const m = typeof v === 'string' ? /^(.*):(\d+)$/.exec(v) : null;
      if (!m || Number(m[2]) > 65535) throw new OptionError(name, `must be HOST:PORT, got ${JSON.stringify(v)}`);
      return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
    }
    case 'upstreams':
      return parseUpstreams(name, v);
    case 'upstreamTls':
      return parseUpstreamTls(name, v);
  }
}

/** Checks the value of a table option, named as the API names it. */
function check<N extends Name>(name: N, v: unknown): Value<Table[N]['kind']> {
  return parseOptionValue(name, OPTIONS[name].kind, v) as Value<Table[N]['kind']>;
}

type Defaulted = { [N in Name]: Table[N] extends { default: string | number } ? N : never }[Name];

/** Every fixed default of the table, checked and converted as a user's value would be (ms, bytes). */
export const DEFAULTS = Object.fromEntries(
  Object.entries(OPTIONS).flatMap(([name, spec]) => ('default' in spec ? [[name, check(name as Name, spec.default)]] : [])),
) as { readonly [N in Defaulted]: Value<Table[N]['kind']> };

// `npm run test:batch1` runs the whole suite with every server's --batch defaulting to 1 (one event
// per wait, the seed's loop), so behaviour is checked under both; a --batch that is given stays as
// given. Read where the default is applied, so servers made by createServer and by the CLI follow it.
function batchDefault(): number {
  const v = process.env.TCPMOD_TEST_BATCH;
  return v === undefined || v === '' ? DEFAULTS.batch : check('batch', Number(v));
}

export function duration(name: string, v: Duration | undefined, dflt: number, min = 0): number {
  return v === undefined ? dflt : (parseOptionValue(name, { type: 'duration', min, max: MAX_DURATION_MS }, v) as number);
}

export function parseKeepalive(name: string, v: ServerOptions['keepalive']): [number, number, number] | null {
  if (v === undefined) return DEFAULTS.keepalive;
  if (v === false || v === 'off') return null;
  const parts = Array.isArray(v) ? v : typeof v === 'string' ? v.split(',') : null;
  const bad = () => new OptionError(name, `must be "off" or IDLE,INTERVAL,COUNT in whole seconds/probes (e.g. 1800,5,3), got ${JSON.stringify(v)}`);
  if (!parts || parts.length !== 3) throw bad();
  const nums = parts.map((p) => (typeof p === 'string' && /^\s*\d+\s*$/.test(p) ? Number(p) : p));
  if (!nums.every((n) => typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 32767)) throw bad();
  return nums as [number, number, number];
}

const KV_URL = 'redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]';

/** `memory`, or a redis:// URL taken apart. Errors never show a password: it is masked in the value they quote. */
export function parseKv(name: string, v: string): KvBackend {
  if (v === 'memory') return { type: 'memory' };
  const shown = JSON.stringify(v.replace(/\/\/[^/]*@/, '//***@'));
  const bad = () => new OptionError(name, `must be "memory" or ${KV_URL} (PORT 1 to 65535, default 6379; DB a number, default 0), got ${shown}`);
  let u: URL;
  try {
    if (!/^rediss?:\/\//i.test(v)) throw bad();
    u = new URL(v);
    const db = /^(?:\/(\d{1,9})?)?$/.exec(u.pathname);
    const port = u.port === '' ? 6379 : Number(u.port);
    if (!u.hostname || u.search || u.hash || !db || port < 1) throw bad();
    const password = decodeURIComponent(u.password);
    return {
      type: 'redis', host: u.hostname.replace(/^\[|\]$/g, ''), port, db: Number(db[1] ?? 0),
      username: decodeURIComponent(u.username), password: password === '' ? null : password, tls: u.protocol === 'rediss:',
    };
  } catch {
    throw bad();
  }
}

/** --bus: off, a redis:// or rediss:// URL, or (not given) the --kv Redis when it is one. */
function parseBus(v: string | undefined, kv: KvBackend): ResolvedOptions['bus'] {
  if (v === 'off') return null;
  if (v === undefined) return kv.type === 'redis' ? { ...kv, fromKv: true } : null;
  const bad = () => new OptionError('bus', `must be "off" or redis[s]://[[USER]:PASSWORD@]HOST[:PORT] (PORT 1 to 65535, default 6379), got ${JSON.stringify(v.replace(/\/\/[^/]*@/, '//***@'))}`);
  let bus: KvBackend;
  try {
    bus = parseKv('bus', v);
  } catch {
    throw bad();
  }
  if (bus.type !== 'redis') throw bad();
  if (bus.username !== '' && bus.password === null) throw new OptionError('bus', `names user ${JSON.stringify(bus.username)} but no password`);
  return { ...bus, fromKv: false };
}

/** --upstream with --upstream-tls applied: each TLS name must be an --upstream name; --upstream-ca only with some. */
function upstreamsWithTls(ups: Upstream[], tls: UpstreamTls[], ca: string | undefined): Upstream[] {
  for (const t of tls)
    if (!ups.some((u) => u.name === t.name)) throw new OptionError('upstreamTls', (n) => `names ${JSON.stringify(t.name)}, which no ${n('upstream')} defines`);
  if (ca !== undefined && tls.length === 0) throw new OptionError('upstreamCa', (n) => `only applies with ${n('upstreamTls')}`);
  return ups.map((u) => {
    const t = tls.find((x) => x.name === u.name);
    return t ? { ...u, tls: t } : u;
  });
}

/** --bus-tls-ca: only with a bus that speaks TLS. */
function busTlsCa(bus: ResolvedOptions['bus'], file: string | undefined): string | null {
  if (file === undefined) return null;
  if (!bus?.tls) throw new OptionError('busTlsCa', (n) => `only applies with a rediss:// ${n('bus')} (or a rediss:// ${n('kv')} it follows)`);
  return file;
}

const TLS_EXTRAS = ['tlsCa', 'tlsClientAuth', 'tlsMinVersion', 'alpn'] as const;

export function resolveOptions(o: ServerOptions): ResolvedOptions {
  if (o === null || typeof o !== 'object') throw new OptionError('options', 'must be an object');
  if (typeof o.module !== 'string' || o.module === '') throw new OptionError('module', 'must be the path of a .wasm file');
  const given = o as Record<string, unknown>;
  // Every option that is set is checked first, in table order, before any rule between options.
  const set: { -readonly [N in ApiName]?: Value<Table[N]['kind']> } = {};
  for (const name of Object.keys(OPTIONS) as Name[]) {
    if ('cliOnly' in OPTIONS[name] || given[name] === undefined) continue;
    (set as Record<string, unknown>)[name] = check(name, given[name]);
  }
  // `in`, not ??: a value may be null on purpose (keepalive "off").
  const pick = <N extends Defaulted & ApiName>(n: N) => (n in set ? set[n] : DEFAULTS[n]) as Value<Table[N]['kind']>;

  let min: number, max: number;
  if (set.threads !== undefined) {
    if (set.minThreads !== undefined || set.maxThreads !== undefined)
      throw new OptionError('threads', 'cannot be combined with minThreads/maxThreads');
    min = max = set.threads;
  } else {
    // The defaults the table can only describe (defaultNote): they depend on the machine and on minThreads.
    min = set.minThreads ?? Math.min(availableParallelism(), MAX_WORKERS);
    max = set.maxThreads ?? Math.min(4 * min, MAX_WORKERS);
    if (max < min) throw new OptionError('maxThreads', `(${max}) must not be below minThreads (${min})`);
  }

  let tls: TlsOptions | null = null;
  if (set.tlsCert !== undefined && set.tlsKey === undefined) throw new OptionError('tlsKey', (n) => `is required with ${n('tlsCert')}`);
  if (set.tlsKey !== undefined && set.tlsCert === undefined) throw new OptionError('tlsCert', (n) => `is required with ${n('tlsKey')}`);
  if (set.tlsCert === undefined) {
    // Silently serving plain TCP when TLS settings were asked for would hide the mistake.
    const stray = TLS_EXTRAS.find((n) => set[n] !== undefined);
    if (stray) throw new OptionError(stray, (n) => `only applies with ${n('tlsCert')} and ${n('tlsKey')}`);
  } else {
    const clientAuth = pick('tlsClientAuth');
    if (clientAuth !== 'none' && set.tlsCa === undefined)
      throw new OptionError('tlsClientAuth', (n) => `${JSON.stringify(clientAuth)} needs ${n('tlsCa')} to check client certificates against`);
    tls = {
      cert: set.tlsCert,
      key: set.tlsKey!,
      ca: set.tlsCa ?? null,
      clientAuth,
      minVersion: pick('tlsMinVersion'),
      alpn: set.alpn ?? [],
    };
  }

  const kv = parseKv('kv', pick('kv'));
  if (kv.type === 'memory') {
    const stray = (['kvTimeout', 'kvPasswordFile', 'kvTlsCa'] as const).find((n) => set[n] !== undefined);
    if (stray) throw new OptionError(stray, (n) => `only applies with a redis:// or rediss:// ${n('kv')}`);
  } else if (!kv.tls && set.kvTlsCa !== undefined) {
    throw new OptionError('kvTlsCa', (n) => `only applies with a rediss:// ${n('kv')}`);
  } else if (set.kvMaxBytes !== undefined || set.kvEviction !== undefined) {
    const name = set.kvMaxBytes !== undefined ? 'kvMaxBytes' : 'kvEviction';
    throw new OptionError(name, (n) => `only applies with ${n('kv')} memory (Redis keeps its own limit and policy, maxmemory and maxmemory-policy)`);
  } else if (kv.password !== null && set.kvPasswordFile !== undefined) {
    throw new OptionError('kvPasswordFile', (n) => `cannot be combined with a password in the ${n('kv')} URL`);
  } else if (kv.username !== '' && kv.password === null && set.kvPasswordFile === undefined) {
    throw new OptionError('kv', (n) => `names user ${JSON.stringify(kv.username)} but no password (in the URL or ${n('kvPasswordFile')})`);
  }

  const bus = parseBus(set.bus, kv);
  return {
    module: o.module,
    host: pick('host'),
    port: pick('port'),
    reusePort: set.reusePort ?? false,
    proxyProtocol: pick('proxyProtocol'),
    backlog: pick('backlog'),
    minThreads: min,
    maxThreads: max,
    workerIdleTimeoutMs: pick('workerIdleTimeout'),
    batch: 'batch' in set ? pick('batch') : batchDefault(),
    sendTimeoutMs: pick('sendTimeout'),
    sendMode: pick('sendMode'),
    maxOutputBuffer: pick('maxOutputBuffer'),
    maxOutputMemory: pick('maxOutputMemory'),
    maxInputMemory: pick('maxInputMemory'),
    maxMailbox: pick('maxMailbox'),
    handlerTimeoutMs: pick('handlerTimeout'),
    startupTimeoutMs: pick('startupTimeout'),
    drainTimeoutMs: pick('drainTimeout'),
    readTimeoutMs: pick('readTimeout'),
    frameTimeoutMs: pick('frameTimeout'),
    maxConnections: set.maxConnections ?? null,
    drainIdleMs: pick('drainIdle'),
    lingeringTimeMs: pick('lingeringTime'),
    lingeringTimeoutMs: pick('lingeringTimeout'),
    reloadDrainMs: pick('reloadDrain'),
    reloadFaultLimit: pick('reloadFaultLimit'),
    reloadWatchMs: pick('reloadWatch'),
    keepalive: pick('keepalive'),
    moduleMemory: pick('moduleMemory'),
    config: set.config ?? new Uint8Array(0),
    kvMaxBytes: pick('kvMaxBytes'),
    kvEviction: pick('kvEviction') as KvEviction,
    kv,
    kvTimeoutMs: pick('kvTimeout'),
    kvPasswordFile: set.kvPasswordFile ?? null,
    kvTlsCa: set.kvTlsCa ?? null,
    bus,
    busTlsCa: busTlsCa(bus, set.busTlsCa),
    logLevel: pick('logLevel'),
    tls,
    upstreams: upstreamsWithTls(set.upstream ?? [], set.upstreamTls ?? [], set.upstreamCa),
    upstreamCa: set.upstreamCa ?? null,
    upstreamConnectTimeoutMs: pick('upstreamConnectTimeout'),
    upstreamReadTimeoutMs: pick('upstreamReadTimeout'),
    upstreamFrameTimeoutMs: pick('upstreamFrameTimeout'),
    maxUpstreams: pick('maxUpstreams'),
  };
}
