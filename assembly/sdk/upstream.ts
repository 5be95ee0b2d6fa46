// v1.2 upstream events and results (docs/abi.md §16), as include/tcpmod.h names them.
export const UPSTREAM_CONNECTED: i32 = 1;
export const UPSTREAM_DATA: i32 = 2;
export const UPSTREAM_CLOSED: i32 = 3;
export const UPSTREAM_FAILED: i32 = 4;
export const UPSTREAM_UNKNOWN: i32 = -1;
export const UPSTREAM_TOO_MANY: i32 = -2;
export const UPSTREAM_UNAVAILABLE: i32 = -3;
export const UPSTREAM_FULL: i32 = -2;
