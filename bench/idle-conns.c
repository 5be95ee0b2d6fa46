/* Idle-connection client for the scale benchmark: opens N TCP connections one
 * after another (blocking connect, so the pace follows the server's accepting),
 * prints one JSON line, then holds them all open, sending nothing, until its
 * stdin reaches EOF; then it closes them and exits.
 *
 *   idle-conns HOST PORT N [SRC[,SRC...]]
 *
 * SRC: IPv4 source addresses the connections are spread over, round-robin
 * (e.g. 127.0.0.2,127.0.0.3). The kernel's ephemeral port range allows one
 * connection per (source address, port) to a given server, about 28,000 per
 * source address by default; more source addresses, more connections. Each
 * socket is bound with IP_BIND_ADDRESS_NO_PORT, so the port is still chosen
 * at connect time. Without SRC the kernel picks the source address.
 *
 * With IDLE_CONNS_SEND in the environment, each connection sends that text
 * once after connecting, "{i}" replaced by the connection's index (e.g.
 * "SUBSCRIBE ch:{i}\r\n": N idle subscribers of N channels); what the server
 * answers is never read (it stays in the socket's receive buffer).
 *
 * With IDLE_CONNS_RCVBUF=BYTES each socket's SO_RCVBUF is set before it
 * connects: a small receive window, so that a server sending to these
 * connections fills their kernel buffers soon (slow readers, cheaply).
 *
 * Raises its own RLIMIT_NOFILE as far as needed (and allowed).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_SRC 64

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The greeting of connection i: tmpl with each "{i}" replaced by i; its length, or -1 when it does not fit. */
static int greeting(const char* tmpl, int i, char* out, size_t cap) {
  size_t n = 0;
  for (const char* p = tmpl; *p;) {
    if (strncmp(p, "{i}", 3) == 0) {
      int w = snprintf(out + n, cap - n, "%d", i);
      if (w < 0 || (size_t)w >= cap - n) return -1;
      n += (size_t)w;
      p += 3;
    } else {
      if (n + 1 >= cap) return -1;
      out[n++] = *p++;
    }
  }
  return (int)n;
}

static void raise_nofile(rlim_t want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want) return;
  if (rl.rlim_max < want) rl.rlim_max = want; /* works when privileged */
  rl.rlim_cur = want;
  if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    fprintf(stderr, "usage: %s HOST PORT N [SRC[,SRC...]]\n", argv[0]);
    return 2;
  }
  int port = atoi(argv[2]), n = atoi(argv[3]);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
    fprintf(stderr, "idle-conns: bad IPv4 address %s\n", argv[1]);
    return 2;
  }
  struct sockaddr_in src[MAX_SRC];
  int nsrc = 0;
  if (argc == 5) {
    char* list = strdup(argv[4]);
    for (char* tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
      if (nsrc == MAX_SRC) {
        fprintf(stderr, "idle-conns: at most %d source addresses\n", MAX_SRC);
        return 2;
      }
      src[nsrc] = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = 0};
      if (inet_pton(AF_INET, tok, &src[nsrc].sin_addr) != 1) {
        fprintf(stderr, "idle-conns: bad IPv4 source address %s\n", tok);
        return 2;
      }
      nsrc++;
    }
    free(list);
  }
  raise_nofile((rlim_t)n + 64);
  int* fds = calloc((size_t)n, sizeof(int));
  const char* tmpl = getenv("IDLE_CONNS_SEND");
  const char* rcvbuf_env = getenv("IDLE_CONNS_RCVBUF");
  int rcvbuf = rcvbuf_env ? atoi(rcvbuf_env) : 0;
  char msg[512];
  int opened = 0, errors = 0;
  const char* first_error = "";
  double start = now_s();
  for (int i = 0; i < n; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
      errors++;
      first_error = strerror(errno);
      break; /* out of descriptors: no point going on */
    }
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (nsrc) {
      int one = 1;
      setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
      if (bind(fd, (struct sockaddr*)&src[i % nsrc], sizeof(src[0])) < 0) {
        if (!errors) first_error = strerror(errno);
        errors++;
        close(fd);
        continue;
      }
    }
    if (connect(fd, (struct sockaddr*)&sa, sizeof(sa)) < 0) {
      if (!errors) first_error = strerror(errno);
      errors++;
      close(fd);
      continue;
    }
    if (tmpl && *tmpl) {
      int len = greeting(tmpl, i, msg, sizeof(msg));
      if (len < 0) {
        fprintf(stderr, "idle-conns: IDLE_CONNS_SEND is longer than %zu bytes\n", sizeof(msg) - 1);
        return 2;
      }
      if (write(fd, msg, (size_t)len) != len) {
        if (!errors) first_error = strerror(errno);
        errors++;
        close(fd);
        continue;
      }
    }
    fds[opened++] = fd;
  }
  double elapsed = now_s() - start;
  printf("{\"requested\":%d,\"connected\":%d,\"errors\":%d,\"connect_seconds\":%.4f,\"first_error\":\"%s\"}\n", n, opened,
         errors, elapsed, first_error);
  fflush(stdout);
  char sink[256];
  while (read(0, sink, sizeof(sink)) > 0) {
  }
  for (int i = 0; i < opened; i++) close(fds[i]);
  return errors ? 1 : 0;
}
