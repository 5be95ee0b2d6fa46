// How each tcpmod host function is declared in the languages modules are
// written in, for the fix a refusal of a mismatched import signature suggests.
// The C text is the prototype in include/tcpmod.h (test/c-kv.test.ts checks it
// is there, word for word); the AssemblyScript text is what the SDK's
// assembly/sdk/abi.ts declares, with the import's own name.

/** Per tcpmod import: its C prototype (include/tcpmod.h) and an AssemblyScript declaration. */
export const IMPORT_DECLARATIONS: Record<string, { c: string; as: string }> = {
  send: { c: 'int32_t tcpmod_send(int32_t conn, const void *ptr, int32_t len)', as: 'send(conn: i32, ptr: usize, len: i32): i32' },
  log: { c: 'void tcpmod_log(int32_t level, const void *ptr, int32_t len)', as: 'log(level: i32, ptr: usize, len: i32): void' },
  now_ms: { c: 'double tcpmod_now_ms(void)', as: 'now_ms(): f64' },
  abort: { c: 'void tcpmod_abort(const void *msg, const void *file, int32_t line, int32_t col)', as: 'abort(msg: usize, file: usize, line: i32, col: i32): void' },
  kv_get: { c: 'int32_t tcpmod_kv_get(const void *key, int32_t key_len, void *out, int32_t out_cap)', as: 'kv_get(key: usize, key_len: i32, out: usize, out_cap: i32): i32' },
  kv_set: { c: 'int32_t tcpmod_kv_set(const void *key, int32_t key_len, const void *val, int32_t val_len)', as: 'kv_set(key: usize, key_len: i32, val: usize, val_len: i32): i32' },
  kv_del: { c: 'int32_t tcpmod_kv_del(const void *key, int32_t key_len)', as: 'kv_del(key: usize, key_len: i32): i32' },
  kv_incr: { c: 'int32_t tcpmod_kv_incr(const void *key, int32_t key_len, int64_t delta, int64_t *out)', as: 'kv_incr(key: usize, key_len: i32, delta: i64, out: usize): i32' },
  conn_info: { c: 'int32_t tcpmod_conn_info(int32_t conn, int32_t key, void *out, int32_t cap)', as: 'conn_info(conn: i32, key: i32, out: usize, cap: i32): i32' },
  set_timer: { c: 'int32_t tcpmod_set_timer(int32_t conn, int32_t ms)', as: 'set_timer(conn: i32, ms: i32): i32' },
  draining: { c: 'int32_t tcpmod_draining(void)', as: 'draining(): i32' },
  want: { c: 'int32_t tcpmod_want(int32_t conn, int32_t n)', as: 'want(conn: i32, n: i32): i32' },
  peer_addr: { c: 'int32_t tcpmod_peer_addr(int32_t conn, char *out, int32_t cap)', as: 'peer_addr(conn: i32, out: usize, cap: i32): i32' },
  kv_get_ver: { c: 'int32_t tcpmod_kv_get_ver(const void *key, int32_t key_len, void *out, int32_t out_cap, uint64_t *version)', as: 'kv_get_ver(key: usize, key_len: i32, out: usize, out_cap: i32, version: usize): i32' },
  kv_getdel: { c: 'int32_t tcpmod_kv_getdel(const void *key, int32_t key_len, void *out, int32_t out_cap)', as: 'kv_getdel(key: usize, key_len: i32, out: usize, out_cap: i32): i32' },
  kv_set_ex: { c: 'int32_t tcpmod_kv_set_ex(const void *key, int32_t key_len, const void *val, int32_t val_len, int32_t flags, int64_t ttl_ms)', as: 'kv_set_ex(key: usize, key_len: i32, val: usize, val_len: i32, flags: i32, ttl_ms: i64): i32' },
  kv_cas: { c: 'int32_t tcpmod_kv_cas(const void *key, int32_t key_len, const void *val, int32_t val_len, int32_t flags, int64_t ttl_ms, uint64_t version)', as: 'kv_cas(key: usize, key_len: i32, val: usize, val_len: i32, flags: i32, ttl_ms: i64, version: u64): i32' },
  kv_expire: { c: 'int32_t tcpmod_kv_expire(const void *key, int32_t key_len, int64_t ttl_ms)', as: 'kv_expire(key: usize, key_len: i32, ttl_ms: i64): i32' },
  kv_persist: { c: 'int32_t tcpmod_kv_persist(const void *key, int32_t key_len)', as: 'kv_persist(key: usize, key_len: i32): i32' },
  kv_ttl: { c: 'int32_t tcpmod_kv_ttl(const void *key, int32_t key_len, int64_t *ms)', as: 'kv_ttl(key: usize, key_len: i32, ms: usize): i32' },
  kv_append: { c: 'int32_t tcpmod_kv_append(const void *key, int32_t key_len, const void *val, int32_t val_len, int32_t flags)', as: 'kv_append(key: usize, key_len: i32, val: usize, val_len: i32, flags: i32): i32' },
  kv_incr_ex: { c: 'int32_t tcpmod_kv_incr_ex(const void *key, int32_t key_len, int64_t delta, int32_t flags, int64_t *out)', as: 'kv_incr_ex(key: usize, key_len: i32, delta: i64, flags: i32, out: usize): i32' },
  kv_scan: { c: 'int32_t tcpmod_kv_scan(const void *prefix, int32_t prefix_len, int64_t cursor, int32_t count, void *out, int32_t out_cap, int64_t *next)', as: 'kv_scan(prefix: usize, prefix_len: i32, cursor: i64, count: i32, out: usize, out_cap: i32, next: usize): i32' },
  kv_del_prefix: { c: 'int32_t tcpmod_kv_del_prefix(const void *prefix, int32_t prefix_len)', as: 'kv_del_prefix(prefix: usize, prefix_len: i32): i32' },
  kv_get_range: { c: 'int32_t tcpmod_kv_get_range(const void *key, int32_t key_len, int32_t offset, void *out, int32_t out_cap, uint64_t *version)', as: 'kv_get_range(key: usize, key_len: i32, offset: i32, out: usize, out_cap: i32, version: usize): i32' },
  kv_send: { c: 'int32_t tcpmod_kv_send(int32_t conn, const void *key, int32_t key_len, int32_t offset, int32_t len, uint64_t version, const void *head, int32_t head_len)', as: 'kv_send(conn: i32, key: usize, key_len: i32, offset: i32, len: i32, version: u64, head: usize, head_len: i32): i32' },
  kv_expire_ex: { c: 'int32_t tcpmod_kv_expire_ex(const void *key, int32_t key_len, int64_t ttl_ms, int32_t flags)', as: 'kv_expire_ex(key: usize, key_len: i32, ttl_ms: i64, flags: i32): i32' },
  kv_incr_at: { c: 'int32_t tcpmod_kv_incr_at(const void *key, int32_t key_len, int32_t offset, uint64_t delta, int32_t flags, uint64_t *out)', as: 'kv_incr_at(key: usize, key_len: i32, offset: i32, delta: u64, flags: i32, out: usize): i32' },
  subscribe: { c: 'int32_t tcpmod_subscribe(int32_t conn, int32_t kind, const void *text, int32_t len)', as: 'subscribe(conn: i32, kind: i32, text: usize, len: i32): i32' },
  unsubscribe: { c: 'int32_t tcpmod_unsubscribe(int32_t conn, int32_t kind, const void *text, int32_t len)', as: 'unsubscribe(conn: i32, kind: i32, text: usize, len: i32): i32' },
  publish: { c: 'int32_t tcpmod_publish(const void *topic, int32_t topic_len, const void *msg, int32_t msg_len)', as: 'publish(topic: usize, topic_len: i32, msg: usize, msg_len: i32): i32' },
  publish_frame: { c: 'int32_t tcpmod_publish_frame(const void *topic, int32_t topic_len, const void *msg, int32_t msg_len, const void *frame, int32_t frame_len)', as: 'publish_frame(topic: usize, topic_len: i32, msg: usize, msg_len: i32, frame: usize, frame_len: i32): i32' },
  topic_count: { c: 'int32_t tcpmod_topic_count(int32_t kind, const void *text, int32_t len)', as: 'topic_count(kind: i32, text: usize, len: i32): i32' },
  topics_list: { c: 'int32_t tcpmod_topics_list(const void *glob, int32_t glob_len, int32_t skip, void *out, int32_t out_cap)', as: 'topics_list(glob: usize, glob_len: i32, skip: i32, out: usize, out_cap: i32): i32' },
  upstream_open: { c: 'int32_t tcpmod_upstream_open(int32_t conn, const void *name, int32_t name_len)', as: 'upstream_open(conn: i32, name: usize, name_len: i32): i32' },
  upstream_send: { c: 'int32_t tcpmod_upstream_send(int32_t conn, int32_t up, const void *data, int32_t len)', as: 'upstream_send(conn: i32, up: i32, ptr: usize, len: i32): i32' },
  upstream_close: { c: 'int32_t tcpmod_upstream_close(int32_t conn, int32_t up)', as: 'upstream_close(conn: i32, up: i32): i32' },
  upstream_addr: { c: 'int32_t tcpmod_upstream_addr(const void *name, int32_t name_len, int32_t index, char *out, int32_t cap)', as: 'upstream_addr(name: usize, name_len: i32, index: i32, out: usize, cap: i32): i32' },
  upstream_resume: { c: 'int32_t tcpmod_upstream_resume(int32_t conn, int32_t up)', as: 'upstream_resume(conn: i32, up: i32): i32' },
  upstream_shutdown: { c: 'int32_t tcpmod_upstream_shutdown(int32_t conn, int32_t up)', as: 'upstream_shutdown(conn: i32, up: i32): i32' },
  shutdown_output: { c: 'int32_t tcpmod_shutdown_output(int32_t conn)', as: 'shutdown_output(conn: i32): i32' },
};

/** The one-line declarations of tcpmod import `name` in C and AssemblyScript. */
export function declarationHint(name: string): string | null {
  if (!Object.hasOwn(IMPORT_DECLARATIONS, name)) return null;
  const d = IMPORT_DECLARATIONS[name];
  return `declare it in C as ${d.c} (include/tcpmod.h), in AssemblyScript as @external("tcpmod", "${name}") declare function ${d.as}`;
}
