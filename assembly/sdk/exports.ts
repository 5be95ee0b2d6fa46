// The ABI v1 exports. A module re-exports them with
//   export * from "./sdk/exports";
// (this works for an entry file in AssemblyScript 0.28: the star re-export
// becomes wasm exports). They are always present; hooks that were not
// registered make the matching export a no-op.

import { Action, CONN, beginCall, endCall } from "./conn";
import { DataHandler, dataHandler, openHandler, closeHandler, initHandler, timerHandler, upstreamHandler, stateVersion } from "./hooks";
import { IO_DESC, inPtr, reserved } from "./regions";
import { fail } from "./fail";
import { MESSAGE, beginMessage, messageHandler } from "./topics";

/** Marker export: this module speaks ABI v1. Never called. */
export function tcpmod_abi_v1(): void {}

/** Address of the IoDesc. Fails loudly if the module never called configure(). */
export function tcpmod_io_desc(): usize {
  if (!reserved) fail("tcpmod sdk: configure() was not called at the module's top level");
  return IO_DESC;
}

/** Config bytes are at in_ptr; without an init hook any config is accepted. */
export function tcpmod_init(cfg_len: i32): i32 {
  const h = initHandler;
  return h ? h(inPtr, cfg_len) : 0;
}

export function tcpmod_on_open(conn: i32): i32 {
  beginCall(conn, 0, 0, true);
  const h = openHandler;
  return endCall(h ? h(CONN) : Action.Continue);
}

export function tcpmod_on_data(conn: i32, in_len: i32, flags: i32): i32 {
  beginCall(conn, in_len, flags, true);
  const h = dataHandler;
  if (!h) fail("tcpmod sdk: configure() was not called at the module's top level");
  return endCall(changetype<DataHandler>(h)(CONN));
}

/** v1.1: the connection's timer fired; the unconsumed input is at in_ptr. */
export function tcpmod_on_timer(conn: i32, in_len: i32): i32 {
  beginCall(conn, in_len, 0, true);
  const h = timerHandler;
  return endCall(h ? h(CONN) : Action.Continue);
}

/** v1.2: a message for one of the connection's subscriptions (after the unconsumed input at in_ptr). */
export function tcpmod_on_message(conn: i32, in_len: i32, topic_len: i32, pattern_len: i32, msg_len: i32): i32 {
  beginCall(conn, in_len, 0, true);
  beginMessage(in_len, topic_len, pattern_len, msg_len);
  const h = messageHandler;
  return endCall(h ? h(CONN, MESSAGE) : Action.Continue);
}

/** v1.2: an upstream's event; its bytes (if any) are at in_ptr. Without a handler: closes the client. */
export function tcpmod_on_upstream(conn: i32, up: i32, event: i32, in_len: i32): i32 {
  beginCall(conn, in_len, 0, true);
  const h = upstreamHandler;
  return endCall(h ? h(CONN, up, event) : Action.Close);
}

/** v1.1 (live reload): the state version given to configure or setStateVersion; -1: none. */
export function tcpmod_state_version(): i32 {
  return stateVersion;
}

export function tcpmod_on_close(conn: i32, reason: i32): void {
  beginCall(conn, 0, 0, false);
  const h = closeHandler;
  if (h) h(CONN, reason);
}
