// Client-side TLS, the one implementation shared by every connection the host
// opens itself: the Redis store (kv_redis.cc, rediss://), the bus (bus.cc,
// rediss://) and upstreams (upstream.cc, --upstream-tls). Server-side TLS is
// tls.cc's; both use the OpenSSL inside the node binary (see tls.h for how
// it binds: the addon links nothing).
//
// The calls never block: each makes one step on a non-blocking socket and
// says what to wait for, so a blocking caller polls (kv_redis.cc, bus.cc) and
// an epoll caller waits for its edge-triggered event (upstream.cc). OpenSSL's
// per-thread error queue is emptied before and after each call, so Node never
// takes our errors for its own.
#pragma once
#include <openssl/ssl.h>
#include <sys/types.h>

#include <cstddef>
#include <string>

namespace tcpmod {

// A context that verifies the server's certificate against the PEM CA
// certificates in `ca_pem` (TLS 1.2 at least; partial writes allowed, and a
// write retried with the same leading bytes from another address). Null, with
// *err, when no certificate in `ca_pem` could be used.
SSL_CTX* TlsClientContext(const std::string& ca_pem, std::string* err);

// A session on the connected non-blocking socket fd, whose certificate must
// name `servername`: a numeric address is checked against the certificate's IP
// addresses (and sent as no SNI, which cannot carry one), a DNS name against
// its DNS names and sent as SNI. Null, with *err, on failure.
SSL* TlsClientSession(SSL_CTX* ctx, int fd, const std::string& servername, std::string* err);

// The outcome of a failed step, for callers that count causes.
enum class TlsClientFailure { kNone = 0, kVerify, kHandshake, kIo };

// One handshake step: 1 done; 0 call again once the socket is ready for *want
// (POLLIN or POLLOUT); -1 failed, with *why and *kind (kVerify: the
// certificate or its name did not verify).
int TlsClientHandshake(SSL* ssl, short* want, std::string* why, TlsClientFailure* kind);

// One transfer after the handshake: bytes moved (> 0); 0 the peer closed
// (close_notify or a bare TCP close); -1 would block (*want: what to wait
// for); -2 failed (*why). A write that returned -1 must be retried with the
// same leading bytes (at least as many).
ssize_t TlsClientIo(SSL* ssl, bool out, void* p, size_t n, short* want, std::string* why);

// Frees the session without a close_notify (the caller closes the socket at once). Null is a no-op.
void TlsClientFree(SSL* ssl);

}  // namespace tcpmod
