// The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): the
// header a load balancer puts before a connection's first byte to say whom it
// is relaying. A pure parser in the picohttpparser manner: it looks at the
// bytes received so far, keeps nothing between calls and allocates nothing, so
// a caller can feed it a growing prefix (a peek of the socket) until it decides.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace tcpmod {

// Which versions a listener accepts (--proxy-protocol): a bit set.
enum ProxyVersions : unsigned { kProxyV1 = 1, kProxyV2 = 2, kProxyAny = 3 };

// The largest header accepted. Version 1 is at most 107 bytes by the spec.
// Version 2 may announce up to 16 + 65535 bytes; its TLVs (skipped here) are
// bounded at a size far above what HAProxy sends, so a peer cannot make the
// host wait for, or look through, 64 KiB it will never use.
constexpr size_t kProxyV1Max = 107;
constexpr size_t kProxyV2Max = 2048;
constexpr size_t kProxyMax = kProxyV2Max;

// ProxyParse's results besides a byte count (> 0: the header is complete).
constexpr int kProxyMore = 0;  // a valid prefix: wait for more bytes
constexpr int kProxyBad = -1;  // not a valid header (or a version not accepted): close

struct ProxyHeader {
  int version = 0;  // 1 or 2
  // AF_INET or AF_INET6 when the header names the client; 0 when it says to
  // keep the socket's own addresses (v1 UNKNOWN, v2 LOCAL, UNSPEC, AF_UNIX).
  int family = 0;
  uint8_t src[16] = {0}, dst[16] = {0};  // network order; 4 bytes used for AF_INET
  uint16_t src_port = 0, dst_port = 0;   // host order
};

// Parses the header at the start of buf[0, len): its length in bytes (> 0),
// kProxyMore, or kProxyBad. A prefix of a valid header is kProxyMore; a byte
// that no valid header could have there is kProxyBad as soon as it is seen.
// `versions` is a ProxyVersions set; `out` is written only on success.
int ProxyParse(const uint8_t* buf, size_t len, unsigned versions, ProxyHeader* out);

// "IP:PORT", or "[IPv6]:PORT": how the host writes an address everywhere.
std::string FormatAddress(int family, const uint8_t* addr, uint16_t port);

}  // namespace tcpmod
