// The monotonic clock in milliseconds: what every deadline, timeout and age in the
// native core is measured on (never the wall clock, which can step). clock_gettime
// of CLOCK_MONOTONIC goes through the vDSO: no syscall.
#pragma once

#include <cstdint>
#include <ctime>

namespace tcpmod {

inline int64_t MonoMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace tcpmod
