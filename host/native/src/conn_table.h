#pragma once
#include <napi.h>

#include <cstdint>

namespace tcpmod {

// What an epoll item is; its 64-bit data is (kind << 32) | fd.
enum Kind : int { kKindConn = 0, kKindListen = 1, kKindWake = 2 };

// Ownership rule of the table (see conn_table.cc): an entry is handed from epoll
// to exactly one worker by ClaimEvent, and only its holder loads, saves, re-arms
// or closes it. Returns false when the event must be dropped: no entry for fd in
// this group, or the entry is already held (an ERR/HUP reported for a connection
// whose opener has not re-armed it yet; the opener's re-arm reports it again).
bool ClaimEvent(int fd, int group, int holder, double* id);

void InitConnTable(Napi::Env env, Napi::Object exports);

}  // namespace tcpmod
