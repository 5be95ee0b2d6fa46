// Key distribution as twemproxy (nutcracker) does it, so that a pool served by
// this proxy and one served by nutcracker put every key on the same shard:
// - key hash fnv1a_64 (twemproxy's: the 64-bit FNV offset basis and prime cut to
//   32 bits, each key byte read as a signed char and widened, so a byte >= 0x80
//   XORs 0xFFFFFFxx);
// - distribution ketama (160 points per server of equal weight, scaled by
//   weight; point values from MD5 of "NAME-i", four 32-bit little-endian words
//   per digest; a key goes to the first point >= its hash, wrapping) or modula
//   (hash % total weight, each server repeated weight times in order);
// - hash_tag: with two tag bytes (e.g. "{}") a key with a non-empty tag hashes
//   only the bytes between them.
// Facts taken from twemproxy's documented behaviour (nc_ketama.c, nc_fnv.c),
// checked against /usr/sbin/nutcracker in test/redis-proxy.e2e.test.ts.

/** twemproxy's hash_fnv1a_64. */
export function fnv1a64(p: usize, len: i32): u32 {
  let h: u32 = 0x84222325;
  for (let i = 0; i < len; i++) {
    h ^= <u32><i32>load<i8>(p + <usize>i);
    h *= 0x000001b3;
  }
  return h;
}

// --- MD5 (RFC 1321), for ketama's points only: small inputs, at start-up. ---
const S: StaticArray<u32> = [7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
  5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
  4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
  6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21];
const K = new StaticArray<u32>(64);
for (let i = 0; i < 64; i++) K[i] = <u32><i64>Math.floor(Math.abs(Math.sin(<f64>(i + 1))) * 4294967296.0);

const block = memory.data(64);
export const digest = memory.data(16);

function md5Block(st: StaticArray<u32>): void {
  let a = st[0], b = st[1], c = st[2], d = st[3];
  for (let i = 0; i < 64; i++) {
    let f: u32, g: i32;
    if (i < 16) { f = (b & c) | (~b & d); g = i; }
    else if (i < 32) { f = (d & b) | (~d & c); g = (5 * i + 1) & 15; }
    else if (i < 48) { f = b ^ c ^ d; g = (3 * i + 5) & 15; }
    else { f = c ^ (b | ~d); g = (7 * i) & 15; }
    const t = d;
    d = c;
    c = b;
    b = b + rotl<u32>(a + f + K[i] + load<u32>(block + <usize>(g * 4)), S[i]);
    a = t;
  }
  st[0] += a; st[1] += b; st[2] += c; st[3] += d;
}

const md5State = new StaticArray<u32>(4);

/** MD5 of [p, p+len) into `digest`. */
export function md5(p: usize, len: i32): void {
  md5State[0] = 0x67452301; md5State[1] = 0xefcdab89; md5State[2] = 0x98badcfe; md5State[3] = 0x10325476;
  let off = 0;
  while (len - off >= 64) {
    memory.copy(block, p + <usize>off, 64);
    md5Block(md5State);
    off += 64;
  }
  const rest = len - off;
  memory.fill(block, 0, 64);
  memory.copy(block, p + <usize>off, <usize>rest);
  store<u8>(block + <usize>rest, 0x80);
  if (rest >= 56) {
    md5Block(md5State);
    memory.fill(block, 0, 64);
  }
  store<u64>(block + 56, <u64>len * 8);
  md5Block(md5State);
  for (let i = 0; i < 4; i++) store<u32>(digest + <usize>(i * 4), md5State[i]);
}

// --- The servers and their continuum. ---
export const MAX_SERVERS: i32 = 8; // a connection may hold 8 upstreams (docs/abi.md §16)
const POINTS_PER_SERVER: i32 = 160;
const MAX_POINTS: i32 = MAX_SERVERS * POINTS_PER_SERVER * 8; // weights up to 8x the mean still fit
export const KETAMA: i32 = 0;
export const MODULA: i32 = 1;

export let nServers: i32 = 0;
export let distribution: i32 = KETAMA;
/** hash_tag bytes (0: none). */
export let tagOpen: u8 = 0;
export let tagClose: u8 = 0;
/** Server names as ketama hashes them (the --upstream names, or "HOST:PORT" when sharding by address), weights. */
export const names = new StaticArray<string>(MAX_SERVERS);
export const weights = new StaticArray<i32>(MAX_SERVERS);
let totalWeight: i32 = 0;
const pointValue = new StaticArray<u32>(MAX_POINTS);
const pointIndex = new StaticArray<u8>(MAX_POINTS);
let nPoints: i32 = 0;
const modulaTable = new StaticArray<u8>(MAX_SERVERS * 64);

export function setDistribution(d: i32): void { distribution = d; }
export function setHashTag(open: u8, close: u8): void { tagOpen = open; tagClose = close; }

export function resetServers(): void {
  nServers = 0;
  totalWeight = 0;
  nPoints = 0;
}

/** Adds a server; false when there are MAX_SERVERS already. */
export function addServer(name: string, weight: i32): bool {
  if (nServers >= MAX_SERVERS) return false;
  names[nServers] = name;
  weights[nServers] = weight;
  totalWeight += weight;
  nServers++;
  return true;
}

const hostBuf = memory.data(128);

/** Builds the continuum (ketama) after the servers are added. */
export function buildContinuum(): void {
  nPoints = 0;
  for (let s = 0; s < nServers; s++) {
    // twemproxy's float arithmetic, kept in f32 where it is f32 there.
    const pct: f32 = <f32>weights[s] / <f32>totalWeight;
    const scaled: f32 = pct * <f32>POINTS_PER_SERVER / <f32>4 * <f32>nServers;
    const perServer = <i32>Mathf.floor(<f32>(<f64>scaled + 0.0000000001)) * 4;
    const name = String.UTF8.encode(names[s]);
    const nameLen = name.byteLength;
    memory.copy(hostBuf, changetype<usize>(name), <usize>nameLen);
    for (let k = 0; k < perServer / 4; k++) {
      const len = nameLen + 1 + writeDecimal(hostBuf + <usize>(nameLen + 1), k);
      store<u8>(hostBuf + <usize>nameLen, 0x2D);
      md5(hostBuf, len);
      for (let x = 0; x < 4 && nPoints < MAX_POINTS; x++) {
        pointValue[nPoints] = load<u32>(digest + <usize>(x * 4));
        pointIndex[nPoints] = <u8>s;
        nPoints++;
      }
    }
  }
  // Insertion sort by value: at most a few thousand points, once.
  for (let i = 1; i < nPoints; i++) {
    const v = pointValue[i], x = pointIndex[i];
    let j = i - 1;
    while (j >= 0 && pointValue[j] > v) {
      pointValue[j + 1] = pointValue[j];
      pointIndex[j + 1] = pointIndex[j];
      j--;
    }
    pointValue[j + 1] = v;
    pointIndex[j + 1] = x;
  }
  let m = 0;
  for (let s = 0; s < nServers; s++) for (let w = 0; w < weights[s] && m < modulaTable.length; w++) modulaTable[m++] = <u8>s;
  totalWeight = m;
}

function writeDecimal(p: usize, v: i32): i32 {
  if (v < 10) { store<u8>(p, <u8>(0x30 + v)); return 1; }
  if (v < 100) { store<u8>(p, <u8>(0x30 + v / 10)); store<u8>(p + 1, <u8>(0x30 + v % 10)); return 2; }
  store<u8>(p, <u8>(0x30 + v / 100)); store<u8>(p + 1, <u8>(0x30 + (v / 10) % 10)); store<u8>(p + 2, <u8>(0x30 + v % 10));
  return 3;
}

/** The server index of a key. */
export function serverOf(key: usize, len: i32): i32 {
  if (nServers <= 1) return 0;
  if (tagOpen != 0) {
    for (let i = 0; i < len; i++) {
      if (load<u8>(key + <usize>i) != tagOpen) continue;
      for (let j = i + 1; j < len; j++) {
        if (load<u8>(key + <usize>j) != tagClose) continue;
        if (j - i > 1) {
          key += <usize>(i + 1);
          len = j - i - 1;
        }
        break;
      }
      break;
    }
  }
  const h = fnv1a64(key, len);
  if (distribution == MODULA) return modulaTable[<i32>(h % <u32>totalWeight)];
  let lo = 0, hi = nPoints;
  while (lo < hi) {
    const mid = lo + ((hi - lo) >> 1);
    if (pointValue[mid] < h) lo = mid + 1;
    else hi = mid;
  }
  if (hi == nPoints) hi = 0;
  return pointIndex[hi];
}
