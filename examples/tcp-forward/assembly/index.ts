// An L4 (TCP) forwarder: every client connection opens the upstream the
// operator named (--upstream backend=IP:PORT[,…]; `--config upstream=NAME` for
// another name) and bytes pass both ways unchanged, each direction ending on
// its own (half-close, docs/abi.md §20).
//
// - Client -> upstream: what the client sends is queued for the upstream
//   (tcpmod.upstream_send, also while it still connects). When the upstream's
//   queue is at its bound (-2, --max-output-buffer), the input stays
//   unconsumed and no more is read from the client; the next event of the
//   upstream (its bytes or its end) resumes it (upstream_resume(conn, 0)).
// - Upstream -> client: an upstream's bytes go to the client as they come.
//   The host reads no more from the upstream while the client does not read
//   (its queued output above the high-water mark), so a slow client slows
//   the backend instead of filling memory.
// - Ending: the client's EOF ends the sending side to the upstream once all
//   the client sent has been queued (upstream_shutdown: the backend reads EOF
//   after the last byte, and may still answer); the upstream's EOF ends the
//   sending side to the client after the upstream's last bytes
//   (shutdown_output), while the client may go on sending. Because this
//   module imports them, the host keeps a client open after its EOF; once
//   both directions have ended and the upstream is gone, the host closes the
//   client (reason 0). An upstream that closes (or resets) while the client
//   is still sending closes the client after the upstream's last bytes. An
//   upstream that cannot be reached (refused, timed out, TLS) aborts the
//   client: an L4 proxy has no error to send.
import {
  Action, Conn, configure, setOnInit, setOnOpen, setOnUpstream,
  UPSTREAM_CONNECTED, UPSTREAM_CLOSED, UPSTREAM_EOF, UPSTREAM_FAILED, UPSTREAM_FULL,
} from "tcpmod/assembly/sdk";
export * from "tcpmod/assembly/sdk/exports";

const REGION: i32 = 64 * 1024;
// The state slot: the upstream's handle; whether client input waits for room (1) or not (0); whether
// the client's EOF came (its end goes to the upstream once the held input has gone).
const UP: usize = 0, HELD: usize = 4, CLIENT_EOF: usize = 5;

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
  const up = load<i32>(c.state + UP);
  // The EOF flag comes once; a later call (the held input resumed) knows it from the state slot.
  if (c.eof) store<u8>(c.state + CLIENT_EOF, 1);
  const n = c.inputLen;
  if (n > 0) {
    const r = c.sendUpstream(up, c.input, n);
    if (r == UPSTREAM_FULL) {
      // Nothing taken: hold the input (the host stops reading the client) until the upstream moves.
      store<u8>(c.state + HELD, 1);
      return Action.Continue;
    }
    if (r < 0) return Action.Abort; // the upstream is gone
    c.consume(n);
  }
  // All the client sent is queued: the backend reads EOF after it.
  if (load<u8>(c.state + CLIENT_EOF) != 0) c.shutdownUpstream(up);
  return Action.Continue;
}

function onUpstream(c: Conn, up: i32, event: i32): Action {
  if (event == UPSTREAM_FAILED) return Action.Abort;
  if (event != UPSTREAM_CONNECTED) {
    // DATA, EOF or CLOSED: the bytes to the client, all of them (write spills past the out region).
    c.write(c.input, c.inputLen);
    c.consume(c.inputLen);
  }
  if (event == UPSTREAM_EOF) c.shutdownOutput(); // the backend is done sending: so is the client's side, after those bytes
  if (event == UPSTREAM_CLOSED) {
    // Both ways over (the client's EOF came): end the client's side; the host closes it once that is
    // sent. Else the upstream went while the client still sends: close after the upstream's last bytes.
    if (load<u8>(c.state + CLIENT_EOF) == 0) return Action.Close;
    c.shutdownOutput();
    return Action.Continue;
  }
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
