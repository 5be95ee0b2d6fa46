// See close_phase.h.
#include "close_phase.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <sys/socket.h>

namespace tcpmod {

int64_t ClosingDeadline(const ClosePhase& p, const LingerConfig& cfg, int64_t send_since, int64_t send_timeout,
                        int64_t last_input) {
  if (!p.lingering) return send_timeout && send_since ? send_since + send_timeout : INT64_MAX;
  int64_t at = p.since + cfg.time;
  if (cfg.timeout) at = std::min(at, std::max(last_input, p.since) + cfg.timeout);
  return at;
}

bool LingerExpired(const ClosePhase& p, const LingerConfig& cfg, int64_t last_input, int64_t now) {
  return p.lingering && ClosingDeadline(p, cfg, 0, 0, last_input) <= now;
}

bool LingerBegin(const LingerConfig& cfg, int fd) {
  if (cfg.time <= 0) return false;
  // The FIN follows the reply: a client that reads to EOF has all of it, and then closes.
  return shutdown(fd, SHUT_WR) == 0;
}

int LingerDiscard(int fd, int64_t* got) {
  *got = 0;
  char sink[16384];
  while (*got < kLingerReadBudget) {
    ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
    if (n > 0) {
      *got += n;
      continue;
    }
    if (n == 0) return 0;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -errno;
  }
  return 1;  // more may be waiting: the re-armed socket reports it again at once
}

}  // namespace tcpmod
