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
import cluster from 'node:cluster';
import http from 'node:http';

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

if (workers > 0 && cluster.isPrimary) {
  let listening = 0;
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('listening', () => {
    if (++listening === workers) console.log(`listening on 127.0.0.1:${port}`);
  });
  cluster.on('exit', (w, code, signal) => {
    if (!stopping) {
      console.error(`node-http: worker ${w.process.pid} died (${signal ?? code})`);
      process.exit(1);
    }
  });
  const stop = () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else if (workers > 0) {
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
  serve();
} else {
  const stop = () => process.exit(0);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  serve(() => console.log(`listening on 127.0.0.1:${port}`));
}
