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
