// The native TLS engine: server-side TLS over an accepted non-blocking socket,
// with the OpenSSL that Node itself ships (its headers are on node-gyp's include
// path and the node binary exports OpenSSL's symbols, so the addon links nothing).
//
// Contexts (an SSL_CTX plus its settings) live in a process-wide registry shared
// by every worker thread; a session keeps a reference to its context, so freeing
// or replacing a context (a certificate reload) never affects open sessions.
//
// Return conventions, as in the rest of the shim: counts are >= 0, failures are
// negative. A failure is one of
//   -ETIMEDOUT  the socket stayed unwritable for timeout_ms;
//   -errno      the socket failed (ECONNRESET, EPIPE, ...); -ECONNRESET also when
//               the peer closed TCP before the handshake completed;
//   -EPROTO     a TLS failure (bad record, alert, version, certificate, ...);
//   -EINVAL     the call is not allowed in the session's state (a caller bug).
// TlsFailure() then gives a short label of the cause for metrics. Every failure
// except -EINVAL is final: the connection must be closed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

// Declared, not included: the engine's own interface is plain C++ (sender.cc and
// the native unit tests use it without Node); only InitTls names N-API types.
namespace Napi {
class Env;
class Object;
}  // namespace Napi

namespace tcpmod {

struct TlsSession;

// Creates a session for an accepted non-blocking socket fd with context ctx_id
// (see tlsContextCreate). nullptr if ctx_id is unknown (or on allocation failure).
// The session never closes fd; its owner does, after TlsSessionFree.
TlsSession* TlsSessionNew(int ctx_id, int fd);

// Frees the session without sending anything (see TlsCloseNotify). nullptr is a no-op.
void TlsSessionFree(TlsSession* s);

// One handshake step. Returns 1 when the handshake is complete (again 1 on later
// calls); -ENOTCONN when the peer closed without sending a byte (not a TLS
// failure: no label); 0 when it needs more input from the peer (re-arm EPOLLIN and call again
// on the next event); negative when it failed (close the connection). When
// OpenSSL wants to write, this call waits for writability with poll(POLLOUT) up
// to timeout_ms, restarted on progress, and fails with -ETIMEDOUT past it.
// After 1, check TlsHasPending: the client's first data may already be buffered.
int TlsHandshake(TlsSession* s, int timeout_ms);
bool TlsHandshakeDone(TlsSession* s);

// Reads decrypted bytes into buf (up to cap), looping until buf is full or
// neither OpenSSL nor the socket holds more: it stops when OpenSSL's buffers are
// empty and a recv came back short (the socket had no more), so a request costs
// one recv, not a second one that ends in EAGAIN; nothing is ever left in
// OpenSSL's buffers unreported (TlsHasPending), and what reaches the socket
// later is announced by the caller's re-arm (EPOLL_CTL_MOD re-checks readiness).
// Returns the bytes read (>= 0); *eof is set when the peer sent close_notify or
// closed TCP (with or without close_notify: both are EOF; a FIN behind data
// may be seen by the next call, as with a plain recv). Negative
// on a fatal error. When a fatal error follows decrypted bytes, the bytes are
// returned first and the error by the next call; TlsHasPending is true meanwhile.
// In the rare case OpenSSL must write while reading (a TLS 1.3 KeyUpdate reply or
// an alert), it waits for writability up to write_timeout_ms.
// -EINVAL before the handshake completed.
int64_t TlsRead(TlsSession* s, uint8_t* buf, size_t cap, bool* eof, int write_timeout_ms = 1000);

// True when a TlsRead call would return something that no socket readiness event
// would announce: input OpenSSL buffered already, or a failure still to report.
bool TlsHasPending(TlsSession* s);

// Encrypts and sends what the socket takes now, never waiting: the plaintext
// bytes whose records went out whole (0..len), or a negative failure (after
// which the connection must be closed). A record begun and not fully sent
// stays in OpenSSL: the next call must pass the same bytes again from where
// this count ends, at least as many (they may have moved). Never raises
// SIGPIPE (the socket BIO sends with MSG_NOSIGNAL). -EINVAL before the
// handshake completed. Blocking sends are built on it (sender.h's SendAll).
int64_t TlsWriteSome(TlsSession* s, const uint8_t* p, size_t len);

// A wait for writability on the session's behalf failed (-ETIMEDOUT or
// -errno, from WaitWritable): the session is failed, labelled "timeout" or
// "socket", as if OpenSSL's own wait had failed.
void TlsFailWait(TlsSession* s, int rc);

// Best effort, never blocks: sends close_notify once if the handshake completed
// and nothing failed; if the socket is full the alert is dropped.
void TlsCloseNotify(TlsSession* s);

// After the handshake: the negotiated ALPN protocol ("" if none), and whether the
// client presented a certificate (which then passed verification).
std::string TlsAlpn(TlsSession* s);
bool TlsPeerCertPresented(TlsSession* s);

// Why the session failed, a short stable label for metrics: "protocol" (not TLS,
// bad record), "version", "certificate" (client certificate missing or rejected,
// or the client rejected ours), "alpn", "timeout", "socket", "other"; "" while
// nothing failed.
const char* TlsFailure(TlsSession* s);

// OpenSSL's reason for the failure ("wrong version number", ...) or the errno
// text, for logs; "" while nothing failed. Not stable: never use as a label.
std::string TlsFailureDetail(TlsSession* s);

// Microseconds from the first TlsHandshake call to completion; 0 until then.
double TlsHandshakeMicros(TlsSession* s);

// The recv calls the session has made on its socket, and in *empty (when
// given) how many of them found nothing (EAGAIN): for tests and profiles.
uint64_t TlsRecvCalls(TlsSession* s, uint64_t* empty);

void InitTls(Napi::Env env, Napi::Object exports);

}  // namespace tcpmod
