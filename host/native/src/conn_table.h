#pragma once
#include <napi.h>

namespace tcpmod {
void InitConnTable(Napi::Env env, Napi::Object exports);
}
