#include "args.h"

namespace tcpmod {

bool ArgInt(const Napi::CallbackInfo& info, size_t i, int64_t* out) {
  // One N-API call per argument: napi_get_value_int64 refuses a non-number itself (napi_number_expected),
  // so a napi_typeof first (~40 instructions an argument on the hot path) tells nothing more.
  if (i >= info.Length() || napi_get_value_int64(info.Env(), info[i], out) != napi_ok) {
    Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number")
        .ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

bool ArgI64(const Napi::CallbackInfo& info, size_t i, int64_t* out) {
  if (i < info.Length() && info[i].IsBigInt()) {
    bool lossless;
    *out = info[i].As<Napi::BigInt>().Int64Value(&lossless);
    if (lossless) return true;
    Napi::RangeError::New(info.Env(), "argument " + std::to_string(i) + " must fit in i64").ThrowAsJavaScriptException();
    return false;
  }
  return ArgInt(info, i, out);
}

// The common part: a buffer at i, an offset at i+1, and a length at i+2 unless
// fixed_len >= 0 gives it.
static bool ArgRegionOf(const Napi::CallbackInfo& info, size_t i, int64_t fixed_len, uint8_t** out,
                        size_t* len = nullptr, uint8_t** base_out = nullptr, size_t* size_out = nullptr) {
  Napi::Env env = info.Env();
  uint8_t* base = nullptr;
  size_t size = 0;
  if (i < info.Length() && info[i].IsArrayBuffer()) {
    Napi::ArrayBuffer ab = info[i].As<Napi::ArrayBuffer>();
    base = static_cast<uint8_t*>(ab.Data());
    size = ab.ByteLength();
  } else if (i < info.Length() && info[i].IsTypedArray()) {
    Napi::TypedArray ta = info[i].As<Napi::TypedArray>();
    base = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    size = ta.ByteLength();
  } else {
    Napi::TypeError::New(env, "argument " + std::to_string(i) + " must be an ArrayBuffer or typed array")
        .ThrowAsJavaScriptException();
    return false;
  }
  int64_t off, n = fixed_len;
  if (!ArgInt(info, i + 1, &off) || (fixed_len < 0 && !ArgInt(info, i + 2, &n))) return false;
  if (off < 0 || n < 0 || static_cast<uint64_t>(off) + static_cast<uint64_t>(n) > size) {
    Napi::RangeError::New(env, "region [" + std::to_string(off) + ", +" + std::to_string(n) +
                                   ") is outside a buffer of " + std::to_string(size) + " bytes")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = base + off;
  if (len) *len = static_cast<size_t>(n);
  if (base_out) *base_out = base;
  if (size_out) *size_out = size;
  return true;
}

void SetOutInt(const Napi::CallbackInfo& info, size_t i, int64_t value) {
  if (i >= info.Length() || !info[i].IsTypedArray()) return;
  Napi::TypedArray ta = info[i].As<Napi::TypedArray>();
  if (ta.TypedArrayType() == napi_int32_array && ta.ElementLength() > 0)
    ta.As<Napi::Int32Array>()[0] = static_cast<int32_t>(value);
}

bool ArgRegion(const Napi::CallbackInfo& info, size_t i, uint8_t** out, size_t* len) {
  uint8_t* base;
  size_t size;
  return ArgRegion(info, i, out, len, &base, &size);
}

bool ArgFixedRegion(const Napi::CallbackInfo& info, size_t i, size_t need, uint8_t** out) {
  return ArgRegionOf(info, i, static_cast<int64_t>(need), out);
}

bool ArgRegion(const Napi::CallbackInfo& info, size_t i, uint8_t** out, size_t* len, uint8_t** base_out,
               size_t* size_out) {
  return ArgRegionOf(info, i, -1, out, len, base_out, size_out);
}

}  // namespace tcpmod
