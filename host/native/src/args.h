// Argument helpers shared by every export. A wrong argument type or an
// out-of-bounds region is a programming error in the TypeScript layer, so it
// throws (libuv style: only programming errors cross the boundary as throws);
// every syscall failure is returned as -errno instead.
#pragma once
#include <napi.h>
#include <cstddef>
#include <cstdint>

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

// Resolves (buffer, offset) arguments at index i to a pointer with `need` bytes available.
bool ArgFixedRegion(const Napi::CallbackInfo& info, size_t i, size_t need, uint8_t** out);

// Stores `value` in element 0 of argument i when the caller passed an Int32Array
// there (an optional out-parameter such as "bytes received"); otherwise nothing.
void SetOutInt(const Napi::CallbackInfo& info, size_t i, int64_t value);

inline Napi::Value Num(const Napi::CallbackInfo& info, double v) {
  return Napi::Number::New(info.Env(), v);
}

}  // namespace tcpmod
