// The native TLS engine (see tls.h for the contracts).
//
// OpenSSL: the one inside the node binary. Its headers come with Node's headers
// (/usr/include/node/openssl, first on node-gyp's include path) and its symbols
// are exported by the executable, so the addon's undefined OpenSSL references bind
// to Node's copy at dlopen time and nothing is linked. Node initialises OpenSSL
// before any addon loads; our own init is only the socket BIO method.
//
// The error queue: OpenSSL keeps one per thread, and Node's own crypto and tls
// code uses the same queue on the same threads. Every entry point that calls
// OpenSSL therefore clears the queue before each operation (so SSL_get_error sees
// only our errors) and again on return (ErrScope), so nothing we leave can be
// mistaken by Node for its own failure.
//
// SIGPIPE: the sessions talk to the socket through our own BIO method, which
// sends with MSG_NOSIGNAL, so no write can raise SIGPIPE whatever the process's
// signal disposition (Node ignores SIGPIPE, but an embedder or a handler
// installed with process.on('SIGPIPE') could change that). It also records the
// socket's errno at the failing call, which SSL_ERROR_SYSCALL alone does not
// reliably preserve.
#include "tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/opensslv.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <new>
#include <poll.h>
#include <sys/socket.h>
#include <unordered_map>
#include <vector>

#include "args.h"
#include "sender.h"

static_assert(OPENSSL_VERSION_MAJOR == 3, "built against OpenSSL 3 headers (Node 20 bundles 3.0.x)");

namespace tcpmod {
namespace {

// Server-side session cache entries (TLS 1.2 session ids; TLS 1.3 uses stateless
// tickets and does not fill it). Each entry is a few KiB at most.
constexpr long kSessionCacheSize = 10000;

// ---------------------------------------------------------------------------
// Process-wide setup: idempotent, whichever worker thread loads the addon first.

std::once_flag init_once;
BIO_METHOD* socket_method = nullptr;  // never freed: it lives as long as the process
std::string init_error;               // set once under init_once; "" when OpenSSL is usable

// Empties the calling thread's OpenSSL error queue. ERR_clear_error resets all
// of the queue's slots even when it is empty, which made it OpenSSL's largest
// user-space item per request in the HTTPS profile (six calls per request);
// looking first costs one read of the queue's ends.
inline void ClearErrors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

// Clears the calling thread's OpenSSL error queue on entry and on exit.
struct ErrScope {
  ErrScope() { ClearErrors(); }
  ~ErrScope() { ClearErrors(); }
};

// The socket end of a session: what the BIO method works on.
struct SockState {
  int fd = -1;
  int err = 0;       // errno of the first failed recv/send (not EAGAIN), 0 if none
  bool eof = false;  // recv returned 0: the peer closed its side
  // Within one TlsRead or TlsHandshake call: a recv returned less than it
  // asked for (or nothing), so the socket held no more at that moment. Later
  // reads of the same call report "would block" without a syscall: whatever
  // arrives after that is announced by the re-arm (EPOLL_CTL_MOD re-checks
  // readiness), so asking the kernel again could only find it empty.
  bool dry = false;
  uint64_t recvs = 0;        // recv calls made (tests and profiles)
  uint64_t empty_recvs = 0;  // of them, those that found nothing (EAGAIN)
};

int BioWrite(BIO* b, const char* data, int len) {
  auto* ss = static_cast<SockState*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  ssize_t n;
  do n = send(ss->fd, data, static_cast<size_t>(len), MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
  if (n >= 0) return static_cast<int>(n);
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    BIO_set_retry_write(b);
  } else if (ss->err == 0) {
    ss->err = errno;
  }
  return -1;
}

int BioRead(BIO* b, char* out, int len) {
  auto* ss = static_cast<SockState*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  if (ss->dry) {
    BIO_set_retry_read(b);
    return -1;
  }
  ssize_t n;
  ss->recvs++;
  do n = recv(ss->fd, out, static_cast<size_t>(len), 0); while (n < 0 && errno == EINTR);
  if (n > 0) {
    // OpenSSL reads ahead (SSL_CTX_set_read_ahead): it asks for all the room
    // its buffer has, so a short count means the socket is empty for now.
    if (n < len) ss->dry = true;
    return static_cast<int>(n);
  }
  if (n == 0) {
    ss->eof = true;
    return 0;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    ss->empty_recvs++;
    ss->dry = true;
    BIO_set_retry_read(b);
  } else if (ss->err == 0) {
    ss->err = errno;
  }
  return -1;
}

long BioCtrl(BIO* b, int cmd, long /*num*/, void* ptr) {
  auto* ss = static_cast<SockState*>(BIO_get_data(b));
  switch (cmd) {
    case BIO_CTRL_FLUSH:  // send() keeps no user-space buffer
      return 1;
    case BIO_CTRL_EOF:  // OpenSSL asks this to tell an EOF from a failed read
      return ss != nullptr && ss->eof ? 1 : 0;
    case BIO_C_GET_FD:  // lets SSL_get_fd work
      if (ss == nullptr) return -1;
      if (ptr != nullptr) *static_cast<int*>(ptr) = ss->fd;
      return ss->fd;
    default:  // no kTLS, no pending bytes, nothing else to configure
      return 0;
  }
}

void GlobalInit() {
  ErrScope errs;
  if (OPENSSL_version_major() != 3) {
    init_error = std::string("tls: the running OpenSSL is ") + OpenSSL_version(OPENSSL_VERSION) +
                 ", built against " OPENSSL_VERSION_TEXT;
    return;
  }
  // Node has done this already; the call is cheap and idempotent.
  if (OPENSSL_init_ssl(0, nullptr) != 1) {
    init_error = "tls: OpenSSL initialisation failed";
    return;
  }
  BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "tcpmod socket");
  if (m == nullptr || !BIO_meth_set_write(m, BioWrite) || !BIO_meth_set_read(m, BioRead) ||
      !BIO_meth_set_ctrl(m, BioCtrl)) {
    BIO_meth_free(m);
    init_error = "tls: cannot create the socket BIO method";
    return;
  }
  socket_method = m;
}

double MonotonicMicros() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) / 1e3;
}

// ---------------------------------------------------------------------------
// Contexts: a registry of id -> shared context, shared by all threads.

struct TlsContext {
  SSL_CTX* ctx = nullptr;
  std::string alpn;  // the server's protocols in wire format (length-prefixed), preference order
  ~TlsContext() { SSL_CTX_free(ctx); }
};

std::mutex ctx_mu;
std::unordered_map<int, std::shared_ptr<const TlsContext>> contexts;  // under ctx_mu
int next_ctx_id = 1;                                                  // under ctx_mu

std::shared_ptr<const TlsContext> FindContext(int id) {
  std::lock_guard<std::mutex> lock(ctx_mu);
  auto it = contexts.find(id);
  return it == contexts.end() ? nullptr : it->second;
}

// ALPN selection in the server's preference order. A client offering none of our
// protocols proceeds without ALPN (NOACK) rather than failing the handshake.
int AlpnSelect(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void* arg) {
  const std::string& ours = static_cast<const TlsContext*>(arg)->alpn;
  for (size_t i = 0; i < ours.size(); i += 1 + static_cast<unsigned char>(ours[i])) {
    const size_t n = static_cast<unsigned char>(ours[i]);
    for (unsigned int j = 0; j < inlen; j += 1u + in[j]) {
      if (j + 1u + in[j] > inlen) break;  // malformed list: ignore the rest
      if (in[j] == n && std::memcmp(in + j + 1, ours.data() + i + 1, n) == 0) {
        *out = in + j + 1;  // points into the client's list, which outlives the callback
        *outlen = in[j];
        return SSL_TLSEXT_ERR_OK;
      }
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// Never prompts for a pass phrase (OpenSSL's default callback reads the terminal).
int NoPassword(char*, int, int, void*) { return -1; }

// Owns parsed certificates.
struct CertList {
  std::vector<X509*> certs;
  CertList() = default;
  CertList(const CertList&) = delete;
  CertList& operator=(const CertList&) = delete;
  ~CertList() {
    for (X509* x : certs) X509_free(x);
  }
};

// Parses every PEM certificate of pem, in order (PEM blocks of other types are
// skipped). Returns "" or a one-line error naming `what`.
std::string ReadCerts(const std::string& pem, const char* what, CertList* out) {
  if (pem.size() > INT_MAX) return std::string(what) + ": too large";
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return std::string(what) + ": out of memory";
  ERR_clear_error();
  for (;;) {
    X509* x = PEM_read_bio_X509(bio, nullptr, NoPassword, nullptr);
    if (x == nullptr) break;
    out->certs.push_back(x);
  }
  BIO_free(bio);
  unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  // Running out of input shows as "no start line"; anything else is a broken block.
  bool clean_end = e == 0 || (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
  if (!clean_end)
    return std::string(what) + ": cannot parse PEM certificate " + std::to_string(out->certs.size() + 1);
  if (out->certs.empty()) return std::string(what) + ": no PEM certificate found";
  return "";
}

std::string ReadKey(const std::string& pem, EVP_PKEY** out) {
  if (pem.size() > INT_MAX) return "key: too large";
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return "key: out of memory";
  ERR_clear_error();
  *out = PEM_read_bio_PrivateKey(bio, nullptr, NoPassword, nullptr);
  BIO_free(bio);
  ERR_clear_error();
  if (*out != nullptr) return "";
  if (pem.find("-----BEGIN") == std::string::npos) return "key: no PEM private key found";
  if (pem.find("ENCRYPTED") != std::string::npos) return "key: encrypted private keys are not supported";
  return "key: cannot parse PEM private key";
}

// The reason text of an OpenSSL error code, for messages and logs.
std::string ReasonText(unsigned long e) {
  const char* r = ERR_reason_error_string(e);
  if (r != nullptr) return r;
  char buf[128];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

// The reason of the first error on the queue, as ": reason", or "".
std::string QueueReason() {
  unsigned long e = ERR_peek_error();
  return e == 0 ? std::string() : ": " + ReasonText(e);
}

enum ClientAuth { kAuthNone, kAuthRequest, kAuthRequire };

struct ContextOptions {
  std::string cert, key, ca;
  bool has_ca = false;
  ClientAuth client_auth = kAuthNone;
  int min_version = TLS1_2_VERSION;
  std::vector<std::string> alpn;
};

// Builds an SSL_CTX from options. Returns "" with *out set, or a one-line error.
std::string BuildContext(const ContextOptions& o, int id, std::shared_ptr<TlsContext>* out) {
  ErrScope errs;
  std::string alpn_wire;
  for (const std::string& p : o.alpn) {
    if (p.empty() || p.size() > 255) return "alpn: protocol names must be 1 to 255 bytes long";
    alpn_wire += static_cast<char>(p.size());
    alpn_wire += p;
  }
  if (o.client_auth != kAuthNone && !o.has_ca) return "ca: required when clientAuth is 'request' or 'require'";

  CertList chain;
  std::string err = ReadCerts(o.cert, "certificate", &chain);
  if (!err.empty()) return err;
  EVP_PKEY* key = nullptr;
  err = ReadKey(o.key, &key);
  if (!err.empty()) return err;
  std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> key_owner(key, EVP_PKEY_free);
  if (X509_check_private_key(chain.certs[0], key) != 1) return "key does not match the certificate";
  CertList ca;
  if (o.has_ca) {
    err = ReadCerts(o.ca, "ca", &ca);
    if (!err.empty()) return err;
  }

  auto c = std::make_shared<TlsContext>();
  c->alpn = alpn_wire;
  c->ctx = SSL_CTX_new(TLS_server_method());
  if (c->ctx == nullptr) return "tls: cannot create an SSL_CTX" + QueueReason();
  SSL_CTX* ctx = c->ctx;
  SSL_CTX_set_min_proto_version(ctx, o.min_version);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
  // Partial writes let TlsWriteSome count progress record by record; releasing
  // idle buffers keeps many quiet connections cheap; read-ahead fetches several
  // records per recv (what TlsHasPending exists for).
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_sess_set_cache_size(ctx, kSessionCacheSize);
  // Required for resumption once client certificates are verified; unique per
  // context so a session never resumes under different settings.
  std::string sid = "tcpmod:" + std::to_string(id);
  SSL_CTX_set_session_id_context(ctx, reinterpret_cast<const unsigned char*>(sid.data()),
                                 static_cast<unsigned int>(sid.size()));

  STACK_OF(X509)* extra = sk_X509_new_null();
  if (extra == nullptr) return "tls: out of memory";
  for (size_t i = 1; i < chain.certs.size(); i++) sk_X509_push(extra, chain.certs[i]);
  // Takes its own references to the leaf, the key and the chain.
  int ok = SSL_CTX_use_cert_and_key(ctx, chain.certs[0], key, extra, 1);
  sk_X509_free(extra);
  if (ok != 1) return "certificate: rejected" + QueueReason();

  if (o.has_ca) {
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_NAME)* names = sk_X509_NAME_new_null();
    if (names == nullptr) return "tls: out of memory";
    for (X509* x : ca.certs) {
      if (X509_STORE_add_cert(store, x) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        return "ca: cannot add a certificate" + QueueReason();
      }
      X509_NAME* n = X509_NAME_dup(X509_get_subject_name(x));
      if (n == nullptr || sk_X509_NAME_push(names, n) == 0) {
        X509_NAME_free(n);
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        return "tls: out of memory";
      }
    }
    // Sent in CertificateRequest so that clients pick a certificate we can verify; takes ownership.
    SSL_CTX_set_client_CA_list(ctx, names);
  }
  int verify = SSL_VERIFY_NONE;
  if (o.client_auth == kAuthRequest) verify = SSL_VERIFY_PEER;
  if (o.client_auth == kAuthRequire) verify = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(ctx, verify, nullptr);
  // The callback's argument is the TlsContext, which every session keeps alive.
  if (!c->alpn.empty()) SSL_CTX_set_alpn_select_cb(ctx, AlpnSelect, c.get());
  *out = std::move(c);
  return "";
}

// ---------------------------------------------------------------------------
// Failure classification.

const char* LabelOf(unsigned long e) {
  if (ERR_GET_LIB(e) != ERR_LIB_SSL) return nullptr;
  switch (ERR_GET_REASON(e)) {
    case SSL_R_WRONG_VERSION_NUMBER:  // the record header is not TLS's (e.g. an SSH banner)
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
    case SSL_R_BAD_PACKET_LENGTH:
    case SSL_R_UNEXPECTED_MESSAGE:
    case SSL_R_UNEXPECTED_RECORD:
    case SSL_R_BAD_RECORD_TYPE:
    case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
    case SSL_R_LENGTH_MISMATCH:
    case SSL_R_LENGTH_TOO_SHORT:
    case SSL_R_ENCRYPTED_LENGTH_TOO_LONG:
    case SSL_R_BAD_LENGTH:
    case SSL_R_EXCESSIVE_MESSAGE_SIZE:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_BAD_HANDSHAKE_LENGTH:
    case SSL_R_RECORD_TOO_SMALL:
    case SSL_R_TLSV1_ALERT_DECODE_ERROR:
    case SSL_R_SSLV3_ALERT_UNEXPECTED_MESSAGE:
    case SSL_R_TLSV1_ALERT_RECORD_OVERFLOW:
    case SSL_R_SSLV3_ALERT_BAD_RECORD_MAC:
      return "protocol";
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
    case SSL_R_WRONG_SSL_VERSION:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_INAPPROPRIATE_FALLBACK:
    case SSL_R_TLSV1_ALERT_INAPPROPRIATE_FALLBACK:
    case SSL_R_UNKNOWN_SSL_VERSION:
    case SSL_R_UNSUPPORTED_SSL_VERSION:
      return "version";
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_NO_CERTIFICATES_RETURNED:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    // Alerts from a client that rejected our certificate:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
      return "certificate";
    case SSL_R_NO_APPLICATION_PROTOCOL:
    case SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL:
      return "alpn";
    default:
      return nullptr;
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Sessions.

struct TlsSession {
  std::shared_ptr<const TlsContext> ctx;  // keeps the ALPN data (and the SSL_CTX) alive
  SSL* ssl = nullptr;
  SockState sock;
  bool done = false;      // handshake complete
  bool eof = false;       // the peer's EOF was reported by TlsRead
  bool drained = false;   // the last read or handshake step ended wanting socket input
  bool notified = false;  // close_notify sent (or attempted)
  int failed = 0;         // the final failure code, 0 while none
  bool reported = true;   // the failure has been returned to the caller
  const char* label = "";
  std::string detail;
  double started_us = 0;  // 0 until the client's first byte has arrived
  double micros = 0;
};

namespace {

// Records the session's final failure (the first one wins) and returns its code.
int Fail(TlsSession* s, int code, const char* label, std::string detail) {
  if (s->failed == 0) {
    s->failed = code;
    s->label = label;
    s->detail = std::move(detail);
  }
  s->reported = true;
  return s->failed;
}

int FailWait(TlsSession* s, int rc) {
  return rc == -ETIMEDOUT ? Fail(s, rc, "timeout", "socket not writable within the timeout")
                          : Fail(s, rc, "socket", std::strerror(-rc));
}

// Maps the SSL_get_error result of a failed operation (not WANT_*) to a failure.
// Must run before the error queue is cleared.
int FailSsl(TlsSession* s, int ssl_err) {
  if (s->sock.err != 0) return Fail(s, -s->sock.err, "socket", std::strerror(s->sock.err));
  if (ssl_err == SSL_ERROR_SSL) {
    const char* label = nullptr;
    unsigned long first = ERR_peek_error();
    for (unsigned long e; label == nullptr && (e = ERR_get_error()) != 0;) label = LabelOf(e);
    if (first != 0 && ERR_GET_LIB(first) == ERR_LIB_SSL &&
        ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
      return Fail(s, -ECONNRESET, "socket", "peer closed the connection during the handshake");
    return Fail(s, -EPROTO, label != nullptr ? label : "other",
                first != 0 ? ReasonText(first) : std::string("TLS failure"));
  }
  if ((ssl_err == SSL_ERROR_SYSCALL && s->sock.eof) || ssl_err == SSL_ERROR_ZERO_RETURN)
    return Fail(s, -ECONNRESET, "socket", "peer closed the connection during the handshake");
  return Fail(s, -EPROTO, "other", "unexpected SSL_get_error " + std::to_string(ssl_err));
}

// Whether a failed read is the peer's EOF: close_notify, or TCP closed without it
// (OpenSSL 3 reports that as "unexpected eof while reading", or SYSCALL with no errno).
bool IsEof(TlsSession* s, int ssl_err) {
  if (ssl_err == SSL_ERROR_ZERO_RETURN) return true;
  if (s->sock.err != 0 || !s->sock.eof) return false;
  if (ssl_err == SSL_ERROR_SYSCALL) return true;
  unsigned long e = ERR_peek_error();
  return ssl_err == SSL_ERROR_SSL && ERR_GET_LIB(e) == ERR_LIB_SSL &&
         ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

// Returns the failure code and marks it reported.
int Report(TlsSession* s) {
  s->reported = true;
  return s->failed;
}

}  // namespace

TlsSession* TlsSessionNew(int ctx_id, int fd) {
  std::call_once(init_once, GlobalInit);
  if (socket_method == nullptr) return nullptr;
  std::shared_ptr<const TlsContext> c = FindContext(ctx_id);
  if (c == nullptr) return nullptr;
  ErrScope errs;
  auto* s = new (std::nothrow) TlsSession();
  if (s == nullptr) return nullptr;
  s->ctx = std::move(c);
  s->sock.fd = fd;
  s->ssl = SSL_new(s->ctx->ctx);  // takes a reference to the SSL_CTX
  BIO* bio = s->ssl != nullptr ? BIO_new(socket_method) : nullptr;
  if (bio == nullptr) {
    SSL_free(s->ssl);
    delete s;
    return nullptr;
  }
  BIO_set_data(bio, &s->sock);
  BIO_set_init(bio, 1);
  SSL_set_bio(s->ssl, bio, bio);  // the SSL owns the BIO; the BIO does not own the fd
  SSL_set_accept_state(s->ssl);
  return s;
}

void TlsSessionFree(TlsSession* s) {
  if (s == nullptr) return;
  ErrScope errs;
  SSL_free(s->ssl);  // before s->ctx lets the context go
  delete s;
}

int TlsHandshake(TlsSession* s, int timeout_ms) {
  if (s->failed != 0) return Report(s);
  if (s->done) return 1;
  if (s->started_us == 0) {
    // The handshake's time runs from the client's first byte, not from accept:
    // a client that connects and waits is not a slow handshake.
    char first;
    ssize_t n;
    do n = recv(s->sock.fd, &first, 1, MSG_PEEK | MSG_DONTWAIT); while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN) return 0;
    // Closed before sending a byte (a TCP health check, a port scan): not a TLS failure.
    if (n == 0) return -ENOTCONN;
    s->started_us = MonotonicMicros();
  }
  ErrScope errs;
  s->sock.dry = false;
  for (;;) {
    ClearErrors();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
      s->done = true;
      s->drained = false;
      s->micros = MonotonicMicros() - s->started_us;
      return 1;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
      s->drained = true;
      return 0;
    }
    if (e != SSL_ERROR_WANT_WRITE) return FailSsl(s, e);
    int w = WaitWritable(s->sock.fd, timeout_ms);
    if (w < 0) return FailWait(s, w);
  }
}

bool TlsHandshakeDone(TlsSession* s) { return s->done; }

int64_t TlsRead(TlsSession* s, uint8_t* buf, size_t cap, bool* eof, int write_timeout_ms) {
  *eof = false;
  if (s->failed != 0) return Report(s);
  if (!s->done) return -EINVAL;
  if (s->eof) {
    *eof = true;
    return 0;
  }
  ErrScope errs;
  s->sock.dry = false;
  size_t total = 0;
  while (total < cap) {
    size_t n = 0;
    ClearErrors();
    if (SSL_read_ex(s->ssl, buf + total, cap - total, &n) == 1) {
      total += n;
      // Go on only while OpenSSL holds more (decrypted bytes, or read-ahead
      // bytes that may be a whole record) or the socket may: once both are
      // empty, another SSL_read would only end in an empty recv. The entry's
      // re-arm reports what arrives later.
      if (s->sock.dry && SSL_pending(s->ssl) == 0 && SSL_has_pending(s->ssl) == 0) {
        s->drained = true;
        return static_cast<int64_t>(total);
      }
      continue;
    }
    int e = SSL_get_error(s->ssl, 0);
    if (e == SSL_ERROR_WANT_READ) {
      s->drained = true;
      return static_cast<int64_t>(total);
    }
    if (e == SSL_ERROR_WANT_WRITE) {
      int w = WaitWritable(s->sock.fd, write_timeout_ms);
      if (w >= 0) continue;
      FailWait(s, w);
    } else if (IsEof(s, e)) {
      s->eof = true;
      *eof = true;
      return static_cast<int64_t>(total);
    } else {
      FailSsl(s, e);
    }
    // Failed: deliver what was decrypted before the failure first.
    if (total == 0) return s->failed;
    s->reported = false;
    return static_cast<int64_t>(total);
  }
  s->drained = false;  // stopped because buf is full: OpenSSL may hold more
  return static_cast<int64_t>(total);
}

bool TlsHasPending(TlsSession* s) {
  if (s->failed != 0) return !s->reported;
  if (!s->done || s->eof) return false;
  // Decrypted bytes are always readable now; undecrypted ones (read-ahead) only
  // matter if the last call did not already find them to be an incomplete record.
  return SSL_pending(s->ssl) > 0 || (!s->drained && SSL_has_pending(s->ssl) == 1);
}

int64_t TlsWriteSome(TlsSession* s, const uint8_t* p, size_t len) {
  if (s->failed != 0) return Report(s);
  if (!s->done) return -EINVAL;
  ErrScope errs;
  size_t done = 0;
  while (done < len) {
    size_t n = 0;
    ClearErrors();
    if (SSL_write_ex(s->ssl, p + done, len - done, &n) == 1) {
      done += n;
      continue;
    }
    int e = SSL_get_error(s->ssl, 0);
    // WANT_READ cannot happen without renegotiation; FailSsl labels it "other".
    if (e != SSL_ERROR_WANT_WRITE) return FailSsl(s, e);
    break;
  }
  return static_cast<int64_t>(done);
}

void TlsFailWait(TlsSession* s, int rc) {
  if (s->failed == 0) FailWait(s, rc);
}

void TlsCloseNotify(TlsSession* s) {
  if (!s->done || s->failed != 0 || s->notified) return;
  s->notified = true;
  ErrScope errs;
  // Once only: a second SSL_shutdown would try to read the peer's close_notify.
  // A full socket makes it return WANT_WRITE; the alert is then dropped.
  SSL_shutdown(s->ssl);
}

std::string TlsAlpn(TlsSession* s) {
  const unsigned char* p = nullptr;
  unsigned int n = 0;
  SSL_get0_alpn_selected(s->ssl, &p, &n);
  return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), n);
}

bool TlsPeerCertPresented(TlsSession* s) { return SSL_get0_peer_certificate(s->ssl) != nullptr; }

const char* TlsFailure(TlsSession* s) { return s->label; }

std::string TlsFailureDetail(TlsSession* s) { return s->detail; }

double TlsHandshakeMicros(TlsSession* s) { return s->micros; }

uint64_t TlsRecvCalls(TlsSession* s, uint64_t* empty) {
  if (empty != nullptr) *empty = s->sock.empty_recvs;
  return s->sock.recvs;
}

// ---------------------------------------------------------------------------
// N-API exports.

namespace {

// Reads opts[name] as a string into *out. Absent (undefined or null) is allowed
// unless required; any other type is a programming error (TypeError).
bool OptString(Napi::Object opts, const char* name, bool required, std::string* out, bool* present) {
  Napi::Value v = opts.Get(name);
  *present = !(v.IsUndefined() || v.IsNull());
  if (!*present && !required) return true;
  if (!v.IsString()) {
    Napi::TypeError::New(opts.Env(), std::string("options.") + name + " must be a string")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = v.As<Napi::String>().Utf8Value();
  return true;
}

// tlsContextCreate({cert, key, ca?, clientAuth?, minVersion?, alpn?}) -> id > 0 | error message.
Napi::Value TlsContextCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::call_once(init_once, GlobalInit);
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "options must be an object").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object opts = info[0].As<Napi::Object>();
  ContextOptions o;
  std::string auth = "none", version = "1.2";
  bool present;
  if (!OptString(opts, "cert", true, &o.cert, &present) || !OptString(opts, "key", true, &o.key, &present) ||
      !OptString(opts, "ca", false, &o.ca, &o.has_ca) || !OptString(opts, "clientAuth", false, &auth, &present) ||
      !OptString(opts, "minVersion", false, &version, &present))
    return env.Undefined();
  Napi::Value alpn = opts.Get("alpn");
  if (!alpn.IsUndefined() && !alpn.IsNull()) {
    if (!alpn.IsArray()) {
      Napi::TypeError::New(env, "options.alpn must be an array of strings").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Array a = alpn.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value p = a.Get(i);
      if (!p.IsString()) {
        Napi::TypeError::New(env, "options.alpn must be an array of strings").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      o.alpn.push_back(p.As<Napi::String>().Utf8Value());
    }
  }
  if (!init_error.empty()) return Napi::String::New(env, init_error);
  if (auth == "none") {
    o.client_auth = kAuthNone;
  } else if (auth == "request") {
    o.client_auth = kAuthRequest;
  } else if (auth == "require") {
    o.client_auth = kAuthRequire;
  } else {
    return Napi::String::New(env, "clientAuth: must be 'none', 'request' or 'require'");
  }
  if (version == "1.2") {
    o.min_version = TLS1_2_VERSION;
  } else if (version == "1.3") {
    o.min_version = TLS1_3_VERSION;
  } else {
    return Napi::String::New(env, "minVersion: must be '1.2' or '1.3'");
  }
  int id;
  {
    std::lock_guard<std::mutex> lock(ctx_mu);
    id = next_ctx_id++;
  }
  std::shared_ptr<TlsContext> c;
  std::string err = BuildContext(o, id, &c);
  if (!err.empty()) return Napi::String::New(env, err);
  {
    std::lock_guard<std::mutex> lock(ctx_mu);
    contexts.emplace(id, std::move(c));
  }
  return Num(info, id);
}

// tlsContextFree(id) -> 0 | -EBADF. Open sessions keep the context alive.
int TlsContextFree(int id) {
  std::shared_ptr<const TlsContext> gone;  // released after the lock
  {
    std::lock_guard<std::mutex> lock(ctx_mu);
    auto it = contexts.find(id);
    if (it == contexts.end()) return -EBADF;
    gone = std::move(it->second);
    contexts.erase(it);
  }
  return 0;
}

// An ASN1_TIME as milliseconds since the epoch (NaN if unreadable).
double TimeMs(const ASN1_TIME* t) {
  struct tm tm;
  std::memset(&tm, 0, sizeof(tm));
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return NAN;
  return static_cast<double>(timegm(&tm)) * 1000.0;
}

// An X509 name on one line, RFC 2253 style ("CN=localhost,O=Example").
std::string NameText(const X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return "";
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out = n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
  BIO_free(bio);
  return out;
}

// tlsCertInfo(pem) -> {subject, issuer, notBefore, notAfter, selfSigned} | error message,
// for the first (leaf) certificate of pem.
Napi::Value TlsCertInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::call_once(init_once, GlobalInit);
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "pem must be a string").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  ErrScope errs;
  CertList certs;
  std::string err = ReadCerts(info[0].As<Napi::String>().Utf8Value(), "certificate", &certs);
  if (!err.empty()) return Napi::String::New(env, err);
  X509* x = certs.certs[0];
  Napi::Object out = Napi::Object::New(env);
  out.Set("subject", NameText(X509_get_subject_name(x)));
  out.Set("issuer", NameText(X509_get_issuer_name(x)));
  out.Set("notBefore", TimeMs(X509_get0_notBefore(x)));
  out.Set("notAfter", TimeMs(X509_get0_notAfter(x)));
  out.Set("selfSigned", X509_self_signed(x, 1) == 1);  // issuer == subject and its own key verifies it
  return out;
}

// Test-only exports (tlsTest*): drive a session from JavaScript before the
// connection table owns sessions. Not for production use: handles live in a
// table under a mutex, and a handle must be used by one thread at a time.
std::mutex test_mu;
std::unordered_map<int, TlsSession*> test_sessions;  // under test_mu
int next_test_handle = 1;                            // under test_mu

// The test session of handle h, or nullptr.
TlsSession* TestSession(int64_t h) {
  std::lock_guard<std::mutex> lock(test_mu);
  auto it = test_sessions.find(static_cast<int>(h));
  return it == test_sessions.end() ? nullptr : it->second;
}

// tlsTestAttach(ctxId, fd) -> handle > 0 | -EBADF (unknown context).
int TlsTestAttach(int ctx_id, int fd) {
  TlsSession* s = TlsSessionNew(ctx_id, fd);
  if (s == nullptr) return -EBADF;
  std::lock_guard<std::mutex> lock(test_mu);
  int h = next_test_handle++;
  test_sessions[h] = s;
  return h;
}

// tlsTestHandshake(handle, timeoutMs) -> 1 | 0 | negative.
int TlsTestHandshake(int h, int timeout_ms) {
  TlsSession* s = TestSession(h);
  return s == nullptr ? -EBADF : TlsHandshake(s, timeout_ms);
}

// tlsTestRead(handle, buffer, offset, cap) -> {n, eof}.
Napi::Value TlsTestRead(const Napi::CallbackInfo& info) {
  int64_t h;
  uint8_t* p;
  size_t cap;
  if (!Args(info).Int(&h).Region(&p, &cap)) return info.Env().Undefined();
  TlsSession* s = TestSession(h);
  bool eof = false;
  int64_t n = s == nullptr ? -EBADF : TlsRead(s, p, cap, &eof);
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("n", static_cast<double>(n));
  out.Set("eof", eof);
  return out;
}

// tlsTestSend(handle, buffer, offset, length, timeoutMs) -> length | negative.
Napi::Value TlsTestSend(const Napi::CallbackInfo& info) {
  int64_t h, timeout;
  uint8_t* p;
  size_t len;
  if (!Args(info).Int(&h).Region(&p, &len).Int(&timeout)) return info.Env().Undefined();
  TlsSession* s = TestSession(h);
  if (s == nullptr) return Num(info, -EBADF);
  return Num(info, static_cast<double>(SendAll(Sink{s->sock.fd, s}, p, len, static_cast<int>(timeout))));
}

// tlsTestInfo(handle) -> {done, alpn, peerCert, failure, detail, micros, pending, recvs, emptyRecvs} | -EBADF.
Napi::Value TlsTestInfo(const Napi::CallbackInfo& info) {
  int64_t h;
  if (!Args(info).Int(&h)) return info.Env().Undefined();
  TlsSession* s = TestSession(h);
  if (s == nullptr) return Num(info, -EBADF);
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("done", TlsHandshakeDone(s));
  out.Set("alpn", TlsAlpn(s));
  out.Set("peerCert", TlsPeerCertPresented(s));
  out.Set("failure", TlsFailure(s));
  out.Set("detail", TlsFailureDetail(s));
  out.Set("micros", TlsHandshakeMicros(s));
  out.Set("pending", TlsHasPending(s));
  uint64_t empty = 0;
  out.Set("recvs", static_cast<double>(TlsRecvCalls(s, &empty)));
  out.Set("emptyRecvs", static_cast<double>(empty));
  return out;
}

// tlsTestClose(handle, notify) -> 0 | -EBADF. Sends close_notify if asked, frees
// the session; the fd stays open (the caller closes it).
Napi::Value TlsTestClose(const Napi::CallbackInfo& info) {
  int64_t h;
  if (!Args(info).Int(&h)) return info.Env().Undefined();
  bool notify = info.Length() > 1 && info[1].ToBoolean().Value();
  TlsSession* s = nullptr;
  {
    std::lock_guard<std::mutex> lock(test_mu);
    auto it = test_sessions.find(static_cast<int>(h));
    if (it == test_sessions.end()) return Num(info, -EBADF);
    s = it->second;
    test_sessions.erase(it);
  }
  if (notify) TlsCloseNotify(s);
  TlsSessionFree(s);
  return Num(info, 0);
}

}  // namespace

void InitTls(Napi::Env env, Napi::Object exports) {
  std::call_once(init_once, GlobalInit);
  exports.Set("tlsContextCreate", Napi::Function::New(env, TlsContextCreate, "tlsContextCreate"));
  exports.Set("tlsContextFree", Napi::Function::New(env, Ints<TlsContextFree>, "tlsContextFree"));
  exports.Set("tlsCertInfo", Napi::Function::New(env, TlsCertInfo, "tlsCertInfo"));
  exports.Set("tlsTestAttach", Napi::Function::New(env, Ints<TlsTestAttach>, "tlsTestAttach"));
  exports.Set("tlsTestHandshake", Napi::Function::New(env, Ints<TlsTestHandshake>, "tlsTestHandshake"));
  exports.Set("tlsTestRead", Napi::Function::New(env, TlsTestRead, "tlsTestRead"));
  exports.Set("tlsTestSend", Napi::Function::New(env, TlsTestSend, "tlsTestSend"));
  exports.Set("tlsTestInfo", Napi::Function::New(env, TlsTestInfo, "tlsTestInfo"));
  exports.Set("tlsTestClose", Napi::Function::New(env, TlsTestClose, "tlsTestClose"));
}

}  // namespace tcpmod
