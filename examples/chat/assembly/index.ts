// A chat server: lines of text, rooms, nicknames. Each connection is in one
// room at a time (the topic "room/<name>", "room/lobby" at first); a line that
// is not a command goes to everyone else in the room as "<nick> line". Commands:
//   /nick NAME   take a nickname (1-16 bytes, no spaces)   -> "* you are NAME"
//   /join ROOM   leave this room for ROOM (1-32 bytes)      -> "* NAME joined ROOM" to ROOM, you included
//   /who         how many are in this room                  -> "* N here"
//   /quit        "* NAME left" to the room, then close
// A connection that just goes away is not announced: tcpmod_on_close sees no state slot (the
// host does not load it then, docs/abi.md §7), so the module would not know its nick and room.
// With `tcpmod serve --bus redis://…` the rooms span every process on that Redis.
import {
  Action, Conn, Message, configure, setOnOpen, setOnMessage, setStateVersion,
  subscribe, unsubscribe, publish, topicCount, formatU64, TOPIC_EXACT,
} from "tcpmod/assembly/sdk";
export * from "tcpmod/assembly/sdk/exports";

const LINE_MAX: i32 = 1024;
// The state slot: nick length, room length, then the nick and "room/<room>" (the topic itself).
const NICK_LEN: usize = 0, TOPIC_LEN: usize = 1, NICK: usize = 2, TOPIC: usize = 18;
const STATE: i32 = 18 + 5 + 32;


// A message on the topic: [sender's connection id, 4 bytes][text]. Built here, then published.
const msg = memory.data(1100);
let msgLen: i32 = 0;

function begin(from: i32): void {
  store<i32>(msg, from);
  msgLen = 4;
}
function put(p: usize, n: i32): void {
  memory.copy(msg + <usize>msgLen, p, <usize>n);
  msgLen += n;
}
function putString(s: string): void {
  for (let i = 0; i < s.length; i++) store<u8>(msg + <usize>(msgLen + i), <u8>s.charCodeAt(i));
  msgLen += s.length;
}
/** Ends the line and publishes it to c's room. */
function finish(c: Conn): void {
  putString("\n");
  publish(topic(c), topicLen(c), msg, msgLen);
}

function nick(c: Conn): usize { return c.state + NICK; }
function nickLen(c: Conn): i32 { return load<u8>(c.state + NICK_LEN); }
function topic(c: Conn): usize { return c.state + TOPIC; }
function topicLen(c: Conn): i32 { return load<u8>(c.state + TOPIC_LEN); }

/** Makes "room/<room>" c's topic, and subscribes to it. */
function enter(c: Conn, room: usize, n: i32): void {
  const prefix = "room/";
  for (let i = 0; i < 5; i++) store<u8>(topic(c) + <usize>i, <u8>prefix.charCodeAt(i));
  memory.copy(topic(c) + 5, room, <usize>n);
  store<u8>(c.state + TOPIC_LEN, <u8>(5 + n));
  subscribe(c, TOPIC_EXACT, topic(c), topicLen(c));
}

function left(c: Conn): void {
  begin(c.id);
  putString("* ");
  put(nick(c), nickLen(c));
  putString(" left");
  finish(c);
}

function onOpen(c: Conn): Action {
  // "guest<id>" until /nick; the lobby until /join.
  begin(0);
  putString("guest");
  msgLen += formatU64(msg + <usize>msgLen, <u64>c.id);
  const n = min(msgLen - 4, 16);
  store<u8>(c.state + NICK_LEN, <u8>n);
  memory.copy(nick(c), msg + 4, <usize>n);
  const lobby = "lobby";
  for (let i = 0; i < 5; i++) store<u8>(msg + <usize>i, <u8>lobby.charCodeAt(i));
  enter(c, msg, 5);
  c.writeString("* welcome, ");
  c.write(nick(c), nickLen(c));
  c.writeString(": /nick NAME, /join ROOM, /who, /quit\n");
  return Action.Continue;
}

/** Whether the line [p, p+n) is the command `cmd`, alone or followed by a space. */
function isCommand(p: usize, n: i32, cmd: string): bool {
  if (n < cmd.length || (n > cmd.length && load<u8>(p + <usize>cmd.length) != 0x20)) return false;
  for (let i = 0; i < cmd.length; i++) if (load<u8>(p + <usize>i) != <u8>cmd.charCodeAt(i)) return false;
  return true;
}

/** The word after the command: its length, 0 when missing, -1 when it holds a space. */
function argument(p: usize, n: i32, cmd: string): i32 {
  const len = n - cmd.length - 1;
  if (len <= 0) return 0;
  for (let i = 0; i < len; i++) if (load<u8>(p + <usize>(cmd.length + 1 + i)) == 0x20) return -1;
  return len;
}

/** One line (without its "\n"); false to close. */
function line(c: Conn, p: usize, n: i32): bool {
  if (isCommand(p, n, "/quit")) {
    left(c);
    return false;
  }
  if (isCommand(p, n, "/who")) {
    c.writeString("* ");
    c.writeInt(topicCount(TOPIC_EXACT, topic(c), topicLen(c)));
    c.writeString(" here\n");
  } else if (isCommand(p, n, "/nick")) {
    const a = argument(p, n, "/nick");
    if (a <= 0 || a > 16) c.writeString("* usage: /nick NAME (1 to 16 bytes, no spaces)\n");
    else {
      store<u8>(c.state + NICK_LEN, <u8>a);
      memory.copy(nick(c), p + 6, <usize>a);
      c.writeString("* you are ");
      c.write(nick(c), a);
      c.writeString("\n");
    }
  } else if (isCommand(p, n, "/join")) {
    const a = argument(p, n, "/join");
    if (a <= 0 || a > 32) c.writeString("* usage: /join ROOM (1 to 32 bytes, no spaces)\n");
    else {
      left(c);
      unsubscribe(c, TOPIC_EXACT, topic(c), topicLen(c));
      enter(c, p + 6, a);
      begin(0);  // from nobody: the joiner sees it too
      putString("* ");
      put(nick(c), nickLen(c));
      putString(" joined ");
      put(p + 6, a);
      finish(c);
    }
  } else if (n > 0 && load<u8>(p) == 0x2F) {
    c.writeString("* unknown command\n");
  } else if (n > 0) {
    begin(c.id);
    putString("<");
    put(nick(c), nickLen(c));
    putString("> ");
    put(p, n);
    finish(c);
  }
  return true;
}

function onData(c: Conn): Action {
  while (true) {
    const at = c.input + <usize>c.consumed;
    const left = c.inputLen - c.consumed;
    let end = -1;
    for (let i = 0; i < left; i++) if (load<u8>(at + <usize>i) == 0x0A) { end = i; break; }
    if (end < 0) {
      if (left >= LINE_MAX) {
        c.writeString("* line too long\n");
        return Action.Close;
      }
      return c.eof ? Action.Close : Action.Continue;
    }
    const n = end > 0 && load<u8>(at + <usize>(end - 1)) == 0x0D ? end - 1 : end;
    c.consume(end + 1);
    if (!line(c, at, n)) {
      c.writeString("* bye\n");
      return Action.Close;
    }
  }
  return Action.Continue;  // not reached
}

function onMessage(c: Conn, m: Message): Action {
  if (load<i32>(m.body) != c.id) c.write(m.body + 4, m.bodyLen - 4);  // not one's own
  return Action.Continue;
}

// The hooks, registered when the module starts (after the data above is declared).
configure(4096, 8192, STATE, onData);
setStateVersion(1);
setOnOpen(onOpen);
setOnMessage(onMessage);
