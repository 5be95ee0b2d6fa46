// mqtt.wasm (an MQTT 3.1.1 broker) through tcpmod/testing: connections publish
// and subscribe to each other (m.deliver() hands each message to its
// subscriber), every exchange is sent cut at every byte boundary, and every
// malformed packet closes the connection however it is cut.
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { loadModule, type LoadedModule, type TestConn } from '../host/testing.js';
import { ROOT } from './fixtures.js';
import {
  connack, connect, DISCONNECT, packet, PINGREQ, PINGRESP, puback, pubackOut, publish, publishes, pubrel, readPackets,
  suback, subscribe, unsuback, unsubscribe, varint,
} from './mqtt-packets.js';

const MODULE = join(ROOT, 'build', 'mqtt.wasm');

let m: LoadedModule;
beforeEach(async () => {
  m = await loadModule(MODULE, { now: 1_800_000_000_000 });
});

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const cat = (...b: Buffer[]) => Buffer.concat(b);

/** A connected client: CONNECT answered with CONNACK accepted. */
function client(o: Parameters<typeof connect>[0] = {}, present = false): TestConn {
  const c = m.connect();
  expect(hex(c.send(connect(o)).output)).toBe(hex(connack(present, 0)));
  return c;
}

/** Delivers every waiting message; what each connection was sent, by connection id. */
function deliver(): Map<number, Buffer> {
  const got = new Map<number, Buffer>();
  for (const d of m.deliver()) got.set(d.conn, Buffer.concat([got.get(d.conn) ?? Buffer.alloc(0), Buffer.from(d.output)]));
  return got;
}

describe('mqtt.wasm: a session at every split', () => {
  it('CONNECT, SUBSCRIBE, PUBLISH at QoS 0 and 1, UNSUBSCRIBE, PINGREQ, DISCONNECT give the same bytes however TCP cuts them', () => {
    m.kv.set('mqtt:r:news/today', Buffer.concat([Buffer.from([1]), Buffer.from('kept')]));
    const script = cat(
      connect({ clientId: 'split', keepalive: 30 }),
      subscribe(7, ['news/+', 1], ['x/#', 0]),
      publish('x/y', 'zero'),
      publish('x/y', 'one', { qos: 1, pid: 9 }),
      unsubscribe(8, 'x/#'),
      PINGREQ,
      DISCONNECT,
    );
    const out = m.connect().sendInPieces(script);
    expect(hex(out)).toBe(hex(cat(
      connack(false, 0),
      suback(7, 1, 0),
      // the retained message under news/+ comes right after the SUBACK, with the retain flag and its QoS 1
      packet(0x33, Buffer.from([0, 10]), Buffer.from('news/today'), Buffer.from([0, 1]), Buffer.from('kept')),
      pubackOut(9),
      unsuback(8),
      PINGRESP,
    )));
    expect(m.faults).toEqual([]);
  });

  it('a QoS 1 message delivered to a subscriber at every split of its PUBACK-carrying input', () => {
    const sub = client({ clientId: 's' });
    expect(hex(sub.send(subscribe(1, ['t', 1])).output)).toBe(hex(suback(1, 1)));
    const pub = m.connect();
    pub.sendInPieces(cat(connect({ clientId: 'p' }), publish('t', 'x'.repeat(300), { qos: 1, pid: 3 })));
    const got = deliver();
    expect(publishes(got.get(sub.id)!)).toEqual([['t', 'x'.repeat(300), 1, false, false]]);
  });
});

describe('mqtt.wasm: publish and subscribe', () => {
  it('QoS: a message goes at the lower of its QoS and the granted one; QoS 2 requests are granted 1', () => {
    const a = client({ clientId: 'a' });
    const b = client({ clientId: 'b' });
    expect(hex(a.send(subscribe(1, ['q/0', 0], ['q/1', 1], ['q/2', 2])).output)).toBe(hex(suback(1, 0, 1, 1)));
    b.send(cat(publish('q/0', 'm0', { qos: 1, pid: 1 }), publish('q/1', 'm1', { qos: 1, pid: 2 }), publish('q/1', 'm2'), publish('q/2', 'm3', { qos: 1, pid: 3 })));
    const out = deliver().get(a.id)!;
    expect(publishes(out)).toEqual([['q/0', 'm0', 0, false, false], ['q/1', 'm1', 1, false, false], ['q/1', 'm2', 0, false, false], ['q/2', 'm3', 1, false, false]]);
    // packet ids towards a client count from 1
    expect(readPackets(out).filter((p) => p.qos === 1).map((p) => p.pid)).toEqual([1, 2]);
  });

  it('wildcards: + one level, # the rest and the parent, $ topics only for filters that start with $', () => {
    const a = client({ clientId: 'a' });
    a.send(subscribe(1, ['s/+/t', 0], ['h/#', 0], ['#', 0], ['$SYS/#', 0]));
    const b = client({ clientId: 'b' });
    for (const t of ['s/x/t', 's/x/y/t', 'h', 'h/1/2', '$SYS/load', 's//t']) b.send(publish(t, t));
    const got = deliver().get(a.id)!;
    // one copy per matching subscription (MQTT 3.1.1 §3.3.5 allows this)
    expect(publishes(got).map((p) => p[0])).toEqual(['s/x/t', 's/x/t', 's/x/y/t', 'h', 'h', 'h/1/2', 'h/1/2', '$SYS/load', 's//t', 's//t']);
  });

  it('UNSUBSCRIBE ends the subscription; a failed filter gets 0x80 in the SUBACK', () => {
    const a = client({ clientId: 'a' });
    expect(hex(a.send(subscribe(2, ['a/#/b', 0], ['ok', 1], ['a+', 0])).output)).toBe(hex(suback(2, 0x80, 1, 0x80)));
    expect(hex(a.send(unsubscribe(3, 'ok', 'never')).output)).toBe(hex(unsuback(3)));
    client({ clientId: 'b' }).send(publish('ok', 'late'));
    expect(m.undelivered).toBe(0);
  });

  it('retained messages: kept per topic, sent on SUBSCRIBE with the retain flag, replaced, and deleted by an empty one', () => {
    const p = client({ clientId: 'p' });
    p.send(cat(publish('r/a', 'one', { retain: true }), publish('r/b', 'two', { retain: true, qos: 1, pid: 1 }), publish('r/a', 'uno', { retain: true })));
    expect(m.kv.get('mqtt:r:r/a')).toBe('\x00uno');
    const s = client({ clientId: 's' });
    const out = s.send(subscribe(1, ['r/+', 1])).output;
    expect(publishes(out).sort()).toEqual([['r/a', 'uno', 0, true, false], ['r/b', 'two', 1, true, false]]);
    p.send(publish('r/a', '', { retain: true }));
    expect(m.kv.get('mqtt:r:r/a')).toBeNull();
    // live subscribers get a retained publish with the retain flag cleared (§3.3.1.3)
    expect(publishes(deliver().get(s.id)!)).toEqual([['r/a', '', 0, false, false]]);
    const s2 = client({ clientId: 's2' });
    expect(publishes(s2.send(subscribe(1, ['r/a', 0])).output)).toEqual([]);
  });

  it('QoS 2 from a client: PUBREC, published once however often it is sent before PUBREL, then PUBCOMP', () => {
    const s = client({ clientId: 's' });
    s.send(subscribe(1, ['t', 1]));
    const p = client({ clientId: 'p' });
    expect(hex(p.send(publish('t', 'x', { qos: 2, pid: 5 })).output)).toBe(hex(packet(0x50, Buffer.from([0, 5]))));
    expect(hex(p.send(publish('t', 'x', { qos: 2, pid: 5, dup: true })).output)).toBe(hex(packet(0x50, Buffer.from([0, 5]))));
    expect(hex(p.send(pubrel(5)).output)).toBe(hex(packet(0x70, Buffer.from([0, 5]))));
    expect(publishes(deliver().get(s.id)!)).toEqual([['t', 'x', 1, false, false]]);
  });
});

describe('mqtt.wasm: sessions, wills, keep-alive, takeover', () => {
  it('a will is published when the connection ends without DISCONNECT, and not after DISCONNECT', () => {
    const s = client({ clientId: 's' });
    s.send(subscribe(1, ['will/#', 0]));
    const a = client({ clientId: 'a', will: { topic: 'will/a', payload: 'a gone', retain: true } });
    a.close();
    expect(publishes(deliver().get(s.id)!)).toEqual([['will/a', 'a gone', 0, false, false]]);
    expect(m.kv.get('mqtt:r:will/a')).toBe('\x00a gone'); // the will's retain flag
    const b = client({ clientId: 'b', will: { topic: 'will/b', payload: 'b gone' } });
    expect(b.send(DISCONNECT).closed).toBe('module');
    expect(m.undelivered).toBe(0);
    expect(m.kv.keys().filter((k) => String(k).startsWith('mqtt:w:'))).toEqual([]);
  });

  it('keep-alive: closed 1.5 × the keep-alive after the last packet, with its will', () => {
    const s = client({ clientId: 's' });
    s.send(subscribe(1, ['w', 0]));
    const c = client({ clientId: 'k', keepalive: 10, will: { topic: 'w', payload: 'timed out' } });
    expect(m.clock.advance(14_000)).toEqual([]);
    expect(hex(c.send(PINGREQ).output)).toBe(hex(PINGRESP)); // restarts the 15 s
    expect(m.clock.advance(14_999)).toEqual([]);
    const fired = m.clock.advance(1);
    expect(fired.map((f) => [f.conn, f.closed])).toEqual([[c.id, 'module']]);
    expect(publishes(deliver().get(s.id)!)).toEqual([['w', 'timed out', 0, false, false]]);
  });

  it('a second CONNECT with the same client id takes over: the older connection closes (its will goes out), the newer stays', () => {
    const s = client({ clientId: 's' });
    s.send(subscribe(1, ['w', 0], ['t', 0]));
    const old = client({ clientId: 'dup', will: { topic: 'w', payload: 'old gone' } });
    const neu = client({ clientId: 'dup' });
    // The announcement closes the old one; its close publishes the will, delivered in the same m.deliver().
    const got = m.deliver();
    expect(got.find((d) => d.conn === old.id)?.closed).toBe('module');
    expect(old.closed).toBe('module');
    expect(neu.closed).toBeNull();
    expect(m.kv.getBytes('mqtt:o:dup')).toEqual(new Uint8Array(new Int32Array([neu.id]).buffer));
    expect(publishes(got.find((d) => d.conn === s.id)!.output)).toEqual([['w', 'old gone', 0, false, false]]);
    // The new connection works, and the old one's close did not end the new one's ownership.
    neu.send(publish('t', 'still here'));
    expect(publishes(deliver().get(s.id)!)).toEqual([['t', 'still here', 0, false, false]]);
    expect(m.kv.get('mqtt:o:dup')).not.toBeNull();
  });

  it('two connections connecting with one id at once: whichever wrote the owner last stays', () => {
    // The later CONNECT reads the owner back after announcing itself; the earlier one gets the announcement.
    const a = client({ clientId: 'race' });
    const b = client({ clientId: 'race' });
    m.deliver();
    expect([a.closed, b.closed]).toEqual(['module', null]);
  });

  it('a connection that announced itself before another took the id, but subscribed after that announcement, closes', () => {
    // The interleaving a server's threads can make: A writes the owner and announces; B writes the owner
    // and announces (A is not listening yet); A subscribes. A's read-back of the owner must catch it.
    let gets = 0;
    m.kv.unavailable = (op, key) => {
      if (op === 'get' && key === 'mqtt:o:late' && ++gets === 2) m.kv.set('mqtt:o:late', Buffer.from([0xe7, 3, 0, 0])); // "B" = 999
      return false;
    };
    const a = m.connect();
    const r = a.send(connect({ clientId: 'late' }));
    expect([hex(r.output), r.closed]).toEqual(['', 'module']);
    expect(hex(m.kv.getBytes('mqtt:o:late')!)).toBe('e7030000'); // B's ownership survives A's close
  });

  it('a persistent session keeps its subscriptions and sends unacknowledged QoS 1 messages again with DUP', () => {
    const c1 = client({ clientId: 'p', clean: false });
    expect(hex(c1.send(subscribe(1, ['a/+', 1], ['b', 0])).output)).toBe(hex(suback(1, 1, 0)));
    const pub = client({ clientId: 'pub' });
    pub.send(cat(publish('a/1', 'first', { qos: 1, pid: 1 }), publish('a/2', 'second', { qos: 1, pid: 2 }), publish('b', 'third', { qos: 1, pid: 3 })));
    const out = readPackets(deliver().get(c1.id)!);
    expect(out.map((p) => [p.topic, p.qos, p.pid])).toEqual([['a/1', 1, 1], ['a/2', 1, 2], ['b', 0, undefined]]);
    c1.send(puback(1)); // the second stays unacknowledged
    c1.close();
    const c2 = m.connect();
    const back = c2.send(connect({ clientId: 'p', clean: false })).output;
    expect(hex(back.subarray(0, 4))).toBe(hex(connack(true, 0)));
    expect(publishes(back.subarray(4))).toEqual([['a/2', 'second', 1, false, true]]);
    pub.send(publish('a/9', 'after', { qos: 1, pid: 4 }));
    expect(readPackets(deliver().get(c2.id)!).map((p) => [p.topic, p.qos, p.pid])).toEqual([['a/9', 1, 3]]); // ids go on after the resent one
    // A clean session with that id drops it all.
    c2.close();
    const c3 = m.connect();
    expect(hex(c3.send(connect({ clientId: 'p', clean: true })).output)).toBe(hex(connack(false, 0)));
    expect(m.kv.keys().filter((k) => /^mqtt:[spq]:p/.test(String(k)))).toEqual([]);
    pub.send(publish('a/1', 'none'));
    expect(m.undelivered).toBe(0);
  });

  it('a clean session leaves nothing in the store after it closes, mixed QoS included', () => {
    const c = client({ clientId: 'tidy', will: { topic: 'w', payload: 'x' } });
    c.send(subscribe(1, ['a', 0], ['b', 1], ['c', 1]));
    const p = client({ clientId: 'p2' });
    p.send(cat(publish('a', '1', { qos: 1, pid: 1 }), publish('b', '2', { qos: 1, pid: 2 })));
    expect(publishes(deliver().get(c.id)!).map((x) => x[2])).toEqual([0, 1]);
    c.close();
    p.close();
    m.deliver();
    expect(m.kv.keys()).toEqual([]);
  });

  it('client ids: an empty one with clean session is given one, without it refused with CONNACK 2; too long refused', () => {
    const a = m.connect();
    expect(hex(a.send(connect({ clientId: '' })).output)).toBe(hex(connack(false, 0)));
    expect(m.kv.get(`mqtt:o:tcpmod-${a.id}`)).not.toBeNull();
    const b = m.connect();
    const r = b.send(connect({ clientId: '', clean: false }));
    expect([hex(r.output), r.closed]).toEqual([hex(connack(false, 2)), 'module']);
    const c = m.connect();
    const r2 = c.send(connect({ clientId: 'x'.repeat(129) }));
    expect([hex(r2.output), r2.closed]).toEqual([hex(connack(false, 2)), 'module']);
    expect(hex(m.connect().send(connect({ clientId: 'x'.repeat(128), username: 'u', password: 'p' })).output)).toBe(hex(connack(false, 0)));
    expect(hex(m.connect().send(connect({ clientId: 'old', protocol: 'MQIsdp', level: 3 })).output)).toBe(hex(connack(false, 0)));
  });
});

describe('mqtt.wasm: malformed packets close the connection at every split', () => {
  const C = connect({ clientId: 'bad' });
  const cases: [string, Buffer, Buffer][] = [
    ['a first packet that is not CONNECT', PINGREQ, Buffer.alloc(0)],
    ['not MQTT at all (an HTTP request)', Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.alloc(0)],
    ['a wrong protocol name', connect({ protocol: 'MQTX' }), Buffer.alloc(0)],
    ['an unsupported protocol level (CONNACK 1 first)', connect({ level: 5 }), connack(false, 1)],
    ['the reserved CONNECT flag', (() => { const b = connect(); b[9] |= 1; return b; })(), Buffer.alloc(0)],
    ['will QoS without the will flag', (() => { const b = connect(); b[9] |= 8; return b; })(), Buffer.alloc(0)],
    ['a password without a user name', (() => { const b = connect({ username: 'u', password: 'p' }); b[9] &= 0x7f; return b.subarray(0); })(), Buffer.alloc(0)],
    ['bytes after the CONNECT payload', (() => { const b = connect(); return cat(Buffer.from([0x10, b[1] + 1]), b.subarray(2), Buffer.from([0])); })(), Buffer.alloc(0)],
    ['a CONNECT string past the packet', packet(0x10, Buffer.from([0, 4]), Buffer.from('MQ')), Buffer.alloc(0)],
    ['a second CONNECT', cat(C, C), connack(false, 0)],
    ['a five-byte remaining length', cat(C, Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])), connack(false, 0)],
    ['a packet over 256 KiB', cat(C, Buffer.from([0x30]), varint(256 * 1024 + 1)), connack(false, 0)],
    ['SUBSCRIBE with flags 0', cat(C, (() => { const b = subscribe(1, ['a', 0]); b[0] = 0x80; return b; })()), connack(false, 0)],
    ['SUBSCRIBE without filters', cat(C, packet(0x82, Buffer.from([0, 1]))), connack(false, 0)],
    ['SUBSCRIBE with QoS 3', cat(C, subscribe(1, ['a', 3])), connack(false, 0)],
    ['SUBSCRIBE with reserved option bits', cat(C, subscribe(1, ['a', 4])), connack(false, 0)],
    ['SUBSCRIBE with packet id 0', cat(C, subscribe(0, ['a', 0])), connack(false, 0)],
    ['UNSUBSCRIBE with flags 0', cat(C, (() => { const b = unsubscribe(1, 'a'); b[0] = 0xa0; return b; })()), connack(false, 0)],
    ['PUBLISH with QoS 3', cat(C, (() => { const b = publish('a', 'x', { qos: 1 }); b[0] |= 6; return b; })()), connack(false, 0)],
    ['PUBLISH QoS 0 with DUP', cat(C, publish('a', 'x', { dup: true })), connack(false, 0)],
    ['PUBLISH to a topic with a wildcard', cat(C, publish('a/+', 'x')), connack(false, 0)],
    ['PUBLISH to an empty topic', cat(C, publish('', 'x')), connack(false, 0)],
    ['PUBLISH with invalid UTF-8 in the topic', cat(C, publish('a\xff', 'x').fill(0xff, 4, 5)), connack(false, 0)],
    ['PUBLISH with U+0000 in the topic', cat(C, publish('a\0b', 'x')), connack(false, 0)],
    ['PUBLISH QoS 1 with packet id 0', cat(C, publish('a', 'x', { qos: 1, pid: 0 })), connack(false, 0)],
    ['PINGREQ with a body', cat(C, packet(0xc0, Buffer.from([0]))), connack(false, 0)],
    ['PINGREQ with flags', cat(C, Buffer.from([0xc1, 0])), connack(false, 0)],
    ['PUBACK of the wrong length', cat(C, packet(0x40, Buffer.from([0, 1, 2]))), connack(false, 0)],
    ['a CONNACK from the client', cat(C, connack(false, 0)), connack(false, 0)],
    ['packet type 15', cat(C, Buffer.from([0xf0, 0])), connack(false, 0)],
    ['packet type 0', cat(C, Buffer.from([0x00, 0])), connack(false, 0)],
  ];
  for (const [what, input, before] of cases) {
    it(what, () => {
      const c = m.connect();
      const out = c.sendInPieces(input);
      expect(hex(out)).toBe(hex(before));
      expect(c.closed).toBe('module');
      expect(m.faults).toEqual([]);
    });
  }

  it('a malformed packet after a will: the will is published (a protocol error is an abnormal end)', () => {
    const s = client({ clientId: 's' });
    s.send(subscribe(1, ['w', 0]));
    const c = m.connect();
    c.send(cat(connect({ clientId: 'bad', will: { topic: 'w', payload: 'broke' } }), Buffer.from([0xf0, 0])));
    expect(c.closed).toBe('module');
    expect(publishes(deliver().get(s.id)!)).toEqual([['w', 'broke', 0, false, false]]);
  });
});

describe('mqtt.wasm: robustness', () => {
  it('random bytes after a CONNECT never fault the module, however they are cut', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 255;
    for (let i = 0; i < 40; i++) {
      const junk = Buffer.from(Array.from({ length: 1 + (rnd() % 64) }, rnd));
      const c = m.connect();
      c.sendInPieces(Buffer.concat([connect({ clientId: `junk${i}` }), junk]), { at: 'random', seed: i + 1, count: 20 });
      expect(m.faults).toEqual([]);
    }
  });

  it('memory stays flat over 20,000 publish and delivery cycles', () => {
    const s = client({ clientId: 's' });
    s.send(subscribe(1, ['flat/+', 1]));
    const p = client({ clientId: 'p' });
    const before = m.memory.buffer.byteLength;
    for (let i = 0; i < 20_000; i++) {
      p.send(publish(`flat/${i % 7}`, `message ${i}`, { qos: 1, pid: (i % 65535) + 1, retain: i % 100 === 0 }));
      const [d] = m.deliver();
      if (i % 5000 === 0) expect(publishes(d.output)).toEqual([[`flat/${i % 7}`, `message ${i}`, 1, false, false]]);
      s.send(puback((i % 65535) + 1));
    }
    expect(m.memory.buffer.byteLength).toBe(before);
    expect(m.faults).toEqual([]);
  });
});
