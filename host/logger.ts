// Who hears the server: the `logger` option of createServer. An embedding
// application passes its own pino logger, a level for the built-in one, or
// false; left out, the API logs warnings and errors only (JSON lines on
// stderr), so a library call is quiet unless something is wrong. The CLI asks
// for the table's default level (info) explicitly, and keeps its JSON logs.
import pino from 'pino';
import { OptionError, OPTIONS, parseOptionValue, type ServerOptions } from './options.js';

export type LogLevel = (typeof OPTIONS.logLevel.kind.choices)[number];

/** What createServer's `logger` takes: a pino logger, a level of the built-in stderr logger, or false (silence). */
export type LoggerOption = pino.Logger | LogLevel | false;

/** The level the API logs at when neither `logger` nor `logLevel` is given. */
export const API_LOG_LEVEL: LogLevel = 'warn';

/** pino's levels that the table's level choices lack, as the nearest one (worker threads log at it). */
const NEAREST: Record<string, LogLevel> = { trace: 'debug', fatal: 'error' };

function isLogger(v: unknown): v is pino.Logger {
  const l = v as Partial<pino.Logger> | null;
  return typeof l === 'object' && l !== null && typeof l.level === 'string' && ['debug', 'info', 'warn', 'error', 'child'].every((m) => typeof (l as Record<string, unknown>)[m] === 'function');
}

/** JSON lines on stderr, written synchronously (a crash loses no line). */
export function stderrLogger(level: string): pino.Logger {
  return pino({ level }, pino.destination({ fd: 2, sync: true }));
}

/**
 * Takes `logger` out of the options and returns the logger the server uses,
 * and the options with `logLevel` set to the level worker threads log at.
 * A logger object cannot cross threads: with the application's own logger
 * (`forward`), worker threads post each record (filtered at that level, after
 * their rate limits) to the main thread, which logs it through the logger
 * (forwardedRecord); otherwise they write the same JSON lines on stderr
 * themselves, as the built-in logger does.
 */
export function chooseLogger(o: ServerOptions): { options: ServerOptions; log: pino.Logger; forward?: boolean } {
  if (o === null || typeof o !== 'object') return { options: o, log: stderrLogger(API_LOG_LEVEL) }; // resolveOptions refuses it
  const { logger, ...rest } = o;
  if (logger === undefined) {
    const level = rest.logLevel ?? API_LOG_LEVEL;
    return { options: { ...rest, logLevel: level }, log: stderrLogger(level) };
  }
  if (rest.logLevel !== undefined) throw new OptionError('logger', (n) => `cannot be combined with ${n('logLevel')} (give the level as logger, or set it on your logger)`);
  if (logger === false) return { options: { ...rest, logLevel: 'silent' }, log: pino({ level: 'silent' }) };
  if (typeof logger === 'string') {
    const level = parseOptionValue('logger', OPTIONS.logLevel.kind, logger) as LogLevel;
    return { options: { ...rest, logLevel: level }, log: stderrLogger(level) };
  }
  if (!isLogger(logger)) throw new OptionError('logger', `must be a pino logger, a level (${OPTIONS.logLevel.kind.choices.join(', ')}) or false`);
  const choices: readonly string[] = OPTIONS.logLevel.kind.choices;
  const level = NEAREST[logger.level] ?? (choices.includes(logger.level) ? (logger.level as LogLevel) : 'info');
  return { options: { ...rest, logLevel: level }, log: logger, forward: true };
}

/** What a worker thread posts for one log record (type 'log'): pino's JSON line of it. */
export interface ForwardedLog {
  type: 'log';
  line: string;
}

/** A pino destination in a worker thread that posts each record to the main thread (`post`: parentPort.postMessage). */
export function forwardingDestination(post: (m: ForwardedLog) => void): { write(line: string): void } {
  return { write: (line) => post({ type: 'log', line }) };
}

/**
 * Logs a worker thread's record through the main thread's logger: at its level, with its fields
 * (worker, module, conn, kind...) and message; pino's own time, level and msg are the logger's again.
 */
export function forwardedRecord(log: pino.BaseLogger, line: string): void {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    log.warn({ line: line.slice(0, 200) }, 'a worker thread posted a log record that is not JSON');
    return;
  }
  const { level, time: _time, msg, ...fields } = rec;
  const label = pino.levels.labels[Number(level)] as pino.Level | undefined;
  (log[label ?? 'info'] as pino.LogFn)(fields, typeof msg === 'string' ? msg : '');
}
