// tcpmod/testing scripting upstreams (docs/testing.md, "Upstreams"): the test
// plays the backends a module opens, without sockets. redis-proxy.wasm's
// routing, its reply order when a later shard answers first, a reply cut at
// every byte, a shard that fails (with the reason the module can read) and
// MGET split over two shards; the byte proxy fixture's carry-over across
// calls and its error text with conn_info key 4; the harness's own rules.
import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadModule, OptionError, type LoadedModule } from '../dist/testing.js';
import { compileAs } from './asc-source.js';
import { FRAME_PROXY_SOURCE } from './frame-proxy.js';
import { fixture, scratchFile } from './fixtures.js';
import { bulk, cmd } from './resp-client.js';


let proxy: LoadedModule;
beforeAll(async () => {
  proxy = await loadModule('build/redis-proxy.wasm', { upstreams: ['s0', 's1'], config: 'servers=s0,s1' });
});

describe('redis-proxy.wasm with scripted shards', () => {
  it('routes each key to the shard its hash names, passing the command on unchanged, and answers with the shard\'s reply', () => {
    // ketama over fnv1a_64 of the names s0, s1 (as nutcracker places them; test/redis-proxy.e2e.test.ts compares with nutcracker itself).
    const placed: Record<string, string> = {};
    for (const key of ['a', 'b', 'foo', 'user', 'key:1']) {
      const c = proxy.connect();
      expect(c.send(cmd('GET', key)).text).toBe(''); // nothing until the shard answers
      expect(c.upstreams).toHaveLength(1);
      const u = c.upstreams[0];
      placed[key] = u.name;
      expect(u.state).toBe('connecting');
      expect(u.takeText()).toBe(cmd('GET', key)); // queued while it connects, as the host queues it
      expect(u.accept().text).toBe('');
      expect(u.reply(bulk(`value of ${key}`)).text).toBe(bulk(`value of ${key}`));
      c.close();
      expect(u.state).toBe('dropped'); // closing the client closes its upstreams, with no event
    }
    expect(placed).toEqual({ a: 's0', b: 's0', foo: 's1', user: 's1', 'key:1': 's1' });
  });

  it('pipelined replies come back in request order when the later shard answers first (upstream_resume)', () => {
    const c = proxy.connect();
    c.send(cmd('GET', 'a') + cmd('GET', 'foo') + cmd('SET', 'b', 'x'));
    const s0 = c.upstream('s0');
    const s1 = c.upstream('s1');
    expect(s0.takeText()).toBe(cmd('GET', 'a') + cmd('SET', 'b', 'x'));
    expect(s1.takeText()).toBe(cmd('GET', 'foo'));
    s0.accept();
    s1.accept();
    expect(s1.reply(bulk('F')).text).toBe(''); // held: GET a is owed first
    const r = s0.reply(bulk('A') + '+OK\r\n');
    expect(r.text).toBe(bulk('A') + bulk('F') + '+OK\r\n');
    expect(r.closed).toBeNull();
  });

  it('a shard\'s reply cut at every byte reaches the client whole', () => {
    const reply = bulk('a value in many pieces');
    const c = proxy.connect();
    c.send(cmd('GET', 'a'));
    const u = c.upstream('s0');
    u.accept();
    let out = '';
    for (const ch of reply) out += u.reply(ch).text;
    expect(out).toBe(reply);
  });

  it('MGET over two shards is split and joined in key order; a shard that fails answers its part with an error', () => {
    const c = proxy.connect();
    let out = c.send(cmd('MGET', 'a', 'foo', 'b')).text;
    const s0 = c.upstream('s0');
    const s1 = c.upstream('s1');
    expect(s0.takeText()).toBe(cmd('GET', 'a') + cmd('GET', 'b'));
    expect(s1.takeText()).toBe(cmd('GET', 'foo'));
    out += s0.accept().text;
    out += s0.reply(bulk('1') + '$-1\r\n').text;
    expect(out).toBe(`*3\r\n${bulk('1')}`); // streamed as far as the order allows
    out += s1.refuse('tls_verify').text;
    expect(out).toBe(`*3\r\n${bulk('1')}-ERR proxy: shard s1 unavailable\r\n$-1\r\n`);
    expect(s1.state).toBe('failed');
    // The next request for the shard opens it again.
    c.send(cmd('GET', 'foo'));
    expect(c.upstreams.filter((u) => u.name === 's1')).toHaveLength(2);
    expect(c.upstream('s1').state).toBe('connecting');
  });

  it('a name the test did not list: upstream_open says -1, the module answers its error', async () => {
    const m = await loadModule('build/redis-proxy.wasm', { upstreams: ['s0'], config: 'servers=s0,s1' });
    const c = m.connect();
    expect(c.send(cmd('GET', 'foo')).text).toBe('-ERR proxy: shard s1 unavailable\r\n');
    expect(c.upstreams).toHaveLength(0);
  });
});

describe('proxy.wasm sharding by the addresses of one name (upstreams: [\'redis=A,B\'])', () => {
  /** ketama over fnv1a_64 as nutcracker does it with two servers of weight 1 named NAMES (an independent reference: node's MD5). */
  function ketama(names: string[], key: string): number {
    const points: [number, number][] = [];
    names.forEach((n, s) => {
      for (let k = 0; k < 40; k++) {
        const d = createHash('md5').update(`${n}-${k}`).digest();
        for (let x = 0; x < 4; x++) points.push([d.readUInt32LE(x * 4), s]);
      }
    });
    points.sort((p, q) => p[0] - q[0]);
    let h = 0x84222325;
    for (const b of Buffer.from(key)) h = Math.imul((h ^ ((b << 24) >> 24)) >>> 0, 0x1b3) >>> 0;
    return (points.find((p) => p[0] >= h) ?? points[0])[1];
  }

  it('opens NAME#I for the shard of each key, named for ketama by its address', async () => {
    const addrs = ['127.0.0.1:6380', '127.0.0.1:6381'];
    const m = await loadModule('build/proxy.wasm', { upstreams: [`redis=${addrs.join(',')}`] });
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const key = `k${i * 7919}`;
      const c = m.connect();
      c.send(cmd('GET', key));
      expect(c.upstreams).toHaveLength(1);
      const u = c.upstreams[0];
      expect(u.name).toBe(`redis#${ketama(addrs, key)}`);
      seen.add(u.name);
      expect(u.takeText()).toBe(cmd('GET', key));
      u.refuse();
      c.close();
    }
    expect(seen).toEqual(new Set(['redis#0', 'redis#1']));
    // A failed shard's error names it by its address.
    const c = m.connect();
    const key = [...Array(40).keys()].map((i) => `k${i * 7919}`).find((k) => ketama(addrs, k) === 1)!;
    c.send(cmd('GET', key));
    expect(c.upstream('redis#1').refuse().text).toBe('-ERR proxy: shard 127.0.0.1:6381 unavailable\r\n');
  });

  it('a bare name (no addresses to report) is one shard opened by its name, as before', async () => {
    const m = await loadModule('build/proxy.wasm', { upstreams: ['redis'] });
    const c = m.connect();
    c.send(cmd('GET', 'foo'));
    expect(c.upstream('redis').takeText()).toBe(cmd('GET', 'foo'));
  });

  it('upstreams entries with addresses are checked as --upstream checks them', async () => {
    await expect(loadModule('build/proxy.wasm', { upstreams: ['redis=localhost:1'] })).rejects.toThrow(/^upstreams must give addresses as IPv4:PORT/);
    await expect(loadModule('build/proxy.wasm', { upstreams: ['redis=127.0.0.1:1', 'redis'] })).rejects.toThrow(/^upstreams must be a list of distinct/);
  });
});

describe('the byte proxy fixture with a scripted upstream', () => {
  it('FAILED carries the reason (conn_info key 4); CLOSED carries the last bytes; a reply larger than the regions comes through whole', async () => {
    const m = await loadModule(await fixture('upstream-proxy'), { upstreams: ['redis'] });
    const failed = m.connect();
    expect(failed.send('PING\r\n').text).toBe('');
    expect(failed.upstream('redis').refuse('timeout').text).toBe('-ERR upstream failed: timeout: scripted by the test (redis)\r\n');
    expect(failed.closed).toBe('module');

    const c = m.connect();
    const u = c.upstream('redis');
    c.send('GET big\r\n');
    expect(u.takeText()).toBe('GET big\r\n');
    u.accept();
    const big = 'x'.repeat(40_000); // more than the fixture's 16 KiB input and output regions
    expect(u.reply(big).text).toBe(big);
    expect(u.reply('tail').text).toBe('tail');
    const end = u.close();
    expect(end.closed).toBe('module');
    expect(() => u.reply('more')).toThrow(/connection \d+ is closed/);
  });

  it('refuses what a host would not do: an event in the wrong state, a bad reason, a bad upstreams option', async () => {
    const m = await loadModule(await fixture('upstream-proxy'), { upstreams: ['redis'] });
    const u = m.connect().upstream('redis');
    expect(() => u.reply('x')).toThrow('reply(): upstream redis (handle 1) is connecting, not open');
    expect(() => u.refuse('nope' as never)).toThrow(/why must be one of refused, timeout, tls_verify, tls_handshake/);
    u.accept();
    expect(() => u.accept()).toThrow(/is open, not connecting/);
    await expect(loadModule(await fixture('upstream-proxy'), { upstreams: ['9x'] })).rejects.toThrow(OptionError);
    await expect(loadModule(await fixture('upstream-proxy'), { upstreams: ['a', 'a'] })).rejects.toThrow(/^upstreams must be a list of distinct upstream names/);
  });
});

describe('the host\'s upstream timeouts, scripted (timeout(\'read\' | \'frame\'))', () => {
  // The line proxy the host's timeouts are tested with over sockets (upstream.e2e): the same module,
  // the same answers (conn_info keys 3 and 4 in CLOSED), the same exemptions.
  let lines: LoadedModule;
  beforeAll(async () => {
    const file = scratchFile('frame-proxy.wasm', await compileAs('frame-proxy', FRAME_PROXY_SOURCE));
    lines = await loadModule(file, { upstreams: ['a=127.0.0.1:6001', 'b=127.0.0.1:6002'] });
  });
  const cut = (which: string) => `-ERR closed 2 timeout: ${which} (127.0.0.1)\r\n`;

  it('read: an upstream sent bytes and silent since ends in CLOSED, why timeout, with the host\'s text', () => {
    const c = lines.connect();
    const [a, b] = [c.upstream('a'), c.upstream('b')];
    a.accept();
    b.accept();
    expect(() => a.timeout('read')).toThrow(/nothing was sent to upstream a \(handle \d+\) since its last reply/);
    c.send('PING\r\n');
    expect(a.takeText()).toBe('PING\r\n');
    const r = a.timeout('read');
    expect(r.text).toBe(cut('no reply within the read timeout'));
    expect(r.closed).toBe('module');
    expect(a.state).toBe('closed');
  });

  it('read: bytes received end the wait; frame: a reply that stops midway (a carry-over) is cut instead', () => {
    const c = lines.connect();
    const a = c.upstream('a');
    a.accept();
    c.upstream('b').accept();
    c.send('PING\r\n');
    expect(a.reply('+PO').text).toBe('');  // an incomplete line: left unconsumed
    expect(() => a.timeout('read')).toThrow(/since its last reply/);
    const r = a.timeout('frame');
    expect(r.text).toBe(cut('frame incomplete within the frame timeout'));
    expect(r.closed).toBe('module');
  });

  it('frame: a complete reply held while another upstream is awaited is exempt; resumed, it goes, and nothing is left to cut', () => {
    const c = lines.connect();
    const [a, b] = [c.upstream('a'), c.upstream('b')];
    a.accept();
    b.accept();
    c.send('2PING\r\n');
    expect(b.reply('+B\r\n').text).toBe('');  // held until a answers
    expect(() => b.timeout('frame')).toThrow(/upstream a \(handle \d+\) of the same client is awaited, so what the module holds of b is exempt/);
    expect(a.reply('+A\r\n').text).toBe('+A\r\n+B\r\n');
    expect(() => b.timeout('frame')).toThrow(/the module holds nothing of upstream b/);
    expect(() => a.timeout('frame')).toThrow(/the module holds nothing of upstream a/);
    expect(c.closed).toBeNull();
  });

  it('refuses a bad kind and a timeout of an upstream not open', () => {
    const c = lines.connect();
    const a = c.upstream('a');
    expect(() => a.timeout('read')).toThrow('timeout(): upstream a (handle ' + a.handle + ') is connecting, not open');
    a.accept();
    expect(() => a.timeout('soon' as never)).toThrow(/kind must be 'read' or 'frame', got "soon"/);
  });
});
