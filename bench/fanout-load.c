/* Pub/sub fan-out load client (RESP2): SUBSCRIBERS connections SUBSCRIBE to
 * one channel, one more connection PUBLISHes to it, keeping at most WINDOW
 * messages published and not yet received by every subscriber (so neither
 * server piles messages up for subscribers that lag: what is measured is the
 * rate the server delivers at). Each message carries its send time; two
 * subscribers (the first and the last) time every message they get. Single
 * epoll thread, so it takes as little of the machine as it can. Prints one
 * JSON line: delivered (messages received, all subscribers), published,
 * seconds, rps (delivered per second), p50Us, p99Us (delivery latency), errors.
 *
 *   fanout-load HOST PORT SUBSCRIBERS SECONDS WINDOW [PUBLISH_PORT]
 *
 * With PUBLISH_PORT the publisher connects there (another process: the
 * messages then cross between two servers, e.g. through tcpmod's --bus).
 */
#include <sys/epoll.h>

#include "load-common.h"

#define DIGITS 20
static const char kChannel[] = "fan";

struct sub {
  int fd;
  long long bytes;   /* received after the subscribe confirmation */
  int sampled;       /* times its messages */
  char frame[128];   /* a partial frame (sampled subscribers only) */
  int have;
};

/* Reads exactly n bytes (blocking). */
static void read_exact(int fd, char* p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, p + got, n - got);
    if (r <= 0) {
      fprintf(stderr, "subscribe: connection closed\n");
      exit(2);
    }
    got += (size_t)r;
  }
}

int main(int argc, char** argv) {
  if (argc != 6 && argc != 7) {
    fprintf(stderr, "usage: fanout-load HOST PORT SUBSCRIBERS SECONDS WINDOW [PUBLISH_PORT]\n");
    return 2;
  }
  const char* host = argv[1];
  int port = atoi(argv[2]), n = atoi(argv[3]);
  double seconds = atof(argv[4]);
  long long window = atoll(argv[5]);
  char frame_head[64], confirm[64];
  /* The push each subscriber gets: its length is fixed, so byte counts are message counts. */
  int head = snprintf(frame_head, sizeof(frame_head), "*3\r\n$7\r\nmessage\r\n$%zu\r\n%s\r\n$%d\r\n", strlen(kChannel), kChannel, DIGITS);
  const long long frame = head + DIGITS + 2;
  int clen = snprintf(confirm, sizeof(confirm), "*3\r\n$9\r\nsubscribe\r\n$%zu\r\n%s\r\n:1\r\n", strlen(kChannel), kChannel);

  struct sub* subs = calloc((size_t)n, sizeof(struct sub));
  int ep = epoll_create1(0);
  for (int i = 0; i < n; i++) {
    subs[i].fd = dial("fanout-load", host, port);
    char cmd[64];
    int len = snprintf(cmd, sizeof(cmd), "*2\r\n$9\r\nSUBSCRIBE\r\n$%zu\r\n%s\r\n", strlen(kChannel), kChannel);
    if (write(subs[i].fd, cmd, (size_t)len) != len) return 2;
    char got[64];
    read_exact(subs[i].fd, got, (size_t)clen);
    if (memcmp(got, confirm, (size_t)clen) != 0) {
      fprintf(stderr, "subscribe: unexpected reply\n");
      return 2;
    }
    subs[i].sampled = i == 0 || i == n - 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, subs[i].fd, &ev);
  }
  int pub = dial("fanout-load", host, argc == 7 ? atoi(argv[6]) : port);
  struct epoll_event pev = {.events = EPOLLIN, .data.u32 = (uint32_t)n};
  epoll_ctl(ep, EPOLL_CTL_ADD, pub, &pev);

  size_t lat_cap = 1 << 22, lat_n = 0;
  long long* lat = malloc(lat_cap * sizeof(long long));
  long long published = 0, min_got = 0, errors = 0;
  char buf[1 << 16];
  struct epoll_event evs[256];
  long long t0 = now_ns(), end = t0 + (long long)(seconds * 1e9);
  char cmd[128];
  int cmd_head = snprintf(cmd, sizeof(cmd), "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n%s\r\n$%d\r\n", strlen(kChannel), kChannel, DIGITS);
  while (now_ns() < end) {
    /* Publish while fewer than WINDOW messages are still on their way to the slowest subscriber. */
    if (published - min_got >= window) {
      long long m = -1;
      for (int i = 0; i < n; i++) {
        if (subs[i].fd < 0) continue;
        long long g = subs[i].bytes / frame;
        if (m < 0 || g < m) m = g;
      }
      min_got = m < 0 ? published : m;
    }
    char out[128 * 16];
    size_t used = 0;
    while (published - min_got < window && used + 128 <= sizeof(out)) {
      memcpy(out + used, cmd, (size_t)cmd_head);
      used += (size_t)cmd_head;
      used += (size_t)snprintf(out + used, 64, "%0*lld\r\n", DIGITS, now_ns());
      published++;
    }
    if (used > 0 && send(pub, out, used, MSG_NOSIGNAL) != (ssize_t)used) {
      fprintf(stderr, "publish: short write\n");
      errors++;
      break;
    }
    int k = epoll_wait(ep, evs, 256, 10);
    for (int e = 0; e < k; e++) {
      uint32_t i = evs[e].data.u32;
      if (i == (uint32_t)n) {
        if (read(pub, buf, sizeof(buf)) <= 0) {
          fprintf(stderr, "publisher closed\n");
          errors++;
          end = 0;
        }
        continue;
      }
      struct sub* s = &subs[i];
      ssize_t r = read(s->fd, buf, sizeof(buf));
      if (r <= 0) {
        errors++;
        epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
        s->fd = -1;
        continue;
      }
      s->bytes += r;
      if (!s->sampled) continue;
      long long t = now_ns();
      for (ssize_t j = 0; j < r; j++) {
        s->frame[s->have++] = buf[j];
        if (s->have == frame) {
          long long sent = atoll(s->frame + head);
          if (lat_n < lat_cap) lat[lat_n++] = t - sent;
          s->have = 0;
        }
      }
    }
  }
  double secs = (now_ns() - t0) / 1e9;
  long long delivered = 0;
  for (int i = 0; i < n; i++) delivered += subs[i].bytes / frame;
  qsort(lat, lat_n, sizeof(long long), cmp_ll);
  double p50 = lat_n ? lat[lat_n / 2] / 1e3 : -1, p99 = lat_n ? lat[(size_t)(lat_n * 0.99)] / 1e3 : -1;
  printf("{\"delivered\":%lld,\"published\":%lld,\"seconds\":%.3f,\"rps\":%.1f,\"p50Us\":%.1f,\"p99Us\":%.1f,\"errors\":%lld}\n",
         delivered, published, secs, delivered / secs, p50, p99, errors);
  return 0;
}
