// Convenience wrappers over the host's log and clock.

import { host_log, host_now_ms } from "./abi";
import { encodeUtf8 } from "./utf8";

export enum LogLevel {
  Debug = 0,
  Info = 1,
  Warn = 2,
  Error = 3,
}

// Longer messages are cut at a character boundary; a log line is not a data path.
const LOG_CAP: i32 = 1024;
const LOG_BUF: usize = memory.data(LOG_CAP);

/** Logs `len` UTF-8 bytes at `ptr` as one line. */
export function log(level: i32, ptr: usize, len: i32): void {
  host_log(level, ptr, len);
}

/** Logs a string as one UTF-8 line (at most 1 KiB), without allocating. */
export function logString(level: i32, s: string): void {
  const r = encodeUtf8(s, 0, LOG_BUF, LOG_CAP);
  host_log(level, LOG_BUF, <i32>(r & 0xFFFFFFFF));
}

/** Wall-clock milliseconds since the Unix epoch. */
export function nowMs(): f64 {
  return host_now_ms();
}
