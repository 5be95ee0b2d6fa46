// Upstreams: see upstream.h for the ownership and locking rules.
//
// Life of an upstream: upstreamOpen starts a non-blocking connect to the
// name's first address and a timerfd for the connect timeout; the next look
// (upstreamNext, by the client's holder) finds it connected (event CONNECTED),
// or refused / timed out, and then the next address is tried in order; when
// none is left the module gets FAILED and the upstream is gone. Once open,
// each look sends what is queued for it and reads what it sent: DATA with its
// carry-over (what the module left unconsumed last time) and the new bytes,
// then CLOSED (with the carry-over left) when it shuts down or resets, after
// which it is gone. The module's own upstream_close closes it at once,
// dropping what was queued for it, and reports nothing.
//
// TLS (--upstream-tls NAME[=SERVERNAME]): once TCP has connected, the handshake
// runs step by step at each look (tls_client.h), within the same connect
// timeout; the certificate must verify against the CAs given (--upstream-ca)
// and name SERVERNAME, or, without one, the address being tried. A handshake
// that fails moves on to the next address as a refusal does; CONNECTED comes
// after the handshake. The module can ask why its FAILED came (conn_info key
// 3, UpstreamFailure).
#include "upstream.h"
#include "mono_clock.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cassert>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "args.h"
#include "conn_table.h"
#include "output_queue.h"
#include "sender.h"
#include "tls_client.h"

namespace tcpmod {
namespace {

// Events a module's tcpmod_on_upstream gets (docs/abi.md, Upstreams).
// kEof only for a module that half-closes (docs/abi.md §20): the upstream ended its sending side, the handle stays.
enum Event : int { kConnected = 1, kData = 2, kClosed = 3, kFailed = 4, kEof = 5 };
// upstream_open's results besides a handle.
constexpr int kOpenUnknown = -1, kOpenTooMany = -2, kOpenUnavailable = -3;
// Added to upstreamNext's event when nothing else is flagged (exported as UPSTREAM_LAST).
constexpr int kNextLast = 0x100;
// upstream_send's results besides 0.
constexpr int kSendNoSuch = -1, kSendFull = -2, kSendShut = -3;
// Half-close of the sending side to an upstream (upstream_shutdown, §20): not asked, asked (the FIN
// goes once its queue has drained, at the next look), FIN sent.
enum Shut : uint8_t { kShutNo, kShutAsked, kShutDone };
// Why an address did not connect (conn_info key 3 in a FAILED call; metrics labels in Why()).
enum Why : int { kWhyNone = 0, kWhyRefused = 1, kWhyTimeout = 2, kWhyTlsVerify = 3, kWhyTls = 4 };
const char* WhyName(int why) {
  static const char* const names[] = {"", "refused", "timeout", "tls_verify", "tls_handshake"};
  return why >= 0 && why <= kWhyTls ? names[why] : "";
}

struct Named {
  std::string name;
  std::vector<sockaddr_storage> addrs;
  std::vector<socklen_t> lens;
  std::vector<std::string> hosts;   // the addresses as text: the name a certificate must have without `servername`
  std::shared_ptr<SSL_CTX> tls;     // --upstream-tls; sessions hold their own reference
  std::string servername;           // empty: the address being tried
};
struct Config {
  std::vector<Named> names;
  int64_t connect_timeout_ms = 2000;
  int64_t max_queued = 8 << 20;  // bytes queued for one upstream before upstream_send says -2
  int64_t read_timeout_ms = 0;   // --upstream-read-timeout; 0: none
  int64_t frame_timeout_ms = 0;  // --upstream-frame-timeout; 0: none
  // --max-upstreams: this server's upstreams open (connecting or connected) at once, and how many
  // are. Per server, so two servers in one process keep their own bounds; under up_mu exclusively.
  int64_t max_open = INT64_MAX;
  int64_t open = 0;
};

struct Upstream {
  uint64_t uid;
  int handle;
  int epfd;
  int cfd;          // the client (fd, id) it belongs to
  uint64_t cid;
  const Named* named;
  int64_t timeout_ms;
  size_t addr = 0;  // the address being tried
  size_t addr_end = 0;  // one past the last address it may try: all of the name's, or one for NAME#I
  int fd = -1;
  int tfd = -1;     // connect timeout; once connected, the read timeout's timer (-1 without one)
  // Read timeout (--upstream-read-timeout), holder-only but `fired`: bytes sent to an open upstream
  // and nothing received since for read_timeout_ms end it (CLOSED, why timeout). To keep a
  // proxied request free of timer syscalls, a send only notes when the wait began (waiting_since,
  // the first send since the last receive; 0: nothing awaited) and arms the timer when it is not
  // armed; a receive only clears waiting_since. When the timer fires, the wait is over (nothing
  // awaited: left unarmed), expired, or re-armed for what is left of it.
  int64_t read_timeout_ms = 0;
  int64_t waiting_since = 0;    // CLOCK_MONOTONIC ms
  // Frame timeout (--upstream-frame-timeout), holder-only, on the same timer: the carry-over (bytes
  // the module left unconsumed) non-empty since frame_since (0: none) with nothing of it consumed
  // since ends it once frame_timeout_ms passed, unless another upstream of the client is still
  // within its own timeouts (held input: a reply waiting its turn, FrameHeldFor). Set by the keep.
  int64_t frame_timeout_ms = 0;
  int64_t frame_since = 0;
  size_t offered = 0;  // bytes given with the last DATA (the keep's rest is what was not consumed)
  bool armed = false;
  int64_t armed_until = 0;  // when the armed timer fires (CLOCK_MONOTONIC ms)
  std::atomic<bool> fired{false};  // its timerfd's edge came (UpstreamWake)
  bool open = false;
  bool failed = false;  // every address refused or timed out: FAILED at the next look
  bool reoffer = false; // upstream_resume: DATA with the carry-over at the next look, even with no new byte
  // The socket reported its peer's end (or an error): no edge follows, so the look reads on to EOF
  // even after a short read. Set by UpstreamWake (up_mu shared), read by the holder's look.
  std::atomic<bool> ended{false};
  // Half-close (§20): the module imports upstream_shutdown, so the peer's EOF is reported as EOF and
  // the handle stays for sending (in_done: reported, nothing more is read); its sending side's end.
  // Holder-only fields, like carry.
  bool half = false;
  bool in_done = false;
  Shut shut = kShutNo;
  SSL* ssl = nullptr;   // TLS upstreams, from the TCP connect on; open once its handshake is done
  int why = kWhyNone;   // the last address's failure, reported with FAILED
  std::string why_text;
  std::atomic<bool> wake{true};
  std::vector<uint8_t> carry;
  OutputQueue out;
};

// Held shared by every call of the steady state -- a holder's send, look, keep and resume, an
// epoll event's wake, a re-arm's pending check -- since none of them changes the maps and each
// touches only its own client's upstreams (fields holder-only, or atomic); exclusively to open,
// connect, remove or configure. So the hot path's threads never wait on one another here: a
// plain mutex taken four or five times per proxied request, once inside the table lock, made
// futex calls about half of the proxy's syscalls (strace -f -c under redis-benchmark -c 50).
std::shared_mutex up_mu;
using Shared = std::shared_lock<std::shared_mutex>;
using Exclusive = std::lock_guard<std::shared_mutex>;
std::unordered_map<int, Config> configs;                      // by epfd (one server each)
std::unordered_map<uint64_t, std::vector<Upstream*>> by_conn;  // client id -> its upstreams
std::unordered_map<int, Upstream*> by_fd;                     // socket or timerfd -> its upstream
std::atomic<int64_t> live{0};
uint64_t next_uid = 1;
int next_handle = 1;
// Counters for metrics and tests (upstreamStats).
std::atomic<int64_t> n_connects{0}, n_refused{0}, n_timeouts{0}, n_failed{0}, n_closed{0}, bytes_in{0}, bytes_out{0};
std::atomic<int64_t> n_tls_verify{0}, n_tls{0};
// Reads of upstream sockets (each recv or TLS read, EAGAIN included): what a look costs (tests check it).
std::atomic<int64_t> n_reads{0};
// upstream_open past a server's --max-upstreams (Config::max_open) or past 8 on one connection.
std::atomic<int64_t> n_too_many{0};
// The last FAILED this thread delivered, for conn_info key 3/4 (UpstreamFailure) in that call.
thread_local uint64_t last_fail_conn = 0;
thread_local int last_fail_why = kWhyNone;
thread_local std::string last_fail_text;

std::atomic<int64_t> n_read_timeouts{0};
std::atomic<int64_t> n_frame_timeouts{0};

uint64_t Tag(uint64_t uid) { return uid & kEpollTagMask; }


// Arms u->tfd once, `ms` from now (0 disarms).
void ArmTimer(Upstream* u, int64_t ms) {
  itimerspec its{};
  its.it_value.tv_sec = ms / 1000;
  its.it_value.tv_nsec = (ms % 1000) * 1000000;
  timerfd_settime(u->tfd, 0, &its, nullptr);
  u->armed = ms > 0;
  u->armed_until = ms > 0 ? MonoMs() + ms : 0;
}

// A send to an open upstream: the wait for its answer starts now unless one is going on. Holder only.
void NoteSent(Upstream* u) {
  if (u->read_timeout_ms <= 0 || u->tfd < 0 || u->in_done) return;
  if (u->waiting_since == 0) u->waiting_since = MonoMs();
  if (!u->armed) ArmTimer(u, u->read_timeout_ms);
}

// When u's frame timeout ends (CLOCK_MONOTONIC ms; INT64_MAX: none running). Holder only.
int64_t FrameDeadline(const Upstream* u) {
  return u->frame_since == 0 || u->frame_timeout_ms <= 0 ? INT64_MAX : u->frame_since + u->frame_timeout_ms;
}

// Held input: u's carry-over is not cut while another open upstream of its client is still within
// its own timeouts -- connecting, awaited (its read timeout runs) or holding an incomplete frame not yet
// expired -- since the module may be holding u's complete reply until that one answers (a
// sharding proxy's replies in order). Holder only (the client's upstreams are all its own).
bool FrameHeld(const Upstream* u, int64_t now) {
  auto it = by_conn.find(u->cid);
  if (it == by_conn.end()) return false;
  for (const Upstream* o : it->second) {
    if (o == u || o->failed || o->in_done) continue;
    if (!o->open) return true;  // connecting: its connect timeout runs
    if (o->waiting_since != 0 && o->read_timeout_ms > 0) return true;
    if (FrameDeadline(o) > now && o->frame_since != 0) return true;
  }
  return false;
}

enum Expired { kExpiredNone, kExpiredRead, kExpiredFrame };

// The keep after a DATA: the frame timeout starts when the carry-over becomes non-empty, and
// again whenever the module consumed some of it (a frame completed, the next one began); it stops
// once nothing is left. A complete reply costs no syscall: the timer is armed only when a
// carry-over is left and the timer is unarmed. Holder only.
void NoteKept(Upstream* u, size_t rest_len) {
  if (u->frame_timeout_ms <= 0 || u->tfd < 0 || !u->open) return;
  if (rest_len == 0) {
    u->frame_since = 0;
    return;
  }
  bool began = u->frame_since == 0 || rest_len < u->offered;
  if (began) u->frame_since = MonoMs();
  // Armed later (the read timeout's wait): brought forward once, when the carry-over begins.
  if (!u->armed || (began && u->armed_until > FrameDeadline(u))) {
    int64_t left = FrameDeadline(u) - MonoMs();
    ArmTimer(u, left > 0 ? left : 1);
  }
}

// The timer fired (u->fired): which timeout has run out (the read one first); otherwise the timer
// is re-armed for the nearest deadline left, or left unarmed when nothing runs. A frame timeout
// held back by FrameHeld starts over (a frame timeout later it is looked at again), so a held reply
// gets a whole frame timeout once the others answered. Holder only.
Expired TimerExpired(Upstream* u) {
  uint64_t expirations;
  if (read(u->tfd, &expirations, sizeof(expirations)) < 0) {}  // drained; the edge was the news
  u->armed = false;
  int64_t now = MonoMs();
  int64_t next = INT64_MAX;
  if (u->waiting_since != 0 && u->read_timeout_ms > 0) {
    int64_t left = u->waiting_since + u->read_timeout_ms - now;
    if (left <= 0) return kExpiredRead;
    next = left;
  }
  int64_t frame = FrameDeadline(u);
  if (frame != INT64_MAX) {
    int64_t left = frame - now;
    if (left <= 0 && !FrameHeld(u, now)) return kExpiredFrame;
    if (left <= 0) {
      // Held: the time waiting on the others does not count; the frame timeout starts over.
      u->frame_since = now;
      left = u->frame_timeout_ms;
    }
    if (left < next) next = left;
  }
  if (next != INT64_MAX) ArmTimer(u, next);
  return kExpiredNone;
}

void Watch(Upstream* u, int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = EpollPack(kKindUpstream, fd, u->uid);
  epoll_ctl(u->epfd, EPOLL_CTL_ADD, fd, &ev);
}

// Closes the socket and timerfd (forgotten first, so that a wake for them finds nothing). Caller holds up_mu exclusively.
void CloseFds(Upstream* u) {
  TlsClientFree(u->ssl);
  u->ssl = nullptr;
  if (u->fd >= 0) {
    by_fd.erase(u->fd);
    close(u->fd);
    u->fd = -1;
  }
  if (u->tfd >= 0) {
    by_fd.erase(u->tfd);
    close(u->tfd);
    u->tfd = -1;
  }
}

// Counts an address that did not connect, and remembers why for FAILED.
void Missed(Upstream* u, int why, const std::string& text) {
  (why == kWhyRefused ? n_refused : why == kWhyTimeout ? n_timeouts : why == kWhyTlsVerify ? n_tls_verify : n_tls)++;
  u->why = why;
  u->why_text = std::string(WhyName(why)) + ": " + text + " (" + u->named->hosts[u->addr] + ")";
}

// Starts connecting to u->addr (or the next address that can be started). Caller holds up_mu exclusively.
// False when no address is left: u->failed.
bool StartConnect(Upstream* u) {
  CloseFds(u);
  u->ended = false;  // a new socket
  for (; u->addr < u->addr_end; u->addr++) {
    const sockaddr_storage& sa = u->named->addrs[u->addr];
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) break;  // out of descriptors: no other address does better
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    n_connects++;
    if (connect(fd, reinterpret_cast<const sockaddr*>(&sa), u->named->lens[u->addr]) < 0 && errno != EINPROGRESS) {
      Missed(u, kWhyRefused, std::strerror(errno));
      close(fd);
      continue;
    }
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0) {
      close(fd);
      break;
    }
    u->fd = fd;
    u->tfd = tfd;
    ArmTimer(u, u->timeout_ms);
    by_fd[fd] = u;
    by_fd[tfd] = u;
    Watch(u, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
    Watch(u, tfd, EPOLLIN | EPOLLET);
    return true;
  }
  u->failed = true;
  u->wake = true;
  return false;
}

// Takes the upstream out of the maps and frees it. Caller holds up_mu exclusively.
void Remove(Upstream* u) {
  CloseFds(u);
  auto it = by_conn.find(u->cid);
  if (it != by_conn.end()) {
    auto& v = it->second;
    for (size_t i = 0; i < v.size(); i++)
      if (v[i] == u) {
        v.erase(v.begin() + static_cast<long>(i));
        break;
      }
    if (v.empty()) by_conn.erase(it);
  }
  auto cit = configs.find(u->epfd);
  if (cit != configs.end()) cit->second.open--;
  assert(cit == configs.end() || cit->second.open >= 0);
  live--;
  delete u;
}

Upstream* FindHandle(uint64_t cid, int handle) {
  auto it = by_conn.find(cid);
  if (it == by_conn.end()) return nullptr;
  for (Upstream* u : it->second)
    if (u->handle == handle) return u;
  return nullptr;
}

bool TimedOut(Upstream* u) {
  uint64_t expirations;
  return read(u->tfd, &expirations, sizeof(expirations)) == sizeof(expirations);
}

// Where a connect stands: 1 connected, 0 still going, -errno refused or timed out.
int ConnectResult(Upstream* u) {
  if (TimedOut(u)) return -ETIMEDOUT;
  pollfd p{u->fd, POLLOUT, 0};
  if (poll(&p, 1, 0) <= 0 || p.revents == 0) return 0;
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
  return err == 0 ? 1 : -err;
}

// Takes the connect (and, for TLS, the handshake) one step: 1 done, 0 still
// going, -1 this address failed (counted, u->why set). Caller holds up_mu exclusively.
int Connecting(Upstream* u) {
  if (!u->ssl) {
    int r = ConnectResult(u);
    if (r < 0) Missed(u, r == -ETIMEDOUT ? kWhyTimeout : kWhyRefused, r == -ETIMEDOUT ? "no connection within the connect timeout" : std::strerror(-r));
    if (r <= 0 || !u->named->tls) return r < 0 ? -1 : r;
    std::string err;
    const std::string& name = u->named->servername.empty() ? u->named->hosts[u->addr] : u->named->servername;
    u->ssl = TlsClientSession(u->named->tls.get(), u->fd, name, &err);
    if (!u->ssl) {
      Missed(u, kWhyTls, err);
      return -1;
    }
  } else if (TimedOut(u)) {
    Missed(u, kWhyTimeout, "no TLS handshake within the connect timeout");
    return -1;
  }
  short want = 0;
  std::string why;
  TlsClientFailure kind = TlsClientFailure::kNone;
  int h = TlsClientHandshake(u->ssl, &want, &why, &kind);
  if (h < 0) Missed(u, kind == TlsClientFailure::kVerify ? kWhyTlsVerify : kWhyTls, why);
  return h;  // 0: the next edge (EPOLLIN or EPOLLOUT, both watched) looks again
}

// What the upstream's socket takes now, through TLS for a TLS upstream: bytes
// taken (>= 0), or -errno; fewer than len only when the socket is full, so that
// the caller can wait for the next EPOLLOUT edge. A TLS write takes one record
// at a time (partial writes): it is repeated until the socket stops taking
// them, since an edge comes only after a write met a full socket. A TLS write
// that took nothing must be retried with the same leading bytes: the queue's
// front, which holds them (output_queue.h).
int64_t UpWrite(Upstream* u, const uint8_t* p, size_t len) {
  if (!u->ssl) return WriteSome(Sink{u->fd, nullptr}, p, len);
  size_t done = 0;
  while (done < len) {
    short want = 0;
    std::string why;
    ssize_t n = TlsClientIo(u->ssl, true, const_cast<uint8_t*>(p + done), len - done, &want, &why);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n == -1 || done > 0) break;  // an error after some bytes shows at the next write
    return n == 0 ? -EPIPE : -EPROTO;
  }
  return static_cast<int64_t>(done);
}

// Sends the queue's front until the socket is full: the bytes left, or -errno.
int64_t UpDrain(Upstream* u) {
  while (!u->out.empty()) {
    size_t len;
    const uint8_t* p = u->out.Front(&len);
    int64_t n = UpWrite(u, p, len);
    if (n < 0) return n;
    u->out.Consume(static_cast<size_t>(n));
    if (static_cast<size_t>(n) < len) break;
  }
  return static_cast<int64_t>(u->out.size());
}

// Reads as recv does (errno set when < 0; EAGAIN: nothing now), through TLS for a TLS upstream.
ssize_t UpRead(Upstream* u, uint8_t* p, size_t cap) {
  ssize_t n;
  n_reads++;
  if (!u->ssl) {
    do n = recv(u->fd, p, cap, 0); while (n < 0 && errno == EINTR);
    return n;
  }
  short want = 0;
  std::string why;
  n = TlsClientIo(u->ssl, false, p, cap, &want, &why);
  if (n == -1) errno = EAGAIN;
  if (n == -2) {
    errno = EPROTO;
    n = -1;
  }
  return n;
}

// The holder looks at one upstream: the event to report (0: none), with *len
// bytes placed at `in` (cap bytes there). Caller holds up_mu: exclusively, unless
// the upstream is open and not failed (then no map changes). Sets *gone when this
// is its last event (CLOSED, FAILED): the caller removes it.
int Look(Upstream* u, uint8_t* in, size_t cap, size_t* len, bool* gone) {
  *len = 0;
  *gone = false;
  bool reoffer = u->reoffer;
  u->reoffer = false;
  if (u->failed) {
    n_failed++;
    last_fail_conn = u->cid;
    last_fail_why = u->why;
    last_fail_text = u->why_text;
    *gone = true;
    return kFailed;
  }
  if (!u->open) {
    int r = Connecting(u);
    if (r == 0) return 0;
    if (r < 0) {
      u->addr++;
      StartConnect(u);
      return u->failed ? Look(u, in, cap, len, gone) : 0;
    }
    if (u->read_timeout_ms > 0 || u->frame_timeout_ms > 0) {
      // The same timer now measures the read and frame timeouts: disarmed unless bytes sent while
      // it connected await their answer (the wait starts now).
      u->fired = false;
      u->waiting_since = 0;
      ArmTimer(u, 0);
      if (!u->out.empty()) NoteSent(u);
    } else {
      by_fd.erase(u->tfd);
      close(u->tfd);
      u->tfd = -1;
    }
    u->open = true;
    u->wake = true;  // it may have sent already, and output may be queued
    return kConnected;
  }
  Expired expired = u->fired.exchange(false) && u->tfd >= 0 ? TimerExpired(u) : kExpiredNone;
  if (!u->out.empty()) {
    int64_t before = static_cast<int64_t>(u->out.size());
    int64_t left = UpDrain(u);
    if (left >= 0) bytes_out += before - left;
    // A send error shows again on the read below (reset) or as EOF.
  }
  if (u->shut == kShutAsked && u->out.empty()) {
    // Everything queued went: the FIN follows it (a TLS upstream gets its close_notify first).
    if (u->ssl != nullptr) SSL_shutdown(u->ssl);
    shutdown(u->fd, SHUT_WR);
    u->shut = kShutDone;
  }
  size_t have = u->carry.size();
  if (have > cap) have = cap;  // in_cap never shrinks for a connection's generation; kept defensive
  std::memcpy(in, u->carry.data(), have);
  ssize_t n = 0;
  if (u->in_done) {
    // Its EOF was reported: nothing more is read. Both sides ended, or a reset (a send that
    // failed): CLOSED; else only held bytes the module asked for again.
    int err = 0;
    socklen_t elen = sizeof(err);
    getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &elen);
    if (u->shut != kShutDone && err == 0) {
      if (!reoffer || have == 0) return 0;
      u->carry.clear();
      *len = have;
      u->offered = have;
      return kData;
    }
    n = 0;
  } else if (have < cap) {
    n = UpRead(u, in + have, cap - have);
  } else {
    n = -1;
    errno = EAGAIN;  // full: the module must consume first (the caller closes the client on overflow)
  }
  if (n > 0) {
    bytes_in += n;
    u->waiting_since = 0;  // an answer came: nothing is awaited until the next send
    u->carry.clear();
    // Look again only when more may be there: a plain socket that filled less
    // than the room had nothing more (as client input is read, conn_input.cc),
    // and what arrives after this read raises a new edge (UpstreamWake). A TLS
    // session may hold decrypted bytes epoll cannot see: read it to EAGAIN.
    // A peer's end reported with the bytes raises no further edge either: read on to EOF then.
    if (u->ssl != nullptr || u->ended || static_cast<size_t>(n) == cap - have) u->wake = true;
    *len = have + static_cast<size_t>(n);
    u->offered = *len;
    return kData;
  }
  // A carry-over the module asked for again (upstream_resume) goes to it rather than being cut.
  if (expired == kExpiredFrame && reoffer && have > 0) expired = kExpiredNone;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && expired != kExpiredNone) {
    // The read timeout (nothing came for what was sent) or the frame timeout (a reply stopped
    // midway). Ended as a close is (CLOSED, with the carry-over), its why (timeout) readable in
    // that call (conn_info keys 3/4).
    (expired == kExpiredRead ? n_read_timeouts : n_frame_timeouts)++;
    n_closed++;
    last_fail_conn = u->cid;
    last_fail_why = kWhyTimeout;
    last_fail_text = (expired == kExpiredRead ? "timeout: no reply within the read timeout ("
                                              : "timeout: frame incomplete within the frame timeout (") +
                     u->named->hosts[u->addr] + ")";
    u->carry.clear();
    *len = have;
    *gone = true;
    return kClosed;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    // Nothing new: the held bytes go again only when the module asked (upstream_resume).
    if (!reoffer || have == 0) return 0;
    u->carry.clear();
    *len = have;
    u->offered = have;
    return kData;
  }
  // EOF or a reset: the last of the carry-over goes with CLOSED. For a module that half-closes,
  // an EOF while its own sending side is open is EOF: the handle stays, for sending.
  u->carry.clear();
  *len = have;
  if (n == 0 && u->half && !u->in_done && u->shut != kShutDone) {
    u->in_done = true;
    return kEof;
  }
  n_closed++;
  if (last_fail_conn == u->cid) last_fail_why = kWhyNone, last_fail_text.clear();  // not a timeout
  *gone = true;
  return kClosed;
}

// What upstreamNext's pass over a client's flagged upstreams found.
struct NextFound {
  int event = 0;  // 0: nothing to report now
  int handle = 0;
  size_t len = 0;
  bool more = false;          // another upstream is flagged: a next call may find something (else kNextLast)
  Upstream* last = nullptr;   // the one reported had its last event (CLOSED, FAILED): to be removed
};

// Looks at the client's flagged upstreams in turn until one has an event. Caller holds up_mu,
// shared when `shared`: then an upstream still connecting, or failed, whose look changes the maps
// (the next address's socket, its removal), is left flagged and false is returned, for the caller
// to pass again holding up_mu exclusively. Removing r->last is the caller's, once this returned.
bool NextPass(uint64_t id, uint8_t* in, size_t cap, bool shared, NextFound* r) {
  auto it = by_conn.find(id);
  if (it == by_conn.end()) return true;
  for (Upstream* u : it->second) {
    if (shared && (!u->open || u->failed) && u->wake.load()) return false;
    if (!u->wake.exchange(false)) continue;
    bool gone;
    r->event = Look(u, in, cap, &r->len, &gone);
    r->handle = u->handle;
    if (gone) r->last = u;  // always with an event (CLOSED or FAILED)
    if (r->event != 0) break;
  }
  if (r->event != 0)
    for (Upstream* u : it->second) r->more = r->more || (u != r->last && u->wake.load());
  return true;
}

bool ParseAddr(const std::string& host, int port, sockaddr_storage* sa, socklen_t* len) {
  std::memset(sa, 0, sizeof(*sa));
  auto* v4 = reinterpret_cast<sockaddr_in*>(sa);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(sa);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in);
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

// upstreamsConfigure(epfd, [{name, addresses: [{host, port}], tls?: {ca, servername}}], connectTimeoutMs, maxQueued[, maxOpen[, readTimeoutMs]])
// -> 0 | -EINVAL (an address that is not numeric, or no usable CA certificate in tls.ca).
Napi::Value UpstreamsConfigure(const Napi::CallbackInfo& info) {
  int64_t epfd, timeout, max_queued, max_open = INT64_MAX;
  if (!Args(info).Int(&epfd).Skip().Int(&timeout, &max_queued)) return info.Env().Undefined();
  if (info.Length() > 4 && info[4].IsNumber()) max_open = info[4].As<Napi::Number>().Int64Value();
  int64_t read_timeout = info.Length() > 5 && info[5].IsNumber() ? info[5].As<Napi::Number>().Int64Value() : 0;
  int64_t frame_timeout = info.Length() > 6 && info[6].IsNumber() ? info[6].As<Napi::Number>().Int64Value() : 0;
  if (!info[1].IsArray()) {
    Napi::TypeError::New(info.Env(), "upstreamsConfigure: the list must be an array").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Config cfg;
  cfg.connect_timeout_ms = timeout;
  cfg.max_queued = max_queued;
  cfg.read_timeout_ms = read_timeout;
  cfg.frame_timeout_ms = frame_timeout;
  cfg.max_open = max_open;
  Napi::Array list = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Object o = list.Get(i).As<Napi::Object>();
    Named n;
    n.name = o.Get("name").As<Napi::String>().Utf8Value();
    Napi::Array addrs = o.Get("addresses").As<Napi::Array>();
    for (uint32_t j = 0; j < addrs.Length(); j++) {
      Napi::Object a = addrs.Get(j).As<Napi::Object>();
      sockaddr_storage sa;
      socklen_t len;
      std::string host = a.Get("host").As<Napi::String>().Utf8Value();
      if (!ParseAddr(host, a.Get("port").As<Napi::Number>().Int32Value(), &sa, &len)) return Num(info, -EINVAL);
      n.addrs.push_back(sa);
      n.lens.push_back(len);
      n.hosts.push_back(host);
    }
    Napi::Value tls = o.Get("tls");
    if (tls.IsObject()) {
      Napi::Object t = tls.As<Napi::Object>();
      std::string err;
      SSL_CTX* ctx = TlsClientContext(t.Get("ca").As<Napi::String>().Utf8Value(), &err);
      if (!ctx) return Num(info, -EINVAL);
      n.tls.reset(ctx, SSL_CTX_free);
      if (t.Get("servername").IsString()) n.servername = t.Get("servername").As<Napi::String>().Utf8Value();
    }
    cfg.names.push_back(std::move(n));
  }
  Exclusive lock(up_mu);
  Config& slot = configs[static_cast<int>(epfd)];
  cfg.open = slot.open;  // a reconfigured server's open upstreams still count
  slot = std::move(cfg);
  return Num(info, 0);
}

// upstreamsForget(epfd) -> 0. The server is gone (its connections, and so their upstreams, closed first).
int64_t Forget(int64_t epfd) {
  Exclusive lock(up_mu);
  configs.erase(static_cast<int>(epfd));
  return 0;
}

// upstreamOpen(fd, id, epfd, mem, namePtr, nameLen) -> handle (> 0) | -1 unknown name | -2 too many | -3 unavailable.
// The caller holds the client (fd, id). The result of the connect comes later (CONNECTED or FAILED).
Napi::Value UpstreamOpen(const Napi::CallbackInfo& info) {
  int64_t fd, id, epfd;
  uint8_t* name;
  size_t name_len;
  if (!Args(info).Int(&fd, &id, &epfd).Region(&name, &name_len)) return info.Env().Undefined();
  Exclusive lock(up_mu);
  auto cit = configs.find(static_cast<int>(epfd));
  if (cit == configs.end()) return Num(info, kOpenUnknown);
  // "NAME#I" (I decimal, 0-based) is address I of NAME alone, with no failover (names have no '#').
  size_t base_len = name_len, only = SIZE_MAX;
  const void* hash = std::memchr(name, '#', name_len);
  if (hash != nullptr) {
    base_len = static_cast<size_t>(static_cast<const uint8_t*>(hash) - name);
    size_t digits = name_len - base_len - 1;
    if (digits == 0 || digits > 3) return Num(info, kOpenUnknown);
    only = 0;
    for (size_t i = base_len + 1; i < name_len; i++) {
      if (name[i] < '0' || name[i] > '9') return Num(info, kOpenUnknown);
      only = only * 10 + (name[i] - '0');
    }
  }
  const Named* named = nullptr;
  for (const Named& n : cit->second.names)
    if (n.name.size() == base_len && std::memcmp(n.name.data(), name, base_len) == 0) named = &n;
  if (named == nullptr || (only != SIZE_MAX && only >= named->addrs.size())) return Num(info, kOpenUnknown);
  auto& mine = by_conn[static_cast<uint64_t>(id)];
  if (mine.size() >= static_cast<size_t>(kMaxUpstreamsPerConn) || cit->second.open >= cit->second.max_open) {
    n_too_many++;
    return Num(info, kOpenTooMany);
  }
  auto* u = new Upstream();
  u->uid = next_uid++;
  if (Tag(u->uid) == 0) u->uid = next_uid++;  // tag 0 is for items outside any table
  u->handle = next_handle;
  next_handle = next_handle == INT32_MAX ? 1 : next_handle + 1;
  u->epfd = static_cast<int>(epfd);
  u->cfd = static_cast<int>(fd);
  u->cid = static_cast<uint64_t>(id);
  u->named = named;
  u->addr = only == SIZE_MAX ? 0 : only;
  u->addr_end = only == SIZE_MAX ? named->addrs.size() : only + 1;
  u->timeout_ms = cit->second.connect_timeout_ms;
  u->read_timeout_ms = cit->second.read_timeout_ms;
  u->frame_timeout_ms = cit->second.frame_timeout_ms;
  u->half = info.Length() > 6 && info[6].ToBoolean().Value();
  mine.push_back(u);
  cit->second.open++;
  live++;
  size_t first = u->addr;
  if (!StartConnect(u) && u->addr == first) {
    // Not a single socket: out of descriptors. No event follows.
    Remove(u);
    return Num(info, kOpenUnavailable);
  }
  return Num(info, u->handle);
}

// upstreamSend(fd, id, handle, mem, ptr, len) -> 0 | -1 no such upstream | -2 its queue is past the bound.
// Sends what the socket takes now and queues the rest (in order), also while it connects.
Napi::Value UpstreamSend(const Napi::CallbackInfo& info) {
  int64_t fd, id, handle;
  uint8_t* p;
  size_t len;
  if (!Args(info).Int(&fd, &id, &handle).Region(&p, &len)) return info.Env().Undefined();
  Shared lock(up_mu);
  Upstream* u = FindHandle(static_cast<uint64_t>(id), static_cast<int>(handle));
  if (u == nullptr || u->failed) return Num(info, kSendNoSuch);
  if (u->shut != kShutNo) return Num(info, kSendShut);
  auto cit = configs.find(u->epfd);
  int64_t max = cit == configs.end() ? 0 : cit->second.max_queued;
  if (static_cast<int64_t>(u->out.size() + len) > max) return Num(info, kSendFull);
  size_t sent = 0;
  if (u->open && u->out.empty()) {
    int64_t n = UpWrite(u, p, len);
    if (n > 0) {
      sent = static_cast<size_t>(n);
      bytes_out += n;
    }
    // An error shows at the next look (the read sees the reset or EOF): CLOSED.
    if (n < 0) u->wake = true;
  }
  if (sent < len && !u->out.Append(p + sent, len - sent)) return Num(info, kSendFull);
  if (u->open) NoteSent(u);
  return Num(info, 0);
}

// upstreamClose(fd, id, handle) -> 0 | -1 no such upstream. At once; what was queued for it is dropped.
int64_t Close(int64_t fd, int64_t id, int64_t handle) {
  (void)fd;
  Exclusive lock(up_mu);
  Upstream* u = FindHandle(static_cast<uint64_t>(id), static_cast<int>(handle));
  if (u == nullptr) return kSendNoSuch;
  Remove(u);
  return 0;
}

// upstreamShutdown(fd, id, handle) -> 0 | -1 no such upstream (or one that failed). Ends the
// sending side to it once what is queued has gone (the FIN at its next look, which the wake mark
// brings about); its events go on. Asking again is 0 and changes nothing.
int64_t Shutdown(int64_t fd, int64_t id, int64_t handle) {
  (void)fd;
  Shared lock(up_mu);  // holder-only fields and an atomic, like UpstreamSend
  Upstream* u = FindHandle(static_cast<uint64_t>(id), static_cast<int>(handle));
  if (u == nullptr || u->failed) return kSendNoSuch;
  if (u->shut == kShutNo) {
    u->shut = kShutAsked;
    u->wake = true;
  }
  return 0;
}

// upstreamResume(fd, id, handle) -> 0 | -1 no such upstream. The module is waiting no
// more: the bytes it left unconsumed of this upstream are offered again (DATA) at
// the client's next claim, or later in this one, even when nothing new arrives.
// The wake mark makes the client's re-arm (UpstreamsPending) queue it due.
int64_t Resume(int64_t fd, int64_t id, int64_t handle) {
  (void)fd;
  Shared lock(up_mu);
  Upstream* u = FindHandle(static_cast<uint64_t>(id), static_cast<int>(handle));
  if (u == nullptr) return kSendNoSuch;
  u->reoffer = true;
  u->wake = true;
  return 0;
}

// upstreamNext(fd, id, mem, inPtr, inCap, statePtr, out: Int32Array(2)) -> event (0: nothing more now),
// with UPSTREAM_LAST added when no upstream of the client was left flagged: a next call now would
// find nothing (one flagged later, by an epoll event or by the module's own calls during this
// event, marks the client due again at its re-arm, UpstreamsPending).
// The holder of the client (fd, id) takes its upstreams' next event: out[0] the
// handle, out[1] in_len (its bytes at inPtr); the state slot is loaded at statePtr.
Napi::Value UpstreamNext(const Napi::CallbackInfo& info) {
  int64_t fd, id, state_ptr;
  uint8_t *in, *base;
  size_t cap, mem_size;
  if (!Args(info).Int(&fd, &id).Region(&in, &cap, &base, &mem_size).Int(&state_ptr)) return info.Env().Undefined();
  if (info.Length() < 7 || !info[6].IsTypedArray()) {
    Napi::TypeError::New(info.Env(), "upstreamNext: argument 7 must be an Int32Array").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  if (state_ptr < 0 || static_cast<uint64_t>(state_ptr) > mem_size) return Num(info, -EINVAL);
  Napi::Int32Array out = info[6].As<Napi::Int32Array>();
  // A client that is not reading its output: its upstreams are left unread (their kernel buffers
  // fill, TCP stops the sender); the wake marks stay, and the re-arm after the client drains
  // (conn_table.cc RearmEvent) makes it due again.
  if (ConnOutputOver(static_cast<int>(fd), static_cast<uint64_t>(id))) return Num(info, 0);
  NextFound r;
  bool done;
  {
    Shared lock(up_mu);
    done = NextPass(static_cast<uint64_t>(id), in, cap, true, &r);
  }
  if (!done || r.last != nullptr) {
    // Only this holder removes its client's upstreams, so r.last is still there.
    Exclusive lock(up_mu);
    if (!done) NextPass(static_cast<uint64_t>(id), in, cap, false, &r);
    if (r.last != nullptr) Remove(r.last);
  }
  if (r.event == 0) return Num(info, 0);
  if (!ConnStateCopy(static_cast<int>(fd), static_cast<uint64_t>(id), base + state_ptr, mem_size - state_ptr, false))
    return Num(info, -EBADF);
  out[0] = r.handle;
  out[1] = static_cast<int32_t>(r.len);
  return Num(info, r.more ? r.event : r.event | kNextLast);
}

// upstreamKeep(fd, id, handle, mem, restPtr, restLen, statePtr) -> 0 | -EBADF. After a
// tcpmod_on_upstream that kept the connection: the upstream's unconsumed bytes
// (when it is still open) and the client's state slot are saved.
Napi::Value UpstreamKeep(const Napi::CallbackInfo& info) {
  int64_t fd, id, handle, state_ptr;
  uint8_t *rest, *base;
  size_t rest_len, mem_size;
  if (!Args(info).Int(&fd, &id, &handle).Region(&rest, &rest_len, &base, &mem_size).Int(&state_ptr))
    return info.Env().Undefined();
  if (state_ptr < 0 || static_cast<uint64_t>(state_ptr) > mem_size) return Num(info, -EINVAL);
  {
    Shared lock(up_mu);
    if (Upstream* u = FindHandle(static_cast<uint64_t>(id), static_cast<int>(handle))) {
      u->carry.assign(rest, rest + rest_len);
      NoteKept(u, rest_len);
      // What stays unconsumed is offered again with new bytes, as a client's carry-over is, or
      // at once when the module calls upstream_resume (UpstreamResume).
    }
  }
  bool ok = ConnStateCopy(static_cast<int>(fd), static_cast<uint64_t>(id), base + state_ptr, mem_size - state_ptr, true);
  return Num(info, ok ? 0 : -EBADF);
}

// upstreamAddr(epfd, name, index) -> "HOST:PORT" ("[V6]:PORT") of the name's address `index`, or -1
// (no such name or address). tcpmod.upstream_addr (docs/abi.md §16): what a module shards by.
Napi::Value UpstreamAddr(const Napi::CallbackInfo& info) {
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsString() || !info[2].IsNumber()) return Num(info, kOpenUnknown);
  int epfd = info[0].As<Napi::Number>().Int32Value();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  int64_t index = info[2].As<Napi::Number>().Int64Value();
  Shared lock(up_mu);
  auto cit = configs.find(epfd);
  if (cit == configs.end()) return Num(info, kOpenUnknown);
  for (const Named& n : cit->second.names) {
    if (n.name != name) continue;
    if (index < 0 || static_cast<size_t>(index) >= n.addrs.size()) break;
    const sockaddr_storage& sa = n.addrs[static_cast<size_t>(index)];
    const std::string& host = n.hosts[static_cast<size_t>(index)];
    int port = ntohs(sa.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&sa)->sin6_port
                                               : reinterpret_cast<const sockaddr_in*>(&sa)->sin_port);
    std::string text = (sa.ss_family == AF_INET6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
    return Napi::String::New(info.Env(), text);
  }
  return Num(info, kOpenUnknown);
}

// upstreamStats() -> { open, connects, refused, timeouts, failed, closed, bytesIn, bytesOut, tlsVerify, tlsHandshake, reads, tooMany, readTimeouts }.
Napi::Value UpstreamStats(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("open", static_cast<double>(live.load()));
  o.Set("connects", static_cast<double>(n_connects.load()));
  o.Set("refused", static_cast<double>(n_refused.load()));
  o.Set("timeouts", static_cast<double>(n_timeouts.load()));
  o.Set("failed", static_cast<double>(n_failed.load()));
  o.Set("closed", static_cast<double>(n_closed.load()));
  o.Set("bytesIn", static_cast<double>(bytes_in.load()));
  o.Set("bytesOut", static_cast<double>(bytes_out.load()));
  o.Set("tlsVerify", static_cast<double>(n_tls_verify.load()));
  o.Set("tlsHandshake", static_cast<double>(n_tls.load()));
  o.Set("reads", static_cast<double>(n_reads.load()));
  o.Set("tooMany", static_cast<double>(n_too_many.load()));
  o.Set("readTimeouts", static_cast<double>(n_read_timeouts.load()));
  o.Set("frameTimeouts", static_cast<double>(n_frame_timeouts.load()));
  return o;
}

// upstreamFailure(id, key) -> key 3: why the last FAILED this thread delivered to connection `id`
// failed (1 refused, 2 timeout, 3 tls_verify, 4 tls_handshake; 0 none); key 4: that reason as text
// ('' none). conn_info keys 3 and 4 (docs/abi.md §16), meaningful in the FAILED call.
Napi::Value UpstreamFailure(const Napi::CallbackInfo& info) {
  int64_t id, key;
  if (!Args(info).Int(&id, &key)) return info.Env().Undefined();
  bool mine = last_fail_conn == static_cast<uint64_t>(id);
  if (key == 4) return Napi::String::New(info.Env(), mine ? last_fail_text : std::string());
  return Num(info, mine ? last_fail_why : kWhyNone);
}

}  // namespace

void UpstreamWake(int epfd, int fd, uint64_t tag, uint32_t events, bool poke) {
  (void)epfd;
  int cfd;
  uint64_t cid;
  {
    Shared lock(up_mu);
    auto it = by_fd.find(fd);
    if (it == by_fd.end() || Tag(it->second->uid) != tag) return;  // closed since (its fd number may be reused)
    Upstream* u = it->second;
    if (fd == u->fd && (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) u->ended = true;
    if (fd == u->tfd && u->open) u->fired = true;  // the read timer (the connect one is read by the look)
    u->wake = true;
    cfd = u->cfd;
    cid = u->cid;
  }
  MarkConnDue(cfd, cid, kDueUpstream, poke);
}

bool UpstreamsPending(uint64_t conn_id) {
  if (live.load() == 0) return false;
  Shared lock(up_mu);
  auto it = by_conn.find(conn_id);
  if (it == by_conn.end()) return false;
  for (Upstream* u : it->second)
    if (u->wake.load()) return true;
  return false;
}

bool UpstreamsAny(uint64_t conn_id) {
  if (live.load() == 0) return false;
  Shared lock(up_mu);
  return by_conn.count(conn_id) != 0;
}

void UpstreamsDrop(uint64_t conn_id) {
  if (live.load() == 0) return;
  Exclusive lock(up_mu);
  auto it = by_conn.find(conn_id);
  if (it == by_conn.end()) return;
  std::vector<Upstream*> ups = it->second;
  for (Upstream* u : ups) Remove(u);
}

void InitUpstreams(Napi::Env env, Napi::Object exports) {
  exports.Set("upstreamsConfigure", Napi::Function::New(env, UpstreamsConfigure, "upstreamsConfigure"));
  exports.Set("upstreamsForget", Napi::Function::New(env, Ints<Forget>, "upstreamsForget"));
  exports.Set("upstreamOpen", Napi::Function::New(env, UpstreamOpen, "upstreamOpen"));
  exports.Set("upstreamSend", Napi::Function::New(env, UpstreamSend, "upstreamSend"));
  exports.Set("upstreamClose", Napi::Function::New(env, Ints<Close>, "upstreamClose"));
  exports.Set("upstreamResume", Napi::Function::New(env, Ints<Resume>, "upstreamResume"));
  exports.Set("upstreamShutdown", Napi::Function::New(env, Ints<Shutdown>, "upstreamShutdown"));
  exports.Set("upstreamFailure", Napi::Function::New(env, UpstreamFailure, "upstreamFailure"));
  exports.Set("upstreamNext", Napi::Function::New(env, UpstreamNext, "upstreamNext"));
  exports.Set("upstreamKeep", Napi::Function::New(env, UpstreamKeep, "upstreamKeep"));
  exports.Set("upstreamAddr", Napi::Function::New(env, UpstreamAddr, "upstreamAddr"));
  exports.Set("upstreamStats", Napi::Function::New(env, UpstreamStats, "upstreamStats"));
  exports.Set("DUE_UPSTREAM", Napi::Number::New(env, kDueUpstream));
  exports.Set("KIND_UPSTREAM", Napi::Number::New(env, kKindUpstream));
  exports.Set("UPSTREAM_LAST", Napi::Number::New(env, kNextLast));
}

}  // namespace tcpmod
