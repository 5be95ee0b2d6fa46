// Argument helpers shared by every export. A wrong argument type or an
// out-of-bounds region is a programming error in the TypeScript layer, so it
// throws (libuv style: only programming errors cross the boundary as throws);
// every syscall failure is returned as -errno instead.
#pragma once
#include <cmath>
#include <napi.h>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace tcpmod {

// Reads argument i as a 32-bit integer; sets a pending TypeError when it is not a number.
bool ArgInt(const Napi::CallbackInfo& info, size_t i, int64_t* out);

// Resolves (buffer, offset, length) arguments starting at index i to a raw pointer,
// checking that [offset, offset+length) lies inside the ArrayBuffer (or typed array).
bool ArgRegion(const Napi::CallbackInfo& info, size_t i, uint8_t** out, size_t* len);

// Like ArgRegion, and also returns the whole buffer (for a second region in the
// same memory, such as the state slot next to the input region).
bool ArgRegion(const Napi::CallbackInfo& info, size_t i, uint8_t** out, size_t* len, uint8_t** base,
               size_t* size);

// Reads argument i as an i64: a wasm i64 reaches JS as a bigint; a number is taken too.
bool ArgI64(const Napi::CallbackInfo& info, size_t i, int64_t* out);

// Resolves (buffer, offset) arguments at index i to a pointer with `need` bytes available.
bool ArgFixedRegion(const Napi::CallbackInfo& info, size_t i, size_t need, uint8_t** out);

// Stores `value` in element 0 of argument i when the caller passed an Int32Array
// there (an optional out-parameter such as "bytes received"); otherwise nothing.
void SetOutInt(const Napi::CallbackInfo& info, size_t i, int64_t value);

// A result; nearly every one is a small integer, made as such (napi_create_int32: a V8 small integer,
// cheaper than napi_create_double's conversion and checks).
inline Napi::Value Num(const Napi::CallbackInfo& info, double v) {
  if (v >= static_cast<double>(INT32_MIN) && v <= static_cast<double>(INT32_MAX)) {
    int32_t i = static_cast<int32_t>(v);
    napi_value out;
    if (static_cast<double>(i) == v && (i != 0 || !std::signbit(v)) && napi_create_int32(info.Env(), i, &out) == napi_ok)
      return Napi::Value(info.Env(), out);
  }
  return Napi::Number::New(info.Env(), v);
}

// The one argument reader of an export: each call reads the next argument(s)
// in order; the first bad one leaves a pending exception and makes every later
// call a no-op, so a preamble is one chain and one test:
//   int64_t fd, id, n = 0;
//   if (!Args(info).Int(&fd, &id).Opt(&n)) return info.Env().Undefined();
class Args {
 public:
  explicit Args(const Napi::CallbackInfo& info) : info_(info) {}
  // Required numbers.
  template <typename... T>
  Args& Int(int64_t* first, T*... rest) {
    if (ok_) ok_ = ArgInt(info_, i_++, first);
    if constexpr (sizeof...(rest) > 0) Int(rest...);
    return *this;
  }
  // Optional numbers, all or none: read when the caller passed the last of
  // them (the outputs keep their defaults otherwise), then they must be numbers.
  template <typename... T>
  Args& Opt(T*... outs) {
    if (ok_ && info_.Length() > i_ + sizeof...(outs) - 1) return Int(outs...);
    i_ += sizeof...(outs);
    return *this;
  }
  // A (buffer, offset, length) region: 3 arguments. base and size: the whole
  // buffer, for a second region in the same memory (the state slot).
  Args& Region(uint8_t** p, size_t* len, uint8_t** base = nullptr, size_t* size = nullptr) {
    uint8_t* b;
    size_t n;
    if (ok_) ok_ = ArgRegion(info_, i_, p, len, base ? base : &b, size ? size : &n);
    i_ += 3;
    return *this;
  }
  // An i64 (a bigint, or a number).
  Args& I64(int64_t* out) {
    if (ok_) ok_ = ArgI64(info_, i_, out);
    i_++;
    return *this;
  }
  // A (buffer, offset) pair with `need` bytes from offset: 2 arguments.
  Args& Fixed(size_t need, uint8_t** p) {
    if (ok_) ok_ = ArgFixedRegion(info_, i_, need, p);
    i_ += 2;
    return *this;
  }
  // Skips an argument read another way (an out-parameter such as "received").
  Args& Skip() {
    i_++;
    return *this;
  }
  explicit operator bool() const { return ok_; }

 private:
  const Napi::CallbackInfo& info_;
  size_t i_ = 0;
  bool ok_ = true;
};

// An export whose arguments are all numbers and whose result is a number: fn
// called with the arguments in order (converted to its parameter types).
// `Ints<Fn>` is the whole export.
template <typename R, typename... P, size_t... I>
Napi::Value CallIntsAt(const Napi::CallbackInfo& info, R (*fn)(P...), std::index_sequence<I...>) {
  int64_t v[sizeof...(P) + 1] = {};
  Args a(info);
  (a.Int(&v[I]), ...);
  if (!a) return info.Env().Undefined();
  return Num(info, static_cast<double>(fn(static_cast<P>(v[I])...)));
}
template <typename R, typename... P>
Napi::Value CallInts(const Napi::CallbackInfo& info, R (*fn)(P...)) {
  return CallIntsAt(info, fn, std::index_sequence_for<P...>{});
}
template <auto Fn>
Napi::Value Ints(const Napi::CallbackInfo& info) {
  return CallInts(info, Fn);
}

}  // namespace tcpmod
