// mqtt.wasm over real sockets with real clients: mosquitto_sub (Debian's
// mosquitto-clients) receiving what mosquitto_pub and the npm `mqtt` client
// publish through it — QoS 0 and 1, retained, wildcards, wills, a client id
// taken over — and the npm client's own pub/sub, persistent session and QoS 2;
// keep-alive and a malformed packet on a raw socket.
import { spawn, type ChildProcess } from 'node:child_process';
import { connect as mqttConnect, connectAsync, type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, DISCONNECT, subscribe, suback, connack, readPackets } from './mqtt-packets.js';
import { open, readBytes, socketSet } from './net-client.js';
import { requireTool, run, serve, type ServedProcess } from './server-process.js';
import { until } from './wait.js';

let srv: ServedProcess;
const children: ChildProcess[] = [];
const clients: MqttClient[] = [];
const sockets = socketSet();

beforeAll(async () => {
  await requireTool('mosquitto_sub');
  await requireTool('mosquitto_pub');
  srv = await serve('build/mqtt.wasm', ['--threads', '2']);
});
afterEach(async () => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  await Promise.allSettled(clients.splice(0).map((c) => c.endAsync(true)));
  sockets.destroyAll();
});
afterAll(async () => {
  await srv?.stop();
});

const hostArgs = () => ['-h', '127.0.0.1', '-p', String(srv.port)];
const pub = (...args: string[]) => run('mosquitto_pub', [...hostArgs(), ...args], { timeoutMs: 10_000 });

/**
 * A running mosquitto_sub printing each message as "MSG topic qos retain payload";
 * ready() resolves once its SUBACK arrived (its -d debug lines say so).
 */
function sub(...args: string[]): { out: () => string; messages: () => string[]; ready: () => Promise<unknown>; proc: ChildProcess } {
  const proc = spawn('stdbuf', ['-oL', 'mosquitto_sub', ...hostArgs(), '-d', '-F', 'MSG %t %q %r %p', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  let text = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (text += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (text += d));
  return {
    proc,
    out: () => text,
    messages: () => text.split('\n').filter((l) => l.startsWith('MSG ')).map((l) => l.slice(4)),
    ready: () => until(() => text.includes('received SUBACK'), 10_000, `mosquitto_sub's SUBACK: ${text}`),
  };
}

async function mqttClient(opts: Parameters<typeof connectAsync>[1] = {}): Promise<MqttClient> {
  const c = await connectAsync(`mqtt://127.0.0.1:${srv.port}`, { reconnectPeriod: 0, protocolVersion: 4, ...opts });
  clients.push(c);
  return c;
}

/** A connected npm client and the CONNACK it got. */
function mqttConnack(opts: Parameters<typeof connectAsync>[1] = {}): Promise<[MqttClient, { sessionPresent: boolean }]> {
  const c = mqttConnect(`mqtt://127.0.0.1:${srv.port}`, { reconnectPeriod: 0, protocolVersion: 4, ...opts });
  clients.push(c);
  return new Promise((resolve, reject) => {
    c.once('connect', (connack) => resolve([c, connack]));
    c.once('error', reject);
  });
}

describe('mqtt.wasm with mosquitto_sub and mosquitto_pub', () => {
  it('QoS 0 and 1 through wildcard filters, each message at the lower of its QoS and the granted one', async () => {
    const s = sub('-q', '1', '-t', 'e2e/+/x', '-t', 'e2e/deep/#');
    await s.ready();
    expect((await pub('-t', 'e2e/a/x', '-m', 'zero', '-q', '0')).code).toBe(0);
    expect((await pub('-t', 'e2e/b/x', '-m', 'one', '-q', '1')).code).toBe(0);
    expect((await pub('-t', 'e2e/deep/1/2', '-m', 'deep', '-q', '1')).code).toBe(0);
    expect((await pub('-t', 'e2e/a/y', '-m', 'nobody')).code).toBe(0);
    await until(() => s.messages().length >= 3, 10_000, `three messages: ${s.out()}`);
    expect(s.messages()).toEqual(['e2e/a/x 0 0 zero', 'e2e/b/x 1 0 one', 'e2e/deep/1/2 1 0 deep']);
  });

  it('a retained message reaches a later subscriber with the retain flag; an empty retained publish removes it', async () => {
    expect((await pub('-t', 'e2e/ret/1', '-m', 'kept', '-r', '-q', '1')).code).toBe(0);
    const got = await run('mosquitto_sub', [...hostArgs(), '-t', 'e2e/ret/#', '-C', '1', '-W', '10', '-F', '%t %q %r %p', '-q', '1'], { timeoutMs: 15_000 });
    expect(got.stdout).toBe('e2e/ret/1 1 1 kept\n');
    expect((await pub('-t', 'e2e/ret/1', '-n', '-r')).code).toBe(0);
    const none = await run('mosquitto_sub', [...hostArgs(), '-t', 'e2e/ret/#', '-C', '1', '-W', '1', '-F', '%t %p'], { timeoutMs: 15_000 });
    expect(none.stdout).toBe('');
  });

  it('the will of a client that vanishes is published; a client that disconnects leaves none', async () => {
    const watcher = sub('-t', 'e2e/will/#');
    await watcher.ready();
    const victim = sub('-t', 'e2e/none', '-i', 'e2e-victim', '--will-topic', 'e2e/will/victim', '--will-payload', 'victim gone', '--will-qos', '1');
    await victim.ready();
    // mosquitto_pub ends with DISCONNECT: its will must not appear.
    expect((await pub('-t', 'e2e/none', '-m', 'x', '--will-topic', 'e2e/will/pub', '--will-payload', 'pub gone')).code).toBe(0);
    victim.proc.kill('SIGKILL');
    await until(() => watcher.messages().length >= 1, 10_000, `the will: ${watcher.out()}`);
    expect(watcher.messages()).toEqual(['e2e/will/victim 0 0 victim gone']);
  });

  it('a second connection with the same client id takes over: the first is disconnected, the second receives', async () => {
    const first = await mqttClient({ clientId: 'e2e-dup' });
    const closed = new Promise((r) => first.once('close', r));
    const second = sub('-t', 'e2e/dup', '-i', 'e2e-dup');
    await second.ready();
    await closed;
    expect((await pub('-t', 'e2e/dup', '-m', 'to the second')).code).toBe(0);
    await until(() => second.messages().length >= 1, 10_000, `the message: ${second.out()}`);
    expect(second.messages()).toEqual(['e2e/dup 0 0 to the second']);
    // mosquitto_sub was never disconnected: one CONNECT in its debug output.
    expect(second.out().match(/sending CONNECT/g)).toHaveLength(1);
  });

  it('what the npm client publishes reaches mosquitto_sub, and what mosquitto_pub publishes reaches the npm client', async () => {
    const s = sub('-q', '1', '-t', 'e2e/mix/#');
    await s.ready();
    const c = await mqttClient();
    const got: string[] = [];
    c.on('message', (t, p, packet) => got.push(`${t} ${packet.qos} ${p}`));
    await c.subscribeAsync('e2e/mix2/+', { qos: 1 });
    await c.publishAsync('e2e/mix/a', 'from node', { qos: 1 });
    expect((await pub('-t', 'e2e/mix2/b', '-m', 'from mosquitto', '-q', '1')).code).toBe(0);
    await until(() => s.messages().length >= 1 && got.length >= 1, 10_000, `both: ${s.out()} ${got}`);
    expect(s.messages()).toEqual(['e2e/mix/a 1 0 from node']);
    expect(got).toEqual(['e2e/mix2/b 1 from mosquitto']);
  });
});

describe('mqtt.wasm with the npm mqtt client', () => {
  it('QoS 0, 1 and 2 publishes, wildcards and unsubscribe', async () => {
    const s = await mqttClient();
    const p = await mqttClient();
    const got: string[] = [];
    s.on('message', (t, payload, packet) => got.push(`${t}|${packet.qos}|${payload}`));
    const granted = await s.subscribeAsync({ 'n/+/q': { qos: 1 }, 'n/all/#': { qos: 0 } });
    expect(granted.map((g) => [g.topic, g.qos])).toEqual([['n/+/q', 1], ['n/all/#', 0]]);
    await p.publishAsync('n/a/q', 'q0', { qos: 0 });
    await p.publishAsync('n/b/q', 'q1', { qos: 1 });
    await p.publishAsync('n/c/q', 'q2', { qos: 2 });
    await p.publishAsync('n/all/x/y', 'all', { qos: 1 });
    await until(() => got.length >= 4, 10_000, `four messages: ${got}`);
    expect(got).toEqual(['n/a/q|0|q0', 'n/b/q|1|q1', 'n/c/q|1|q2', 'n/all/x/y|0|all']);
    await s.unsubscribeAsync('n/+/q');
    await p.publishAsync('n/d/q', 'late', { qos: 1 });
    await p.publishAsync('n/all/z', 'marker', { qos: 1 });
    await until(() => got.length >= 5, 10_000, `the marker: ${got}`);
    expect(got.slice(4)).toEqual(['n/all/z|0|marker']);
  });

  it('a persistent session: sessionPresent on reconnect, its subscription kept; a clean session ends it', async () => {
    const [a, first] = await mqttConnack({ clientId: 'e2e-persist', clean: false });
    expect(first.sessionPresent).toBe(false);
    await a.subscribeAsync('per/t', { qos: 1 });
    await a.endAsync();
    const [b, again] = await mqttConnack({ clientId: 'e2e-persist', clean: false });
    expect(again.sessionPresent).toBe(true);
    const got: string[] = [];
    b.on('message', (t, p) => got.push(`${t} ${p}`));
    const p = await mqttClient();
    await p.publishAsync('per/t', 'back', { qos: 1 });
    await until(() => got.length >= 1, 10_000, 'the message to the resumed session');
    expect(got).toEqual(['per/t back']);
    await b.endAsync();
    const [c, clean] = await mqttConnack({ clientId: 'e2e-persist', clean: true });
    expect(clean.sessionPresent).toBe(false);
    await c.endAsync();
    const [, after] = await mqttConnack({ clientId: 'e2e-persist', clean: false });
    expect(after.sessionPresent).toBe(false);
  });
});

describe('mqtt.wasm on a raw socket', () => {
  it('keep-alive: a silent client is closed after 1.5 × its keep-alive', async () => {
    const s = sockets.track(await open(srv.port));
    s.write(connect({ clientId: 'silent', keepalive: 1 }));
    expect((await readBytes(s, 4)).toString('hex')).toBe(connack(false, 0).toString('hex'));
    const t0 = Date.now();
    await new Promise((r) => s.once('close', r));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400); // not before 1.5 s (timer granularity aside)
  });

  it('a malformed packet (a five-byte remaining length) closes the connection after the answers before it', async () => {
    const s = sockets.track(await open(srv.port));
    const all = readBytes(s, 1 << 20).catch((e) => e);
    s.write(Buffer.concat([connect({ clientId: 'broken' }), subscribe(1, ['a', 0]), Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])]));
    const err = await all;
    expect(String(err)).toMatch(/socket ended after 9 of/);
    s.destroy();
    const again = sockets.track(await open(srv.port));
    again.write(Buffer.concat([connect({ clientId: 'fine' }), subscribe(2, ['a', 1]), DISCONNECT]));
    const ok = await readBytes(again, 9);
    expect(readPackets(ok).map((p) => p.type)).toEqual([2, 9]);
    expect(ok.subarray(4).toString('hex')).toBe(suback(2, 1).toString('hex'));
  });

  it('takeover race: 8 connections CONNECT with one client id at once, 15 rounds; exactly one stays, and it is served', async () => {
    const N = 8;
    for (let round = 0; round < 15; round++) {
      const socks = await Promise.all(Array.from({ length: N }, () => open(srv.port).then((s) => sockets.track(s))));
      let closed = 0;
      const alive = new Set(socks);
      const got = new Map(socks.map((s) => [s, '']));
      for (const s of socks) {
        s.on('data', (d: Buffer) => got.set(s, got.get(s) + d.toString('hex')));
        s.once('close', () => { closed++; alive.delete(s); });
      }
      for (const s of socks) s.write(connect({ clientId: `race-${round}` }));
      await until(() => closed >= N - 1, 10_000, `${N - 1} of ${N} closed in round ${round} (${closed})`);
      // Nothing more closes: the survivor answers a PINGREQ after its CONNACK.
      expect(alive.size).toBe(1);
      const [last] = alive;
      last.write(Buffer.from([0xc0, 0]));
      await until(() => got.get(last)!.length >= 12, 10_000, `the PINGRESP: ${got.get(last)}`);
      expect(got.get(last)).toBe('20020000d000');
      expect(closed).toBe(N - 1);
      for (const s of socks) s.destroy();
    }
  });
});
