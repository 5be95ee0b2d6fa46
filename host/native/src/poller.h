#pragma once
#include <napi.h>

namespace tcpmod {
void InitPoller(Napi::Env env, Napi::Object exports);
}
