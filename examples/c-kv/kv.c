/*
 * c-kv: a line-protocol key-value server as a tcpmod module, in C without libc.
 *
 * One command per line ("\n", an optional "\r" before it is dropped), one reply
 * line per command:
 *
 *   GET key          VALUE <value>  | NOT_FOUND
 *   SET key value    OK             (value: the rest of the line, may hold spaces)
 *   DEL key          DELETED        | NOT_FOUND
 *   INCR key         <new value>    (a missing key counts as 0)
 *   STATS            COMMANDS <n>   (commands on this connection, this one included)
 *   QUIT             BYE, then the server closes
 *   anything else    ERR <why>
 *
 * The data lives in the server-wide key-value store (tcpmod_kv_*), so every
 * connection and every worker sees the same keys. The per-connection command
 * count lives in the state slot: the host keeps it between calls, because the
 * next call of this connection may run in another instance (see docs/abi.md).
 *
 * Input arrives as TCP delivers it: a call may hold half a line, or many. The
 * module consumes only whole lines and leaves the rest to the host, which hands
 * it back at the front of the next call (carry-over). A line that does not fit
 * in the input region can never complete: the module answers "ERR line too
 * long" and closes.
 */
#include "tcpmod.h"

/* ------------------------------------------------------------ memory layout */

/* Longest line, "\n" included: the input region. */
#define IN_CAP 4096
/* Room for the longest reply, "VALUE " + a value of up to IN_CAP bytes + "\n",
 * with space to spare for several short replies to pipelined commands. */
#define OUT_CAP (2 * IN_CAP)

struct conn_state {
  uint32_t commands; /* commands answered on this connection */
};

static uint8_t in_buf[IN_CAP];
static uint8_t out_buf[OUT_CAP];
static struct conn_state state;
static tcpmod_result_t result;

static const tcpmod_iodesc_t io_desc = {
  .in_ptr = in_buf,
  .in_cap = IN_CAP,
  .out_ptr = out_buf,
  .out_cap = OUT_CAP,
  .state_ptr = &state,
  .state_size = sizeof state,
  .res_ptr = &result,
  .flags = 0,
};

_Static_assert(sizeof(struct conn_state) <= TCPMOD_STATE_MAX, "the state slot holds at most 256 bytes");

/* ------------------------------------------------------------ small helpers */

/* No libc: the few byte helpers this module needs. Built with -fno-builtin so
 * that clang does not turn these loops back into calls to memcpy/memcmp. */

static void copy(uint8_t *dst, const uint8_t *src, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) dst[i] = src[i];
}

/* True when the n bytes at a spell the NUL-terminated word w exactly. */
static int is_word(const uint8_t *a, uint32_t n, const char *w) {
  uint32_t i = 0;
  for (; i < n && w[i]; i++)
    if (a[i] != (uint8_t)w[i]) return 0;
  return i == n && w[i] == 0;
}

/* Index of the first `c` in [p, p + n), or n when there is none. */
static uint32_t find(const uint8_t *p, uint32_t n, uint8_t c) {
  uint32_t i = 0;
  while (i < n && p[i] != c) i++;
  return i;
}

/* Writes `v` in decimal at `out` (room for 20 bytes); returns the length. */
static uint32_t format_i64(int64_t v, uint8_t *out) {
  uint8_t digits[20];
  uint32_t n = 0;
  /* Work on the negative value: -INT64_MIN does not exist, INT64_MIN itself does. */
  int64_t neg = v < 0 ? v : -v;
  do {
    digits[n++] = (uint8_t)('0' - neg % 10);
    neg /= 10;
  } while (neg);
  uint32_t len = 0;
  if (v < 0) out[len++] = '-';
  while (n) out[len++] = digits[--n];
  return len;
}

/* ------------------------------------------------------------ replies */

/* The reply being built in the out region: `len` bytes so far. */
static uint32_t out_len;

/* Appends the NUL-terminated text `s` (callers check room first: see SHORT_REPLY). */
static void put(const char *s) {
  while (*s) out_buf[out_len++] = (uint8_t)*s++;
}

/* The longest reply other than VALUE: "ERR ..." texts and a 20-digit number. */
#define SHORT_REPLY 64

/* ------------------------------------------------------------ commands */

/* One command line (without its "\n" or "\r"). Returns 0 when it was answered,
 * -1 when its reply does not fit in what is left of the out region (the caller
 * then stops and lets the host call again with this line first). Sets *close
 * for QUIT. */
static int command(const uint8_t *line, uint32_t n, int *close) {
  uint32_t sp = find(line, n, ' ');
  const uint8_t *arg = line + sp + (sp < n);
  uint32_t arg_len = sp < n ? n - sp - 1 : 0;
  /* GET, DEL and INCR take exactly one key: no spaces, not empty. */
  int one_key = arg_len > 0 && find(arg, arg_len, ' ') == arg_len;

  if (is_word(line, sp, "GET")) {
    if (!one_key) return put("ERR usage: GET key\n"), 0;
    /* The value is copied straight into the out region, after "VALUE ". */
    int32_t room = (int32_t)(OUT_CAP - out_len) - 7;
    int32_t len = tcpmod_kv_get(arg, (int32_t)arg_len, out_buf + out_len + 6, room);
    if (len == TCPMOD_KV_MISSING) return put("NOT_FOUND\n"), 0;
    if (len == TCPMOD_KV_UNAVAILABLE) return put("ERR store unavailable\n"), 0;
    if (len > room) {
      if (out_len > 0) return -1; /* fits once the replies before it are sent */
      return put("ERR value too large\n"), 0;
    }
    copy(out_buf + out_len, (const uint8_t *)"VALUE ", 6);
    out_len += 6 + (uint32_t)len;
    out_buf[out_len++] = '\n';
    return 0;
  }
  if (is_word(line, sp, "SET")) {
    uint32_t ksp = find(arg, arg_len, ' ');
    if (arg_len == 0 || ksp == 0 || ksp == arg_len) return put("ERR usage: SET key value\n"), 0;
    int32_t rc = tcpmod_kv_set(arg, (int32_t)ksp, arg + ksp + 1, (int32_t)(arg_len - ksp - 1));
    if (rc == TCPMOD_KV_OK) put("OK\n");
    else if (rc == TCPMOD_KV_FULL) put("ERR store full\n");
    else put("ERR store unavailable\n");
    return 0;
  }
  if (is_word(line, sp, "DEL")) {
    if (!one_key) return put("ERR usage: DEL key\n"), 0;
    int32_t rc = tcpmod_kv_del(arg, (int32_t)arg_len);
    if (rc == 1) put("DELETED\n");
    else if (rc == 0) put("NOT_FOUND\n");
    else put("ERR store unavailable\n");
    return 0;
  }
  if (is_word(line, sp, "INCR")) {
    if (!one_key) return put("ERR usage: INCR key\n"), 0;
    int64_t value;
    int32_t rc = tcpmod_kv_incr(arg, (int32_t)arg_len, 1, &value);
    if (rc == TCPMOD_KV_UNAVAILABLE) return put("ERR store unavailable\n"), 0;
    if (rc != TCPMOD_KV_OK) return put("ERR not an integer, or out of range\n"), 0;
    out_len += format_i64(value, out_buf + out_len);
    out_buf[out_len++] = '\n';
    return 0;
  }
  if (is_word(line, sp, "STATS")) {
    if (arg_len || sp < n) return put("ERR usage: STATS\n"), 0;
    put("COMMANDS ");
    out_len += format_i64((int64_t)state.commands + 1, out_buf + out_len); /* this one included */
    out_buf[out_len++] = '\n';
    return 0;
  }
  if (is_word(line, sp, "QUIT")) {
    *close = 1;
    return put("BYE\n"), 0;
  }
  return put("ERR unknown command\n"), 0;
}

/* ------------------------------------------------------------ exports */

TCPMOD_EXPORT(tcpmod_abi_v1) void tcpmod_abi_v1(void) {}

TCPMOD_EXPORT(tcpmod_io_desc) const tcpmod_iodesc_t *tcpmod_io_desc(void) {
  return &io_desc;
}

TCPMOD_EXPORT(tcpmod_on_data) int32_t tcpmod_on_data(int32_t conn, int32_t in_len, int32_t flags) {
  (void)conn;
  uint32_t len = (uint32_t)in_len;
  uint32_t pos = 0;
  int close = 0;
  out_len = 0;
  /* Whole lines only, while the next reply is sure to fit. */
  while (!close && pos < len && OUT_CAP - out_len >= SHORT_REPLY) {
    uint32_t nl = find(in_buf + pos, len - pos, '\n');
    if (nl == len - pos) break; /* an incomplete line: wait for the rest */
    uint32_t n = nl > 0 && in_buf[pos + nl - 1] == '\r' ? nl - 1 : nl;
    if (command(in_buf + pos, n, &close) < 0) break;
    state.commands++;
    pos += nl + 1;
  }
  if (pos == 0 && len == IN_CAP && !close) {
    /* The input region is full and holds no "\n": this line can never end. */
    put("ERR line too long\n");
    close = 1;
  }
  result.consumed = close ? len : pos;
  result.out_len = out_len;
  /* At EOF an unfinished last line is dropped; CLOSE after EOF is reported as the peer's close. */
  if (close || ((flags & TCPMOD_FLAG_EOF) && pos == len)) return TCPMOD_CLOSE;
  if ((flags & TCPMOD_FLAG_EOF) && find(in_buf + pos, len - pos, '\n') == len - pos) {
    result.consumed = len;
    return TCPMOD_CLOSE;
  }
  /* Otherwise CONTINUE: when lines remain (the out region filled up), the host calls
   * again at once with them; an incomplete line waits for more input. */
  return TCPMOD_CONTINUE;
}
