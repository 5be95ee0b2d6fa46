// An L4 (TCP) forwarder: every client connection opens the upstream the
// operator named (--upstream backend=IP:PORT[,…]; `--config upstream=NAME` for
// another name) and bytes pass both ways unchanged.
//
// - Client -> upstream: what the client sends is queued for the upstream
//   (tcpmod.upstream_send, also while it still connects). When the upstream's
//   queue is at its bound (-2, --max-output-buffer), the input stays
//   unconsumed and no more is read from the client; the next event of the
//   upstream (its bytes or its close) resumes it (upstream_resume(conn, 0)).
// - Upstream -> client: an upstream's bytes go to the client as they come.
//   The host reads no more from the upstream while the client does not read
//   (its queued output above the high-water mark), so a slow client slows
//   the backend instead of filling memory.
// - Closing: the upstream's close (its FIN, after its last bytes) closes the
//   client after those bytes, so a response delimited by the server's close
//   (HTTP/1.0) arrives whole; the client's EOF closes the connection and its
//   upstream (the ABI closes a connection whose client finished; a forwarder
//   cannot keep the client's half open), so bytes still queued for the
//   upstream then are dropped. An upstream that cannot be reached (refused,
//   timed out, TLS) aborts the client: an L4 proxy has no error to send.
import {
  Action, Conn, configure, setOnInit, setOnOpen, setOnUpstream,
  UPSTREAM_CONNECTED, UPSTREAM_CLOSED, UPSTREAM_FAILED, UPSTREAM_FULL,
} from "tcpmod/assembly/sdk";
export * from "tcpmod/assembly/sdk/exports";

const REGION: i32 = 64 * 1024;
// The state slot: the upstream's handle, then whether client input waits for room (1) or not (0).
const UP: usize = 0, HELD: usize = 4;

let upstreamName = "backend";

function onInit(cfg: usize, len: i32): i32 {
  const text = String.UTF8.decodeUnsafe(cfg, <usize>len).trim();
  if (text.length == 0) return 0;
  if (!text.startsWith("upstream=") || text.length == 9) return 1; // refused: the only word is upstream=NAME
  upstreamName = text.substring(9);
  return 0;
}

function onOpen(c: Conn): Action {
  const up = c.openUpstream(upstreamName);
  if (up <= 0) return Action.Abort; // not listed by the operator, or 8 open already: nothing to forward to
  store<i32>(c.state + UP, up);
  return Action.Continue;
}

function onData(c: Conn): Action {
  const n = c.inputLen;
  if (n > 0) {
    const r = c.sendUpstream(load<i32>(c.state + UP), c.input, n);
    if (r == UPSTREAM_FULL) {
      // Nothing taken: hold the input (the host stops reading the client) until the upstream moves.
      store<u8>(c.state + HELD, 1);
      return c.eof ? Action.Close : Action.Continue;
    }
    if (r < 0) return Action.Abort; // the upstream is gone
    c.consume(n);
  }
  return c.eof ? Action.Close : Action.Continue;
}

function onUpstream(c: Conn, up: i32, event: i32): Action {
  if (event == UPSTREAM_FAILED) return Action.Abort;
  if (event != UPSTREAM_CONNECTED) {
    // DATA or CLOSED: the bytes to the client, all of them (write spills past the out region).
    c.write(c.input, c.inputLen);
    c.consume(c.inputLen);
  }
  if (event == UPSTREAM_CLOSED) return Action.Close;
  if (load<u8>(c.state + HELD) != 0) {
    // The upstream moved: offer the held client input again (its queue may have room now).
    store<u8>(c.state + HELD, 0);
    c.resumeUpstream(0);
  }
  return Action.Continue;
}

configure(REGION, REGION, 8, onData);
setOnInit(onInit);
setOnOpen(onOpen);
setOnUpstream(onUpstream);
