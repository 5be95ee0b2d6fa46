// The v1.2 store imports (docs/abi.md §14) as an instance gives them to its
// module: each checks its regions (outside memory is a fault, as for the v1
// kv_* calls), then calls the native process store, or the instance's own kv
// backend when it has one (tcpmod/testing), and writes any out-values.
import { native } from '../sys.js';
import { KV } from './abi.js';
import { KV_SEND_FALLBACK, type StoredWrite } from './driver.js';

/** A key-value store's v1.2 calls, for a backend other than the process store. Results as docs/abi.md §14. */
export interface KvBackendV12 {
  /** The value and its version, null when missing, or KV_UNAVAILABLE. */
  getVer(key: Uint8Array): { value: Uint8Array; version: bigint } | null | number;
  /** The value, null when missing, or KV_UNAVAILABLE; the key is deleted only when the value is at most `cap` bytes. */
  getDel(key: Uint8Array, cap: number): Uint8Array | null | number;
  /** The value's length and version with bytes [offset, offset + cap) of it (those there are), null when missing, or KV_UNAVAILABLE. */
  getRange(key: Uint8Array, offset: number, cap: number): { length: number; part: Uint8Array; version: bigint } | null | number;
  setEx(key: Uint8Array, value: Uint8Array, flags: number, ttlMs: bigint): number;
  cas(key: Uint8Array, value: Uint8Array, flags: number, ttlMs: bigint, version: bigint): number;
  expire(key: Uint8Array, ttlMs: bigint): number;
  /** kv_expire_ex: 1 set, 0 the NX/XX/GT/LT condition did not hold, KV.MISSING, KV.INVALID, KV_UNAVAILABLE. */
  expireEx(key: Uint8Array, ttlMs: bigint, flags: number): number;
  persist(key: Uint8Array): number;
  /** The ms left (a bigint) when the key has a TTL; else 0 (none), -1 (missing) or KV_UNAVAILABLE. */
  ttl(key: Uint8Array): bigint | number;
  append(key: Uint8Array, value: Uint8Array, flags: number): number;
  /** The new value (a bigint), or a result code. */
  incrEx(key: Uint8Array, delta: bigint, flags: number): bigint | number;
  /** kv_incr_at (docs/abi.md §18): the new value (a bigint, as u64), or a result code. */
  incrAt(key: Uint8Array, offset: number, delta: bigint, flags: number): bigint | number;
  /** The keys of one bounded step (their records must fit `cap` bytes) and the next cursor, or a result code. */
  scan(prefix: Uint8Array, cursor: bigint, count: number, cap: number): { keys: Uint8Array[]; next: bigint } | number;
  delPrefix(prefix: Uint8Array): number;
}

/** What the imports need of their instance. */
export interface KvAccess {
  /** The module's memory now. */
  buffer(): ArrayBuffer;
  /** Faults the module when [ptr, ptr + len) is outside memory. */
  region(what: string, ptr: number, len: number): void;
  /** A copy of [ptr, ptr + len) (checked). */
  bytes(ptr: number, len: number): Uint8Array;
  /** The instance's own backend, or undefined for the process store. */
  kv(): KvBackendV12 | undefined;
  /** Whether `conn` is the connection being handled (the only one tcpmod.send accepts). */
  current(conn: number): boolean;
  /** tcpmod.send's way out for the connection being handled: 0, or negative (the send failed). */
  send(conn: number, mem: ArrayBuffer, ptr: number, len: number): number;
  /**
   * kv_send's write from the process store (driver.ts moduleSendStored): the value bytes sent, a result
   * code, or KV_SEND_FALLBACK; absent (or falling back) where the value is read and send() is used.
   */
  sendStored?(conn: number, write: StoredWrite): number;
  /** Called before every call, as before the v1 kv calls (InstanceHooks.storeCall): may throw a ModuleFault. */
  storeCall?(): void;
}

/** Past this, kv_send's staging buffer is dropped after the send instead of kept for the next. */
const STAGE_KEEP = 4 * 1024 * 1024;

/**
 * kv_send (docs/abi.md §17): the head bytes from module memory and the value's
 * range from the store meet in one host-owned buffer, sent in one write. The
 * store copies the range there under its lock, so length, version and bytes
 * are one snapshot; nothing of the value passes through module memory.
 */
class StoredSender {
  private stage = new Uint8Array(64 * 1024);
  private readonly ver = new BigUint64Array(1);

  /** The range's bytes at stage[head..], for the version check and the send: [length sent, version] or a result code. */
  private fetch(a: KvAccess, key: number, keyLen: number, offset: number, len: number, head: number): number {
    const kv = a.kv();
    for (;;) {
      const room = Math.min(len, this.stage.length - head);
      let total: number;
      if (!kv) {
        const b = a.buffer();
        total = native.kvGetRange(b, key >>> 0, keyLen >>> 0, offset, this.stage.buffer, head, room, this.ver.buffer, 0);
      } else {
        const r = kv.getRange(a.bytes(key, keyLen), offset, room);
        if (r === null) return KV.MISSING;
        if (typeof r === 'number') return r;
        this.stage.set(r.part, head);
        this.ver[0] = r.version;
        total = r.length;
      }
      if (total < 0) return total;
      const need = Math.min(len, Math.max(0, total - offset));
      if (need <= room) return need;
      // Larger than the buffer: grow it and read again (the value may have changed meanwhile; the last read is what counts).
      const next = new Uint8Array(head + need);
      next.set(this.stage.subarray(0, head));
      this.stage = next;
    }
  }

  send(a: KvAccess, conn: number, key: number, keyLen: number, offset: number, len: number, version: bigint, head: number, headLen: number): number {
    a.region('kv_send key', key, keyLen);
    a.region('kv_send head', head, headLen);
    if (!a.current(conn)) return KV.NOT_SENT;
    if (offset < 0 || len < 0) return KV.INVALID;
    if (!a.kv() && a.sendStored) {
      // The process store: the value goes from the store entry to the socket, not through this buffer.
      const b = a.buffer();
      const rc = a.sendStored(conn, (fd, id, out) =>
        native.kvSendStored(fd, id, b, key >>> 0, keyLen >>> 0, offset, len, BigInt.asUintN(64, version), b, head >>> 0, headLen >>> 0, out));
      if (rc !== KV_SEND_FALLBACK) return rc;
    }
    const hl = headLen >>> 0;
    if (this.stage.length < hl) this.stage = new Uint8Array(hl);
    this.stage.set(new Uint8Array(a.buffer(), head >>> 0, hl), 0);
    const n = this.fetch(a, key, keyLen, offset, len, hl);
    if (n < 0) return n;
    if (version !== 0n && this.ver[0] !== BigInt.asUintN(64, version)) return KV.EXISTS;
    const rc = hl + n > 0 ? a.send(conn, this.stage.buffer, 0, hl + n) : 0;
    if (this.stage.length > STAGE_KEEP) this.stage = new Uint8Array(64 * 1024);
    return rc < 0 ? KV.NOT_SENT : n;
  }
}

/** The v1.2 kv imports of one instance. */
export function kvV12Imports(a: KvAccess): Record<string, Function> {
  const i64At = (ptr: number, v: bigint): void => new DataView(a.buffer()).setBigInt64(ptr >>> 0, v, true);
  const copyOut = (out: number, cap: number, v: Uint8Array): void => {
    if (v.length <= (cap >>> 0)) new Uint8Array(a.buffer(), out >>> 0, v.length).set(v);
  };
  const sender = new StoredSender();
  const imports: Record<string, Function> = {
    kv_get_ver: (key: number, keyLen: number, out: number, cap: number, ver: number): number => {
      a.region('kv_get_ver key', key, keyLen);
      a.region('kv_get_ver out', out, cap);
      a.region('kv_get_ver version', ver, 8);
      const kv = a.kv();
      const b = a.buffer();
      if (!kv) return native.kvGetVer(b, key >>> 0, keyLen >>> 0, b, out >>> 0, cap >>> 0, b, ver >>> 0);
      const r = kv.getVer(a.bytes(key, keyLen));
      if (r === null) return KV.MISSING;
      if (typeof r === 'number') return r;
      copyOut(out, cap, r.value);
      i64At(ver, r.version);
      return r.value.length;
    },
    kv_get_range: (key: number, keyLen: number, offset: number, out: number, cap: number, ver: number): number => {
      a.region('kv_get_range key', key, keyLen);
      a.region('kv_get_range out', out, cap);
      a.region('kv_get_range version', ver, 8);
      if (offset < 0) return KV.INVALID;
      const kv = a.kv();
      const b = a.buffer();
      if (!kv) return native.kvGetRange(b, key >>> 0, keyLen >>> 0, offset, b, out >>> 0, cap >>> 0, b, ver >>> 0);
      const r = kv.getRange(a.bytes(key, keyLen), offset, cap >>> 0);
      if (r === null) return KV.MISSING;
      if (typeof r === 'number') return r;
      new Uint8Array(a.buffer(), out >>> 0, r.part.length).set(r.part);
      i64At(ver, r.version);
      return r.length;
    },
    kv_send: (conn: number, key: number, keyLen: number, offset: number, len: number, version: bigint, head: number, headLen: number): number =>
      sender.send(a, conn, key, keyLen, offset, len, version, head, headLen),
    kv_getdel: (key: number, keyLen: number, out: number, cap: number): number => {
      a.region('kv_getdel key', key, keyLen);
      a.region('kv_getdel out', out, cap);
      const kv = a.kv();
      const b = a.buffer();
      if (!kv) return native.kvGetDel(b, key >>> 0, keyLen >>> 0, b, out >>> 0, cap >>> 0);
      const r = kv.getDel(a.bytes(key, keyLen), cap >>> 0);
      if (r === null) return KV.MISSING;
      if (typeof r === 'number') return r;
      copyOut(out, cap, r);
      return r.length;
    },
    kv_set_ex: (key: number, keyLen: number, val: number, valLen: number, flags: number, ttl: bigint): number => {
      a.region('kv_set_ex key', key, keyLen);
      a.region('kv_set_ex value', val, valLen);
      const kv = a.kv();
      const b = a.buffer();
      if (!kv) return native.kvSetEx(b, key >>> 0, keyLen >>> 0, b, val >>> 0, valLen >>> 0, flags, ttl);
      return kv.setEx(a.bytes(key, keyLen), a.bytes(val, valLen), flags, ttl);
    },
    kv_cas: (key: number, keyLen: number, val: number, valLen: number, flags: number, ttl: bigint, version: bigint): number => {
      a.region('kv_cas key', key, keyLen);
      a.region('kv_cas value', val, valLen);
      const kv = a.kv();
      const b = a.buffer();
      if (!kv) return native.kvCas(b, key >>> 0, keyLen >>> 0, b, val >>> 0, valLen >>> 0, flags, ttl, version);
      return kv.cas(a.bytes(key, keyLen), a.bytes(val, valLen), flags, ttl, BigInt.asUintN(64, version));
    },
    kv_expire: (key: number, keyLen: number, ttl: bigint): number => {
      a.region('kv_expire key', key, keyLen);
      const kv = a.kv();
      if (!kv) return native.kvExpire(a.buffer(), key >>> 0, keyLen >>> 0, ttl);
      return kv.expire(a.bytes(key, keyLen), ttl);
    },
    kv_expire_ex: (key: number, keyLen: number, ttl: bigint, flags: number): number => {
      a.region('kv_expire_ex key', key, keyLen);
      const kv = a.kv();
      if (!kv) return native.kvExpireIf(a.buffer(), key >>> 0, keyLen >>> 0, ttl, flags);
      return kv.expireEx(a.bytes(key, keyLen), ttl, flags);
    },
    kv_persist: (key: number, keyLen: number): number => {
      a.region('kv_persist key', key, keyLen);
      const kv = a.kv();
      if (!kv) return native.kvPersist(a.buffer(), key >>> 0, keyLen >>> 0);
      return kv.persist(a.bytes(key, keyLen));
    },
    kv_ttl: (key: number, keyLen: number, out: number): number => {
      a.region('kv_ttl key', key, keyLen);
      a.region('kv_ttl out', out, 8);
      const kv = a.kv();
      const b = a.buffer();
      if (!kv) return native.kvTtl(b, key >>> 0, keyLen >>> 0, b, out >>> 0);
      const r = kv.ttl(a.bytes(key, keyLen));
      if (typeof r === 'number') return r;
      i64At(out, r);
      return 1;
    },
    kv_append: (key: number, keyLen: number, val: number, valLen: number, flags: number): number => {
      a.region('kv_append key', key, keyLen);
      a.region('kv_append value', val, valLen);
      const kv = a.kv();
      const b = a.buffer();
      if (!kv) return native.kvAppend(b, key >>> 0, keyLen >>> 0, b, val >>> 0, valLen >>> 0, flags);
      return kv.append(a.bytes(key, keyLen), a.bytes(val, valLen), flags);
    },
    kv_incr_ex: (key: number, keyLen: number, delta: bigint, flags: number, out: number): number => {
      a.region('kv_incr_ex key', key, keyLen);
      a.region('kv_incr_ex out', out, 8);
      const kv = a.kv();
      const b = a.buffer();
      if (!kv) return native.kvIncrEx(b, key >>> 0, keyLen >>> 0, delta, flags, b, out >>> 0);
      const r = kv.incrEx(a.bytes(key, keyLen), delta, flags);
      if (typeof r === 'number') return r;
      i64At(out, r);
      return 0;
    },
    kv_incr_at: (key: number, keyLen: number, offset: number, delta: bigint, flags: number, out: number): number => {
      a.region('kv_incr_at key', key, keyLen);
      a.region('kv_incr_at out', out, 8);
      const kv = a.kv();
      const b = a.buffer();
      if (!kv) return native.kvIncrAt(b, key >>> 0, keyLen >>> 0, offset, delta, flags, b, out >>> 0);
      const r = kv.incrAt(a.bytes(key, keyLen), offset, delta, flags);
      if (typeof r === 'number') return r;
      i64At(out, BigInt.asIntN(64, r));
      return 0;
    },
    kv_scan: (prefix: number, prefixLen: number, cursor: bigint, count: number, out: number, cap: number, next: number): number => {
      a.region('kv_scan prefix', prefix, prefixLen);
      a.region('kv_scan out', out, cap);
      a.region('kv_scan next', next, 8);
      const kv = a.kv();
      const b = a.buffer();
      if (!kv) return native.kvScan(b, prefix >>> 0, prefixLen >>> 0, cursor, count, b, out >>> 0, cap >>> 0, b, next >>> 0);
      const r = kv.scan(a.bytes(prefix, prefixLen), cursor, count, cap >>> 0);
      if (typeof r === 'number') return r;
      const view = new DataView(b);
      let at = out >>> 0;
      for (const k of r.keys) {
        view.setUint32(at, k.length, true);
        new Uint8Array(b, at + 4, k.length).set(k);
        at += 4 + k.length;
      }
      i64At(next, r.next);
      return r.keys.length;
    },
    kv_del_prefix: (prefix: number, prefixLen: number): number => {
      a.region('kv_del_prefix prefix', prefix, prefixLen);
      const kv = a.kv();
      if (!kv) return native.kvDelPrefix(a.buffer(), prefix >>> 0, prefixLen >>> 0);
      return kv.delPrefix(a.bytes(prefix, prefixLen));
    },
  };
  // A callback looping over v1.2 calls on a store that stopped answering is capped as one looping over v1's.
  const check = a.storeCall;
  if (!check) return imports;
  for (const [name, f] of Object.entries(imports)) {
    imports[name] = (...args: unknown[]) => {
      check();
      return f(...args);
    };
  }
  return imports;
}
