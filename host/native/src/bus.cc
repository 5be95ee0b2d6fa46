#include "bus.h"
#include "mono_clock.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <random>
#include <set>
#include <vector>

#include "kv_core.h"
#include "kv_redis.h"
#include "tls_client.h"

namespace tcpmod {
namespace {

constexpr int64_t kBackoffMinMs = 50;
constexpr int64_t kBackoffMaxMs = 2000;
constexpr size_t kReadChunk = 65536;
// SUBSCRIBE and PSUBSCRIBE take this many names at most per command.
constexpr size_t kNamesPerCommand = 512;


void AppendBulk(std::string* w, const char* p, size_t n) {
  *w += '$';
  *w += std::to_string(n);
  *w += "\r\n";
  w->append(p, n);
  *w += "\r\n";
}

void AppendCommand(std::string* w, const std::vector<std::string>& args) {
  *w += '*';
  *w += std::to_string(args.size());
  *w += "\r\n";
  for (const auto& a : args) AppendBulk(w, a.data(), a.size());
}

// One element of a reply (an array's are never nested in what Redis sends here).
struct Elem {
  char type = 0;
  std::string str;
  int64_t integer = 0;
};

// One reply at p[0, n): a simple string, error, integer or bulk (one Elem) or an
// array of those. Bytes taken, 0 more needed, -1 not a reply this client takes.
int64_t ParseMessage(const uint8_t* p, size_t n, char* top, std::vector<Elem>* out) {
  out->clear();
  if (n == 0) return 0;
  size_t pos = 0;
  int64_t count = 1;
  *top = static_cast<char>(p[0]);
  if (p[0] == '*') {
    const uint8_t* cr = static_cast<const uint8_t*>(std::memchr(p, '\r', std::min(n, kMaxLine)));
    if (cr == nullptr) return n >= kMaxLine ? -1 : 0;
    size_t end = static_cast<size_t>(cr - p);
    if (end + 1 >= n) return 0;
    if (p[end + 1] != '\n' || !kv::ParseDecimal(p + 1, end - 1, &count) || count < 0 || count > 64) return -1;
    pos = end + 2;
  }
  for (int64_t i = 0; i < count; i++) {
    RedisReply r;
    int64_t used = ParseReply(p + pos, n - pos, &r);
    if (used <= 0) return used;
    Elem e;
    e.type = r.type;
    e.integer = r.integer;
    if (r.type != ':' && !r.nil) e.str.assign(reinterpret_cast<const char*>(p + pos + r.off), r.len);
    out->push_back(std::move(e));
    pos += static_cast<size_t>(used);
  }
  return static_cast<int64_t>(pos);
}

}  // namespace

struct Bus::Link {
  int fd = -1;
  SSL* ssl = nullptr;  // rediss://
  std::string rbuf, wbuf;
  size_t rpos = 0, wpos = 0;
  int64_t backoff = 0, retry_at = 0;
  size_t owed = 0;          // replies this client waits for (publisher: PUBLISH; subscriber: PING)
  int64_t owed_since = 0;   // when the oldest of them (or the last reply) was
  int64_t last_rx = 0;
  bool up() const { return fd >= 0; }
  void Close() {
    TlsClientFree(ssl);  // no close_notify: the socket goes at once
    ssl = nullptr;
    if (fd >= 0) close(fd);
    fd = -1;
    rbuf.clear();
    wbuf.clear();
    rpos = wpos = 0;
    owed = 0;
  }
};

Bus::Bus(BusTarget target, Deliver deliver)
    : target_(std::move(target)), deliver_(std::move(deliver)), origin_((static_cast<uint64_t>(std::random_device()()) << 32) ^ std::random_device()()) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  thread_ = std::thread([this] { Run(); });
}

Bus::~Bus() {
  stop_ = true;
  Wake();
  if (thread_.joinable()) thread_.join();
  if (wake_fd_ >= 0) close(wake_fd_);
}

void Bus::Wake() {
  uint64_t one = 1;
  if (wake_fd_ >= 0 && write(wake_fd_, &one, sizeof(one)) < 0) {
    // EAGAIN: the counter is full, so the thread wakes anyway.
  }
}

void Bus::Publish(const std::string& topic, const uint8_t* msg, size_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  // The first use starts the connections: that publish waits for them (dropped if they fail), as
  // one made while the publisher connection is up would.
  const bool first = !used_;
  used_ = true;
  if ((!pub_up_ && !first) || queued_.size() + topic.size() + len + 64 > kMaxQueued) {
    stats_.dropped++;
    return;
  }
  bool was_empty = queued_.empty();
  queued_ += "*3\r\n$7\r\nPUBLISH\r\n";
  AppendBulk(&queued_, topic.data(), topic.size());
  queued_ += '$';
  queued_ += std::to_string(len + kBusTagSize);
  queued_ += "\r\n";
  BusTag(origin_, &queued_);
  queued_.append(reinterpret_cast<const char*>(msg), len);
  queued_ += "\r\n";
  queued_count_++;
  if (was_empty || first) Wake();
}

void Bus::Want(bool pattern, const std::string& name, int delta) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& m = pattern ? want_patterns_ : want_channels_;
  int& n = m[name];
  n += delta;
  if (!used_) {
    used_ = true;
    Wake();
  }
  if (n <= 0) m.erase(name);
  // Only a change of the set of names needs the thread.
  if ((delta > 0 && n == delta) || n <= 0) {
    want_changed_ = true;
    Wake();
  }
}

BusStats Bus::Stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

namespace {

// A blocking connect within `timeout_ms`, then non-blocking with TCP_NODELAY: the fd, or -1 (*why).
int Connect(const BusTarget& t, std::string* why) {
  int fd = socket(t.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *why = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  int rc = connect(fd, reinterpret_cast<const sockaddr*>(&t.addr), t.addr_len);
  if (rc < 0 && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, static_cast<int>(t.connect_timeout_ms)) != 1) {
      *why = "connect timed out";
      close(fd);
      return -1;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    rc = err ? -1 : 0;
    errno = err;
  }
  if (rc < 0) {
    *why = std::string("connect: ") + std::strerror(errno);
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

// One transfer on a connection, plain or TLS: bytes moved (> 0), 0 the server
// closed, -1 it would block (*want: what to poll for), -2 failed (*why).
ssize_t Io(int fd, SSL* ssl, bool out, char* p, size_t n, short* want, std::string* why) {
  if (ssl) return TlsClientIo(ssl, out, p, n, want, why);
  ssize_t r = out ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
  if (r >= 0) return r;
  *want = out ? POLLOUT : POLLIN;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return -1;
  *why = std::string(out ? "send: " : "recv: ") + std::strerror(errno);
  return -2;
}

// The TLS handshake on a connected socket within the timeout: the session, or null (*why).
SSL* Handshake(int fd, const BusTarget& t, std::string* why) {
  SSL* ssl = TlsClientSession(t.tls.get(), fd, t.servername, why);
  if (!ssl) {
    *why = "TLS: " + *why;
    return nullptr;
  }
  int64_t deadline = MonoMs() + t.connect_timeout_ms;
  for (;;) {
    short want = 0;
    TlsClientFailure kind;
    int r = TlsClientHandshake(ssl, &want, why, &kind);
    if (r == 1) return ssl;
    if (r < 0) *why = "TLS handshake: " + *why;
    pollfd p{fd, want, 0};
    if (r == 0 && (MonoMs() >= deadline || poll(&p, 1, static_cast<int>(std::max<int64_t>(1, deadline - MonoMs()))) == 0)) {
      *why = "TLS handshake timed out";
      r = -1;
    }
    if (r < 0) {
      TlsClientFree(ssl);
      return nullptr;
    }
  }
}

// AUTH on a fresh connection, waiting for its reply within the timeout: true when accepted.
bool Auth(int fd, SSL* ssl, const BusTarget& t, std::string* why) {
  std::string w;
  std::vector<std::string> args{"AUTH"};
  if (!t.username.empty()) args.push_back(t.username);
  args.push_back(t.password);
  AppendCommand(&w, args);
  int64_t deadline = MonoMs() + t.connect_timeout_ms;
  size_t done = 0;
  std::string r;
  short want = POLLOUT;
  while (MonoMs() < deadline) {
    pollfd p{fd, want, 0};
    if (poll(&p, 1, static_cast<int>(std::max<int64_t>(1, deadline - MonoMs()))) != 1) continue;
    if (done < w.size()) {
      ssize_t n = Io(fd, ssl, true, &w[done], w.size() - done, &want, why);
      if (n == 0 || n == -2) break;
      if (n > 0) done += static_cast<size_t>(n);
      if (done == w.size()) want = POLLIN;
      continue;
    }
    char buf[512];
    ssize_t n = Io(fd, ssl, false, buf, sizeof(buf), &want, why);
    if (n == 0 || n == -2) break;
    if (n > 0) r.append(buf, static_cast<size_t>(n));
    if (n > 0) want = POLLIN;
    size_t eol = r.find("\r\n");
    if (eol == std::string::npos) continue;
    if (r[0] == '+') return true;
    *why = "AUTH refused: " + r.substr(1, eol - 1);
    return false;
  }
  *why = "AUTH: no reply";
  return false;
}

}  // namespace

void Bus::Run() {
  Link pub, sub;
  std::set<std::string> have_channels, have_patterns;  // what the subscriber connection holds
  auto fail = [&](Link& l, const std::string& why) {
    bool is_pub = &l == &pub;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.failures++;
      stats_.last_error = why + " (" + target_.where + ")";
      if (is_pub) {
        stats_.unconfirmed += static_cast<double>(l.owed);
        stats_.dropped += static_cast<double>(queued_count_);
        queued_.clear();
        queued_count_ = 0;
        pub_up_ = false;
      } else {
        want_changed_ = true;  // everything is subscribed again on the next connection
      }
      stats_.connected = false;
    }
    if (!is_pub) have_channels.clear(), have_patterns.clear();
    l.Close();
    l.backoff = l.backoff ? std::min(l.backoff * 2, kBackoffMaxMs) : kBackoffMinMs;
    l.retry_at = MonoMs() + l.backoff;
  };
  auto open = [&](Link& l) {
    std::string why;
    int fd = Connect(target_, &why);
    SSL* ssl = nullptr;
    if (fd >= 0 && target_.tls && !(ssl = Handshake(fd, target_, &why))) {
      close(fd);
      fd = -1;
    }
    if (fd >= 0 && !target_.password.empty() && !Auth(fd, ssl, target_, &why)) {
      TlsClientFree(ssl);
      close(fd);
      fd = -1;
    }
    if (fd < 0) {
      fail(l, why);
      return;
    }
    l.fd = fd;
    l.ssl = ssl;
    l.backoff = 0;
    l.last_rx = MonoMs();
    std::lock_guard<std::mutex> lock(mu_);
    if (&l == &pub) pub_up_ = true;
    else want_changed_ = true;
    stats_.connected = pub.up() && sub.up();
  };
  // Sends what the subscriber connection lacks and drops what it no longer needs.
  auto sync = [&]() {
    std::map<std::string, int> ch, pat;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!want_changed_) return;
      want_changed_ = false;
      ch = want_channels_;
      pat = want_patterns_;
      stats_.channels = ch.size();
      stats_.patterns = pat.size();
    }
    auto diff = [&](const std::map<std::string, int>& want, std::set<std::string>& have, const char* add, const char* drop) {
      std::vector<std::string> plus{add}, minus{drop};
      for (const auto& w : want)
        if (!have.count(w.first)) plus.push_back(w.first);
      for (const auto& h : have)
        if (!want.count(h)) minus.push_back(h);
      for (auto* list : {&plus, &minus}) {
        for (size_t i = 1; i < list->size(); i += kNamesPerCommand) {
          std::vector<std::string> cmd{(*list)[0]};
          cmd.insert(cmd.end(), list->begin() + i, list->begin() + std::min(list->size(), i + kNamesPerCommand));
          AppendCommand(&sub.wbuf, cmd);
        }
      }
      have.clear();
      for (const auto& w : want) have.insert(w.first);
    };
    diff(ch, have_channels, "SUBSCRIBE", "UNSUBSCRIBE");
    diff(pat, have_patterns, "PSUBSCRIBE", "PUNSUBSCRIBE");
  };
  auto on_push = [&](char top, std::vector<Elem>& e) {
    if (top == '+') return;  // PONG before any subscription
    if (top != '*' || e.empty()) return;
    const std::string& kind = e[0].str;
    std::string* pattern = nullptr;
    size_t at;
    if (kind == "message" && e.size() == 3) at = 1;
    else if (kind == "pmessage" && e.size() == 4) at = 2, pattern = &e[1].str;
    else return;  // subscribe confirmations, pong
    std::string& body = e[at + 1].str;
    uint64_t origin;
    bool tagged = BusUntag(body, &origin);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (tagged && origin == origin_) {
        stats_.echoes++;
        return;
      }
      stats_.received++;
    }
    if (tagged) body.erase(0, kBusTagSize);
    deliver_(e[at].str, pattern, body);
  };
  std::vector<Elem> elems;
  while (!stop_) {
    int64_t now = MonoMs();
    bool in_use;
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_use = used_;
    }
    for (Link* l : {&pub, &sub})
      if (in_use && !l->up() && now >= l->retry_at) open(*l);
    if (sub.up()) sync();
    if (pub.up() && pub.wbuf.size() - pub.wpos < kMaxQueued) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!queued_.empty()) {
        if (pub.owed == 0) pub.owed_since = MonoMs();
        if (pub.wpos == pub.wbuf.size()) pub.wbuf.clear(), pub.wpos = 0;
        pub.wbuf += queued_;
        pub.owed += queued_count_;
        queued_.clear();
        queued_count_ = 0;
      }
    }
    now = MonoMs();
    if (sub.up() && sub.owed == 0 && now - sub.last_rx >= kPingIdleMs) {
      AppendCommand(&sub.wbuf, {"PING"});
      sub.owed = 1;
      sub.owed_since = now;
    }
    // The next thing to do without I/O: a retry, a ping, a reply deadline.
    int64_t next = now + kPingIdleMs;
    for (Link* l : {&pub, &sub}) {
      if (!l->up()) next = in_use ? std::min(next, l->retry_at) : next;
      else if (l->owed) next = std::min(next, l->owed_since + kReplyTimeoutMs);
    }
    if (sub.up() && !sub.owed) next = std::min(next, sub.last_rx + kPingIdleMs);
    pollfd p[3] = {{wake_fd_, POLLIN, 0}, {pub.fd, POLLIN, 0}, {sub.fd, POLLIN, 0}};
    if (pub.wpos < pub.wbuf.size()) p[1].events |= POLLOUT;
    if (sub.wpos < sub.wbuf.size()) p[2].events |= POLLOUT;
    int rc = poll(p, 3, static_cast<int>(std::max<int64_t>(0, next - now)));
    if (rc < 0 && errno != EINTR) break;
    if (p[0].revents & POLLIN) {
      uint64_t v;
      if (read(wake_fd_, &v, sizeof(v)) < 0) {
        // EAGAIN: another read took it
      }
    }
    Link* links[2] = {&pub, &sub};
    for (int i = 0; i < 2; i++) {
      Link& l = *links[i];
      short rev = p[i + 1].revents;
      if (!l.up() || !rev) continue;
      short want = 0;
      std::string why;
      // Over TLS a read may need the socket writable, or a write readable (rare): either event retries both.
      if ((rev & POLLOUT) || (l.ssl && l.wpos < l.wbuf.size())) {
        ssize_t n = Io(l.fd, l.ssl, true, &l.wbuf[l.wpos], l.wbuf.size() - l.wpos, &want, &why);
        if (n == 0 || n == -2) {
          fail(l, n == 0 ? "the server closed the connection" : why);
          continue;
        }
        if (n > 0) l.wpos += static_cast<size_t>(n);
        if (l.wpos == l.wbuf.size()) l.wbuf.clear(), l.wpos = 0;
      }
      if (rev & (POLLIN | POLLHUP | POLLERR)) {
        if (l.rpos > 0) l.rbuf.erase(0, l.rpos), l.rpos = 0;
        ssize_t n;
        // Over TLS, read until OpenSSL holds nothing more: poll() cannot see its buffered bytes.
        do {
          size_t have = l.rbuf.size();
          l.rbuf.resize(have + kReadChunk);
          n = Io(l.fd, l.ssl, false, &l.rbuf[have], kReadChunk, &want, &why);
          l.rbuf.resize(have + (n > 0 ? static_cast<size_t>(n) : 0));
        } while (n > 0 && l.ssl && SSL_pending(l.ssl) > 0);
        if (n == 0 || n == -2) {
          fail(l, n == 0 ? "the server closed the connection" : why);
          continue;
        }
        if (n < 0 && l.rbuf.size() == l.rpos) continue;  // nothing new (over TLS: a record without data)
        l.last_rx = MonoMs();
        for (;;) {
          char top;
          int64_t used = ParseMessage(reinterpret_cast<const uint8_t*>(l.rbuf.data()) + l.rpos, l.rbuf.size() - l.rpos, &top, &elems);
          if (used < 0) {
            fail(l, "the server sent something that is not a RESP2 reply");
            break;
          }
          if (used == 0) break;
          l.rpos += static_cast<size_t>(used);
          if (&l == &pub) {
            // A PUBLISH's reply: an integer, or an error (then it was not published).
            std::lock_guard<std::mutex> lock(mu_);
            if (top == ':') stats_.published++;
            else stats_.dropped++;
            if (l.owed) l.owed--;
            l.owed_since = l.last_rx;
          } else {
            bool pong = (top == '+' && !elems.empty() && elems[0].str == "PONG") ||
                        (top == '*' && !elems.empty() && elems[0].str == "pong");
            if (pong && l.owed) l.owed--;
            on_push(top, elems);
          }
        }
      }
    }
    now = MonoMs();
    for (Link* l : {&pub, &sub})
      if (l->up() && l->owed && now - l->owed_since >= kReplyTimeoutMs) fail(*l, "no reply within the timeout");
  }
  pub.Close();
  sub.Close();
}

}  // namespace tcpmod
