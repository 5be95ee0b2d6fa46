// The HTTPS peer: Node's own `https` server (one process) answering every
// request with the same 13-byte body and header set as bench/node-http.mjs,
// over TLS with the bench's certificate and the TLS settings of tcpmod's
// native TLS: versions 1.2 and 1.3, OpenSSL's default cipher lists, the
// server's cipher order, OpenSSL's default groups, session tickets on (Node's
// default).
//
//   node bench/node-https.mjs PORT CERT.pem KEY.pem
//
// Prints "listening on 127.0.0.1:PORT" once ready; SIGTERM/SIGINT exit 0.
import { readFileSync } from 'node:fs';
import https from 'node:https';

// OpenSSL's default TLS 1.3 suites, in its order (as TLS13_SUITES in lib/servers.mjs).
const TLS13_SUITES = 'TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256';

const [port, cert, key] = [Number(process.argv[2] ?? 7443), process.argv[3], process.argv[4]];
if (!cert || !key) {
  console.error('usage: node bench/node-https.mjs PORT CERT.pem KEY.pem');
  process.exit(2);
}
const BODY = Buffer.from('Hello, World!');
const HEADERS = { Server: 'node', 'Content-Type': 'text/plain', 'Content-Length': String(BODY.length) };

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
https
  .createServer(
    {
      cert: readFileSync(cert),
      key: readFileSync(key),
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.3',
      // Node's own default list is shorter than OpenSSL's; DEFAULT is what tcpmod's SSL_CTX has.
      ciphers: `${TLS13_SUITES}:DEFAULT`,
      honorCipherOrder: true,
    },
    (req, res) => {
      res.writeHead(200, HEADERS); // Date is added by Node (sendDate defaults to true)
      res.end(req.method === 'HEAD' ? undefined : BODY);
    },
  )
  .listen(port, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${port}`));
