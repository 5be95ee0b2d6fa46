// Every server option, its default, and its check. Options are validated at the
// door: a bad one throws an OptionError whose message names the option and says
// what it accepts, and the CLI prints that one line.
import { availableParallelism } from 'node:os';
import { MAX_WORKERS } from './pool/counters.js';
import { parseDuration } from './duration.js';

export class OptionError extends Error {
  readonly code = 'TCPMOD_INVALID_OPTION';
  constructor(readonly option: string, message: string) {
    super(`${option} ${message}`);
    this.name = 'OptionError';
  }
}

export type Duration = number | string;

export interface ServerOptions {
  /** Path of the protocol module (.wasm). */
  module: string;
  host?: string;
  port?: number;
  backlog?: number;
  /** Fixed pool size; shorthand for minThreads = maxThreads = threads. */
  threads?: number;
  minThreads?: number;
  maxThreads?: number;
  workerIdleTimeout?: Duration;
  sendTimeout?: Duration;
  handlerTimeout?: Duration;
  drainTimeout?: Duration;
  /** [idle s, interval s, probes], "IDLE,INTVL,CNT", or false / "off". */
  keepalive?: [number, number, number] | string | false;
  /** Largest module memory in bytes. */
  moduleMemory?: number;
  /** Bytes (or a string) given to the module's tcpmod_init. */
  config?: Uint8Array | string;
  kvMaxBytes?: number;
  logLevel?: 'debug' | 'info' | 'warn' | 'error' | 'silent';
}

export interface ResolvedOptions {
  module: string;
  host: string;
  port: number;
  backlog: number;
  minThreads: number;
  maxThreads: number;
  workerIdleTimeoutMs: number;
  sendTimeoutMs: number;
  handlerTimeoutMs: number;
  drainTimeoutMs: number;
  keepalive: [number, number, number] | null;
  moduleMemory: number;
  config: Uint8Array;
  kvMaxBytes: number;
  logLevel: string;
}

export const DEFAULTS = {
  host: '127.0.0.1',
  port: 7000,
  backlog: 4096, // the kernel caps it at net.core.somaxconn; bursts of connects overflow 511
  workerIdleTimeout: 20_000,
  sendTimeout: 20_000,
  handlerTimeout: 1000,
  drainTimeout: 5000,
  keepalive: [1800, 5, 3] as [number, number, number],
  moduleMemory: 32 * 1024 * 1024,
  kvMaxBytes: 64 * 1024 * 1024,
  logLevel: 'info',
};

function int(name: string, v: unknown, min: number, max: number): number {
  const n = typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max)
    throw new OptionError(name, `must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
}

export function duration(name: string, v: Duration | undefined, dflt: number, min = 0): number {
  if (v === undefined) return dflt;
  const ms = parseDuration(v);
  if (!Number.isFinite(ms)) throw new OptionError(name, `must be a duration (milliseconds, or a number with ms, s, m or h), got ${JSON.stringify(v)}`);
  if (ms < min) throw new OptionError(name, `must be at least ${min} ms, got ${JSON.stringify(v)}`);
  return Math.round(ms);
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

export function resolveOptions(o: ServerOptions): ResolvedOptions {
  if (o === null || typeof o !== 'object') throw new OptionError('options', 'must be an object');
  if (typeof o.module !== 'string' || o.module === '') throw new OptionError('module', 'must be the path of a .wasm file');
  const host = o.host ?? DEFAULTS.host;
  if (typeof host !== 'string' || host === '') throw new OptionError('host', `must be a host name or address, got ${JSON.stringify(o.host)}`);
  const cpus = availableParallelism();
  let min: number, max: number;
  if (o.threads !== undefined) {
    if (o.minThreads !== undefined || o.maxThreads !== undefined)
      throw new OptionError('threads', 'cannot be combined with minThreads/maxThreads');
    min = max = int('threads', o.threads, 1, MAX_WORKERS);
  } else {
    min = o.minThreads === undefined ? Math.min(cpus, MAX_WORKERS) : int('minThreads', o.minThreads, 1, MAX_WORKERS);
    max = o.maxThreads === undefined ? Math.min(4 * min, MAX_WORKERS) : int('maxThreads', o.maxThreads, 1, MAX_WORKERS);
    if (max < min) throw new OptionError('maxThreads', `(${max}) must not be below minThreads (${min})`);
  }
  let config: Uint8Array;
  if (o.config === undefined) config = new Uint8Array(0);
  else if (typeof o.config === 'string') config = new TextEncoder().encode(o.config);
  else if (o.config instanceof Uint8Array) config = o.config;
  else throw new OptionError('config', 'must be a string or a Uint8Array');
  const logLevel = o.logLevel ?? DEFAULTS.logLevel;
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(logLevel))
    throw new OptionError('logLevel', `must be one of debug, info, warn, error, silent; got ${JSON.stringify(o.logLevel)}`);
  return {
    module: o.module,
    host,
    port: o.port === undefined ? DEFAULTS.port : int('port', o.port, 0, 65535),
    backlog: o.backlog === undefined ? DEFAULTS.backlog : int('backlog', o.backlog, 1, 65535),
    minThreads: min,
    maxThreads: max,
    workerIdleTimeoutMs: duration('workerIdleTimeout', o.workerIdleTimeout, DEFAULTS.workerIdleTimeout, 1),
    sendTimeoutMs: duration('sendTimeout', o.sendTimeout, DEFAULTS.sendTimeout, 1),
    handlerTimeoutMs: duration('handlerTimeout', o.handlerTimeout, DEFAULTS.handlerTimeout, 1),
    drainTimeoutMs: duration('drainTimeout', o.drainTimeout, DEFAULTS.drainTimeout, 0),
    keepalive: parseKeepalive('keepalive', o.keepalive),
    moduleMemory: o.moduleMemory === undefined ? DEFAULTS.moduleMemory : int('moduleMemory', o.moduleMemory, 65536, 4 * 1024 ** 3),
    config,
    kvMaxBytes: o.kvMaxBytes === undefined ? DEFAULTS.kvMaxBytes : int('kvMaxBytes', o.kvMaxBytes, 0, Number.MAX_SAFE_INTEGER),
    logLevel,
  };
}
