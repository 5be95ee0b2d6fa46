{
  "targets": [
    {
      "target_name": "tcpmod_native",
      "sources": [
        "src/addon.cc",
        "src/args.cc",
        "src/sockets.cc",
        "src/poller.cc",
        "src/registry.cc",
        "src/conn_state.cc",
        "src/ownership.cc",
        "src/loans.cc",
        "src/due.cc",
        "src/conn_input.cc",
        "src/conn_output.cc",
        "src/conn_close.cc",
        "src/conn_tls.cc",
        "src/conn_proxy.cc",
        "src/generations.cc",
        "src/napi_conn.cc",
        "src/timers.cc",
        "src/close_phase.cc",
        "src/kv_store.cc",
        "src/kv_core.cc",
        "src/kv_redis.cc",
        "src/tls.cc",
        "src/proxy_protocol.cc",
        "src/output_queue.cc",
        "src/input_buffer.cc",
        "src/sender.cc",
        "src/topics.cc",
        "src/mailbox.cc",
        "src/pubsub.cc",
        "src/direct.cc",
        "src/bus.cc",
        "src/bus_names.cc",
        "src/upstream.cc",
        "src/tls_client.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-fno-exceptions"],
      "cflags_cc!": ["-fno-rtti"]
    }
  ]
}
