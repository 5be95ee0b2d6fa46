// configure() and the author's callbacks.
//
// Handlers are plain top-level functions passed as function references (called
// through the table); closures are not supported by AssemblyScript, and none
// are needed since all per-call facts come through the Conn argument.

import { Action, Conn } from "./conn";
import { reserveRegions } from "./regions";

/** Handles input; see Conn for what it may do. */
export type DataHandler = (c: Conn) => Action;
/** Runs when a connection opens (state slot zeroed); may write output. */
export type OpenHandler = (c: Conn) => Action;
/** Runs when a connection is gone (`reason` is a CloseReason); output is dropped. */
export type CloseHandler = (c: Conn, reason: i32) => void;
/** Runs when the connection's timer fires (Conn.setTimer), with the unconsumed input; may write and consume. */
export type TimerHandler = (c: Conn) => Action;
/** v1.2: an event of upstream `up` (UPSTREAM_CONNECTED, _DATA, _CLOSED, _FAILED); for DATA and
 *  CLOSED its bytes are the input (c.input, c.inputLen; consume as on_data does); output goes to the client. */
export type UpstreamHandler = (c: Conn, up: i32, event: i32) => Action;
/** Runs once per instance with the module's config bytes; non-zero refuses them. */
export type InitHandler = (config: usize, len: i32) => i32;

export let dataHandler: DataHandler | null = null;
export let openHandler: OpenHandler | null = null;
export let closeHandler: CloseHandler | null = null;
export let initHandler: InitHandler | null = null;
export let timerHandler: TimerHandler | null = null;
export let upstreamHandler: UpstreamHandler | null = null;

/** The version of what this module keeps in the state slot (and leaves in the
 *  carry-over); -1: it does not say. See setStateVersion. */
export let stateVersion: i32 = -1;

/** Declares the module's regions and its data handler. Call it exactly once, at
 *  the top level of the module (it runs during `_initialize`). Sizes follow the
 *  ABI: in/out 1 KiB to 4 MiB, state 0 to 256 bytes; anything else aborts.
 *  `version` (optional, 0 or more) is the state version: see setStateVersion. */
export function configure(inCap: i32, outCap: i32, stateSize: i32, onData: DataHandler, version: i32 = -1): void {
  reserveRegions(inCap, outCap, stateSize);
  dataHandler = onData;
  if (version >= 0) setStateVersion(version);
}

/** Declares the state version (0 or more; negative: none). On a live reload,
 *  open connections move to the new module at their next event, state slot and
 *  unconsumed input as they are, only when both modules declare the same
 *  version (and the same state size); otherwise they stay on the old module
 *  until they close. Change it whenever the slot's layout or meaning changes. */
export function setStateVersion(version: i32): void { stateVersion = version < 0 ? -1 : version; }

/** Registers the open hook (optional). */
export function setOnOpen(h: OpenHandler): void { openHandler = h; }
/** Registers the close hook (optional). */
export function setOnClose(h: CloseHandler): void { closeHandler = h; }
/** Registers the timer hook (optional; needed by modules that call Conn.setTimer). */
export function setOnTimer(h: TimerHandler): void { timerHandler = h; }
/** Registers the upstream hook (v1.2; needed by modules that call Conn.openUpstream). */
export function setOnUpstream(h: UpstreamHandler): void { upstreamHandler = h; }
/** Registers the config hook (optional); it sees the config bytes at `config`. */
export function setOnInit(h: InitHandler): void { initHandler = h; }
