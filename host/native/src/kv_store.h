#pragma once
#include <napi.h>

namespace tcpmod {
void InitKvStore(Napi::Env env, Napi::Object exports);
}
