// Echo: every byte received is sent back; when the peer stops sending, close.
import { Conn, Action, configure } from "tcpmod/assembly/sdk";
export * from "tcpmod/assembly/sdk/exports";

// Input may exceed the out region; the SDK then spills through tcpmod.send.
configure(128 * 1024, 64 * 1024, 0, onData);

function onData(c: Conn): Action {
  c.write(c.input, c.inputLen);
  c.consume(c.inputLen);
  return c.eof ? Action.Close : Action.Continue;
}
