/* What the single-threaded epoll load clients (fanout-load.c, mqtt-load.c)
 * share: a monotonic clock, a blocking connect with Nagle off, and the
 * comparison their latency percentiles sort with. Static functions in a
 * header, so each client stays one translation unit (bench/lib/tools.mjs
 * buildC compiles `gcc NAME.c`, and rebuilds when this file is newer). */
#ifndef TCPMOD_BENCH_LOAD_COMMON_H
#define TCPMOD_BENCH_LOAD_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A blocking TCP connection to the IPv4 HOST:PORT with TCP_NODELAY; on failure
 * prints "WHO: ..." and exits 2 (a load client has nothing to do without it). */
static int dial(const char* who, const char* host, int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    fprintf(stderr, "%s: HOST must be an IPv4 address\n", who);
    exit(2);
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr*)&a, sizeof(a)) < 0) {
    fprintf(stderr, "%s: connect: %s\n", who, strerror(errno));
    exit(2);
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

/* qsort's order of long longs, ascending. */
static int cmp_ll(const void* a, const void* b) {
  long long x = *(const long long*)a, y = *(const long long*)b;
  return x < y ? -1 : x > y;
}

#endif
