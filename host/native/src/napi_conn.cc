// The connection table's N-API layer: argument parsing (args.h's one reader)
// and result conversion around conn_table.h's calls, nothing else. A wrong
// argument type or an out-of-bounds region is a programming error of the
// TypeScript layer and throws; everything else is the core's result.
#include "napi_conn.h"

#include <string>

#include "args.h"
#include "conn_table.h"
#include "proxy_protocol.h"
#include "tcpmod_limits.h"
#include "upstream.h"

namespace tcpmod {

static_assert(kDueUpstreamEvent == kDueUpstream, "the table and upstream.h must agree on the upstream due bit");

namespace {

Napi::Value Throw(const Napi::CallbackInfo& info, const std::string& message) {
  Napi::RangeError::New(info.Env(), message).ThrowAsJavaScriptException();
  return info.Env().Undefined();
}

// A core result that is a number, or the RangeError of a state slot outside memory.
Napi::Value Result(const Napi::CallbackInfo& info, int64_t rc) {
  if (rc == kStateOutside) return Throw(info, "state region outside memory");
  return Num(info, static_cast<double>(rc));
}

Napi::Value Flat(const Napi::CallbackInfo& info, const std::vector<double>& flat) {
  Napi::Array out = Napi::Array::New(info.Env(), flat.size());
  for (size_t i = 0; i < flat.size(); i++) out.Set(i, Napi::Number::New(info.Env(), flat[i]));
  return out;
}

// connOpen(fd, group, stateSize, holder, kind = 0, tlsCtx = 0, generation = 0) -> id | -EEXIST | -EBADF | -EINVAL.
Napi::Value JsConnOpen(const Napi::CallbackInfo& info) {
  int64_t fd, group, state_size, holder, kind = kKindConn, tls_ctx = 0, generation = 0;
  if (!Args(info).Int(&fd, &group, &state_size, &holder).Opt(&kind).Opt(&tls_ctx).Opt(&generation))
    return info.Env().Undefined();
  if (state_size < 0 || state_size > limits::kStateMax || (kind != kKindConn && kind != kKindListen))
    return Throw(info, "stateSize must be 0.." + std::to_string(limits::kStateMax) + " and kind 0 or 1");
  return Num(info, static_cast<double>(ConnOpen(static_cast<int>(fd), static_cast<int>(group), static_cast<int>(state_size),
                                                static_cast<int>(holder), static_cast<int>(kind),
                                                static_cast<int>(tls_ctx), static_cast<int>(generation))));
}

// connLoad(fd, id, mem, inPtr, inCap, statePtr, received, noRecv = 0) -> inLen [| EOF bit] | -errno.
Napi::Value JsConnLoad(const Napi::CallbackInfo& info) {
  int64_t fd, id, state_ptr, no_recv = 0;
  uint8_t *in, *base;
  size_t cap, mem_size;
  if (!Args(info).Int(&fd, &id).Region(&in, &cap, &base, &mem_size).Int(&state_ptr).Skip().Opt(&no_recv))
    return info.Env().Undefined();
  int64_t received = 0;
  int64_t rc = ConnLoad(static_cast<int>(fd), static_cast<uint64_t>(id), in, cap, base, mem_size, state_ptr,
                        no_recv != 0, &received);
  if (rc != kStateOutside) SetOutInt(info, 6, received);
  return Result(info, rc);
}

// connSave(fd, id, mem, restPtr, restLen, statePtr, epfd?, events?, outPtr?, outLen?) -> left | -errno.
Napi::Value JsConnSave(const Napi::CallbackInfo& info) {
  int64_t fd, id, state_ptr, epfd = -1, events = 0, out_ptr = 0, out_len = 0;
  uint8_t *rest, *base;
  size_t len, mem_size;
  if (!Args(info).Int(&fd, &id).Region(&rest, &len, &base, &mem_size).Int(&state_ptr).Opt(&epfd, &events).Opt(&out_ptr, &out_len))
    return info.Env().Undefined();
  if (out_len > 0 && (out_ptr < 0 || static_cast<uint64_t>(out_ptr) + static_cast<uint64_t>(out_len) > mem_size))
    return Throw(info, "out region outside memory");
  return Result(info, ConnSave(static_cast<int>(fd), static_cast<uint64_t>(id), rest, len, base, mem_size, state_ptr,
                               static_cast<int>(epfd), static_cast<uint32_t>(events), out_ptr, out_len));
}

// connClose(fd, id, drainBytes = 0) -> 0 | 1 (its close was counted) | -EBADF.
Napi::Value JsConnClose(const Napi::CallbackInfo& info) {
  int64_t fd, id, drain = 0;
  if (!Args(info).Int(&fd, &id).Opt(&drain)) return info.Env().Undefined();
  return Num(info, ConnClose(static_cast<int>(fd), static_cast<uint64_t>(id), drain));
}

// Sets element k of argument i when the caller passed a Float64Array or an
// Int32Array there with room for it (an out-parameter); otherwise nothing.
void SetOut(const Napi::CallbackInfo& info, size_t i, size_t k, double value) {
  if (i >= info.Length() || !info[i].IsTypedArray()) return;
  Napi::TypedArray ta = info[i].As<Napi::TypedArray>();
  if (ta.ElementLength() <= k) return;
  if (ta.TypedArrayType() == napi_float64_array) ta.As<Napi::Float64Array>()[k] = value;
  else if (ta.TypedArrayType() == napi_int32_array) ta.As<Napi::Int32Array>()[k] = static_cast<int32_t>(value);
}

// connPhase(fd, id, epfd, events, timeoutMs, open, out) -> 1 ready | 0 waits (re-armed) | -errno;
// out[0] the handshake's micros (-1: none completed), out[1] a failed handshake's label index (-1: none).
Napi::Value JsConnPhase(const Napi::CallbackInfo& info) {
  int64_t fd, id, epfd, events, timeout, open;
  if (!Args(info).Int(&fd, &id, &epfd, &events, &timeout, &open)) return info.Env().Undefined();
  PhaseResult r;
  int rc = ConnPhase(static_cast<int>(fd), static_cast<uint64_t>(id), static_cast<int>(epfd),
                     static_cast<uint32_t>(events), timeout, open != 0, &r);
  SetOut(info, 6, 0, r.micros);
  SetOut(info, 6, 1, r.tls_failure);
  return Num(info, rc);
}

// connClosing(fd, id, due, epfd, events, drainBytes, step) -> 2 kept (re-armed) | 0 | 1 | -EBADF; step[0] the step's result.
Napi::Value JsConnClosing(const Napi::CallbackInfo& info) {
  int64_t fd, id, due, epfd, events, drain;
  if (!Args(info).Int(&fd, &id, &due, &epfd, &events, &drain)) return info.Env().Undefined();
  int64_t step = 0;
  int rc = ConnClosing(static_cast<int>(fd), static_cast<uint64_t>(id), static_cast<uint32_t>(due),
                       static_cast<int>(epfd), static_cast<uint32_t>(events), drain, &step);
  SetOut(info, 6, 0, static_cast<double>(step));
  return Num(info, rc);
}

// connSend(fd, id, mem, ptr, len, timeoutMs, waited?) -> len | -ETIMEDOUT | -errno | -EPROTO.
Napi::Value JsConnSend(const Napi::CallbackInfo& info) {
  int64_t fd, id, timeout;
  uint8_t* p;
  size_t len;
  if (!Args(info).Int(&fd, &id).Region(&p, &len).Int(&timeout)) return info.Env().Undefined();
  int64_t waited = 0;
  int64_t rc = ConnSend(static_cast<int>(fd), static_cast<uint64_t>(id), p, len, timeout, &waited);
  SetOutInt(info, 6, waited);
  return Num(info, static_cast<double>(rc));
}

// connWrite(fd, id, mem, ptr, len) -> bytes queued after it | -ENOBUFS | -errno.
Napi::Value JsConnWrite(const Napi::CallbackInfo& info) {
  int64_t fd, id;
  uint8_t* p;
  size_t len;
  if (!Args(info).Int(&fd, &id).Region(&p, &len)) return info.Env().Undefined();
  return Num(info, static_cast<double>(ConnWrite(static_cast<int>(fd), static_cast<uint64_t>(id), p, len)));
}

// connMigrate(fd, id, generation, stateSize, inCap) -> 0 | -EBADF | -EOVERFLOW | -EINVAL.
Napi::Value JsConnMigrate(const Napi::CallbackInfo& info) {
  int64_t fd, id, generation, state_size, in_cap;
  if (!Args(info).Int(&fd, &id, &generation, &state_size, &in_cap)) return info.Env().Undefined();
  if (state_size < 0 || state_size > limits::kStateMax)
    return Throw(info, "stateSize must be 0.." + std::to_string(limits::kStateMax));
  return Num(info, ConnMigrate(static_cast<int>(fd), static_cast<uint64_t>(id), static_cast<int>(generation),
                               static_cast<int>(state_size), in_cap));
}

// generationCounts(group) -> flat [generation, connections, ...].
Napi::Value JsGenerationCounts(const Napi::CallbackInfo& info) {
  int64_t group;
  if (!Args(info).Int(&group)) return info.Env().Undefined();
  std::vector<double> flat;
  for (const auto& [gen, n] : GenerationCounts(static_cast<int>(group))) {
    flat.push_back(gen);
    flat.push_back(n);
  }
  return Flat(info, flat);
}

// connList(group) / connHeld(group, holder) -> flat [fd, id, kind, ...].
Napi::Value Listing(const Napi::CallbackInfo& info, bool held) {
  int64_t group, holder = 0;
  Args a(info);
  a.Int(&group);
  if (held) a.Int(&holder);
  if (!a) return info.Env().Undefined();
  std::vector<double> flat;
  for (const EntryRef& e : ConnListing(static_cast<int>(group), held, static_cast<int>(holder))) {
    flat.push_back(e.fd);
    flat.push_back(static_cast<double>(e.id));
    flat.push_back(e.kind);
  }
  return Flat(info, flat);
}
Napi::Value JsConnList(const Napi::CallbackInfo& info) { return Listing(info, false); }
Napi::Value JsConnHeld(const Napi::CallbackInfo& info) { return Listing(info, true); }

// rearmStats() -> [re-arms done over, claims that took an entry whose re-arm finished as they looked,
// re-arms that needed no epoll_ctl (the entry was still armed with the same events)].
Napi::Value JsRearmStats(const Napi::CallbackInfo& info) {
  auto [retries, rescues] = RearmStats();
  return Flat(info, {static_cast<double>(retries), static_cast<double>(rescues), static_cast<double>(RearmSkips())});
}

// connTlsInfo(fd, id) -> { tls, handshaken, alpn, peerCert, failure, detail, micros } | -EBADF.
Napi::Value JsConnTlsInfo(const Napi::CallbackInfo& info) {
  int64_t fd, id;
  if (!Args(info).Int(&fd, &id)) return info.Env().Undefined();
  ConnTlsFacts f;
  if (int rc = ConnTlsInfo(static_cast<int>(fd), static_cast<uint64_t>(id), &f); rc < 0) return Num(info, rc);
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("tls", f.tls);
  out.Set("handshaken", f.handshaken);
  out.Set("alpn", f.alpn);
  out.Set("peerCert", f.peer_cert);
  out.Set("failure", f.failure);
  out.Set("detail", f.detail);
  out.Set("micros", f.micros);
  return out;
}

// connPeer(fd, id) -> "IP:PORT" | "[IPv6]:PORT" | -errno.
Napi::Value JsConnPeer(const Napi::CallbackInfo& info) {
  int64_t fd, id;
  if (!Args(info).Int(&fd, &id)) return info.Env().Undefined();
  std::string peer;
  if (int rc = ConnPeer(static_cast<int>(fd), static_cast<uint64_t>(id), &peer); rc < 0) return Num(info, rc);
  return Napi::String::New(info.Env(), peer);
}

// proxyParse(bytes, versions = 3) -> { status: 'done' | 'more' | 'bad', consumed, version, src, dst }:
// the parser alone, for tests. src and dst are "IP:PORT" text, '' when the header names no client.
Napi::Value JsProxyParse(const Napi::CallbackInfo& info) {
  int64_t versions = kProxyAny;
  if (info.Length() < 1 || !info[0].IsTypedArray()) {
    Napi::TypeError::New(info.Env(), "bytes must be a Uint8Array").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  auto bytes = info[0].As<Napi::Uint8Array>();
  if (info.Length() > 1 && !info[1].IsUndefined() && !ArgInt(info, 1, &versions)) return info.Env().Undefined();
  ProxyHeader h;
  int rc = ProxyParse(bytes.Data(), bytes.ByteLength(), static_cast<unsigned>(versions), &h);
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("status", rc > 0 ? "done" : rc == kProxyMore ? "more" : "bad");
  out.Set("consumed", static_cast<double>(rc > 0 ? rc : 0));
  out.Set("version", static_cast<double>(rc > 0 ? h.version : 0));
  out.Set("src", rc > 0 && h.family ? FormatAddress(h.family, h.src, h.src_port) : std::string());
  out.Set("dst", rc > 0 && h.family ? FormatAddress(h.family, h.dst, h.dst_port) : std::string());
  return out;
}

// groupMemory(group) -> { output, input, outputAllocated, inputAllocated }.
Napi::Value JsGroupMemory(const Napi::CallbackInfo& info) {
  int64_t group;
  if (!Args(info).Int(&group)) return info.Env().Undefined();
  MemoryTotals m = GroupMemory(static_cast<int>(group));
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("output", static_cast<double>(m.output));
  out.Set("input", static_cast<double>(m.input));
  out.Set("outputAllocated", static_cast<double>(m.output_allocated));
  out.Set("inputAllocated", static_cast<double>(m.input_allocated));
  return out;
}

void Fn(Napi::Env env, Napi::Object& exports, const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&)) {
  exports.Set(name, Napi::Function::New(env, fn, name));
}

}  // namespace

void InitConnTable(Napi::Env env, Napi::Object exports) {
  // Exports whose arguments and result are all numbers: the core call itself.
  Fn(env, exports, "connGeneration", Ints<ConnGeneration>);
  Fn(env, exports, "connDrainGeneration", Ints<ConnDrainGeneration>);
  Fn(env, exports, "generationVerdict", Ints<GenerationVerdict>);
  Fn(env, exports, "generationForget", Ints<GenerationForget>);
  Fn(env, exports, "connMoveTo", Ints<ConnMoveTo>);
  Fn(env, exports, "connAdd", Ints<ConnAdd>);
  Fn(env, exports, "connRearm", Ints<ConnRearm>);
  Fn(env, exports, "testClaimPause", Ints<SetClaimPause>);
  Fn(env, exports, "batchConfigure", Ints<BatchConfigure>);
  Fn(env, exports, "batchRelease", Ints<BatchRelease>);
  Fn(env, exports, "connShutdown", Ints<ConnShutdown>);
  Fn(env, exports, "connShutdownGroup", Ints<ConnShutdownGroup>);
  Fn(env, exports, "proxyConfigure", Ints<ProxyConfigure>);
  Fn(env, exports, "connCount", Ints<ConnCount>);
  Fn(env, exports, "connSetNextId", Ints<ConnSetNextId>);
  Fn(env, exports, "timersConfigure", Ints<TimersConfigure>);
  Fn(env, exports, "timersForget", Ints<TimersForget>);
  Fn(env, exports, "timerSet", Ints<TimerSet>);
  Fn(env, exports, "timersDrain", Ints<TimersDrain>);
  Fn(env, exports, "timersArmed", Ints<TimersArmed>);
  Fn(env, exports, "timerHeapSize", Ints<TimerHeapSize>);
  Fn(env, exports, "connWant", Ints<ConnWant>);
  Fn(env, exports, "connEndOutput", Ints<ConnEndOutput>);
  Fn(env, exports, "connEnd", Ints<ConnEnd>);
  Fn(env, exports, "lingerConfigure", Ints<LingerConfigure>);
  Fn(env, exports, "connFlush", Ints<ConnFlush>);
  Fn(env, exports, "connOpened", Ints<ConnOpened>);
  Fn(env, exports, "queueConfigure", Ints<QueueConfigure>);
  // The rest: regions, optional arguments, objects and lists.
  Fn(env, exports, "connOpen", JsConnOpen);
  Fn(env, exports, "connLoad", JsConnLoad);
  Fn(env, exports, "connSave", JsConnSave);
  Fn(env, exports, "connClose", JsConnClose);
  Fn(env, exports, "connPhase", JsConnPhase);
  Fn(env, exports, "connClosing", JsConnClosing);
  Fn(env, exports, "connSend", JsConnSend);
  Fn(env, exports, "connWrite", JsConnWrite);
  Fn(env, exports, "connMigrate", JsConnMigrate);
  Fn(env, exports, "generationCounts", JsGenerationCounts);
  Fn(env, exports, "connList", JsConnList);
  Fn(env, exports, "connHeld", JsConnHeld);
  Fn(env, exports, "rearmStats", JsRearmStats);
  Fn(env, exports, "connTlsInfo", JsConnTlsInfo);
  Fn(env, exports, "connPeer", JsConnPeer);
  Fn(env, exports, "proxyParse", JsProxyParse);
  Fn(env, exports, "groupMemory", JsGroupMemory);
  const std::pair<const char*, int64_t> constants[] = {
      {"DUE_PROXY", kDueProxy},         {"DUE_OPEN", kDueOpen},         {"DUE_CLOSING", kDueClosing},
      {"DUE_SEND_TIMEOUT", kDueSendTimeout}, {"DUE_OVERFLOW", kDueOverflow}, {"DUE_TIMER", kDueTimer},
      {"DUE_MESSAGE", kDueMessage},     {"DUE_TIMEOUT", kDueTimeout},   {"DUE_DRAIN_IDLE", kDueDrainIdle},
      {"DUE_HANDSHAKE", kDueHandshake}, {"LOAD_EOF", kLoadEof},       {"CLOSE_KEPT", kCloseKept},
      {"DUE_PEER_DONE", kDuePeerDone},
  };
  for (const auto& [name, value] : constants) exports.Set(name, Napi::Number::New(env, static_cast<double>(value)));
  Napi::Array labels = Napi::Array::New(env, kTlsFailureCount);
  for (int i = 0; i < kTlsFailureCount; i++) labels.Set(i, Napi::String::New(env, kTlsFailureLabels[i]));
  exports.Set("TLS_FAILURE_LABELS", labels);
}

}  // namespace tcpmod
