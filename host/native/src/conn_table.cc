// The connection table: per accepted socket, the state the ABI says the host
// owns (input the module has not consumed yet, and the opaque state slot), kept
// in native memory so that whichever worker takes a connection's next event
// finds it. EPOLLONESHOT guarantees one handler per connection at a time, so an
// entry's contents need no lock; only the map itself is guarded.
#include "conn_table.h"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <sys/socket.h>
#include <unistd.h>
#include <unordered_map>
#include <vector>

#include "args.h"

namespace tcpmod {
namespace {

constexpr int kMaxState = 256;
constexpr int kLoadEof = 1 << 30;  // connLoad's EOF bit; lengths stay below 4 MiB

struct Conn {
  uint32_t id;
  int group;  // the owning server's key (its epoll fd), for shutdown and counts
  int state_size;
  std::vector<uint8_t> pending;
  uint8_t state[kMaxState];
};

std::mutex table_mu;
std::unordered_map<int, Conn*> table;
std::atomic<uint32_t> next_id{1};

Conn* Find(int fd) {
  std::lock_guard<std::mutex> lock(table_mu);
  auto it = table.find(fd);
  return it == table.end() ? nullptr : it->second;
}

bool StateFits(const Napi::CallbackInfo& info, int64_t ptr, int size, size_t mem_size) {
  if (ptr >= 0 && static_cast<uint64_t>(ptr) + size <= mem_size) return true;
  Napi::RangeError::New(info.Env(), "state region outside memory").ThrowAsJavaScriptException();
  return false;
}

// connOpen(fd, group, stateSize) -> connection id (unique for the process' lifetime) | -EEXIST
Napi::Value ConnOpen(const Napi::CallbackInfo& info) {
  int64_t fd, group, state_size;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &group) || !ArgInt(info, 2, &state_size))
    return info.Env().Undefined();
  if (state_size < 0 || state_size > kMaxState) {
    Napi::RangeError::New(info.Env(), "stateSize must be 0..256").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Conn* c = new Conn();
  c->id = next_id.fetch_add(1);
  if (c->id == 0 || c->id > 0x7ffffff0u) c->id = next_id.fetch_add(1) & 0x7fffffffu;
  c->group = static_cast<int>(group);
  c->state_size = static_cast<int>(state_size);
  std::memset(c->state, 0, sizeof(c->state));
  {
    std::lock_guard<std::mutex> lock(table_mu);
    if (!table.emplace(static_cast<int>(fd), c).second) {
      delete c;
      return Num(info, -EEXIST);
    }
  }
  return Num(info, c->id);
}

// connLoad(fd, mem, inPtr, inCap, statePtr, received: Int32Array) -> inLen [| EOF bit] | -errno.
// Writes the carried-over input at inPtr, then receives straight into memory
// after it (one recv, up to inCap), and copies the state slot to statePtr.
// received[0] is set to the number of newly received bytes.
Napi::Value ConnLoad(const Napi::CallbackInfo& info) {
  int64_t fd, state_ptr;
  uint8_t *in, *base;
  size_t cap, mem_size;
  if (!ArgInt(info, 0, &fd) || !ArgRegion(info, 1, &in, &cap, &base, &mem_size) || !ArgInt(info, 4, &state_ptr))
    return info.Env().Undefined();
  Conn* c = Find(static_cast<int>(fd));
  if (c == nullptr) return Num(info, -EBADF);
  if (c->state_size > 0) {
    if (!StateFits(info, state_ptr, c->state_size, mem_size)) return info.Env().Undefined();
    std::memcpy(base + state_ptr, c->state, c->state_size);
  }
  size_t have = c->pending.size();
  if (have > cap) return Num(info, -EOVERFLOW);
  if (have) std::memcpy(in, c->pending.data(), have);
  int eof = 0;
  if (have < cap) {
    ssize_t n;
    do n = recv(static_cast<int>(fd), in + have, cap - have, 0); while (n < 0 && errno == EINTR);
    if (n > 0) have += static_cast<size_t>(n);
    else if (n == 0) eof = kLoadEof;
    else if (errno != EAGAIN) return Num(info, -errno);
  }
  if (info.Length() > 5 && info[5].IsTypedArray()) {
    Napi::TypedArray ta = info[5].As<Napi::TypedArray>();
    if (ta.TypedArrayType() == napi_int32_array && ta.ElementLength() > 0)
      ta.As<Napi::Int32Array>()[0] = static_cast<int32_t>(have - c->pending.size());
  }
  return Num(info, static_cast<double>(have | eof));
}

// connSave(fd, mem, restPtr, restLen, statePtr) -> 0 | -EBADF.
// Keeps [restPtr, restPtr+restLen) as the connection's unconsumed input and
// saves the state slot from statePtr.
Napi::Value ConnSave(const Napi::CallbackInfo& info) {
  int64_t fd, state_ptr;
  uint8_t *rest, *base;
  size_t len, mem_size;
  if (!ArgInt(info, 0, &fd) || !ArgRegion(info, 1, &rest, &len, &base, &mem_size) || !ArgInt(info, 4, &state_ptr))
    return info.Env().Undefined();
  Conn* c = Find(static_cast<int>(fd));
  if (c == nullptr) return Num(info, -EBADF);
  c->pending.assign(rest, rest + len);
  if (c->state_size > 0) {
    if (!StateFits(info, state_ptr, c->state_size, mem_size)) return info.Env().Undefined();
    std::memcpy(c->state, base + state_ptr, c->state_size);
  }
  return Num(info, 0);
}

// connClose(fd, drainBytes = 0) -> 0 | -errno. Forgets the entry, then closes the
// socket; with drainBytes, it first shuts down writing and discards up to that
// much already-received input.
Napi::Value ConnClose(const Napi::CallbackInfo& info) {
  int64_t fd, drain = 0;
  if (!ArgInt(info, 0, &fd) || (info.Length() > 1 && !ArgInt(info, 1, &drain))) return info.Env().Undefined();
  Conn* c = nullptr;
  {
    std::lock_guard<std::mutex> lock(table_mu);
    auto it = table.find(static_cast<int>(fd));
    if (it != table.end()) {
      c = it->second;
      table.erase(it);
    }
  }
  if (c == nullptr) return Num(info, -EBADF);
  delete c;
  if (drain > 0) {
    // Closing with unread input makes the kernel answer with a reset, which can
    // destroy a reply the peer has not read yet (a 413 to a client still
    // uploading). So: FIN after the reply, then discard what has arrived.
    shutdown(static_cast<int>(fd), SHUT_WR);
    uint8_t sink[16384];
    for (int64_t left = drain; left > 0;) {
      ssize_t n = recv(static_cast<int>(fd), sink, sizeof(sink), MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      left -= n;
    }
  }
  return Num(info, close(static_cast<int>(fd)) < 0 ? -errno : 0);
}

// connShutdownGroup(group, how) -> number of sockets shut down. The fds stay
// open (their handlers close them), so this is safe while workers run: a shut
// down socket reports EOF or an error to whoever holds or next takes it.
Napi::Value ConnShutdownGroup(const Napi::CallbackInfo& info) {
  int64_t group, how;
  if (!ArgInt(info, 0, &group) || !ArgInt(info, 1, &how)) return info.Env().Undefined();
  int count = 0;
  std::lock_guard<std::mutex> lock(table_mu);
  for (auto& kv : table) {
    if (kv.second->group == group && shutdown(kv.first, static_cast<int>(how)) == 0) count++;
  }
  return Num(info, count);
}

// connList(group) -> [fd, id, fd, id, ...] of the group's open connections.
Napi::Value ConnList(const Napi::CallbackInfo& info) {
  int64_t group;
  if (!ArgInt(info, 0, &group)) return info.Env().Undefined();
  std::vector<uint32_t> flat;
  {
    std::lock_guard<std::mutex> lock(table_mu);
    for (auto& kv : table) {
      if (kv.second->group != group) continue;
      flat.push_back(static_cast<uint32_t>(kv.first));
      flat.push_back(kv.second->id);
    }
  }
  Napi::Array out = Napi::Array::New(info.Env(), flat.size());
  for (size_t i = 0; i < flat.size(); i++) out.Set(i, Napi::Number::New(info.Env(), flat[i]));
  return out;
}

}  // namespace

void InitConnTable(Napi::Env env, Napi::Object exports) {
  exports.Set("connOpen", Napi::Function::New(env, ConnOpen, "connOpen"));
  exports.Set("connLoad", Napi::Function::New(env, ConnLoad, "connLoad"));
  exports.Set("connSave", Napi::Function::New(env, ConnSave, "connSave"));
  exports.Set("connClose", Napi::Function::New(env, ConnClose, "connClose"));
  exports.Set("connShutdownGroup", Napi::Function::New(env, ConnShutdownGroup, "connShutdownGroup"));
  exports.Set("connList", Napi::Function::New(env, ConnList, "connList"));
  exports.Set("LOAD_EOF", Napi::Number::New(env, kLoadEof));
}

}  // namespace tcpmod
