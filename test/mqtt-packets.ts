// MQTT 3.1.1 packets for the tests of mqtt.wasm, built byte by byte (so a test
// can also build what a correct client never sends), and a reader that splits
// what the broker sent into packets.

const utf8 = (s: string | Buffer) => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s);
const str = (s: string | Buffer) => {
  const b = utf8(s);
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 255]), b]);
};
const u16 = (n: number) => Buffer.from([n >> 8, n & 255]);

/** The remaining-length varint. */
export function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 128;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

/** A packet: first byte, then the remaining length and the body. */
export const packet = (first: number, ...body: Buffer[]) => {
  const b = Buffer.concat(body);
  return Buffer.concat([Buffer.from([first]), varint(b.length), b]);
};

export interface ConnectOpts {
  clientId?: string;
  clean?: boolean;
  keepalive?: number;
  will?: { topic: string; payload: string | Buffer; qos?: number; retain?: boolean };
  username?: string;
  password?: string;
  protocol?: string;
  level?: number;
}

export function connect(o: ConnectOpts = {}): Buffer {
  let flags = o.clean === false ? 0 : 2;
  if (o.will) flags |= 4 | ((o.will.qos ?? 0) << 3) | (o.will.retain ? 32 : 0);
  if (o.password !== undefined) flags |= 64;
  if (o.username !== undefined) flags |= 128;
  const parts = [str(o.protocol ?? 'MQTT'), Buffer.from([o.level ?? 4, flags]), u16(o.keepalive ?? 0), str(o.clientId ?? 'c')];
  if (o.will) parts.push(str(o.will.topic), str(o.will.payload));
  if (o.username !== undefined) parts.push(str(o.username));
  if (o.password !== undefined) parts.push(str(o.password));
  return packet(0x10, ...parts);
}

export function publish(topic: string, payload: string | Buffer, o: { qos?: number; pid?: number; retain?: boolean; dup?: boolean } = {}): Buffer {
  const qos = o.qos ?? 0;
  const first = 0x30 | (o.dup ? 8 : 0) | (qos << 1) | (o.retain ? 1 : 0);
  return packet(first, str(topic), qos > 0 ? u16(o.pid ?? 1) : Buffer.alloc(0), utf8(payload));
}

export const subscribe = (pid: number, ...filters: [string, number][]) =>
  packet(0x82, u16(pid), ...filters.flatMap(([f, q]) => [str(f), Buffer.from([q])]));
export const unsubscribe = (pid: number, ...filters: string[]) => packet(0xa2, u16(pid), ...filters.map(str));
export const puback = (pid: number) => packet(0x40, u16(pid));
export const pubrel = (pid: number) => packet(0x62, u16(pid));
export const PINGREQ = Buffer.from([0xc0, 0]);
export const DISCONNECT = Buffer.from([0xe0, 0]);

/** CONNACK as the broker sends it. */
export const connack = (present: boolean, code: number) => Buffer.from([0x20, 2, present ? 1 : 0, code]);
export const suback = (pid: number, ...codes: number[]) => packet(0x90, u16(pid), Buffer.from(codes));
export const unsuback = (pid: number) => packet(0xb0, u16(pid));
export const pubackOut = (pid: number) => packet(0x40, u16(pid));
export const PINGRESP = Buffer.from([0xd0, 0]);

/** A packet the broker sent, decoded. */
export interface Packet {
  type: number;
  flags: number;
  body: Buffer;
  /** PUBLISH only. */
  topic?: string;
  payload?: string;
  qos?: number;
  pid?: number;
  dup?: boolean;
  retain?: boolean;
}

/** Splits bytes into whole packets; throws on a partial or malformed one (the broker never sends those). */
export function readPackets(bytes: Uint8Array): Packet[] {
  const b = Buffer.from(bytes);
  const out: Packet[] = [];
  let at = 0;
  while (at < b.length) {
    let len = 0;
    let mult = 1;
    let i = at + 1;
    for (;;) {
      if (i >= b.length) throw new Error(`partial packet at ${at}`);
      len += (b[i] & 127) * mult;
      mult *= 128;
      if ((b[i++] & 128) === 0) break;
    }
    if (i + len > b.length) throw new Error(`partial packet at ${at}`);
    const body = b.subarray(i, i + len);
    const p: Packet = { type: b[at] >> 4, flags: b[at] & 15, body };
    if (p.type === 3) {
      const tl = body.readUInt16BE(0);
      p.topic = body.subarray(2, 2 + tl).toString('utf8');
      p.qos = (p.flags >> 1) & 3;
      p.dup = (p.flags & 8) !== 0;
      p.retain = (p.flags & 1) !== 0;
      let o = 2 + tl;
      if (p.qos > 0) {
        p.pid = body.readUInt16BE(o);
        o += 2;
      }
      p.payload = body.subarray(o).toString('utf8');
    }
    out.push(p);
    at = i + len;
  }
  return out;
}

/** The PUBLISH packets among what the broker sent, as [topic, payload, qos, retain, dup]. */
export const publishes = (bytes: Uint8Array) =>
  readPackets(bytes).filter((p) => p.type === 3).map((p) => [p.topic, p.payload, p.qos, p.retain, p.dup] as const);
