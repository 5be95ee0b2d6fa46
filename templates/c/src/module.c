/*
 * A line protocol to start from, in C without libc. One command per line (LF
 * or CRLF), one reply line each:
 *   PING             PONG
 *   SET key value    OK            (the shared key-value store)
 *   GET key          the value, or (nil)
 *   INCR key         the new count
 *   SEEN             lines this connection has sent, this one included
 *                    (kept in the per-connection state slot)
 *   QUIT             BYE, then the connection closes
 * A line longer than MAX_LINE gets "ERR line too long" and the connection closes.
 *
 * The whole contract is node_modules/tcpmod/docs/abi.md; include/tcpmod.h
 * declares it for C.
 */
#include "tcpmod.h"

#define IN_CAP 4096
#define OUT_CAP 4096
#define MAX_LINE 1024
/* A value longer than this is reported, not copied. */
#define VALUE_CAP 512
/* Room every reply fits in: a value, its newline, or a short text. */
#define REPLY_MAX (VALUE_CAP + 64)

static uint8_t in_buf[IN_CAP];
static uint8_t out_buf[OUT_CAP];
static uint32_t seen; /* the state slot: the host saves and restores it per connection */
static tcpmod_result_t result;
static const tcpmod_iodesc_t io_desc = {
  .in_ptr = in_buf, .in_cap = IN_CAP,
  .out_ptr = out_buf, .out_cap = OUT_CAP,
  .state_ptr = &seen, .state_size = sizeof seen,
  .res_ptr = &result, .flags = 0,
};

static uint32_t out_len;

static void put(const char *s) {
  while (*s) out_buf[out_len++] = (uint8_t)*s++;
}

static void put_int(int64_t v) {
  uint8_t digits[20];
  uint32_t n = 0;
  int64_t neg = v < 0 ? v : -v; /* negative, since -INT64_MIN does not exist */
  do {
    digits[n++] = (uint8_t)('0' - neg % 10);
    neg /= 10;
  } while (neg);
  if (v < 0) out_buf[out_len++] = '-';
  while (n) out_buf[out_len++] = digits[--n];
}

/* Index of the first `c` in [p, p + n), or -1. */
static int32_t find(const uint8_t *p, uint32_t n, uint8_t c) {
  for (uint32_t i = 0; i < n; i++)
    if (p[i] == c) return (int32_t)i;
  return -1;
}

/* True when the n bytes at p spell `word` (upper case), in any case. */
static int is_verb(const uint8_t *p, uint32_t n, const char *word) {
  uint32_t i = 0;
  for (; i < n && word[i]; i++) {
    uint8_t c = p[i];
    if (c >= 'a' && c <= 'z') c -= 32;
    if (c != (uint8_t)word[i]) return 0;
  }
  return i == n && word[i] == 0;
}

/* Answers one line (without its line end); returns 1 when the connection should close. */
static int command(const uint8_t *p, uint32_t n) {
  int32_t sp = find(p, n, ' ');
  uint32_t verb_len = sp < 0 ? n : (uint32_t)sp;
  const uint8_t *rest = sp < 0 ? p + n : p + sp + 1;
  uint32_t rest_len = sp < 0 ? 0 : n - (uint32_t)sp - 1;
  if (is_verb(p, verb_len, "PING")) put("PONG\n");
  else if (is_verb(p, verb_len, "SEEN")) { put_int(seen); put("\n"); }
  else if (is_verb(p, verb_len, "QUIT")) { put("BYE\n"); return 1; }
  else if (is_verb(p, verb_len, "GET") && rest_len > 0) {
    int32_t len = tcpmod_kv_get(rest, (int32_t)rest_len, out_buf + out_len, VALUE_CAP);
    if (len == TCPMOD_KV_MISSING) put("(nil)\n");
    else if (len < 0) put("ERR store unavailable\n");
    else if (len > VALUE_CAP) put("ERR value too long\n");
    else { out_len += (uint32_t)len; put("\n"); }
  } else if (is_verb(p, verb_len, "SET") && rest_len > 0) {
    int32_t k = find(rest, rest_len, ' ');
    if (k <= 0) put("ERR usage: SET key value\n");
    else if (tcpmod_kv_set(rest, k, rest + k + 1, (int32_t)rest_len - k - 1) == TCPMOD_KV_OK) put("OK\n");
    else put("ERR store full or unavailable\n");
  } else if (is_verb(p, verb_len, "INCR") && rest_len > 0) {
    int64_t value;
    if (tcpmod_kv_incr(rest, (int32_t)rest_len, 1, &value) == TCPMOD_KV_OK) { put_int(value); put("\n"); }
    else put("ERR not an integer\n");
  } else put("ERR unknown command\n");
  return 0;
}

TCPMOD_EXPORT(tcpmod_abi_v1) void tcpmod_abi_v1(void) {}

TCPMOD_EXPORT(tcpmod_io_desc) const tcpmod_iodesc_t *tcpmod_io_desc(void) { return &io_desc; }

TCPMOD_EXPORT(tcpmod_on_data) int32_t tcpmod_on_data(int32_t conn, int32_t in_len, int32_t flags) {
  (void)conn;
  uint32_t len = (uint32_t)in_len, pos = 0;
  out_len = 0;
  int close = 0;
  /* Whole lines, while the next reply surely fits; the host calls again for the rest. */
  while (!close && OUT_CAP - out_len >= REPLY_MAX) {
    int32_t nl = find(in_buf + pos, len - pos, '\n');
    if (nl < 0) break;
    uint32_t n = (uint32_t)nl;
    if (n > 0 && in_buf[pos + n - 1] == '\r') n--;
    seen++;
    close = command(in_buf + pos, n);
    pos += (uint32_t)nl + 1;
  }
  if (!close && find(in_buf + pos, len - pos, '\n') < 0) {
    if (len - pos > MAX_LINE) { put("ERR line too long\n"); close = 1; }
    else if (flags & TCPMOD_FLAG_EOF) close = 1; /* the client is done: so are we */
  }
  result.consumed = close ? len : pos;
  result.out_len = out_len;
  return close ? TCPMOD_CLOSE : TCPMOD_CONTINUE;
}
