/* MQTT 3.1.1 fan-out load client: SUBSCRIBERS connections CONNECT (clean
 * session) and SUBSCRIBE to one topic at QoS 0, each waiting for its CONNACK
 * and SUBACK; one more connection PUBLISHes QoS 0 messages to the topic,
 * keeping at most WINDOW messages published and not yet received by the
 * slowest subscriber (so no broker piles a backlog up: what is measured is the
 * rate it delivers at). Single epoll thread, so it takes as little of the
 * machine as it can.
 *
 *   mqtt-load HOST PORT SUBSCRIBERS SECONDS WINDOW [LATENCY_SECONDS]
 *
 * A message's 16-byte payload is its sequence number and its send time
 * (8 bytes each, big-endian). Every subscriber checks that it gets 0, 1, 2, …
 * in order (a gap or a repeat counts in `errors`); under load, 8 subscribers
 * spread over the set (all when fewer) time every message they get (delivery
 * latency, one clock).
 * Packets are framed exactly (remaining-length varints, packets split across
 * reads, several in one read); anything but CONNACK, SUBACK or a QoS 0
 * PUBLISH of the topic with a 16-byte payload is a protocol error (exit 2).
 * After SECONDS the publisher stops and what is in flight drains (at most
 * 10 s). Then, for LATENCY_SECONDS (default 1; 0: none), one message at a
 * time (the next once every subscriber has the last), every subscriber timing
 * every message: the spread of one fan-out, without queueing. After a last
 * drain, `lost` = published × subscribers − all deliveries.
 * Prints one JSON line: delivered (deliveries in the SECONDS phase), seconds,
 * rps (delivered per second), total (every delivery, drains and the latency
 * phase included), published, lost, p50Us, p99Us (under load, the sampled
 * subscribers), idleP50Us, idleP99Us, idleSamples (one message at a time),
 * errors (subscribers closed by the broker, deliveries out of order),
 * subscribers, window,
 * connectSeconds (setting the subscribers up, not timed), clientCpuSeconds
 * (this process's CPU over the SECONDS phase: near `seconds` means the client
 * was the limit).
 */
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/resource.h>

#include "load-common.h"

static const char kTopic[] = "bench/fan";
#define TOPIC_LEN ((int)sizeof(kTopic) - 1)
#define PAYLOAD 16
#define PUBLISH_LEN (2 + 2 + TOPIC_LEN + PAYLOAD) /* fixed header (1-byte length) + topic + payload */
#define CARRY 64                                  /* a partial packet; every packet we accept is shorter */
#define SAMPLED 8

struct conn {
  int fd;
  int connacked, subacked, sampled;
  long long got;   /* messages received, in order */
  uint8_t carry[CARRY];
  int have;        /* bytes in carry */
};

static long long g_errors;
static long long g_total;    /* every delivery */
struct samples {
  long long* v;
  size_t n, cap;
};
static struct samples g_loaded, g_idle; /* delivery latencies, ns: under load; one message at a time */
static struct samples* g_rec;           /* where the current phase records */
static int g_all_timed;                 /* every subscriber times its messages, not only the sampled */
static struct conn* g_subs;
static int g_n, g_live, g_ep;
static struct conn g_pub;
static long long g_published;
static long long g_now;      /* time of the read being parsed */

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char* what) {
  fprintf(stderr, "mqtt-load: %s\n", what);
  exit(2);
}

static void write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) die("write failed (connection closed?)");
    p += w;
    n -= (size_t)w;
  }
}

static size_t put_u16(uint8_t* p, unsigned v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
  return 2;
}

static void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

static uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

/* Remaining length as the MQTT varint (7 bits a byte, low first); returns its size. */
static size_t put_varint(uint8_t* p, size_t v) {
  size_t n = 0;
  do {
    uint8_t b = v % 128;
    v /= 128;
    p[n++] = v ? (b | 128) : b;
  } while (v);
  return n;
}

/* A packet's total size from its fixed header: 1 with *total set, 0 when more
 * bytes are needed, -1 when the length takes more than the 4 bytes allowed. */
static int packet_size(const uint8_t* p, size_t n, size_t* total) {
  size_t value = 0, mult = 1;
  for (size_t i = 1; i <= 4; i++) {
    if (i >= n) return 0;
    value += (size_t)(p[i] & 127) * mult;
    if (!(p[i] & 128)) {
      *total = 1 + i + value;
      return 1;
    }
    mult *= 128;
  }
  return -1;
}

/* One whole packet from the broker. */
static void on_packet(struct conn* c, const uint8_t* p, size_t n) {
  size_t hl = 2; /* fixed header size: the type byte and the length varint */
  while (p[hl - 1] & 128) hl++;
  switch (p[0] >> 4) {
    case 2: /* CONNACK: flags, return code */
      if (n != 4 || p[0] != 0x20 || p[3] != 0) die("CONNACK refused or malformed");
      c->connacked = 1;
      return;
    case 9: /* SUBACK: packet id 1, granted QoS 0 */
      if (n != 5 || p[0] != 0x90 || p[2] != 0 || p[3] != 1 || p[4] != 0) die("SUBACK malformed or not QoS 0");
      c->subacked = 1;
      return;
    case 3: { /* PUBLISH, QoS 0 (no packet id) */
      if ((p[0] & 6) != 0) die("PUBLISH with QoS > 0");
      if (n < hl + 2) die("PUBLISH too short");
      size_t tl = (size_t)p[hl] << 8 | p[hl + 1];
      if (tl != TOPIC_LEN || memcmp(p + hl + 2, kTopic, TOPIC_LEN) != 0) die("PUBLISH of another topic");
      if (n - hl - 2 - tl != PAYLOAD) die("PUBLISH payload is not 16 bytes");
      const uint8_t* body = p + hl + 2 + tl;
      uint64_t seq = get_u64(body);
      if ((long long)seq != c->got) {
        g_errors++; /* a gap or a repeat: order per publisher is part of the contract */
        c->got = (long long)seq;
      }
      c->got++;
      g_total++;
      if ((c->sampled || g_all_timed) && g_rec->n < g_rec->cap) g_rec->v[g_rec->n++] = g_now - (long long)get_u64(body + 8);
      return;
    }
    case 13: /* PINGRESP */
      return;
    default:
      die("unexpected packet type");
  }
}

/* Frames a read: completes a carried partial packet, takes the whole ones in
 * place, carries the tail. */
static void consume(struct conn* c, const uint8_t* d, size_t n) {
  size_t total;
  while (n > 0 && c->have > 0) {
    int r = packet_size(c->carry, (size_t)c->have, &total);
    if (r < 0) die("malformed remaining length");
    if (r == 0) { /* the header itself is split: a byte at a time */
      c->carry[c->have++] = *d++;
      n--;
      continue;
    }
    if (total > CARRY) die("packet too large");
    size_t take = total - (size_t)c->have < n ? total - (size_t)c->have : n;
    memcpy(c->carry + c->have, d, take);
    c->have += (int)take;
    d += take;
    n -= take;
    if ((size_t)c->have == total) {
      on_packet(c, c->carry, total);
      c->have = 0;
    }
  }
  while (n > 0) {
    int r = packet_size(d, n, &total);
    if (r < 0) die("malformed remaining length");
    if (r == 1 && total > CARRY) die("packet too large");
    if (r == 0 || total > n) {
      memcpy(c->carry, d, n);
      c->have = (int)n;
      return;
    }
    on_packet(c, d, total);
    d += total;
    n -= total;
  }
}

/* Reads once; returns 0 when the connection closed or failed. */
static int read_some(struct conn* c, uint8_t* buf, size_t cap) {
  ssize_t r = read(c->fd, buf, cap);
  if (r <= 0) return 0;
  g_now = now_ns();
  consume(c, buf, (size_t)r);
  return 1;
}

static size_t connect_packet(uint8_t* out, const char* client_id) {
  uint8_t var[128];
  size_t v = 0, idl = strlen(client_id);
  v += put_u16(var + v, 4);
  memcpy(var + v, "MQTT", 4);
  v += 4;
  var[v++] = 4;    /* protocol level: 3.1.1 */
  var[v++] = 0x02; /* clean session */
  v += put_u16(var + v, 0); /* keep-alive off: the broker expects no PINGREQ */
  v += put_u16(var + v, (unsigned)idl);
  memcpy(var + v, client_id, idl);
  v += idl;
  size_t o = 0;
  out[o++] = 0x10;
  o += put_varint(out + o, v);
  memcpy(out + o, var, v);
  return o + v;
}

static size_t subscribe_packet(uint8_t* out) {
  size_t o = 0;
  out[o++] = 0x82;
  o += put_varint(out + o, 2 + 2 + TOPIC_LEN + 1);
  o += put_u16(out + o, 1); /* packet id */
  o += put_u16(out + o, TOPIC_LEN);
  memcpy(out + o, kTopic, TOPIC_LEN);
  o += TOPIC_LEN;
  out[o++] = 0; /* requested QoS */
  return o;
}

/* Publishes for `seconds`, keeping at most `window` messages on their way to
 * the slowest subscriber, then waits (at most 10 s) for what is in flight.
 * Returns the deliveries while publishing; *secs is how long that was, *cpu
 * this process's CPU time over it. */
static long long phase(long long window, double seconds, double* secs, double* cpu) {
  static uint8_t buf[1 << 16];
  struct epoll_event evs[256];
  long long total0 = g_total, min_got = g_published, delivered = 0;
  long long t0 = now_ns(), end = t0 + (long long)(seconds * 1e9), drain_end = 0;
  double cpu0 = cpu_seconds();
  int publishing = 1;
  for (;;) {
    long long t = now_ns();
    if (publishing && t >= end) { /* stop; let what is in flight arrive */
      publishing = 0;
      *secs = (t - t0) / 1e9;
      *cpu = cpu_seconds() - cpu0;
      delivered = g_total - total0;
      drain_end = t + 10000000000LL;
    }
    if (g_published - min_got >= window || !publishing) {
      long long m = -1;
      for (int i = 0; i < g_n; i++) {
        if (g_subs[i].fd < 0) continue;
        if (m < 0 || g_subs[i].got < m) m = g_subs[i].got;
      }
      min_got = m < 0 ? g_published : m;
    }
    if (!publishing && (min_got >= g_published || t >= drain_end || g_live == 0)) return delivered;
    uint8_t out[PUBLISH_LEN * 32];
    size_t used = 0;
    while (publishing && g_published - min_got < window && used + PUBLISH_LEN <= sizeof(out)) {
      uint8_t* p = out + used;
      p[0] = 0x30;
      p[1] = PUBLISH_LEN - 2;
      put_u16(p + 2, TOPIC_LEN);
      memcpy(p + 4, kTopic, TOPIC_LEN);
      put_u64(p + 4 + TOPIC_LEN, (uint64_t)g_published);
      put_u64(p + 4 + TOPIC_LEN + 8, (uint64_t)now_ns());
      used += PUBLISH_LEN;
      g_published++;
    }
    if (used > 0) write_all(g_pub.fd, out, used);
    int k = epoll_wait(g_ep, evs, 256, 10);
    for (int e = 0; e < k; e++) {
      uint32_t i = evs[e].data.u32;
      struct conn* c = i == (uint32_t)g_n ? &g_pub : &g_subs[i];
      if (read_some(c, buf, sizeof(buf))) continue;
      if (c == &g_pub) die("publisher closed");
      g_errors++; /* a subscriber the broker closed: its messages count as lost */
      epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
      close(c->fd);
      c->fd = -1;
      g_live--;
    }
  }
}

/* The q-quantile of the samples in µs (sorts them); -1 when there are none. */
static double pct(struct samples* s, double q) {
  if (s->n == 0) return -1;
  qsort(s->v, s->n, sizeof(long long), cmp_ll);
  size_t i = (size_t)(s->n * q);
  return s->v[i < s->n ? i : s->n - 1] / 1e3;
}

int main(int argc, char** argv) {
  if (argc != 6 && argc != 7) {
    fprintf(stderr, "usage: mqtt-load HOST PORT SUBSCRIBERS SECONDS WINDOW [LATENCY_SECONDS]\n");
    return 2;
  }
  const char* host = argv[1];
  int port = atoi(argv[2]), n = atoi(argv[3]);
  double seconds = atof(argv[4]), latency_seconds = argc == 7 ? atof(argv[6]) : 1;
  long long window = atoll(argv[5]);
  if (port <= 0 || n <= 0 || !(seconds > 0) || window <= 0) die("PORT, SUBSCRIBERS, SECONDS and WINDOW must be > 0");
  if (!(latency_seconds >= 0)) die("LATENCY_SECONDS must be >= 0");

  /* Subscribers one after the other (CONNECT and SUBSCRIBE in one write, as
   * 3.1.1 allows), each complete before the next: no listen backlog overflows. */
  struct conn* subs = g_subs = calloc((size_t)n, sizeof(struct conn));
  g_n = g_live = n;
  static uint8_t buf[1 << 16];
  uint8_t pkt[256];
  long long c0 = now_ns();
  g_ep = epoll_create1(0);
  int every = n > SAMPLED ? n / SAMPLED : 1;
  for (int i = 0; i < n; i++) {
    struct conn* c = &subs[i];
    c->fd = dial("mqtt-load", host, port);
    char id[64];
    snprintf(id, sizeof(id), "mqtt-load-%d-%d", (int)getpid(), i);
    size_t len = connect_packet(pkt, id);
    len += subscribe_packet(pkt + len);
    write_all(c->fd, pkt, len);
    while (!c->subacked) {
      if (!read_some(c, buf, sizeof(buf))) die("subscriber closed before its SUBACK");
    }
    if (!c->connacked) die("SUBACK before CONNACK");
    c->sampled = i % every == 0 && i / every < SAMPLED; /* SAMPLED of them (all when fewer), spread */
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &ev);
  }
  g_pub.fd = dial("mqtt-load", host, port);
  {
    char id[64];
    snprintf(id, sizeof(id), "mqtt-load-%d-pub", (int)getpid());
    write_all(g_pub.fd, pkt, connect_packet(pkt, id));
    while (!g_pub.connacked) {
      if (!read_some(&g_pub, buf, sizeof(buf))) die("publisher closed before its CONNACK");
    }
  }
  struct epoll_event pev = {.events = EPOLLIN, .data.u32 = (uint32_t)n};
  epoll_ctl(g_ep, EPOLL_CTL_ADD, g_pub.fd, &pev);
  double connect_seconds = (now_ns() - c0) / 1e9;

  g_loaded.cap = g_idle.cap = 1 << 22;
  g_loaded.v = malloc(g_loaded.cap * sizeof(long long));
  g_idle.v = malloc(g_idle.cap * sizeof(long long));
  g_rec = &g_loaded;
  double secs, cpu;
  long long delivered = phase(window, seconds, &secs, &cpu);
  double idle_secs = 0, idle_cpu;
  if (latency_seconds > 0 && g_live > 0) {
    g_rec = &g_idle;
    g_all_timed = 1;
    phase(1, latency_seconds, &idle_secs, &idle_cpu);
  }
  /* A clean goodbye, so no broker counts these as dropped connections. */
  static const uint8_t disconnect[2] = {0xE0, 0x00};
  for (int i = 0; i < n; i++)
    if (subs[i].fd >= 0) send(subs[i].fd, disconnect, 2, MSG_NOSIGNAL);
  send(g_pub.fd, disconnect, 2, MSG_NOSIGNAL);
  long long lost = g_published * n - g_total;
  double p50 = pct(&g_loaded, 0.5), p99 = pct(&g_loaded, 0.99), ip50 = pct(&g_idle, 0.5), ip99 = pct(&g_idle, 0.99);
  printf("{\"delivered\":%lld,\"seconds\":%.3f,\"rps\":%.1f,\"total\":%lld,\"published\":%lld,\"lost\":%lld,"
         "\"p50Us\":%.1f,\"p99Us\":%.1f,\"idleP50Us\":%.1f,\"idleP99Us\":%.1f,\"idleSamples\":%zu,\"errors\":%lld,"
         "\"subscribers\":%d,\"window\":%lld,\"connectSeconds\":%.3f,\"clientCpuSeconds\":%.3f}\n",
         delivered, secs, delivered / secs, g_total, g_published, lost, p50, p99, ip50, ip99, g_idle.n, g_errors, n, window,
         connect_seconds, cpu);
  return 0;
}
