// v1.2 upstream events and results (docs/abi.md §16), as include/tcpmod.h names them.
export const UPSTREAM_CONNECTED: i32 = 1;
export const UPSTREAM_DATA: i32 = 2;
export const UPSTREAM_CLOSED: i32 = 3;
export const UPSTREAM_FAILED: i32 = 4;
export const UPSTREAM_UNKNOWN: i32 = -1;
export const UPSTREAM_TOO_MANY: i32 = -2;
export const UPSTREAM_UNAVAILABLE: i32 = -3;
export const UPSTREAM_FULL: i32 = -2;
// v1.2 half-close (docs/abi.md §20): the upstream ended its sending side (the handle stays), and
// upstream_send after upstream_shutdown.
export const UPSTREAM_EOF: i32 = 5;
export const UPSTREAM_SHUT: i32 = -3;

import { host_upstream_addr } from "./abi";

const addrBuf = new ArrayBuffer(64);

/** v1.2 (§16): address `index` (0-based) of the upstream `name` as "HOST:PORT" ("[V6]:PORT"), or
 *  null when the name has no such address (or is not configured). Counting them: the first null.
 *  `Conn.openUpstream(name + "#" + index)` opens that address alone, with no failover. */
export function upstreamAddr(name: string, index: i32): string | null {
  const n = String.UTF8.encode(name);
  const r = host_upstream_addr(changetype<usize>(n), n.byteLength, index, changetype<usize>(addrBuf), addrBuf.byteLength);
  return r < 0 ? null : String.UTF8.decodeUnsafe(changetype<usize>(addrBuf), <usize>r);
}
