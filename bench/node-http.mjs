// The HTTP peer: Node's own `http` server answering every request with the
// same 13-byte body and the same header set as tcpmod's http module (Server,
// Date, Content-Type: text/plain, Content-Length; Node adds its keep-alive
// headers on top).
//
//   node bench/node-http.mjs PORT [WORKERS]
//
// Without WORKERS (or 0) it is one process; with WORKERS it is a `cluster` of
// that many worker processes. Prints "listening on 127.0.0.1:PORT" once ready;
// SIGTERM/SIGINT exit 0.
import http from 'node:http';
import { runClusterPeer } from './lib/cluster-peer.mjs';

const port = Number(process.argv[2] ?? 7200);
const workers = Number(process.argv[3] ?? 0);
const BODY = Buffer.from('Hello, World!');
const HEADERS = { Server: 'node', 'Content-Type': 'text/plain', 'Content-Length': String(BODY.length) };

function serve(onListening) {
  http
    .createServer((req, res) => {
      res.writeHead(200, HEADERS); // Date is added by Node (sendDate defaults to true)
      res.end(req.method === 'HEAD' ? undefined : BODY);
    })
    .listen(port, '127.0.0.1', onListening);
}

if (workers > 0) {
  runClusterPeer('node-http', port, workers, () => serve());
} else {
  const stop = () => process.exit(0);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  serve(() => console.log(`listening on 127.0.0.1:${port}`));
}
