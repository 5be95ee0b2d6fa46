// The key-value store a module sees in tcpmod/testing: one per loaded module,
// in a JS Map, so tests never share state through it. It answers tcpmod.kv_*
// by the rules of docs/abi.md §10 (the native process store's rules: the same
// budget accounting, canonical decimal integers for kv_incr), and lets a test
// read, preload and clear it, or make it unavailable (ABI v1.1's -3).
import { KV_UNAVAILABLE, type KvBackend } from '../module/instance.js';

/** What each entry costs against the budget beyond its key and value bytes (as the process store counts). */
const ENTRY_COST = 64;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
/** A decimal integer as kv_incr accepts it: optional '-', no '+', no spaces, no leading zeros, no "-0". */
const CANONICAL_INT = /^(0|-?[1-9][0-9]*)$/;

const encoder = new TextEncoder();
const strict = new TextDecoder('utf-8', { fatal: true });

/** A key or value as a test writes it: text (UTF-8) or bytes. */
export type KvBytes = string | Uint8Array;

/** The store call a module made, as `unavailable` sees it: tcpmod.kv_get, kv_set, kv_del or kv_incr. */
export type KvOp = 'get' | 'set' | 'del' | 'incr';

/** Bytes as a Map key: one character per byte. */
function mapKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
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
  private readonly map = new Map<string, { key: Uint8Array; value: Uint8Array }>();
  private used = 0;

  /** @internal loadModule makes it; it checked `maxBytes`. */
  constructor(readonly maxBytes: number) {}

  /** Bytes in use against the budget `maxBytes` (each entry: key + value + 64, as the server's `--kv-max-bytes` counts). */
  get usedBytes(): number {
    return this.used;
  }

  /** How many keys the store holds. */
  get size(): number {
    return this.map.size;
  }

  /** The value of `key` (text when it is valid UTF-8, else bytes), or null when missing. */
  get(key: KvBytes): string | Uint8Array | null {
    const e = this.map.get(mapKey(toBytes('key', key)));
    return e ? readable(e.value) : null;
  }

  /** The value of `key` as bytes (a copy), or null when missing. */
  getBytes(key: KvBytes): Uint8Array | null {
    const e = this.map.get(mapKey(toBytes('key', key)));
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
    if (this.store(k, v) !== 0)
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
    return [...this.map.values()].map((e) => readable(e.key));
  }

  /** @internal Saves everything stored; the function puts it back (entries are never changed in place). */
  snapshot(): () => void {
    const saved = new Map(this.map);
    const used = this.used;
    return () => {
      this.map.clear();
      for (const [k, e] of saved) this.map.set(k, e);
      this.used = used;
    };
  }

  /** @internal What the module's tcpmod.kv_* calls reach (the instance copied key and value out of its memory). */
  readonly backend: KvBackend = {
    get: (key) => (this.down('get', key) ? KV_UNAVAILABLE : this.map.get(mapKey(key))?.value ?? null),
    set: (key, value) => (this.down('set', key) ? KV_UNAVAILABLE : this.store(key, value)),
    del: (key) => (this.down('del', key) ? KV_UNAVAILABLE : this.remove(key) ? 1 : 0),
    incr: (key, delta) => (this.down('incr', key) ? KV_UNAVAILABLE : this.incr(key, delta)),
  };

  /** Whether the module's `op` on `key` finds the store unavailable (see `unavailable`). */
  private down(op: KvOp, key: Uint8Array): boolean {
    const u = this.unavailable;
    if (typeof u === 'function') return u(op, readable(key)) === true;
    return u === true;
  }

  /** kv_incr: the new value; -1 when the value is not a canonical integer or the sum leaves i64; -2 over the budget. */
  private incr(key: Uint8Array, delta: bigint): bigint | number {
    const e = this.map.get(mapKey(key));
    let cur = 0n;
    if (e) {
      const text = Buffer.from(e.value.buffer, e.value.byteOffset, e.value.byteLength).toString('latin1');
      if (!CANONICAL_INT.test(text)) return -1;
      cur = BigInt(text);
      if (cur < I64_MIN || cur > I64_MAX) return -1;
    }
    const next = cur + delta;
    if (next < I64_MIN || next > I64_MAX) return -1;
    return this.store(key, encoder.encode(next.toString())) === 0 ? next : -2;
  }

  /** 0 stored, or -2 when the budget would be exceeded (nothing changed). Keeps its own copies. */
  private store(key: Uint8Array, value: Uint8Array): number {
    const k = mapKey(key);
    const old = this.map.get(k);
    const delta = value.length - (old ? old.value.length : -(key.length + ENTRY_COST));
    if (delta > 0 && this.used + delta > this.maxBytes) return -2;
    this.used += delta;
    this.map.set(k, { key: old?.key ?? key.slice(), value: value.slice() });
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
