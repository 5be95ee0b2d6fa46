// Sizes and static buffers of the RESP module.
//
// Everything here is reserved once, while the instance initialises (top-level
// code runs in `_initialize`), and never freed: after that no command
// allocates, so an instance's memory stays flat however many commands it runs.

/** Input region size. A whole command (all its arguments and framing) must fit,
 *  so it is also the largest request this server accepts: 1 MiB. Larger ones
 *  get an error and the connection is closed (the host could never hand the
 *  module the complete command). */
export const IN_CAP: i32 = 1024 * 1024;

/** Output region size. Replies of a pipelined batch collect here and leave in
 *  one send; anything larger spills through tcpmod.send, in order. */
export const OUT_CAP: i32 = 256 * 1024;

/** Per-connection state slot: byte 0 is the client name's length, the name follows (up
 *  to 127 bytes); then the pub/sub counts (resp/pubsub.ts, SUBS_AT). */
export const STATE_SIZE: i32 = 136;
export const MAX_NAME: i32 = 127;

/** Most arguments one command may have. 65536 covers any inline line up to the
 *  64 KiB inline limit and any multibulk that fits in IN_CAP in practice. */
export const MAX_ARGS: i32 = 65536;

/** Longest header line (`*N`, `$N`) or inline request we wait for before giving
 *  up, as Redis does. */
export const LINE_MAX: i32 = 64 * 1024;

/** Largest bulk length accepted by the parser (Redis' default proto-max-bulk-len);
 *  the IN_CAP check rejects most of these earlier anyway. */
export const MAX_BULK: i64 = 512 * 1024 * 1024;

/** Largest string value this server stores (APPEND refuses to grow past it).
 *  SET cannot exceed it either, since the value travels inside one request. */
export const MAX_VALUE: i32 = IN_CAP;

/** Bytes of our own header in front of a tagged value (see store.ts). */
export const TAG_MAX: i32 = 10;

/** Room kept in front of a value read from the store, so a bulk header
 *  (`$<len>\r\n`) can be put right before it and both written at once. */
export const HEAD_ROOM: i32 = 32;

// Argument table of the current command: absolute address and length of each
// argument (they point into the input region).
export const ARG_PTR: usize = heap.alloc(<usize>MAX_ARGS << 2);
export const ARG_LEN: usize = heap.alloc(<usize>MAX_ARGS << 2);

// Where values read from the store land: [HEAD_ROOM][stored bytes][2 spare for CRLF].
export const VAL_CAP: i32 = MAX_VALUE + TAG_MAX;
export const VAL_BUF: usize = heap.alloc(<usize>(HEAD_ROOM + VAL_CAP + 2));
export const VAL: usize = VAL_BUF + <usize>HEAD_ROOM;

// Where values are composed before kv_set when they need our header (kept apart
// from VAL so SET ... GET can still reply the old value after storing the new one).
export const ENC: usize = heap.alloc(<usize>VAL_CAP);

// Small scratch: kv_incr's i64 result (8-aligned) and number formatting.
export const NUM: usize = memory.data(64, 8);

// ---- literals ---------------------------------------------------------------

// Constant replies live as bytes in a pool filled at start-up, so the hot path
// writes them with one memory.copy instead of re-encoding a string each time.
const POOL_CAP: i32 = 4096;
const POOL: usize = heap.alloc(<usize>POOL_CAP);
let poolUsed: i32 = 0;

/** Copies the ASCII string `s` into the pool; returns (address << 32) | length. */
export function lit(s: string): u64 {
  const n = s.length;
  if (poolUsed + n > POOL_CAP) abort("resp: literal pool too small");
  const p = POOL + <usize>poolUsed;
  for (let i = 0; i < n; i++) store<u8>(p + <usize>i, <u8>s.charCodeAt(i));
  poolUsed += n;
  return (<u64>p << 32) | <u64>n;
}

@inline export function litPtr(l: u64): usize { return <usize>(l >>> 32); }
@inline export function litLen(l: u64): i32 { return <i32>(l & 0xFFFFFFFF); }

@inline export function argPtr(i: i32): usize { return <usize>load<u32>(ARG_PTR + (<usize>i << 2)); }
@inline export function argLen(i: i32): i32 { return <i32>load<u32>(ARG_LEN + (<usize>i << 2)); }
@inline export function setArg(i: i32, p: usize, n: i32): void {
  store<u32>(ARG_PTR + (<usize>i << 2), <u32>p);
  store<u32>(ARG_LEN + (<usize>i << 2), <u32>n);
}
