// The connection table's JavaScript face (napi_conn.cc): the exports of
// conn_table.h's calls, documented in native.d.ts.
#pragma once
#include <napi.h>

namespace tcpmod {

void InitConnTable(Napi::Env env, Napi::Object exports);

}  // namespace tcpmod
