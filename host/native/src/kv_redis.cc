// A minimal blocking RESP2 client for the Redis-backed key-value store.
//
// Blocking fits the worker model: a worker handles one event at a time, so a
// kv call simply waits for its reply, bounded by the target's timeout (one
// deadline for the whole call: connect, AUTH/SELECT, send and reply). While it
// waits, the worker's SEND_SEQ cell is odd, as in a blocking send, so the pool
// sees a blocked worker (it may grow) and the watchdog leaves the wait out of
// the handler timeout (the kv timeout bounds it instead).
//
// Each worker thread has its own connection (thread_local), opened lazily. Any
// failure — refused or failed connect, timeout, the server closing, bytes that
// are not a reply — drops the connection and returns -3 at once; the next
// attempt waits for a backoff (50 ms doubling to 2 s, reset by a success), and
// calls meanwhile return -3 without touching the network, so a dead store costs
// a call nothing. A timed-out connection is never reused: a late reply would be
// taken for the next command's.
//
// A GET's value is never buffered whole: once its bulk header ($N) is read, the
// value goes straight from the socket into the module's buffer when it fits
// there, or is read and dropped through a small fixed buffer when it does not,
// so a call costs the same memory whatever the value's size (up to kMaxBulk).
//
// rediss:// speaks TLS with the host's one client-side TLS code (tls_client.h):
// the server's certificate is verified against the CAs given (or Node's
// bundled roots) and must name the host of the URL. Each thread has its own
// SSL_CTX and session.
#include "kv_redis.h"
#include "mono_clock.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <memory>
#include <mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "args.h"
#include "kv_core.h"
#include "tls_client.h"

namespace tcpmod {
namespace {

// Error kinds, in the order of KV_ERROR_KINDS (host/pool/counters.ts).
enum Kind { kConnect = 0, kTimeout, kClosed, kProtocol, kError, kBackoff };

constexpr int64_t kBackoffMinMs = 50;
constexpr int64_t kBackoffMaxMs = 2000;
// The longest a call may wait: the host bounds --kv-timeout far below this; the
// clamp only keeps the deadline arithmetic and poll()'s int timeout from overflowing.
constexpr int64_t kMaxTimeoutMs = INT32_MAX;
// One read from the socket into conn.rbuf, and the most a dropped value costs.
constexpr size_t kReadChunk = 16384;
// A connection that answered a reply this recently is not checked for a close
// before its next command (DropIfClosed): a busy worker's calls are tens of
// microseconds apart, and the check is a syscall each. Far below Redis' idle
// `timeout` (whole seconds), so an idle connection a server dropped is still
// replaced quietly; a close within this window fails one call (-3), as a close
// during the call would, but without the backoff: the next call connects at once (Call).
constexpr int64_t kRecentMs = 20;

struct Target {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string where;  // HOST:PORT, for error messages
  int64_t db = 0;
  std::string username, password;
  int64_t timeout_ms = 200;
  SSL_CTX* tls = nullptr;  // rediss://
  std::string servername;  // what the certificate must name
  ~Target() {
    if (tls) SSL_CTX_free(tls);
  }
};

// Where this thread's accounting goes: the pool's shared cells (counters.ts).
struct Cells {
  int32_t* i32 = nullptr;
  int64_t seq = 0, start = 0, excluded = 0;
  double* errors = nullptr;  // one Float64 per Kind, in this worker's totals slot
};

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
  std::string rbuf;  // reply heads and what one read brings: never a whole bulk value (see ReadBulk)
  size_t rpos = 0;   // start of unparsed bytes in rbuf
  std::string wbuf;
  int64_t retry_at = 0;  // monotonic ms before which no connect is attempted
  int64_t backoff = 0;
  std::string sha;  // the store script's SHA1 on this connection's server, once loaded (ScriptCall)
  int64_t used_at = 0;   // monotonic ms of the last reply read whole (Call): DropIfClosed skips a recent one
  Kind failed = kConnect;  // the kind of the last Fail
  Conn() = default;
  ~Conn() { Close(); }  // a retiring worker's thread takes its connection with it
  void Close() {
    TlsClientFree(ssl);  // no close_notify: the socket goes at once
    ssl = nullptr;
    if (fd >= 0) close(fd);
    fd = -1;
    rbuf.clear();
    rpos = 0;
    sha.clear();
    used_at = 0;  // a new connection is checked before its first reuse
  }
};

thread_local std::unique_ptr<Target> target;
thread_local Cells cells;
thread_local Conn conn;

// The last failure of any thread, for the main thread's once-a-second warning.
std::mutex last_mu;
std::string last_error;


// counters.ts clockMs(): Date.now() truncated to int32.
int32_t ClockMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t ms = static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
  return static_cast<int32_t>(static_cast<uint32_t>(ms));
}

// ---- parsing -----------------------------------------------------------------

// The line starting at p[i], up to "\r\n": its end (index of '\r'), 0 when not
// all there yet, -1 when longer than kMaxLine or holding a bare '\r' or '\n'.
int64_t LineEnd(const uint8_t* p, size_t n, size_t i) {
  for (size_t j = i; j < n; j++) {
    if (j - i > kMaxLine) return -1;
    if (p[j] == '\n') return -1;
    if (p[j] == '\r') {
      if (j + 1 == n) return 0;
      return p[j + 1] == '\n' ? static_cast<int64_t>(j) : -1;
    }
  }
  return n - i > kMaxLine ? -1 : 0;
}

// ---- accounting --------------------------------------------------------------

// Marks this worker blocked (SEND_SEQ odd) from now until Unblock.
void Block() {
  if (!cells.i32) return;
  __atomic_store_n(cells.i32 + cells.start, ClockMs(), __ATOMIC_SEQ_CST);
  __atomic_fetch_add(cells.i32 + cells.seq, 1, __ATOMIC_SEQ_CST);
}

// The wait is added to the callback's excluded time before SEND_SEQ turns even,
// so the watchdog never counts it against the handler (at worst twice in its favour).
void Unblock(int64_t started) {
  if (!cells.i32) return;
  __atomic_fetch_add(cells.i32 + cells.excluded, static_cast<int32_t>(MonoMs() - started), __ATOMIC_SEQ_CST);
  __atomic_fetch_add(cells.i32 + cells.seq, 1, __ATOMIC_SEQ_CST);
}

void Count(Kind k) {
  if (cells.errors) cells.errors[k] += 1;  // this worker is the slot's only writer
}

// Drops the connection after a failure: counted, remembered for the log, and
// no new attempt before the backoff has passed.
int64_t Fail(Kind k, const std::string& why) {
  conn.Close();
  conn.failed = k;
  conn.backoff = conn.backoff ? std::min(conn.backoff * 2, kBackoffMaxMs) : kBackoffMinMs;
  conn.retry_at = MonoMs() + conn.backoff;
  Count(k);
  std::lock_guard<std::mutex> lock(last_mu);
  last_error = why + " (" + (target ? target->where : "") + ")";  // the kind is in the counts logged with it
  return kKvUnavailable;
}

// ---- I/O, each bounded by the call's deadline -------------------------------

// Waits for `events` on the connection: 1 ready, 0 deadline passed.
int WaitFor(short events, int64_t deadline) {
  for (;;) {
    int64_t left = deadline - MonoMs();
    if (left <= 0) return 0;
    pollfd p{conn.fd, events, 0};
    int rc = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, INT32_MAX)));
    if (rc > 0) return 1;
    if (rc < 0 && errno != EINTR) return 1;  // let the syscall that follows report it
  }
}

// One transfer on the connection, plain or TLS: bytes moved (> 0), 0 the peer
// closed, -1 it would block (*want: what to poll for), -2 failed (*why).
ssize_t Transfer(bool out, char* p, size_t n, short* want, std::string* why) {
  if (!conn.ssl) {
    for (;;) {
      // MSG_DONTWAIT: a plain socket is blocking once connected (for FirstRead), these transfers are not.
      ssize_t r = out ? send(conn.fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT) : recv(conn.fd, p, n, MSG_DONTWAIT);
      if (r >= 0) return r;
      if (errno == EINTR) continue;
      *want = out ? POLLOUT : POLLIN;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
      *why = std::string(out ? "send: " : "recv: ") + std::strerror(errno);
      return -2;
    }
  }
  return TlsClientIo(conn.ssl, out, p, n, want, why);
}

// 0, or -3 after Fail.
int64_t WriteAll(const std::string& data, int64_t deadline) {
  size_t done = 0;
  while (done < data.size()) {
    short want = 0;
    std::string why;
    ssize_t n = Transfer(true, const_cast<char*>(data.data()) + done, data.size() - done, &want, &why);
    if (n > 0) done += static_cast<size_t>(n);
    else if (n == -1 && !WaitFor(want, deadline)) return Fail(kTimeout, "sending timed out");
    else if (n == 0) return Fail(kClosed, "the server closed the connection");
    else if (n == -2) return Fail(kClosed, why);
  }
  return 0;
}

// Reads at most n bytes into p, at least one, waiting for them within the
// deadline: the count (> 0), or -3 after Fail. The deadline is checked before
// every read, so a server that keeps sending (a huge value) is bounded too.
int64_t ReadSome(char* p, size_t n, int64_t deadline) {
  for (;;) {
    if (MonoMs() >= deadline) return Fail(kTimeout, "no reply within the timeout");
    short want = 0;
    std::string why;
    ssize_t got = Transfer(false, p, n, &want, &why);
    if (got > 0) return got;
    if (got == 0) return Fail(kClosed, "the server closed the connection");
    if (got == -2) return Fail(kClosed, why);
    if (!WaitFor(want, deadline)) return Fail(kTimeout, "no reply within the timeout");
  }
}

// One read appended to conn.rbuf, its unparsed bytes first moved to the front
// so the buffer never creeps. 0, or -3 after Fail.
int64_t ReadMore(int64_t deadline) {
  if (conn.rpos > 0) {
    conn.rbuf.erase(0, conn.rpos);
    conn.rpos = 0;
  }
  size_t have = conn.rbuf.size();
  conn.rbuf.resize(have + kReadChunk);
  int64_t n = ReadSome(&conn.rbuf[have], kReadChunk, deadline);
  conn.rbuf.resize(have + (n > 0 ? static_cast<size_t>(n) : 0));
  return n > 0 ? 0 : n;
}

// An array's header (*N, only ever read by ReadReply: the v1.2 calls' scripts
// and SCAN answer with arrays): r->type '*', r->integer the element count,
// r->nil for *-1. As ParseHead: the bytes taken, 0 more needed, -1 bad.
constexpr int64_t kMaxArray = 1 << 20;
int64_t ParseArrayHead(const uint8_t* p, size_t n, RedisReply* r) {
  int64_t end = LineEnd(p, n, 1);
  if (end <= 0) return end;
  *r = RedisReply();
  r->type = '*';
  if (!kv::ParseDecimal(p + 1, static_cast<size_t>(end) - 1, &r->integer) || r->integer < -1 || r->integer > kMaxArray) return -1;
  r->nil = r->integer == -1;
  return end + 2;
}

// Reads one reply's head into *r (offsets into conn.rbuf): a whole simple
// string, error or integer; of a bulk string only its header, the body (r->len
// bytes, then "\r\n") left on the connection for ReadBulk. 0, or -3 after Fail.
int64_t ReadReply(RedisReply* r, int64_t deadline) {
  for (;;) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(conn.rbuf.data()) + conn.rpos;
    size_t n = conn.rbuf.size() - conn.rpos;
    int64_t used = n > 0 && p[0] == '*' ? ParseArrayHead(p, n, r) : ParseHead(p, n, r);
    if (used < 0) return Fail(kProtocol, "the server sent something that is not a RESP2 reply");
    if (used > 0) {
      r->off += conn.rpos;
      conn.rpos += static_cast<size_t>(used);
      return 0;
    }
    if (ReadMore(deadline)) return kKvUnavailable;
  }
}

// Where a bulk body goes: into out when it fits in cap (the ABI's kv_get rule),
// otherwise nowhere.
struct BulkSink {
  uint8_t* out;
  size_t cap;
};

// Reads the body of the bulk string whose header ReadReply just took, and its
// "\r\n": what the header's read brought along comes from conn.rbuf, the rest
// straight from the socket, into sink.out, or through a fixed scratch buffer
// and dropped. Either way the connection ends up after the reply, in step for
// the next one. 0, or -3 after Fail (some of the value may then be in out).
int64_t ReadBulk(size_t len, const BulkSink& sink, int64_t deadline) {
  uint8_t* to = len <= sink.cap ? sink.out : nullptr;
  size_t left = len;
  size_t buffered = std::min(left, conn.rbuf.size() - conn.rpos);
  if (to && buffered) std::memcpy(to, conn.rbuf.data() + conn.rpos, buffered);
  conn.rpos += buffered;
  left -= buffered;
  char scratch[kReadChunk];
  while (left > 0) {
    char* dst = to ? reinterpret_cast<char*>(to + (len - left)) : scratch;
    int64_t n = ReadSome(dst, to ? left : std::min(left, sizeof(scratch)), deadline);
    if (n < 0) return n;
    left -= static_cast<size_t>(n);
  }
  while (conn.rbuf.size() - conn.rpos < 2)
    if (ReadMore(deadline)) return kKvUnavailable;
  if (conn.rbuf[conn.rpos] != '\r' || conn.rbuf[conn.rpos + 1] != '\n')
    return Fail(kProtocol, "the server sent something that is not a RESP2 reply");
  conn.rpos += 2;
  return 0;
}

using Piece = std::pair<const void*, size_t>;

// Appends a command as a RESP array of bulk strings.
template <typename Pieces>
void CommandOf(const Pieces& args) {
  std::string& w = conn.wbuf;
  w += '*';
  w += std::to_string(args.size());
  w += "\r\n";
  for (auto& a : args) {
    w += '$';
    w += std::to_string(a.second);
    w += "\r\n";
    w.append(static_cast<const char*>(a.first), a.second);
    w += "\r\n";
  }
}

void Command(std::initializer_list<Piece> args) { CommandOf(args); }

std::pair<const void*, size_t> Arg(const std::string& s) { return {s.data(), s.size()}; }

bool ReplyIs(const RedisReply& r, const char* text) {
  size_t n = std::strlen(text);
  return r.len >= n && std::memcmp(conn.rbuf.data() + r.off, text, n) == 0;
}

std::string ReplyText(const RedisReply& r) { return conn.rbuf.substr(r.off, std::min<size_t>(r.len, 200)); }

// The TLS handshake on the connected socket, bounded by the deadline: the
// server's certificate must verify and name the URL's host. 0, or -3 after Fail.
int64_t Handshake(int64_t deadline) {
  const Target& t = *target;
  std::string why;
  conn.ssl = TlsClientSession(t.tls, conn.fd, t.servername, &why);
  if (!conn.ssl) return Fail(kConnect, "TLS: " + why);
  for (;;) {
    short want = 0;
    TlsClientFailure kind;
    int r = TlsClientHandshake(conn.ssl, &want, &why, &kind);
    if (r == 1) return 0;
    if (r < 0) return Fail(kConnect, "TLS handshake: " + why);
    if (!WaitFor(want, deadline)) return Fail(kConnect, "TLS handshake timed out");
  }
}

// Non-blocking connect bounded by the deadline, TCP_NODELAY, then AUTH and
// SELECT (pipelined) when the target asks for them. 0, or -3 after Fail.
int64_t Connect(int64_t deadline) {
  const Target& t = *target;
  conn.fd = socket(t.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (conn.fd < 0) return Fail(kConnect, std::string("socket: ") + std::strerror(errno));
  int one = 1;
  setsockopt(conn.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(conn.fd, reinterpret_cast<const sockaddr*>(&t.addr), t.addr_len) < 0) {
    if (errno != EINPROGRESS && errno != EINTR) return Fail(kConnect, std::string("connect: ") + std::strerror(errno));
    if (!WaitFor(POLLOUT, deadline)) return Fail(kConnect, "connect timed out");
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(conn.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) return Fail(kConnect, std::string("connect: ") + std::strerror(err));
  }
  if (!t.tls) {
    // Blocking from here on, for FirstRead's one recv bounded by SO_RCVTIMEO; every other
    // transfer passes MSG_DONTWAIT. TLS stays non-blocking: OpenSSL reads and writes the fd itself.
    timeval tv{static_cast<time_t>(t.timeout_ms / 1000), static_cast<suseconds_t>(t.timeout_ms % 1000 * 1000)};
    int fl = fcntl(conn.fd, F_GETFL);
    if (fl < 0 || fcntl(conn.fd, F_SETFL, fl & ~O_NONBLOCK) < 0 || setsockopt(conn.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
      return Fail(kConnect, std::string("socket options: ") + std::strerror(errno));
  }
  if (t.tls && Handshake(deadline)) return kKvUnavailable;
  conn.wbuf.clear();
  int n = 0;
  if (!t.password.empty()) {
    if (t.username.empty()) Command({{"AUTH", 4}, Arg(t.password)});
    else Command({{"AUTH", 4}, Arg(t.username), Arg(t.password)});
    n++;
  }
  std::string db = std::to_string(t.db);
  if (t.db != 0) {
    Command({{"SELECT", 6}, Arg(db)});
    n++;
  }
  if (n == 0) return 0;
  if (WriteAll(conn.wbuf, deadline)) return kKvUnavailable;
  for (int i = 0; i < n; i++) {
    RedisReply r;
    if (ReadReply(&r, deadline)) return kKvUnavailable;
    if (r.type == '-') return Fail(kConnect, (i == 0 && !t.password.empty() ? "AUTH: " : "SELECT: ") + ReplyText(r));
    // Anything but +OK: a bulk body left unread would be taken for the next reply.
    if (r.type != '+') return Fail(kProtocol, "a reply of an unexpected type");
  }
  return 0;
}

// An idle connection with something to read was closed (or reset) by the
// server, e.g. a restart: drop it quietly and connect afresh, rather than send
// a command into it and fail the call. Call asks only after kRecentMs idle.
// Over TLS the readable bytes may be a record that carries no data (a TLS 1.3
// session ticket): the connection stays if reading it yields nothing more.
void DropIfClosed() {
  pollfd p{conn.fd, POLLIN, 0};
  if (poll(&p, 1, 0) == 0) return;
  if (conn.ssl && !(p.revents & (POLLERR | POLLHUP))) {
    char byte;
    short want = 0;
    std::string why;
    if (Transfer(false, &byte, 1, &want, &why) == -1) return;
  }
  conn.Close();
}

// The first read of a reply on a plain connection with nothing buffered: one
// blocking recv bounded by SO_RCVTIMEO (the target's timeout, set by Connect)
// instead of poll then recv, one syscall less per call. Taken only while the
// call is still in the millisecond it started in (its deadline is that
// millisecond plus the timeout), so the wait ends at most 1 ms plus the
// kernel's timer tick after the deadline; otherwise (a slow connect or send,
// or a call that started late in its millisecond), and after EINTR, it waits
// with poll, exact to the deadline, as every later read does. 0 (bytes in
// rbuf, or none yet), or -3 after Fail.
int64_t FirstRead(int64_t started, int64_t deadline) {
  if (MonoMs() != started) return WaitFor(POLLIN, deadline), 0;
  conn.rbuf.clear();
  conn.rpos = 0;
  conn.rbuf.resize(kReadChunk);
  ssize_t n = recv(conn.fd, &conn.rbuf[0], kReadChunk, 0);
  int err = errno;
  conn.rbuf.resize(n > 0 ? static_cast<size_t>(n) : 0);
  if (n > 0 || (n < 0 && err == EINTR)) return 0;
  if (n == 0) return Fail(kClosed, "the server closed the connection");
  if (err == EAGAIN || err == EWOULDBLOCK) return Fail(kTimeout, "no reply within the timeout");
  return Fail(kClosed, std::string("recv: ") + std::strerror(err));
}

// Sends the command in conn.wbuf and reads its reply: 0, or -3 (the store is
// unavailable; the reason is counted). Marks the worker blocked meanwhile.
// A bulk string's body goes to `bulk` (GET's value). The other commands never
// expect a bulk reply: their callers drop the connection (Unexpected) with its
// body unread. An array's elements go to `elems` (read whole, within the same
// deadline); a caller that passes none does not expect an array.
// One element of an array reply (ReadElems): an integer, a bulk string (its
// bytes in str, or, when a sink was given, its length in integer and its bytes
// in the sink), nil, an error's text, or '*' opening a nested array of
// `integer` elements that follow it.
struct Elem {
  char type = 0;
  bool nil = false;
  int64_t integer = 0;
  std::string str;
};

// Reads the `count` elements of an array whose header ReadReply took, one
// level of nesting flattened into *out. A bulk element goes to `bulk` when
// given (the value of kv_get_ver: streamed as GET's is), else into its str.
int64_t ReadElems(int64_t count, std::vector<Elem>* out, const BulkSink* bulk, int64_t deadline, int depth = 0) {
  for (int64_t i = 0; i < count; i++) {
    RedisReply r;
    if (ReadReply(&r, deadline)) return kKvUnavailable;
    Elem e;
    e.type = r.type;
    e.nil = r.nil;
    e.integer = r.integer;
    if (r.type == '+' || r.type == '-') e.str = conn.rbuf.substr(r.off, r.len);
    out->push_back(std::move(e));
    if (r.type == '*' && !r.nil) {
      if (depth > 0) return Fail(kProtocol, "a reply nested deeper than expected");
      if (ReadElems(r.integer, out, bulk, deadline, depth + 1)) return kKvUnavailable;
    } else if (r.type == '$' && !r.nil) {
      Elem& b = out->back();
      if (bulk) {
        b.integer = static_cast<int64_t>(r.len);
        if (ReadBulk(r.len, *bulk, deadline)) return kKvUnavailable;
      } else {
        b.str.resize(r.len);
        if (ReadBulk(r.len, {reinterpret_cast<uint8_t*>(&b.str[0]), r.len}, deadline)) return kKvUnavailable;
      }
    }
  }
  return 0;
}

// An error reply the command does not expect (defined below).
int64_t Refused(const RedisReply& r);
void Consumed();

// Sends the commands buffered and reads the reply of the last one into *r. With
// `leading` > 0 the commands were a pipeline (MULTI and what it queues): that
// many status replies come first, each read and consumed here; the first error
// among them goes to *refused (OOM: -2, any other: -3 as Refused), else it stays 0.
int64_t Call(RedisReply* r, const BulkSink* bulk = nullptr, std::vector<Elem>* elems = nullptr, int leading = 0,
             int64_t* refused = nullptr) {
  std::string cmd;
  cmd.swap(conn.wbuf);  // Connect reuses wbuf for AUTH/SELECT
  int64_t now = MonoMs();
  bool unchecked = conn.fd >= 0 && now - conn.used_at < kRecentMs;
  if (conn.fd >= 0 && !unchecked) DropIfClosed();
  if (conn.fd < 0 && now < conn.retry_at) {
    Count(kBackoff);
    return kKvUnavailable;
  }
  int64_t deadline = now + target->timeout_ms;
  Block();
  int64_t rc = conn.fd < 0 ? Connect(deadline) : 0;
  if (rc == 0) rc = WriteAll(cmd, deadline);
  // A plain connection with nothing buffered cannot have the reply yet: a recv that waits for it (a
  // non-blocking one would end in EAGAIN, then poll, then recv again).
  if (rc == 0 && !conn.ssl && conn.rpos == conn.rbuf.size()) rc = FirstRead(now, deadline);
  for (int i = 0; rc == 0 && i < leading; i++) {
    RedisReply lead;
    rc = ReadReply(&lead, deadline);
    if (rc != 0) break;
    if (lead.type == '-' && *refused == 0) *refused = ReplyIs(lead, "OOM") ? kv::kFull : Refused(lead);
    else if (lead.type != '+' && lead.type != '-') rc = Fail(kProtocol, "a reply of an unexpected type");
    if (rc == 0) Consumed();
  }
  if (rc == 0) rc = ReadReply(r, deadline);
  if (rc == 0 && bulk && r->type == '$' && !r->nil) rc = ReadBulk(r->len, *bulk, deadline);
  if (rc == 0 && elems && r->type == '*' && !r->nil) rc = ReadElems(r->integer, elems, bulk, deadline);
  Unblock(now);
  conn.wbuf.clear();
  if (rc == 0) {
    conn.backoff = 0;
    conn.used_at = now;
  } else if (unchecked && conn.failed == kClosed) {
    // Closed before the check DropIfClosed skipped could have caught it: the call fails, but the
    // next one connects at once, as it would have after the check (a failure there backs off).
    conn.backoff = conn.retry_at = 0;
  }
  return rc;
}

// The buffer holds nothing but the reply just handled (a head of at most
// kMaxLine bytes within one read, so it never grows large).
void Consumed() {
  conn.rbuf.erase(0, conn.rpos);
  conn.rpos = 0;
}

// An error reply the command does not expect: the store refused (NOAUTH,
// LOADING, READONLY, WRONGTYPE...). The connection is still in step, so it is kept.
int64_t Refused(const RedisReply& r) {
  Count(kError);
  std::lock_guard<std::mutex> lock(last_mu);
  last_error = "the server replied " + ReplyText(r) + " (" + target->where + ")";
  return kKvUnavailable;
}

// Anything but the reply types a command expects breaks the exchange.
int64_t Unexpected() { return Fail(kProtocol, "a reply of an unexpected type"); }

// ---- the store script (docs/abi.md §14, "On Redis") ---------------------------
//
// Every call that writes, and every v1.2 call that reads more than one thing,
// is one run of this Lua script (EVALSHA), so it is atomic on the server.
// Versions: a key's version lives in a companion string key, kVerPrefix + key,
// created lazily by kv_get_ver from one counter (kSeqKey, INCR: never reused,
// so a deleted and re-created key never gets an old version back) with the
// key's TTL, and deleted by every write through this store: the next
// kv_get_ver hands out a new one. kv_cas compares with it (a missing companion
// matches no version). The value itself stays a plain string, so GET and other
// clients see it unchanged. Names starting with kReserved are never listed nor
// counted by kv_scan / kv_del_prefix.
constexpr char kReserved[] = "\xfftcpmod:";
constexpr char kVerPrefix[] = "\xfftcpmod:ver:";

const char kScript[] = R"lua(
local op, k = ARGV[1], KEYS[1]
local c = '\255tcpmod:ver:' .. k
local function write(val, flags, ttl)
  local a = {'SET', k, val}
  if ttl ~= '0' then a[#a + 1] = 'PX'; a[#a + 1] = ttl end
  if bit.band(flags, 1) ~= 0 then a[#a + 1] = 'NX' end
  if bit.band(flags, 2) ~= 0 then a[#a + 1] = 'XX' end
  if bit.band(flags, 4) ~= 0 then a[#a + 1] = 'KEEPTTL' end
  return redis.call(unpack(a))
end
-- The key's version (it exists): its companion's, or a new one from the counter.
local function version()
  local ver = redis.call('GET', c)
  if not ver then
    ver = redis.call('INCR', '\255tcpmod:seq')
    local t = redis.call('PTTL', k)
    if t > 0 then redis.call('SET', c, ver, 'PX', t) else redis.call('SET', c, ver) end
  end
  return tonumber(ver)
end
if op == 'set' then
  local flags = tonumber(ARGV[3])
  if not write(ARGV[2], flags, ARGV[4]) then
    if bit.band(flags, 1) ~= 0 then return -5 end
    return -1
  end
  redis.call('DEL', c)
  return 0
elseif op == 'cas' then
  if redis.call('EXISTS', k) == 0 then return -1 end
  if redis.call('GET', c) ~= ARGV[5] then return -5 end
  write(ARGV[2], tonumber(ARGV[3]), ARGV[4])
  redis.call('DEL', c)
  return 0
elseif op == 'getver' then
  local v = redis.call('GET', k)
  if not v then return false end
  return {version(), v}
elseif op == 'getrange' then
  local n = redis.call('STRLEN', k)
  if n == 0 and redis.call('EXISTS', k) == 0 then return false end
  local from, cap = tonumber(ARGV[2]), tonumber(ARGV[3])
  local part = ''
  if cap > 0 and from < n then part = redis.call('GETRANGE', k, from, from + cap - 1) end
  return {version(), n, part}
elseif op == 'getdel' then
  local v = redis.call('GET', k)
  if v and #v <= tonumber(ARGV[2]) then redis.call('DEL', k, c) end
  return v
elseif op == 'del' then
  local n = redis.call('DEL', k)
  redis.call('DEL', c)
  return n
elseif op == 'expire' or op == 'expireif' then
  if redis.call('EXISTS', k) == 0 then return -1 end
  if op == 'expireif' then
    -- Redis 7's NX/XX/GT/LT, on the TTLs (time stands still inside a script): -1 none, an infinite one to GT and LT.
    local f, ttl, cur = tonumber(ARGV[3]), tonumber(ARGV[2]), redis.call('PTTL', k)
    if bit.band(f, 1) ~= 0 and cur >= 0 then return 0 end
    if bit.band(f, 2) ~= 0 and cur < 0 then return 0 end
    if bit.band(f, 8) ~= 0 and (cur < 0 or ttl <= cur) then return 0 end
    if bit.band(f, 16) ~= 0 and cur >= 0 and ttl >= cur then return 0 end
  end
  if ARGV[2] == '0' then
    redis.call('DEL', k, c)
  else
    redis.call('PEXPIRE', k, ARGV[2])
    redis.call('PEXPIRE', c, ARGV[2])
  end
  return op == 'expireif' and 1 or 0
elseif op == 'persist' then
  if redis.call('EXISTS', k) == 0 then return -1 end
  redis.call('PERSIST', c)
  return redis.call('PERSIST', k)
elseif op == 'append' then
  local flags = tonumber(ARGV[3])
  if bit.band(flags, 2) ~= 0 and redis.call('EXISTS', k) == 0 then return -1 end
  local n
  if bit.band(flags, 1) ~= 0 then
    local v = redis.call('GET', k) or ''
    redis.call('SET', k, ARGV[2] .. v, 'KEEPTTL')
    n = #ARGV[2] + #v
  else
    n = redis.call('APPEND', k, ARGV[2])
  end
  redis.call('DEL', c)
  return n
elseif op == 'incr' then
  if ARGV[3] == '2' and redis.call('EXISTS', k) == 0 then return -1 end
  local r = redis.pcall('INCRBY', k, ARGV[2])
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'not an integer', 1, true) or string.find(r.err, 'overflow', 1, true) or string.find(r.err, 'WRONGTYPE', 1, true) then
      return -6
    end
    return r
  end
  redis.call('DEL', c)
  return {0, r}
elseif op == 'incrat' then
  -- memcached's incr/decr on the u64 decimal at ARGV[2] (digits, then only spaces). Lua's numbers
  -- are doubles, so the arithmetic is on decimal strings; the result is returned as one.
  local v = redis.call('GET', k)
  if not v then return -1 end
  local off = tonumber(ARGV[2])
  if off > #v then return -6 end
  local num = string.match(string.sub(v, off + 1), '^(%d+) *$')
  if not num or #num > 20 then return -6 end
  local function strip(a) local t = string.gsub(a, '^0+', ''); return t == '' and '0' or t end
  local function less(a, b) if #a ~= #b then return #a < #b end return a < b end
  local function digit(a, i) if i < 1 then return 0 end return string.byte(a, i) - 48 end
  local function add(a, b)
    local r, carry, i, j = {}, 0, #a, #b
    while i > 0 or j > 0 or carry > 0 do
      local d = carry + digit(a, i) + digit(b, j)
      r[#r + 1] = d % 10; carry = (d - d % 10) / 10; i = i - 1; j = j - 1
    end
    return strip(string.reverse(table.concat(r)))
  end
  local function sub(a, b)
    local r, borrow, i, j = {}, 0, #a, #b
    while i > 0 do
      local d = digit(a, i) - borrow - digit(b, j)
      if d < 0 then d = d + 10; borrow = 1 else borrow = 0 end
      r[#r + 1] = d; i = i - 1; j = j - 1
    end
    return strip(string.reverse(table.concat(r)))
  end
  local top = '18446744073709551616'
  num = strip(num)
  if not less(num, top) then return -6 end
  local r
  if bit.band(tonumber(ARGV[4]), 32) ~= 0 then
    if less(num, ARGV[3]) then r = '0' else r = sub(num, ARGV[3]) end
  else
    r = add(num, ARGV[3])
    if not less(r, top) then r = sub(r, top) end
  end
  redis.call('SET', k, string.sub(v, 1, off) .. r, 'KEEPTTL')
  redis.call('DEL', c)
  return {0, r}
elseif op == 'delmany' then
  local n = 0
  for i = 2, #ARGV do
    n = n + redis.call('DEL', ARGV[i])
    redis.call('DEL', '\255tcpmod:ver:' .. ARGV[i])
  end
  return n
end
return redis.error_reply('ERR tcpmod store script: unknown op')
)lua";

// Runs the store script: EVALSHA with key `key` (the script's KEYS[1]) and
// ARGV = args. A connection loads the script (SCRIPT LOAD, which answers its
// SHA1) before its first run; NOSCRIPT (the server restarted or ran SCRIPT
// FLUSH) loads it again and runs once more. As Call: 0 and the reply in *r
// (and elems/bulk), or -3.
int64_t ScriptCall(Piece key, const std::vector<Piece>& args, RedisReply* r, const BulkSink* bulk = nullptr,
                   std::vector<Elem>* elems = nullptr) {
  for (int attempt = 0; attempt < 2; attempt++) {
    if (conn.sha.empty() || conn.fd < 0) {
      Command({{"SCRIPT", 6}, {"LOAD", 4}, {kScript, sizeof(kScript) - 1}});
      char sha[64];
      BulkSink sink{reinterpret_cast<uint8_t*>(sha), sizeof(sha)};
      if (Call(r, &sink)) return kKvUnavailable;
      if (r->type == '-') {
        int64_t rc = Refused(*r);
        Consumed();
        return rc;
      }
      if (r->type != '$' || r->nil || r->len > sizeof(sha)) return Fail(kProtocol, "SCRIPT LOAD answered no SHA1");
      conn.sha.assign(sha, r->len);
      Consumed();
    }
    std::vector<Piece> cmd{{"EVALSHA", 7}, Arg(conn.sha), {"1", 1}, key};
    cmd.insert(cmd.end(), args.begin(), args.end());
    CommandOf(cmd);
    if (elems) elems->clear();
    if (Call(r, bulk, elems)) return kKvUnavailable;
    if (r->type != '-' || !ReplyIs(*r, "NOSCRIPT")) return 0;
    Consumed();
    conn.sha.clear();
  }
  return Refused(*r);
}

// The result of a script run that answers one integer, or an error: OOM is the
// ABI's -2 (maxmemory reached), any other error -3 (Refused).
int64_t IntResult(const RedisReply& r) {
  int64_t rc;
  if (r.type == ':') rc = r.integer;
  else if (r.type == '-' && ReplyIs(r, "OOM")) rc = -2;
  else if (r.type == '-') rc = Refused(r);
  else return Unexpected();
  Consumed();
  return rc;
}

bool IsReserved(const std::string& k) { return k.compare(0, sizeof(kReserved) - 1, kReserved) == 0; }

// SCAN's MATCH pattern for the keys that start with prefix: the prefix with
// the glob's special characters escaped, then '*'.
std::string PrefixPattern(const std::string& prefix) {
  std::string p;
  for (char ch : prefix) {
    if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\') p += '\\';
    p += ch;
  }
  return p + '*';
}

// One SCAN step: the keys (reserved ones left out) into *keys, the next cursor
// into *next. 0, or -3.
int64_t ScanStep(const std::string& pattern, uint64_t cursor, int64_t count, std::vector<std::string>* keys, uint64_t* next) {
  std::string cur = std::to_string(cursor), n = std::to_string(count);
  Command({{"SCAN", 4}, Arg(cur), {"MATCH", 5}, Arg(pattern), {"COUNT", 5}, Arg(n)});
  RedisReply r;
  std::vector<Elem> elems;
  if (Call(&r, nullptr, &elems)) return kKvUnavailable;
  if (r.type == '-') {
    int64_t rc = Refused(r);
    Consumed();
    return rc;
  }
  if (r.type != '*' || elems.size() < 2 || elems[0].type != '$' || elems[1].type != '*') return Unexpected();
  Consumed();
  int64_t c;
  if (!kv::ParseDecimal(reinterpret_cast<const uint8_t*>(elems[0].str.data()), elems[0].str.size(), &c)) {
    // Redis' cursors are unsigned 64-bit: one above INT64_MAX does not fit the ABI's i64.
    return Fail(kProtocol, "SCAN answered a cursor this client cannot pass on");
  }
  *next = static_cast<uint64_t>(c);
  keys->clear();
  for (size_t i = 2; i < elems.size(); i++)
    if (elems[i].type == '$' && !elems[i].nil && !IsReserved(elems[i].str)) keys->push_back(std::move(elems[i].str));
  return 0;
}

// ---- exports -----------------------------------------------------------------

bool ParseAddr(const std::string& host, int64_t port, Target* t) {
  auto* v4 = reinterpret_cast<sockaddr_in*>(&t->addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&t->addr);
  std::memset(&t->addr, 0, sizeof(t->addr));
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    t->addr_len = sizeof(sockaddr_in);
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    t->addr_len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}


std::string Str(const Napi::Object& o, const char* name) {
  Napi::Value v = o.Get(name);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

int64_t Int(const Napi::Object& o, const char* name) {
  Napi::Value v = o.Get(name);
  return v.IsNumber() ? v.As<Napi::Number>().Int64Value() : 0;
}

// kvBackend(target | null, cells: Int32Array, seqCell, startCell, excludedCell, totals: Float64Array, errorsBase)
// Points the calling thread's kv calls at a Redis server (null: back to the
// in-process store). target = { host (numeric), port, db, username, password,
// timeoutMs }. The shared arrays must outlive the thread (the worker holds them).
Napi::Value KvBackend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  conn.Close();
  conn.retry_at = conn.backoff = 0;
  target.reset();
  cells = Cells();
  if (info.Length() < 1 || info[0].IsNull() || info[0].IsUndefined()) return Num(info, 0);
  int64_t seq, start, excluded, errors;
  if (!info[0].IsObject() || info.Length() < 7 || !info[1].IsTypedArray() || !info[5].IsTypedArray() ||
      !ArgInt(info, 2, &seq) || !ArgInt(info, 3, &start) || !ArgInt(info, 4, &excluded) || !ArgInt(info, 6, &errors)) {
    if (!env.IsExceptionPending()) Napi::TypeError::New(env, "kvBackend(target, cells, seq, start, excluded, totals, errorsBase)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto i32 = info[1].As<Napi::TypedArray>();
  auto f64 = info[5].As<Napi::TypedArray>();
  if (i32.TypedArrayType() != napi_int32_array || f64.TypedArrayType() != napi_float64_array ||
      seq < 0 || start < 0 || excluded < 0 || static_cast<size_t>(std::max({seq, start, excluded})) >= i32.ElementLength() ||
      errors < 0 || static_cast<size_t>(errors) + 6 > f64.ElementLength()) {
    Napi::RangeError::New(env, "kvBackend: cells outside their arrays").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  auto t = std::make_unique<Target>();
  std::string host = Str(o, "host");
  int64_t port = Int(o, "port");
  if (port < 1 || port > 65535 || !ParseAddr(host, port, t.get())) {
    Napi::TypeError::New(env, "kvBackend: host must be a numeric address and port 1-65535").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  t->where = host.find(':') == std::string::npos ? host + ":" + std::to_string(port) : "[" + host + "]:" + std::to_string(port);
  t->db = Int(o, "db");
  t->username = Str(o, "username");
  t->password = Str(o, "password");
  t->timeout_ms = std::clamp<int64_t>(Int(o, "timeoutMs"), 1, kMaxTimeoutMs);
  Napi::Value tls = o.Get("tls");
  if (tls.IsObject()) {
    std::string err;
    t->servername = Str(tls.As<Napi::Object>(), "servername");
    t->tls = TlsClientContext(Str(tls.As<Napi::Object>(), "ca"), &err);
    if (!t->tls) {
      Napi::Error::New(env, "kvBackend: " + err + " for rediss://").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  target = std::move(t);
  cells.i32 = info[1].As<Napi::Int32Array>().Data();  // typed-array Data(): the buffer is a SharedArrayBuffer
  cells.seq = seq;
  cells.start = start;
  cells.excluded = excluded;
  cells.errors = info[5].As<Napi::Float64Array>().Data() + errors;
  return Num(info, 0);
}

// kvLastError() -> the last failure any thread met ('' if none), then forgets it.
Napi::Value KvLastError(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(last_mu);
  std::string s;
  s.swap(last_error);
  return Napi::String::New(info.Env(), s);
}

// kvParseReply(buf, off, len) -> { used, type, nil, integer, off, len } (off relative to `off`); used 0 more, -1 bad.
// For tests of the parser.
Napi::Value KvParseReply(const Napi::CallbackInfo& info) {
  uint8_t* p;
  size_t n;
  if (!ArgRegion(info, 0, &p, &n)) return info.Env().Undefined();
  RedisReply r;
  int64_t used = ParseReply(p, n, &r);
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("used", static_cast<double>(used));
  if (used > 0) {
    out.Set("type", std::string(1, r.type));
    out.Set("nil", r.nil);
    out.Set("integer", static_cast<double>(r.integer));
    out.Set("off", static_cast<double>(r.off));
    out.Set("len", static_cast<double>(r.len));
  }
  return out;
}

}  // namespace

int64_t ParseHead(const uint8_t* p, size_t n, RedisReply* r) {
  if (n == 0) return 0;
  if (p[0] != '+' && p[0] != '-' && p[0] != ':' && p[0] != '$') return -1;
  int64_t end = LineEnd(p, n, 1);
  if (end <= 0) return end;
  size_t len = static_cast<size_t>(end) - 1;
  *r = RedisReply();
  r->type = static_cast<char>(p[0]);
  switch (p[0]) {
    case '+':
    case '-':
      r->off = 1;
      r->len = len;
      return end + 2;
    case ':':
      return kv::ParseDecimal(p + 1, len, &r->integer) ? end + 2 : -1;
    case '$': {
      int64_t size;
      if (!kv::ParseDecimal(p + 1, len, &size) || size < -1 || size > kMaxBulk) return -1;
      r->nil = size == -1;
      if (!r->nil) {
        r->off = static_cast<size_t>(end) + 2;
        r->len = static_cast<size_t>(size);
      }
      return end + 2;
    }
    default:
      return -1;
  }
}

int64_t ParseReply(const uint8_t* p, size_t n, RedisReply* r) {
  int64_t head = ParseHead(p, n, r);
  if (head <= 0 || r->type != '$' || r->nil) return head;
  size_t total = static_cast<size_t>(head) + r->len + 2;
  if (n < total) return 0;
  if (p[total - 2] != '\r' || p[total - 1] != '\n') return -1;
  return static_cast<int64_t>(total);
}

bool RedisActive() { return target != nullptr; }

namespace {

// A reply that is a value or nil (GET, kv_getdel's script): its length, the
// bytes already in the sink when they fitted; -1 nil.
int64_t ValueResult(const RedisReply& r) {
  int64_t rc;
  if (r.type == '$') rc = r.nil ? -1 : static_cast<int64_t>(r.len);
  else if (r.type == '-') rc = Refused(r);
  else return Unexpected();
  Consumed();
  return rc;
}

Piece Bytes(const uint8_t* p, size_t n) { return {p, n}; }

}  // namespace

int64_t RedisGet(const std::string& key, uint8_t* out, size_t cap) {
  Command({{"GET", 3}, Arg(key)});
  RedisReply r;
  BulkSink value{out, cap};
  if (Call(&r, &value)) return kKvUnavailable;  // a value that fits is in out already
  return ValueResult(r);
}

int64_t RedisSet(const std::string& key, const uint8_t* val, size_t len, int flags, int64_t ttl_ms) {
  if (!kv::ValidSetArgs(flags, ttl_ms)) return kv::kInvalid;
  std::string f = std::to_string(flags), t = std::to_string(ttl_ms);
  RedisReply r;
  if (flags == 0) {
    // A SET without conditions needs no script: the value and the deletion of its version companion in one
    // MULTI/EXEC, written at once (one round trip, as the script's) and as atomic, at a fraction of a
    // script run's cost on the server (EVALSHA of this op: 13 us of Redis' time, against 1.5 us for a SET).
    const std::string c = kVerPrefix + key;
    Command({{"MULTI", 5}});
    if (ttl_ms != 0) Command({{"SET", 3}, Arg(key), Bytes(val, len), {"PX", 2}, Arg(t)});
    else Command({{"SET", 3}, Arg(key), Bytes(val, len)});
    Command({{"DEL", 3}, Arg(c)});
    Command({{"EXEC", 4}});
    std::vector<Elem> elems;
    int64_t refused = 0;
    if (Call(&r, nullptr, &elems, 3, &refused)) return kKvUnavailable;
    if (r.type == '-') {  // EXECABORT: a command was refused as it was queued (its error is in refused)
      int64_t rc = refused != 0 ? refused : ReplyIs(r, "OOM") ? kv::kFull : Refused(r);
      Consumed();
      return rc;
    }
    if (r.type != '*' || r.nil || elems.size() != 2 || elems[0].type != '+') {
      if (elems.size() == 2 && elems[0].type == '-') {  // refused when it ran (OOM past maxmemory)
        Consumed();
        return elems[0].str.compare(0, 3, "OOM") == 0 ? kv::kFull : kKvUnavailable;
      }
      return Unexpected();
    }
    Consumed();
    return 0;
  }
  if (ScriptCall(Arg(key), {{"set", 3}, Bytes(val, len), Arg(f), Arg(t)}, &r)) return kKvUnavailable;
  return IntResult(r);
}

int64_t RedisCas(const std::string& key, const uint8_t* val, size_t len, int flags, int64_t ttl_ms, uint64_t version) {
  if (!kv::ValidCasArgs(flags, ttl_ms)) return kv::kInvalid;
  std::string f = std::to_string(flags), t = std::to_string(ttl_ms), v = std::to_string(version);
  RedisReply r;
  if (ScriptCall(Arg(key), {{"cas", 3}, Bytes(val, len), Arg(f), Arg(t), Arg(v)}, &r)) return kKvUnavailable;
  return IntResult(r);
}

int64_t RedisDel(const std::string& key) {
  RedisReply r;
  if (ScriptCall(Arg(key), {{"del", 3}}, &r)) return kKvUnavailable;
  int64_t rc = IntResult(r);
  return rc > 0 ? 1 : rc;
}

int64_t RedisGetVer(const std::string& key, uint8_t* out, size_t cap, uint64_t* version) {
  RedisReply r;
  BulkSink value{out, cap};
  std::vector<Elem> elems;
  if (ScriptCall(Arg(key), {{"getver", 6}}, &r, &value, &elems)) return kKvUnavailable;
  if (r.type != '*') return ValueResult(r);  // nil: missing
  if (elems.size() != 2 || elems[0].type != ':' || elems[1].type != '$' || elems[1].nil) return Unexpected();
  Consumed();
  *version = static_cast<uint64_t>(elems[0].integer);
  return elems[1].integer;
}

int64_t RedisGetRange(const std::string& key, int64_t offset, uint8_t* out, size_t cap, uint64_t* version) {
  if (offset < 0) return kv::kInvalid;
  std::string o = std::to_string(offset), c = std::to_string(cap);
  RedisReply r;
  BulkSink part{out, cap};
  std::vector<Elem> elems;
  if (ScriptCall(Arg(key), {{"getrange", 8}, Arg(o), Arg(c)}, &r, &part, &elems)) return kKvUnavailable;
  if (r.type != '*') return ValueResult(r);  // nil: missing
  if (elems.size() != 3 || elems[0].type != ':' || elems[1].type != ':' || elems[2].type != '$' || elems[2].nil) return Unexpected();
  Consumed();
  *version = static_cast<uint64_t>(elems[0].integer);
  return elems[1].integer;
}

int64_t RedisGetDel(const std::string& key, uint8_t* out, size_t cap) {
  std::string c = std::to_string(cap);
  RedisReply r;
  BulkSink value{out, cap};
  if (ScriptCall(Arg(key), {{"getdel", 6}, Arg(c)}, &r, &value)) return kKvUnavailable;
  return ValueResult(r);
}

int64_t RedisExpire(const std::string& key, int64_t ttl_ms) {
  if (ttl_ms < 0 || ttl_ms > kv::kTtlMax) return kv::kInvalid;
  std::string t = std::to_string(ttl_ms);
  RedisReply r;
  if (ScriptCall(Arg(key), {{"expire", 6}, Arg(t)}, &r)) return kKvUnavailable;
  return IntResult(r);
}

int64_t RedisExpireIf(const std::string& key, int64_t ttl_ms, int flags) {
  if (!kv::ValidExpireArgs(flags, ttl_ms)) return kv::kInvalid;
  std::string t = std::to_string(ttl_ms), f = std::to_string(flags);
  RedisReply r;
  if (ScriptCall(Arg(key), {{"expireif", 8}, Arg(t), Arg(f)}, &r)) return kKvUnavailable;
  return IntResult(r);
}

int64_t RedisPersist(const std::string& key) {
  RedisReply r;
  if (ScriptCall(Arg(key), {{"persist", 7}}, &r)) return kKvUnavailable;
  return IntResult(r);
}

int64_t RedisTtl(const std::string& key, int64_t* ms) {
  Command({{"PTTL", 4}, Arg(key)});
  RedisReply r;
  if (Call(&r)) return kKvUnavailable;
  int64_t left = IntResult(r);
  if (left == kKvUnavailable || r.type != ':') return left;
  if (left == -2) return kv::kMissing;
  if (left == -1) return 0;
  *ms = left;
  return 1;
}

int64_t RedisAppend(const std::string& key, const uint8_t* val, size_t len, int flags) {
  if (flags & ~(kv::kPrepend | kv::kXX)) return kv::kInvalid;
  std::string f = std::to_string(flags);
  RedisReply r;
  if (ScriptCall(Arg(key), {{"append", 6}, Bytes(val, len), Arg(f)}, &r)) return kKvUnavailable;
  return IntResult(r);
}

int64_t RedisIncr(const std::string& key, int64_t delta, int flags, int64_t* out) {
  if (flags & ~kv::kXX) return kv::kInvalid;
  std::string d = std::to_string(delta), f = std::to_string(flags);
  RedisReply r;
  std::vector<Elem> elems;
  if (ScriptCall(Arg(key), {{"incr", 4}, Arg(d), Arg(f)}, &r, nullptr, &elems)) return kKvUnavailable;
  if (r.type != '*') return IntResult(r);  // -1 (XX), -6, or an error
  if (elems.size() != 2 || elems[1].type != ':') return Unexpected();
  Consumed();
  *out = elems[1].integer;
  return 0;
}

int64_t RedisIncrAt(const std::string& key, int64_t offset, uint64_t delta, int flags, uint64_t* out) {
  if (offset < 0 || (flags & ~kv::kDecr)) return kv::kInvalid;
  std::string o = std::to_string(offset), d = std::to_string(delta), f = std::to_string(flags);
  RedisReply r;
  std::vector<Elem> elems;
  if (ScriptCall(Arg(key), {{"incrat", 6}, Arg(o), Arg(d), Arg(f)}, &r, nullptr, &elems)) return kKvUnavailable;
  if (r.type != '*') return IntResult(r);  // -1, -6, or an error
  uint64_t v;
  if (elems.size() != 2 || elems[1].type != '$' || elems[1].nil ||
      !kv::ParseCounter(reinterpret_cast<const uint8_t*>(elems[1].str.data()), elems[1].str.size(), &v))
    return Unexpected();
  Consumed();
  *out = v;
  return 0;
}

int64_t RedisScan(const std::string& prefix, int64_t cursor, int32_t count, uint8_t* out, size_t cap, int64_t* next) {
  if (cursor < 0 || count < 1) return kv::kInvalid;
  std::vector<std::string> keys;
  uint64_t after;
  int64_t rc = ScanStep(PrefixPattern(prefix), static_cast<uint64_t>(cursor), count, &keys, &after);
  if (rc) return rc;
  size_t need = 0;
  for (const auto& k : keys) need += 4 + k.size();
  if (need > cap) return kv::kTooSmall;
  for (const auto& k : keys) {
    uint32_t n = static_cast<uint32_t>(k.size());
    std::memcpy(out, &n, 4);  // little-endian, as the ABI is
    std::memcpy(out + 4, k.data(), k.size());
    out += 4 + k.size();
  }
  *next = static_cast<int64_t>(after);
  return static_cast<int64_t>(keys.size());
}

int64_t RedisDelPrefix(const std::string& prefix) {
  // SCAN in steps of kStep keys and delete each step's keys (with their
  // versions) in one script run: each key atomically, not all at once.
  constexpr int64_t kStep = 1000;
  std::string pattern = PrefixPattern(prefix);
  std::vector<std::string> keys;
  uint64_t cursor = 0;
  int64_t total = 0;
  do {
    int64_t rc = ScanStep(pattern, cursor, kStep, &keys, &cursor);
    if (rc) return rc;
    if (keys.empty()) continue;
    std::vector<Piece> args{{"delmany", 7}};
    for (const auto& k : keys) args.push_back(Arg(k));
    RedisReply r;
    if (ScriptCall({"", 0}, args, &r)) return kKvUnavailable;
    rc = IntResult(r);
    if (rc < 0) return rc;
    total += rc;
  } while (cursor != 0);
  return total;
}

void InitKvRedis(Napi::Env env, Napi::Object exports) {
  exports.Set("kvBackend", Napi::Function::New(env, KvBackend, "kvBackend"));
  exports.Set("kvLastError", Napi::Function::New(env, KvLastError, "kvLastError"));
  exports.Set("kvParseReply", Napi::Function::New(env, KvParseReply, "kvParseReply"));
}

}  // namespace tcpmod
