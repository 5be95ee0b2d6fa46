// Which commands the proxy routes, and how. A whitelist, as twemproxy's: a
// command whose keys are not where this table says would be sent to the wrong
// shard silently, so anything not listed is refused with an error.
import { fnv1a64 } from "./hash";

export const UNKNOWN: i32 = 0;
/** One key, the first argument: the whole request goes to that key's shard. */
export const SINGLE: i32 = 1;
/** MGET k…: one GET per key to its shard, the replies joined into one array, in order. */
export const MGET: i32 = 2;
/** DEL / UNLINK / EXISTS / TOUCH k…: one command per key, the integer replies summed. */
export const SUM: i32 = 3;
/** MSET k v …: one SET per pair; +OK when every SET said OK. */
export const MSET: i32 = 4;
export const PING: i32 = 5;
export const QUIT: i32 = 6;

const SINGLES = "get set setnx setex psetex getset getdel getex append strlen incr decr incrby decrby incrbyfloat " +
  "getrange setrange substr getbit setbit bitcount bitpos bitfield expire pexpire expireat pexpireat persist ttl pttl " +
  "expiretime pexpiretime type dump restore " +
  "hget hset hsetnx hmset hmget hdel hlen hstrlen hkeys hvals hgetall hexists hincrby hincrbyfloat hscan hrandfield " +
  "lpush rpush lpushx rpushx lpop rpop llen lindex lset lrange ltrim lrem linsert lpos " +
  "sadd srem scard sismember smismember smembers spop srandmember sscan " +
  "zadd zrem zcard zcount zincrby zrange zrangebyscore zrevrange zrevrangebyscore zrank zrevrank zscore zmscore " +
  "zremrangebyrank zremrangebyscore zrangebylex zrevrangebylex zlexcount zremrangebylex zscan zpopmin zpopmax zrandmember " +
  "pfadd geoadd geodist geohash geopos";

const SLOTS: i32 = 512; // open addressing, power of two, well above the ~110 names
// The table holds no managed object: the host collects garbage after every
// callback (__collect), and a collection visits every live managed object, so
// ~110 name buffers behind a 512-slot reference array cost more instructions
// per proxied request than the rest of the module (callgrind). The names are
// bytes in a static arena instead, and the slots plain numbers.
const ARENA: i32 = 2048; // the names take ~800 bytes
const arena = memory.data(ARENA);
let arenaUsed: i32 = 0;
const slotHash = new StaticArray<u32>(SLOTS);
const slotClass = new StaticArray<i32>(SLOTS);
const slotOff = new StaticArray<i32>(SLOTS);
const slotLen = new StaticArray<i32>(SLOTS); // 0: an empty slot

function add(name: string, cls: i32): void {
  const len = name.length; // ASCII names: a byte each
  if (len == 0 || arenaUsed + len > ARENA) unreachable();
  const at = arena + <usize>arenaUsed;
  for (let k = 0; k < len; k++) store<u8>(at + <usize>k, <u8>name.charCodeAt(k));
  const h = fnv1a64(at, len);
  let i = <i32>(h & <u32>(SLOTS - 1));
  while (slotLen[i] != 0) i = (i + 1) & (SLOTS - 1);
  slotHash[i] = h;
  slotClass[i] = cls;
  slotOff[i] = arenaUsed;
  slotLen[i] = len;
  arenaUsed += len;
}

export function initCommands(): void {
  arenaUsed = 0;
  for (let i = 0; i < SLOTS; i++) slotLen[i] = 0;
  const list = SINGLES.split(" ");
  for (let i = 0; i < list.length; i++) add(list[i], SINGLE);
  add("mget", MGET);
  add("del", SUM);
  add("unlink", SUM);
  add("exists", SUM);
  add("touch", SUM);
  add("mset", MSET);
  add("ping", PING);
  add("quit", QUIT);
}

const lower = memory.data(32);

/** The class of the command named by [p, p+len), any letter case. */
export function classify(p: usize, len: i32): i32 {
  if (len <= 0 || len > 32) return UNKNOWN;
  for (let i = 0; i < len; i++) {
    let b = load<u8>(p + <usize>i);
    if (b >= 0x41 && b <= 0x5A) b += 0x20;
    store<u8>(lower + <usize>i, b);
  }
  const h = fnv1a64(lower, len);
  let i = <i32>(h & <u32>(SLOTS - 1));
  while (true) {
    const n = slotLen[i];
    if (n == 0) return UNKNOWN;
    if (slotHash[i] == h && n == len && memory.compare(arena + <usize>slotOff[i], lower, <usize>len) == 0) return slotClass[i];
    i = (i + 1) & (SLOTS - 1);
  }
}
