// The key-value store as the main thread sets it up: the Redis server of a
// redis:// kv option (host resolved, password and CA files read and checked,
// never on a worker), and the once-a-second warning while calls to it fail.
// The in-process store needs nothing here (native.kvConfigure in listen()).
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { KvTarget } from '../native/native.js';
import { OptionError } from '../options.js';
import { KV_ERROR_KINDS, T } from '../pool/counters.js';
import { native } from '../sys.js';
import { caPem } from './ca.js';
import type { ServerCore } from './core.js';

export class KvStore {
  /** The Redis server workers use (host resolved, password read), and the once-a-second check of its errors. */
  kvTarget: KvTarget | null = null;
  private kvWatch: NodeJS.Timeout | null = null;
  private kvErrorsSeen = 0;

  constructor(private readonly core: ServerCore) {}

  private get options() { return this.core.options; }
  private get log() { return this.core.log; }
  private get pool() { return this.core.pool; }

  /** Starts the warning while calls fail (with a Redis store). */
  watch(): void {
    if (this.kvTarget) this.kvWatch = setInterval(() => this.warnKv(), 1000).unref();
  }

  /** Stops it (the server's release()). */
  stopWatch(): void {
    if (this.kvWatch) clearInterval(this.kvWatch);
    this.kvWatch = null;
  }

  /** The Redis server of a redis:// kv option: its host resolved once here (never on a worker), its password file read. */
  async redisTarget(): Promise<KvTarget | null> {
    const kv = this.options.kv;
    if (kv.type !== 'redis') return null;
    let password = kv.password ?? '';
    const file = this.options.kvPasswordFile;
    if (file !== null) {
      try {
        password = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
      } catch (e) {
        throw new OptionError('kvPasswordFile', `could not be read: ${(e as Error).message}`);
      }
      if (password === '') throw new OptionError('kvPasswordFile', `is empty: ${file}`);
    }
    const host = isIP(kv.host) ? kv.host : (await lookup(kv.host)).address;
    const target: KvTarget = { host, port: kv.port, db: kv.db, username: kv.username, password, timeoutMs: this.options.kvTimeoutMs };
    if (kv.tls) target.tls = { ca: caPem('kvTlsCa', this.options.kvTlsCa), servername: kv.host };
    return target;
  }

  /** Once a second at most: a warning when calls to the Redis store failed since the last check, with the last reason. */
  private warnKv(): void {
    const errors = this.kvErrors(this.pool!.totals());
    const total = Object.values(errors).reduce((a, b) => a + b, 0);
    if (total <= this.kvErrorsSeen) return;
    this.kvErrorsSeen = total;
    const t = this.kvTarget!;
    this.log.warn({ store: `${isIP(t.host) === 6 ? `[${t.host}]` : t.host}:${t.port}`, errors }, `key-value store unavailable (calls return -3): ${native.kvLastError() || 'refused while reconnecting'}`);
  }

  kvErrors(t: Float64Array): Record<string, number> {
    const errors: Record<string, number> = {};
    KV_ERROR_KINDS.forEach((k, i) => (errors[k] = t[T.KV_ERRORS + i]));
    return errors;
  }
}
