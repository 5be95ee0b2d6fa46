/* Closed-loop echo load client: N connections, each sends one message of SIZE
 * bytes, waits until all SIZE bytes are echoed back, verifies them, repeats.
 * Runs single-threaded on epoll so it takes as little of the machine's CPU as
 * possible from the server under test. Prints one JSON line of results.
 *
 *   echo-load HOST PORT CONNECTIONS SIZE SECONDS
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
  int fd;
  size_t sent, got;
};

/* Sends what is still unsent of the message; false on a hard socket error. */
static int send_more(struct conn* c, const char* msg, size_t size) {
  while (c->sent < size) {
    ssize_t w = send(c->fd, msg + c->sent, size - c->sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) return errno == EAGAIN || errno == EINTR;
    c->sent += (size_t)w;
  }
  return 1;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s HOST PORT CONNECTIONS SIZE SECONDS\n", argv[0]);
    return 2;
  }
  const char* host = argv[1];
  int port = atoi(argv[2]), nconn = atoi(argv[3]);
  size_t size = (size_t)atol(argv[4]);
  double seconds = atof(argv[5]);
  char* msg = malloc(size);
  char* buf = malloc(size);
  for (size_t i = 0; i < size; i++) msg[i] = (char)('a' + i % 26);
  struct conn* conns = calloc(nconn, sizeof(*conns));
  int ep = epoll_create1(0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, host, &sa.sin_addr);
  for (int i = 0; i < nconn; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr*)&sa, sizeof(sa)) < 0) {
      fprintf(stderr, "connect: %s\n", strerror(errno));
      return 1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    conns[i].fd = fd;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  long long trips = 0, errors = 0;
  double start = now_s(), end = start + seconds;
  for (int i = 0; i < nconn; i++)
    if (!send_more(&conns[i], msg, size)) errors++;
  struct epoll_event evs[256];
  while (now_s() < end) {
    int n = epoll_wait(ep, evs, 256, 100);
    for (int k = 0; k < n; k++) {
      struct conn* c = &conns[evs[k].data.u32];
      ssize_t r = recv(c->fd, buf + c->got, size - c->got, MSG_DONTWAIT);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        errors++;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        continue;
      }
      c->got += (size_t)r;
      if (c->got == size) {
        if (memcmp(buf, msg, size) != 0) errors++;
        trips++;
        c->got = 0;
        c->sent = 0;
      }
      /* A partly sent message goes on as its echo comes back (the echo frees
       * buffer space); a complete round trip starts the next message. */
      if (!send_more(c, msg, size)) {
        errors++;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
      }
    }
  }
  double elapsed = now_s() - start;
  printf("{\"connections\":%d,\"size\":%zu,\"seconds\":%.3f,\"roundtrips\":%lld,\"rps\":%.1f,\"errors\":%lld}\n",
         nconn, size, elapsed, trips, trips / elapsed, errors);
  return errors ? 1 : 0;
}
