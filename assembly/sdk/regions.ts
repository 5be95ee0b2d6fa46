// The memory the host and the module exchange data through.
//
// The two fixed-size records (IoDesc, result) are static data. The input, output
// and state regions have sizes chosen by the module at run time (configure()),
// and `memory.data` only accepts compile-time constants, so they are taken from
// the allocator exactly once, during `_initialize`, and never freed or moved.
// Raw `heap.alloc` blocks are invisible to the garbage collector, so the host's
// `__collect` calls cannot reclaim them, and no call ever allocates again:
// memory stays flat for the life of the instance.

import { fail } from "./fail";

/** ABI limits, checked by configure() so a bad value fails at load time with a message. */
export const MIN_CAP: i32 = 1024;
export const MAX_CAP: i32 = 4 * 1024 * 1024;
export const MAX_STATE: i32 = 256;

/** IoDesc: eight little-endian u32 (in_ptr, in_cap, out_ptr, out_cap, state_ptr, state_size, res_ptr, flags). */
export const IO_DESC: usize = memory.data(32, 16);
/** Result record of one call: u32 consumed, u32 out_len. */
export const RESULT: usize = memory.data(8, 8);

export let inPtr: usize = 0;
export let inCap: i32 = 0;
export let outPtr: usize = 0;
export let outCap: i32 = 0;
export let statePtr: usize = 0;
export let stateSize: i32 = 0;
export let reserved: bool = false;

/** Reserves the regions once and publishes them in the IoDesc. */
export function reserveRegions(in_cap: i32, out_cap: i32, state_size: i32): void {
  if (reserved) fail("tcpmod sdk: configure() called more than once");
  if (in_cap < MIN_CAP || in_cap > MAX_CAP) fail("tcpmod sdk: in_cap must be 1 KiB to 4 MiB");
  if (out_cap < MIN_CAP || out_cap > MAX_CAP) fail("tcpmod sdk: out_cap must be 1 KiB to 4 MiB");
  if (state_size < 0 || state_size > MAX_STATE) fail("tcpmod sdk: state_size must be 0 to 256");
  inCap = in_cap;
  outCap = out_cap;
  stateSize = state_size;
  inPtr = heap.alloc(<usize>in_cap);
  outPtr = heap.alloc(<usize>out_cap);
  // The ABI wants state_ptr = 0 when there is no state slot.
  if (state_size > 0) {
    statePtr = heap.alloc(<usize>state_size);
    memory.fill(statePtr, 0, <usize>state_size);
  }
  store<u32>(IO_DESC, <u32>inPtr, 0);
  store<u32>(IO_DESC, <u32>in_cap, 4);
  store<u32>(IO_DESC, <u32>outPtr, 8);
  store<u32>(IO_DESC, <u32>out_cap, 12);
  store<u32>(IO_DESC, <u32>statePtr, 16);
  store<u32>(IO_DESC, <u32>state_size, 20);
  store<u32>(IO_DESC, <u32>RESULT, 24);
  store<u32>(IO_DESC, 0, 28);
  reserved = true;
}
