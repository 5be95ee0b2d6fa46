/* The ceiling for the echo benchmarks: a minimal single-threaded epoll echo
 * server in plain C. Level-triggered; each readable connection is read into
 * one shared buffer and written straight back. A write the kernel only takes
 * in part parks the rest on the connection and waits for EPOLLOUT (reading
 * from that connection pauses meanwhile, so a peer that does not read gets
 * back-pressure, not unbounded buffering).
 *
 *   c-echo-server PORT [HOST]        (HOST defaults to 127.0.0.1)
 *
 * Prints "listening on HOST:PORT" once accepting; SIGTERM/SIGINT exit 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 65536

struct pending {
  char* data;
  size_t len, off;
};

static struct pending** parked; /* indexed by fd; NULL when nothing waits */
static size_t parked_cap;
static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static void forget(int ep, int fd) {
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  if ((size_t)fd < parked_cap && parked[fd]) {
    free(parked[fd]->data);
    free(parked[fd]);
    parked[fd] = NULL;
  }
  close(fd);
}

static int park(int ep, int fd, const char* data, size_t len) {
  if ((size_t)fd >= parked_cap) {
    size_t cap = parked_cap ? parked_cap : 1024;
    while (cap <= (size_t)fd) cap *= 2;
    struct pending** p = realloc(parked, cap * sizeof(*p));
    if (!p) return -1;
    memset(p + parked_cap, 0, (cap - parked_cap) * sizeof(*p));
    parked = p;
    parked_cap = cap;
  }
  struct pending* w = malloc(sizeof(*w));
  if (!w || !(w->data = malloc(len))) {
    free(w);
    return -1;
  }
  memcpy(w->data, data, len);
  w->len = len;
  w->off = 0;
  parked[fd] = w;
  struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
  return epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

/* Sends as much as the kernel takes; returns bytes sent, or -1 on a hard error. */
static ssize_t send_some(int fd, const char* data, size_t len) {
  size_t done = 0;
  while (done < len) {
    ssize_t w = send(fd, data + done, len - done, MSG_NOSIGNAL);
    if (w > 0) {
      done += (size_t)w;
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && errno == EAGAIN) {
      break;
    } else {
      return -1;
    }
  }
  return (ssize_t)done;
}

static void on_readable(int ep, int fd, char* buf) {
  for (;;) {
    ssize_t r = recv(fd, buf, BUF_SIZE, 0);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return forget(ep, fd);
    if (r < 0) return; /* EAGAIN: drained (or EINTR: level-triggered, we will be back) */
    ssize_t w = send_some(fd, buf, (size_t)r);
    if (w < 0) return forget(ep, fd);
    if ((size_t)w < (size_t)r) {
      if (park(ep, fd, buf + w, (size_t)r - (size_t)w) < 0) forget(ep, fd);
      return;
    }
    if (r < BUF_SIZE) return; /* short read: nothing more queued right now */
  }
}

static void on_writable(int ep, int fd) {
  struct pending* w = parked[fd];
  ssize_t n = send_some(fd, w->data + w->off, w->len - w->off);
  if (n < 0) return forget(ep, fd);
  w->off += (size_t)n;
  if (w->off < w->len) return;
  free(w->data);
  free(w);
  parked[fd] = NULL;
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0) forget(ep, fd);
}

static void on_listen(int ep, int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN) perror("accept4");
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) close(fd);
  }
}

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s PORT [HOST]\n", argv[0]);
    return 2;
  }
  int port = atoi(argv[1]);
  const char* host = argc == 3 ? argv[2] : "127.0.0.1";
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    fprintf(stderr, "c-echo-server: bad IPv4 address %s\n", host);
    return 2;
  }
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(lfd, (struct sockaddr*)&addr, sizeof(addr)) < 0 || listen(lfd, 511) < 0) {
    perror("c-echo-server: bind/listen");
    return 1;
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
  printf("listening on %s:%d\n", host, port);
  fflush(stdout);

  char* buf = malloc(BUF_SIZE);
  struct epoll_event evs[256];
  while (!stop) {
    int n = epoll_wait(ep, evs, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == lfd) {
        on_listen(ep, lfd);
      } else if ((size_t)fd < parked_cap && parked[fd]) {
        on_writable(ep, fd);
      } else {
        on_readable(ep, fd, buf);
      }
    }
  }
  return 0;
}
