// The PROXY protocol parser alone (host/native/src/proxy_protocol.cc through the
// proxyParse export): every valid header of HAProxy's proxy-protocol.txt fed at
// every split point (each proper prefix must ask for more, the whole must parse
// with the right addresses and length, whatever follows it untouched), and
// malformed ones refused. Headers are built here byte by byte from the spec.
// Also the option that turns it on (--proxy-protocol, API proxyProtocol).
import { describe, expect, it } from 'vitest';
import { resolveOptions } from '../host/options.js';
import { native } from '../host/sys.js';
import { run } from './server-process.js';

const V1 = 1;
const V2 = 2;
const ANY = 3;

const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

const text = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));
const u16 = (n: number) => [n >> 8, n & 0xff];

function v2(verCmd: number, fam: number, body: number[]): Uint8Array {
  return new Uint8Array([...SIG, verCmd, fam, ...u16(body.length), ...body]);
}

function v6bytes(groups: number[]): number[] {
  return groups.flatMap(u16);
}

function tlv(type: number, value: number[]): number[] {
  return [type, ...u16(value.length), ...value];
}

const V4_BODY = [192, 0, 2, 7, 198, 51, 100, 1, ...u16(51234), ...u16(443)];
const V6_SRC = v6bytes([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x42]);
const V6_DST = v6bytes([0, 0, 0, 0, 0, 0, 0, 1]);
const V6_BODY = [...V6_SRC, ...V6_DST, ...u16(65535), ...u16(0)];

interface Valid { name: string; bytes: Uint8Array; version: number; src: string; dst: string }

const VALID: Valid[] = [
  { name: 'v1 TCP4', bytes: text('PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n'), version: 1, src: '192.0.2.7:51234', dst: '198.51.100.1:443' },
  { name: 'v1 TCP4 extremes', bytes: text('PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n'), version: 1, src: '255.255.255.255:65535', dst: '0.0.0.0:0' },
  { name: 'v1 TCP6', bytes: text('PROXY TCP6 2001:db8::42 ::1 65535 0\r\n'), version: 1, src: '[2001:db8::42]:65535', dst: '[::1]:0' },
  {
    name: 'v1 TCP6 longest (104 bytes)',
    bytes: text('PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n'),
    version: 1, src: '[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535', dst: '[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535',
  },
  { name: 'v1 UNKNOWN', bytes: text('PROXY UNKNOWN\r\n'), version: 1, src: '', dst: '' },
  {
    name: 'v1 UNKNOWN worst case (107 bytes)',
    bytes: text('PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n'),
    version: 1, src: '', dst: '',
  },
  { name: 'v2 PROXY TCP4', bytes: v2(0x21, 0x11, V4_BODY), version: 2, src: '192.0.2.7:51234', dst: '198.51.100.1:443' },
  { name: 'v2 PROXY TCP6', bytes: v2(0x21, 0x21, V6_BODY), version: 2, src: '[2001:db8::42]:65535', dst: '[::1]:0' },
  {
    name: 'v2 PROXY TCP4 with TLVs (ALPN, authority, NOOP, an empty one)',
    bytes: v2(0x21, 0x11, [...V4_BODY, ...tlv(0x01, [...Buffer.from('h2')]), ...tlv(0x02, [...Buffer.from('example.com')]), ...tlv(0x04, new Array(40).fill(0)), ...tlv(0xe0, [])]),
    version: 2, src: '192.0.2.7:51234', dst: '198.51.100.1:443',
  },
  { name: 'v2 PROXY TCP6 with an SSL TLV', bytes: v2(0x21, 0x21, [...V6_BODY, ...tlv(0x20, [1, 0, 0, 0, 0, ...tlv(0x21, [...Buffer.from('TLSv1.3')])])]), version: 2, src: '[2001:db8::42]:65535', dst: '[::1]:0' },
  { name: 'v2 LOCAL (a health check)', bytes: v2(0x20, 0x00, []), version: 2, src: '', dst: '' },
  { name: 'v2 LOCAL with an address block, ignored', bytes: v2(0x20, 0x11, V4_BODY), version: 2, src: '', dst: '' },
  { name: 'v2 PROXY UNSPEC', bytes: v2(0x21, 0x00, []), version: 2, src: '', dst: '' },
  { name: 'v2 PROXY UDP4: not a TCP client, the socket stands', bytes: v2(0x21, 0x12, V4_BODY), version: 2, src: '', dst: '' },
  { name: 'v2 PROXY UNIX stream: no IP address', bytes: v2(0x21, 0x31, new Array(216).fill(0x2f)), version: 2, src: '', dst: '' },
  { name: 'v2 at the size bound (2048 bytes)', bytes: v2(0x21, 0x11, [...V4_BODY, ...tlv(0x04, new Array(2048 - 16 - 12 - 3).fill(0))]), version: 2, src: '192.0.2.7:51234', dst: '198.51.100.1:443' },
];

describe('proxyParse: valid headers at every split point', () => {
  for (const h of VALID) {
    it(h.name, () => {
      const versions = h.version === 1 ? [V1, ANY] : [V2, ANY];
      for (const v of versions) {
        for (let i = 0; i < h.bytes.length; i++) {
          const r = native.proxyParse(h.bytes.subarray(0, i), v);
          if (r.status !== 'more') throw new Error(`${h.name}: a ${i}-byte prefix gave ${r.status}`);
        }
        expect(native.proxyParse(h.bytes, v)).toEqual({ status: 'done', consumed: h.bytes.length, version: h.version, src: h.src, dst: h.dst });
        // What follows the header is not its business: the length stays the header's.
        const more = new Uint8Array([...h.bytes, ...Buffer.from('GET / HTTP/1.1\r\n\r\n')]);
        expect(native.proxyParse(more, v)).toMatchObject({ status: 'done', consumed: h.bytes.length });
      }
      // The other version alone refuses it at its first byte.
      expect(native.proxyParse(h.bytes.subarray(0, 1), h.version === 1 ? V2 : V1).status).toBe('bad');
      expect(native.proxyParse(h.bytes, h.version === 1 ? V2 : V1).status).toBe('bad');
    });
  }
});

describe('proxyParse: malformed headers', () => {
  const badV1 = [
    'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n', // a bare LF
    'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX', // a bare CR
    'PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n', // a field missing
    'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n', // a field too many
    'PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n', // two spaces
    'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n', // a trailing space
    'PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n', // a heading zero
    'PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n', // an octet out of range
    'PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n', // three octets
    'PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n', // five octets
    'PROXY TCP4 ::1 5.6.7.8 1 2\r\n', // IPv6 under TCP4
    'PROXY TCP6 1.2.3.4 ::1 1 2\r\n', // IPv4 under TCP6
    'PROXY TCP6 ::1::2 ::1 1 2\r\n', // two double colons
    'PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n', // a port out of range
    'PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n', // a port with a heading zero
    'PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n', // a sign
    'PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n', // an unknown protocol
    'PROXY UNKNOWNX\r\n', // not the word UNKNOWN
    'PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n', // lower case
    'PROXY\r\n', // nothing
    'proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n', // the signature in lower case
    'PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n', // no space after it
    'GET / HTTP/1.1\r\n\r\n', // no header at all
    '\x16\x03\x01\x02\x00', // a TLS ClientHello
  ];
  for (const s of badV1) {
    it(`refuses ${JSON.stringify(s)}`, () => expect(native.proxyParse(text(s), ANY).status).toBe('bad'));
  }

  it('refuses a v1 line with no CRLF in its first 107 bytes, and accepts one that ends exactly there', () => {
    const pad = (n: number) => `PROXY UNKNOWN ${'x'.repeat(n)}`;
    // 105 bytes then CRLF = 107: the longest line the spec allows.
    expect(native.proxyParse(text(`${pad(105 - 14)}\r\n`), V1)).toMatchObject({ status: 'done', consumed: 107 });
    expect(native.proxyParse(text(`${pad(106 - 14)}\r\n`), V1).status).toBe('bad');
    expect(native.proxyParse(text(pad(105 - 14)), V1).status).toBe('more');
    expect(native.proxyParse(text(pad(106 - 14)), V1).status).toBe('bad');
    expect(native.proxyParse(text(pad(300)), V1).status).toBe('bad');
  });

  const badV2: [string, Uint8Array][] = [
    ['a wrong signature byte', (() => { const b = v2(0x21, 0x11, V4_BODY); b[7] = 0x50; return b; })()],
    ['version 1 in the binary form', v2(0x11, 0x11, V4_BODY)],
    ['version 3', v2(0x31, 0x11, V4_BODY)],
    ['command 2', v2(0x22, 0x11, V4_BODY)],
    ['family 4', v2(0x21, 0x41, V4_BODY)],
    ['transport 3', v2(0x21, 0x13, V4_BODY)],
    ['an IPv4 block too short', v2(0x21, 0x11, V4_BODY.slice(0, 11))],
    ['an IPv6 block too short', v2(0x21, 0x21, V6_BODY.slice(0, 35))],
    ['a UNIX block too short', v2(0x21, 0x31, new Array(215).fill(0))],
    ['a TLV running past the header', v2(0x21, 0x11, [...V4_BODY, 0x01, 0x00, 0x05, 0x68, 0x32])],
    ['a TLV header cut short', v2(0x21, 0x11, [...V4_BODY, 0x04, 0x00])],
    ['a header longer than 2048 bytes', v2(0x21, 0x11, [...V4_BODY, ...tlv(0x04, new Array(2048 - 16 - 12 - 3 + 1).fill(0))])],
    ['a header announcing 65535 bytes', new Uint8Array([...SIG, 0x21, 0x11, 0xff, 0xff, ...V4_BODY])],
  ];
  for (const [name, bytes] of badV2) {
    it(`refuses a v2 header with ${name}`, () => expect(native.proxyParse(bytes, ANY).status).toBe('bad'));
  }

  it('refuses a bad byte as soon as it is seen, not when the header would be complete', () => {
    expect(native.proxyParse(text('PROXX'), ANY).status).toBe('bad');
    expect(native.proxyParse(new Uint8Array([0x0d, 0x0a, 0x0d, 0x0b]), ANY).status).toBe('bad');
    expect(native.proxyParse(new Uint8Array([...SIG, 0x11]), ANY).status).toBe('bad');
    expect(native.proxyParse(new Uint8Array([...SIG, 0x21, 0x51]), ANY).status).toBe('bad');
    expect(native.proxyParse(new Uint8Array([...SIG, 0x21, 0x11, 0x08, 0x00]), ANY).status).toBe('bad');
    expect(native.proxyParse(new Uint8Array(0), ANY).status).toBe('more');
  });

  it('takes no version when none is allowed', () => {
    expect(native.proxyParse(VALID[0].bytes, 0).status).toBe('bad');
    expect(native.proxyParse(v2(0x21, 0x11, V4_BODY), 0).status).toBe('bad');
  });
});

describe('the proxyProtocol option (--proxy-protocol)', () => {
  it('is off by default and takes v1, v2 or any', () => {
    expect(resolveOptions({ module: 'm.wasm' }).proxyProtocol).toBe('off');
    for (const v of ['off', 'v1', 'v2', 'any'] as const) expect(resolveOptions({ module: 'm.wasm', proxyProtocol: v }).proxyProtocol).toBe(v);
  });

  it('refuses anything else with an exact message, in the API and on the command line', async () => {
    expect(() => resolveOptions({ module: 'm.wasm', proxyProtocol: 'v3' as 'v1' })).toThrow(/^proxyProtocol must be one of off, v1, v2, any; got "v3"$/);
    expect(() => resolveOptions({ module: 'm.wasm', proxyProtocol: true as unknown as 'v1' })).toThrow(/^proxyProtocol must be one of off, v1, v2, any; got true$/);
    const r = await run(process.execPath, ['bin/tcpmod.js', 'serve', 'build/echo.wasm', '--port', '0', '--proxy-protocol', 'yes']);
    expect(r.code).toBe(1);
    // The command line's choices are checked by its parser, as for every choice option.
    expect(r.stderr.trim()).toMatch(/^error: option '--proxy-protocol <version>' argument 'yes' is invalid\. Allowed choices are off, v1, v2, any\.$/);
  });
});
