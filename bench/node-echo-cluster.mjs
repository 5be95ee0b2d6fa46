// The multi-process peer: Node's `net` echo server under `cluster`, one worker
// process per tcpmod worker thread (the primary hands connections out round-
// robin, Node's default on Linux).
//
//   node bench/node-echo-cluster.mjs PORT WORKERS
//
// Prints "listening on 127.0.0.1:PORT" once every worker listens. SIGTERM or
// SIGINT on the primary stops the workers and exits 0; a worker whose primary
// is gone exits too.
import cluster from 'node:cluster';
import net from 'node:net';

const port = Number(process.argv[2] ?? 7100);
const workers = Math.max(1, Number(process.argv[3] ?? 2));

if (cluster.isPrimary) {
  let listening = 0;
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('listening', () => {
    if (++listening === workers) console.log(`listening on 127.0.0.1:${port}`);
  });
  cluster.on('exit', (w, code, signal) => {
    if (!stopping) {
      console.error(`node-echo-cluster: worker ${w.process.pid} died (${signal ?? code})`);
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
} else {
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
  net.createServer({ noDelay: true }, (s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  }).listen(port, '127.0.0.1');
}
