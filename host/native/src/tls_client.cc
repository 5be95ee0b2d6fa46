// Client-side TLS: see tls_client.h.
#include "tls_client.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace tcpmod {
namespace {

// The reason of the failure just met: the verify result when the certificate
// did not verify, else the error queue's last reason, else errno's; the queue is emptied.
std::string Reason(SSL* ssl, bool* verify) {
  std::string why;
  *verify = false;
  if (ssl && SSL_get_verify_result(ssl) != X509_V_OK) {
    why = X509_verify_cert_error_string(SSL_get_verify_result(ssl));
    *verify = true;
  }
  unsigned long e = ERR_peek_last_error();
  if (why.empty() && e) why = ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "TLS error";
  ERR_clear_error();
  return why.empty() ? std::string(std::strerror(errno ? errno : ECONNRESET)) : why;
}

}  // namespace

SSL_CTX* TlsClientContext(const std::string& ca_pem, std::string* err) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  BIO* bio = ca_pem.size() < (1u << 30) ? BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size())) : nullptr;
  int added = 0;
  if (ctx && bio) {
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    while (X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
      added += X509_STORE_add_cert(store, x) == 1;
      X509_free(x);
    }
  }
  if (bio) BIO_free(bio);
  ERR_clear_error();
  if (ctx && added > 0) return ctx;
  if (ctx) SSL_CTX_free(ctx);
  *err = "no usable PEM CA certificate";
  return nullptr;
}

SSL* TlsClientSession(SSL_CTX* ctx, int fd, const std::string& servername, std::string* err) {
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx);
  bool verify;
  if (!ssl || SSL_set_fd(ssl, fd) != 1) {
    *err = Reason(ssl, &verify);
    if (ssl) SSL_free(ssl);
    return nullptr;
  }
  unsigned char ip[16];
  bool is_ip = inet_pton(AF_INET, servername.c_str(), ip) == 1 || inet_pton(AF_INET6, servername.c_str(), ip) == 1;
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  if (is_ip) {
    X509_VERIFY_PARAM_set1_ip_asc(param, servername.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, servername.c_str());
    X509_VERIFY_PARAM_set1_host(param, servername.c_str(), 0);
  }
  ERR_clear_error();
  return ssl;
}

int TlsClientHandshake(SSL* ssl, short* want, std::string* why, TlsClientFailure* kind) {
  ERR_clear_error();
  errno = 0;
  int r = SSL_connect(ssl);
  if (r == 1) {
    ERR_clear_error();
    return 1;
  }
  int e = SSL_get_error(ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    *want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
    return 0;
  }
  bool verify;
  *why = Reason(ssl, &verify);
  *kind = verify ? TlsClientFailure::kVerify : TlsClientFailure::kHandshake;
  return -1;
}

ssize_t TlsClientIo(SSL* ssl, bool out, void* p, size_t n, short* want, std::string* why) {
  ERR_clear_error();
  errno = 0;
  int len = static_cast<int>(std::min<size_t>(n, 1 << 30));
  int r = out ? SSL_write(ssl, p, len) : SSL_read(ssl, p, len);
  if (r > 0) return r;
  int e = SSL_get_error(ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    *want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
    return -1;
  }
  if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0)) {
    ERR_clear_error();
    return 0;
  }
  bool verify;
  *why = "TLS: " + Reason(ssl, &verify);
  return -2;
}

void TlsClientFree(SSL* ssl) {
  if (ssl) SSL_free(ssl);
}

}  // namespace tcpmod
