// The key-value store a module sees in tcpmod/testing: one per loaded module,
// in a JS Map, so tests never share state through it. It answers tcpmod.kv_*
// by the rules of docs/abi.md §10 (the native process store's rules: the same
// budget accounting, canonical decimal integers for kv_incr), and lets a test
// read, preload and clear it, or make it unavailable (ABI v1.1's -3).
import { KV, KV_DECR, KV_GT, KV_KEEPTTL, KV_LT, KV_NX, KV_PREPEND, KV_TTL_MAX, KV_XX } from '../module/abi.js';
import { KV_UNAVAILABLE, type KvBackend } from '../module/instance.js';

/** What each entry costs against the budget beyond its key and value bytes (as the process store counts). */
const ENTRY_COST = 64;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const U64_MAX = 2n ** 64n - 1n;
/** A decimal integer as kv_incr accepts it: optional '-', no '+', no spaces, no leading zeros, no "-0". */
const CANONICAL_INT = /^(0|-?[1-9][0-9]*)$/;

const encoder = new TextEncoder();
const strict = new TextDecoder('utf-8', { fatal: true });

/** A key or value as a test writes it: text (UTF-8) or bytes. */
export type KvBytes = string | Uint8Array;

/**
 * The store call a module made, as `unavailable` sees it: tcpmod.kv_get, kv_set,
 * kv_del, kv_incr, or one of v1.2's (docs/abi.md §14) by its import name without
 * the `kv_` (`set_ex`, `cas`, `scan`, …; a scan or del_prefix passes its prefix as the key).
 */
export type KvOp = 'get' | 'set' | 'del' | 'incr' | 'get_ver' | 'getdel' | 'set_ex' | 'cas' | 'expire' | 'persist' | 'ttl' | 'append' | 'incr_ex' | 'scan' | 'del_prefix' | 'get_range' | 'expire_ex' | 'incr_at';

/** One stored key: its bytes, value, version (changes on each write), expiry (fake-clock ms, 0 none), and listing order. */
interface Entry {
  key: Uint8Array;
  value: Uint8Array;
  version: bigint;
  expireAt: number;
  seq: number;
}

/** Bytes as a Map key: one character per byte. */
function mapKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}

function startsWith(key: Uint8Array, prefix: Uint8Array): boolean {
  return key.length >= prefix.length && prefix.every((b, i) => key[i] === b);
}

function toBytes(what: string, v: unknown): Uint8Array {
  if (typeof v === 'string') return encoder.encode(v);
  if (v instanceof Uint8Array) return v.slice();
  throw new TypeError(`${what} must be a string or a Uint8Array, got ${typeof v}`);
}

/** Text when the bytes are valid UTF-8, else the bytes themselves. */
function readable(b: Uint8Array): string | Uint8Array {
  try {
    return strict.decode(b);
  } catch {
    return b.slice();
  }
}

/**
 * `m.kv`: the store of one loaded module. Keys and values are bytes; methods
 * take text (stored as UTF-8) or a Uint8Array, and `get`/`keys` give text back
 * when the bytes are valid UTF-8, a Uint8Array otherwise (`getBytes` always
 * gives bytes). Preloading with `set` counts against the same budget as the
 * module's own kv_set.
 */
export class ModuleKv {
  /**
   * While true, every tcpmod.kv_* call of the module returns -3 (ABI v1.1: the
   * store is unavailable) and changes nothing; the test's own calls still work.
   * A function decides call by call (a store that fails part-way through a
   * command, or only for writes): it is asked before each of the module's kv
   * calls, with the call and its key (as `get` gives keys), and true makes
   * that call fail.
   */
  unavailable: boolean | ((op: KvOp, key: string | Uint8Array) => boolean) = false;
  private readonly map = new Map<string, Entry>();
  private used = 0;
  private lastVersion = 0n;
  private lastSeq = 0;

  /**
   * @internal loadModule makes it; it checked `maxBytes`. `now` is the clock
   * TTLs run on (the module's fake clock), in ms.
   */
  constructor(readonly maxBytes: number, private readonly now: () => number = Date.now) {}

  /** Bytes in use against the budget `maxBytes` (each entry: key + value + 64, as the server's `--kv-max-bytes` counts). */
  get usedBytes(): number {
    this.purge();
    return this.used;
  }

  /** How many keys the store holds (expired ones are gone). */
  get size(): number {
    this.purge();
    return this.map.size;
  }

  /** The value of `key` (text when it is valid UTF-8, else bytes), or null when missing. */
  get(key: KvBytes): string | Uint8Array | null {
    const e = this.live(toBytes('key', key));
    return e ? readable(e.value) : null;
  }

  /** The value of `key` as bytes (a copy), or null when missing. */
  getBytes(key: KvBytes): Uint8Array | null {
    const e = this.live(toBytes('key', key));
    return e ? e.value.slice() : null;
  }

  /**
   * Stores `value` under `key`, replacing any old value; an integer (number or
   * bigint) is stored as kv_incr stores numbers, in decimal. Throws a RangeError
   * when the entry would exceed the budget (the store is then unchanged).
   */
  set(key: KvBytes, value: KvBytes | number | bigint): void {
    let v: Uint8Array;
    if (typeof value === 'bigint' || typeof value === 'number') {
      if (typeof value === 'number' && !Number.isSafeInteger(value)) throw new RangeError(`value must be an integer, a string or a Uint8Array, got ${value}`);
      v = encoder.encode(String(value));
    } else {
      v = toBytes('value', value);
    }
    const k = toBytes('key', key);
    if (this.store(k, v, 0) !== 0)
      throw new RangeError(`an entry of ${k.length + v.length + ENTRY_COST} bytes does not fit the store's budget (${this.used} of ${this.maxBytes} bytes in use)`);
  }

  /** Removes `key`; true when it was there. */
  delete(key: KvBytes): boolean {
    return this.remove(toBytes('key', key));
  }

  /** Removes every key. */
  clear(): void {
    this.map.clear();
    this.used = 0;
  }

  /** Every key, in the order first stored (text when valid UTF-8, else bytes). */
  keys(): (string | Uint8Array)[] {
    this.purge();
    return [...this.map.values()].map((e) => readable(e.key));
  }

  /** The ms left before `key` expires (on the module's clock); null when it has no TTL or is missing. */
  ttl(key: KvBytes): number | null {
    const e = this.live(toBytes('key', key));
    return e && e.expireAt ? e.expireAt - this.now() : null;
  }

  /** @internal Saves everything stored; the function puts it back (entries are never changed in place). */
  snapshot(): () => void {
    const saved = new Map(this.map);
    const { used, lastVersion, lastSeq } = this;
    return () => {
      this.map.clear();
      for (const [k, e] of saved) this.map.set(k, e);
      Object.assign(this, { used, lastVersion, lastSeq });
    };
  }

  /** @internal What the module's tcpmod.kv_* calls reach (the instance copied key and value out of its memory). */
  readonly backend: KvBackend = {
    get: (key) => (this.down('get', key) ? KV_UNAVAILABLE : this.live(key)?.value ?? null),
    set: (key, value) => (this.down('set', key) ? KV_UNAVAILABLE : this.store(key, value, 0)),
    del: (key) => (this.down('del', key) ? KV_UNAVAILABLE : this.remove(key) ? 1 : 0),
    incr: (key, delta) => (this.down('incr', key) ? KV_UNAVAILABLE : this.incr(key, delta, -1)),
    getVer: (key) => {
      if (this.down('get_ver', key)) return KV_UNAVAILABLE;
      const e = this.live(key);
      return e ? { value: e.value, version: e.version } : null;
    },
    getRange: (key, offset, cap) => {
      if (this.down('get_range', key)) return KV_UNAVAILABLE;
      const e = this.live(key);
      if (!e) return null;
      return { length: e.value.length, part: e.value.subarray(Math.min(offset, e.value.length), offset + cap), version: e.version };
    },
    getDel: (key, cap) => {
      if (this.down('getdel', key)) return KV_UNAVAILABLE;
      const e = this.live(key);
      if (e && e.value.length <= cap) this.remove(key);
      return e ? e.value : null;
    },
    setEx: (key, value, flags, ttl) => (this.down('set_ex', key) ? KV_UNAVAILABLE : this.setEx(key, value, flags, ttl, null)),
    cas: (key, value, flags, ttl, version) => (this.down('cas', key) ? KV_UNAVAILABLE : this.setEx(key, value, flags, ttl, version)),
    expire: (key, ttl) => {
      if (this.down('expire', key)) return KV_UNAVAILABLE;
      if (ttl < 0n || ttl > BigInt(KV_TTL_MAX)) return KV.INVALID;
      const e = this.live(key);
      if (!e) return KV.MISSING;
      if (ttl === 0n) this.remove(key);
      else this.retime(key, e, this.now() + Number(ttl));
      return 0;
    },
    expireEx: (key, ttl, flags) => {
      if (this.down('expire_ex', key)) return KV_UNAVAILABLE;
      // Redis 7's EXPIRE options: NX and XX need no TTL / a TTL, GT and LT a later / an earlier expiry (none counts as infinite).
      const known = KV_NX | KV_XX | KV_GT | KV_LT;
      if (ttl < 0n || ttl > BigInt(KV_TTL_MAX) || (flags & ~known) !== 0 || ((flags & KV_NX) && (flags & (KV_XX | KV_GT | KV_LT))) || ((flags & KV_GT) && (flags & KV_LT)))
        return KV.INVALID;
      const e = this.live(key);
      if (!e) return KV.MISSING;
      const at = this.now() + Number(ttl);
      const cur = e.expireAt;
      if ((flags & KV_NX && cur !== 0) || (flags & KV_XX && cur === 0) || (flags & KV_GT && (cur === 0 || at <= cur)) || (flags & KV_LT && cur !== 0 && at >= cur))
        return 0;
      if (ttl === 0n) this.remove(key);
      else this.retime(key, e, at);
      return 1;
    },
    persist: (key) => {
      if (this.down('persist', key)) return KV_UNAVAILABLE;
      const e = this.live(key);
      if (!e) return KV.MISSING;
      const had = e.expireAt !== 0;
      this.retime(key, e, 0);
      return had ? 1 : 0;
    },
    ttl: (key) => {
      if (this.down('ttl', key)) return KV_UNAVAILABLE;
      const e = this.live(key);
      if (!e) return KV.MISSING;
      return e.expireAt ? BigInt(e.expireAt - this.now()) : 0;
    },
    append: (key, value, flags) => {
      if (this.down('append', key)) return KV_UNAVAILABLE;
      if (flags & ~(KV_PREPEND | KV_XX)) return KV.INVALID;
      const e = this.live(key);
      if (!e && flags & KV_XX) return KV.MISSING;
      const cur = e?.value ?? new Uint8Array(0);
      const next = new Uint8Array(cur.length + value.length);
      next.set(flags & KV_PREPEND ? value : cur, 0);
      next.set(flags & KV_PREPEND ? cur : value, flags & KV_PREPEND ? value.length : cur.length);
      const rc = this.store(key, next, e?.expireAt ?? 0);
      return rc === 0 ? next.length : rc;
    },
    incrEx: (key, delta, flags) => {
      if (this.down('incr_ex', key)) return KV_UNAVAILABLE;
      if (flags & ~KV_XX) return KV.INVALID;
      if (flags & KV_XX && !this.live(key)) return KV.MISSING;
      const r = this.incr(key, delta, KV.NOT_INTEGER);
      return r;
    },
    incrAt: (key, offset, delta, flags) => {
      if (this.down('incr_at', key)) return KV_UNAVAILABLE;
      if (offset < 0 || flags & ~KV_DECR) return KV.INVALID;
      const e = this.live(key);
      if (!e) return KV.MISSING;
      if (offset > e.value.length) return KV.NOT_INTEGER;
      const m = /^(\d{1,20}) *$/.exec(Buffer.from(e.value.buffer, e.value.byteOffset + offset, e.value.length - offset).toString('latin1'));
      if (!m || BigInt(m[1]) > U64_MAX) return KV.NOT_INTEGER;
      const cur = BigInt(m[1]);
      const d = BigInt.asUintN(64, delta);
      const next = flags & KV_DECR ? (cur < d ? 0n : cur - d) : BigInt.asUintN(64, cur + d);
      const text = encoder.encode(next.toString());
      const value = new Uint8Array(offset + text.length);
      value.set(e.value.subarray(0, offset), 0);
      value.set(text, offset);
      return this.store(key, value, e.expireAt) === 0 ? next : KV.FULL;
    },
    scan: (prefix, cursor, count, cap) => (this.down('scan', prefix) ? KV_UNAVAILABLE : this.scan(prefix, cursor, count, cap)),
    delPrefix: (prefix) => {
      if (this.down('del_prefix', prefix)) return KV_UNAVAILABLE;
      let n = 0;
      for (const e of [...this.map.values()]) if (startsWith(e.key, prefix) && this.remove(e.key)) n++;
      return n;
    },
  };

  /** kv_set_ex (version null) and kv_cas: docs/abi.md §14's rules. */
  private setEx(key: Uint8Array, value: Uint8Array, flags: number, ttl: bigint, version: bigint | null): number {
    const allowed = version === null ? KV_NX | KV_XX | KV_KEEPTTL : KV_KEEPTTL;
    if (flags & ~allowed || (flags & KV_NX && flags & KV_XX)) return KV.INVALID;
    if (ttl < 0n || ttl > BigInt(KV_TTL_MAX) || (flags & KV_KEEPTTL && ttl !== 0n)) return KV.INVALID;
    const e = this.live(key);
    if (version !== null) {
      if (!e) return KV.MISSING;
      if (e.version !== version) return KV.EXISTS;
    }
    if (flags & KV_NX && e) return KV.EXISTS;
    if (flags & KV_XX && !e) return KV.MISSING;
    const expireAt = flags & KV_KEEPTTL ? (e?.expireAt ?? 0) : ttl === 0n ? 0 : this.now() + Number(ttl);
    return this.store(key, value, expireAt);
  }

  /**
   * kv_scan: keys in the order first stored; the cursor is the listing number
   * of the next key to look at, so a key present for the whole scan comes back
   * exactly once, whatever is written in between.
   */
  private scan(prefix: Uint8Array, cursor: bigint, count: number, cap: number): { keys: Uint8Array[]; next: bigint } | number {
    if (cursor < 0n || count < 1) return KV.INVALID;
    this.purge();
    const keys: Uint8Array[] = [];
    let used = 0;
    let visited = 0;
    for (const e of this.map.values()) {
      if (BigInt(e.seq) < cursor) continue;
      if (keys.length >= count || visited >= count * 10) return { keys, next: BigInt(e.seq) };
      visited++;
      if (!startsWith(e.key, prefix)) continue;
      if (used + 4 + e.key.length > cap) return keys.length ? { keys, next: BigInt(e.seq) } : KV.TOO_SMALL;
      used += 4 + e.key.length;
      keys.push(e.key);
    }
    return { keys, next: 0n };
  }

  /** Whether the module's `op` on `key` finds the store unavailable (see `unavailable`). */
  private down(op: KvOp, key: Uint8Array): boolean {
    const u = this.unavailable;
    if (typeof u === 'function') return u(op, readable(key)) === true;
    return u === true;
  }

  /** kv_incr: the new value; `bad` when the value is not a canonical integer or the sum leaves i64 (v1: -1); -2 over the budget. Keeps the TTL. */
  private incr(key: Uint8Array, delta: bigint, bad: number): bigint | number {
    const e = this.live(key);
    let cur = 0n;
    if (e) {
      const text = Buffer.from(e.value.buffer, e.value.byteOffset, e.value.byteLength).toString('latin1');
      if (!CANONICAL_INT.test(text)) return bad;
      cur = BigInt(text);
      if (cur < I64_MIN || cur > I64_MAX) return bad;
    }
    const next = cur + delta;
    if (next < I64_MIN || next > I64_MAX) return bad;
    return this.store(key, encoder.encode(next.toString()), e?.expireAt ?? 0) === 0 ? next : -2;
  }

  /** The entry of `key` unless missing or expired (an expired one is deleted: lazy expiry, as the server's store). */
  private live(key: Uint8Array): Entry | null {
    const e = this.map.get(mapKey(key));
    if (!e) return null;
    if (e.expireAt && this.now() > e.expireAt) {
      this.remove(key);
      return null;
    }
    return e;
  }

  /** Gives `key` a new expiry: a new entry object, as snapshot() needs (entries are never changed in place). */
  private retime(key: Uint8Array, e: Entry, expireAt: number): void {
    this.map.set(mapKey(key), { ...e, expireAt });
  }

  /** Deletes every expired entry. */
  private purge(): void {
    const now = this.now();
    for (const e of [...this.map.values()]) if (e.expireAt && now > e.expireAt) this.remove(e.key);
  }

  /**
   * 0 stored with a new version and the given expiry (clock ms, 0 none), or -2
   * when the budget would be exceeded even once expired keys are dropped
   * (nothing changed). Keeps its own copies.
   */
  private store(key: Uint8Array, value: Uint8Array, expireAt: number): number {
    const k = mapKey(key);
    let old = this.map.get(k);
    let delta = value.length - (old ? old.value.length : -(key.length + ENTRY_COST));
    if (delta > 0 && this.used + delta > this.maxBytes) {
      this.purge();
      old = this.map.get(k);
      delta = value.length - (old ? old.value.length : -(key.length + ENTRY_COST));
      if (this.used + delta > this.maxBytes) return -2;
    }
    this.used += delta;
    this.map.set(k, { key: old?.key ?? key.slice(), value: value.slice(), version: ++this.lastVersion, expireAt, seq: old?.seq ?? ++this.lastSeq });
    return 0;
  }

  private remove(key: Uint8Array): boolean {
    const k = mapKey(key);
    const old = this.map.get(k);
    if (!old) return false;
    this.used -= key.length + old.value.length + ENTRY_COST;
    this.map.delete(k);
    return true;
  }
}
