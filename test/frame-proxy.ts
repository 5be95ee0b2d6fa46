// A line proxy: the client's bytes go to upstream "a" (and "b" when the line starts with "2"); an
// upstream's complete lines go to the client, an incomplete one is left unconsumed (its
// carry-over). A "b" reply is held (nothing consumed) until "a" answered, then resumed: the
// held input of a sharding proxy. CLOSED answers with conn_info keys 3 and 4.
// The same module runs over sockets (upstream.e2e, the host's --upstream-frame-timeout and
// --upstream-read-timeout) and in tcpmod/testing (upstream-testing.unit, the timeouts scripted), so
// the harness's timeouts are checked against what the host does with one module.
export const FRAME_PROXY_SOURCE = `
import { Action, Conn, configure, setOnOpen, setOnUpstream, UPSTREAM_DATA, UPSTREAM_CONNECTED } from "./sdk";
import { conn_info } from "./sdk/abi";
export * from "./sdk/exports";
function onData(c: Conn): Action {
  if (c.eof) return Action.Close;
  const a = load<i32>(c.state);
  if (c.sendUpstream(a, c.input, c.inputLen) != 0) return Action.Continue;
  if (load<u8>(c.input) == 50) c.sendUpstream(load<i32>(c.state + 4), c.input, c.inputLen);
  c.consume(c.inputLen);
  return Action.Continue;
}
configure(4096, 4096, 16, onData);
setOnOpen((c: Conn): Action => {
  store<i32>(c.state, c.openUpstream("a"));
  store<i32>(c.state + 4, c.openUpstream("b"));
  store<i32>(c.state + 8, 0);
  return Action.Continue;
});
setOnUpstream((c: Conn, up: i32, event: i32): Action => {
  if (event == UPSTREAM_CONNECTED) return Action.Continue;
  if (event == UPSTREAM_DATA) {
    const isB = up == load<i32>(c.state + 4);
    if (isB && load<i32>(c.state + 8) == 0) return Action.Continue;
    let end = c.inputLen;
    while (end > 0 && load<u8>(c.input + end - 1) != 10) end--;
    c.write(c.input, end);
    c.consume(end);
    if (!isB && end > 0) { store<i32>(c.state + 8, 1); c.resumeUpstream(load<i32>(c.state + 4)); }
    if (isB && end > 0) store<i32>(c.state + 8, 0);
    return Action.Continue;
  }
  const buf = new ArrayBuffer(256);
  const n = conn_info(c.id, 4, changetype<usize>(buf), 256);
  c.writeString("-ERR closed " + conn_info(c.id, 3, 0, 0).toString() + " ");
  if (n > 0) c.write(changetype<usize>(buf), n);
  c.writeString("\\r\\n");
  return Action.Close;
});
`;
