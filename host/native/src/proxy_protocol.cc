// The PROXY protocol parser (see proxy_protocol.h). Section numbers below are
// those of HAProxy's proxy-protocol.txt.
#include "proxy_protocol.h"

#include <arpa/inet.h>
#include <cstring>
#include <sys/socket.h>

namespace tcpmod {
namespace {

constexpr uint8_t kV2Sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr char kV1Sig[] = "PROXY ";
constexpr size_t kV1SigLen = sizeof(kV1Sig) - 1;

// True when the first min(len, n) bytes of buf match `want`.
bool PrefixMatches(const uint8_t* buf, size_t len, const void* want, size_t n) {
  return std::memcmp(buf, want, len < n ? len : n) == 0;
}

// [p, end) as a decimal number without heading zeroes, at most `max`; -1 if it is not one.
long Decimal(const char* p, const char* end, long max) {
  if (p == end || end - p > 5 || (*p == '0' && end - p > 1)) return -1;
  long v = 0;
  for (; p < end; p++) {
    if (*p < '0' || *p > '9') return -1;
    v = v * 10 + (*p - '0');
  }
  return v <= max ? v : -1;
}

// An IPv4 address as 2.1 writes it: exactly four decimals 0..255, no heading zeroes.
bool ParseV4(const char* p, const char* end, uint8_t* out) {
  for (int i = 0; i < 4; i++) {
    const char* dot = p;
    while (dot < end && *dot != '.') dot++;
    if ((i < 3) != (dot < end)) return false;  // three dots, no more
    long v = Decimal(p, dot, 255);
    if (v < 0) return false;
    out[i] = static_cast<uint8_t>(v);
    p = dot + 1;
  }
  return true;
}

// An IPv6 address in text (hex groups, one "::" at most): inet_pton's grammar.
bool ParseV6(const char* p, const char* end, uint8_t* out) {
  char text[INET6_ADDRSTRLEN];
  size_t n = static_cast<size_t>(end - p);
  if (n == 0 || n >= sizeof(text)) return false;
  std::memcpy(text, p, n);
  text[n] = '\0';
  return inet_pton(AF_INET6, text, out) == 1;
}

// Version 1 (2.1): one line of text, CRLF-terminated, at most 107 bytes.
int ParseV1(const uint8_t* buf, size_t len, ProxyHeader* out) {
  if (!PrefixMatches(buf, len, kV1Sig, kV1SigLen)) return kProxyBad;
  // The line ends at the first CR, which must be followed by LF; a bare LF ends nothing.
  size_t cr = kV1SigLen;
  for (; cr < len && buf[cr] != '\r'; cr++)
    if (buf[cr] == '\n') return kProxyBad;
  if (cr + 2 > kProxyV1Max) return kProxyBad;  // no room left for a CRLF within 107 bytes
  if (cr + 1 >= len) return kProxyMore;
  if (buf[cr + 1] != '\n') return kProxyBad;
  const int total = static_cast<int>(cr + 2);

  const char* p = reinterpret_cast<const char*>(buf) + kV1SigLen;
  const char* end = reinterpret_cast<const char*>(buf) + cr;
  // UNKNOWN: whatever follows up to the CRLF is ignored; the socket's own addresses stand.
  if (end - p >= 7 && std::memcmp(p, "UNKNOWN", 7) == 0 && (end - p == 7 || p[7] == ' ')) {
    *out = ProxyHeader();
    out->version = 1;
    return total;
  }
  int family;
  if (end - p >= 5 && std::memcmp(p, "TCP4 ", 5) == 0) family = AF_INET;
  else if (end - p >= 5 && std::memcmp(p, "TCP6 ", 5) == 0) family = AF_INET6;
  else return kProxyBad;
  p += 5;
  // Four fields, each followed by exactly one space except the last: src dst sport dport.
  const char* field[4];
  const char* field_end[4];
  for (int i = 0; i < 4; i++) {
    field[i] = p;
    while (p < end && *p != ' ') p++;
    field_end[i] = p;
    if (field[i] == p || (i < 3) != (p < end)) return kProxyBad;
    p++;
  }
  ProxyHeader h;
  h.version = 1;
  h.family = family;
  auto addr = family == AF_INET ? ParseV4 : ParseV6;
  long sport = Decimal(field[2], field_end[2], 65535);
  long dport = Decimal(field[3], field_end[3], 65535);
  if (!addr(field[0], field_end[0], h.src) || !addr(field[1], field_end[1], h.dst) || sport < 0 || dport < 0)
    return kProxyBad;
  h.src_port = static_cast<uint16_t>(sport);
  h.dst_port = static_cast<uint16_t>(dport);
  *out = h;
  return total;
}

// Version 2 (2.2): a 16-byte binary header, then as many bytes as it announces
// (addresses, then TLVs, which are walked to check their framing and skipped).
int ParseV2(const uint8_t* buf, size_t len, ProxyHeader* out) {
  if (!PrefixMatches(buf, len, kV2Sig, sizeof(kV2Sig))) return kProxyBad;
  // Version 2 in the high nibble; command LOCAL (0) or PROXY (1) in the low one.
  if (len > 12 && ((buf[12] >> 4) != 2 || (buf[12] & 0xF) > 1)) return kProxyBad;
  // Family UNSPEC, INET, INET6 or UNIX; transport UNSPEC, STREAM or DGRAM.
  if (len > 13 && ((buf[13] >> 4) > 3 || (buf[13] & 0xF) > 2)) return kProxyBad;
  if (len < 16) return kProxyMore;
  const size_t total = 16 + ((static_cast<size_t>(buf[14]) << 8) | buf[15]);
  if (total > kProxyV2Max) return kProxyBad;
  if (len < total) return kProxyMore;

  ProxyHeader h;
  h.version = 2;
  const bool proxy = (buf[12] & 0xF) == 1;
  const uint8_t fam = buf[13];
  // Address block sizes (2.2): 12 for IPv4, 36 for IPv6, 216 for UNIX; with an
  // UNSPEC family or transport the layout is unknown and the block is skipped whole.
  size_t addr_len = 0;
  if ((fam & 0xF) != 0) addr_len = (fam >> 4) == 1 ? 12 : (fam >> 4) == 2 ? 36 : (fam >> 4) == 3 ? 216 : 0;
  if (addr_len) {
    if (total < 16 + addr_len) return kProxyBad;
    for (size_t at = 16 + addr_len; at < total;) {
      if (total - at < 3) return kProxyBad;
      at += 3 + ((static_cast<size_t>(buf[at + 1]) << 8) | buf[at + 2]);
      if (at > total) return kProxyBad;
    }
  }
  // Only TCP over IPv4 or IPv6 names a client this server can report; LOCAL
  // (a health check of the balancer's own) and every other kind keep the socket's addresses.
  if (proxy && (fam == 0x11 || fam == 0x21)) {
    const size_t n = fam == 0x11 ? 4 : 16;
    h.family = fam == 0x11 ? AF_INET : AF_INET6;
    std::memcpy(h.src, buf + 16, n);
    std::memcpy(h.dst, buf + 16 + n, n);
    h.src_port = static_cast<uint16_t>((buf[16 + 2 * n] << 8) | buf[17 + 2 * n]);
    h.dst_port = static_cast<uint16_t>((buf[18 + 2 * n] << 8) | buf[19 + 2 * n]);
  }
  *out = h;
  return static_cast<int>(total);
}

}  // namespace

int ProxyParse(const uint8_t* buf, size_t len, unsigned versions, ProxyHeader* out) {
  if (len == 0) return kProxyMore;
  // The first byte tells the versions apart (2.2: "\r" starts v2's signature, "P" v1's).
  if (buf[0] == kV2Sig[0]) return (versions & kProxyV2) ? ParseV2(buf, len, out) : kProxyBad;
  if (buf[0] == static_cast<uint8_t>(kV1Sig[0])) return (versions & kProxyV1) ? ParseV1(buf, len, out) : kProxyBad;
  return kProxyBad;
}

std::string FormatAddress(int family, const uint8_t* addr, uint16_t port) {
  char text[INET6_ADDRSTRLEN] = {0};
  inet_ntop(family, addr, text, sizeof(text));
  if (family == AF_INET6) return std::string("[") + text + "]:" + std::to_string(port);
  return std::string(text) + ":" + std::to_string(port);
}

}  // namespace tcpmod
