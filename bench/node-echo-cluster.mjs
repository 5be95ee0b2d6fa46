// The multi-process peer: Node's `net` echo server under `cluster`, one worker
// process per tcpmod worker thread (the primary hands connections out round-
// robin, Node's default on Linux).
//
//   node bench/node-echo-cluster.mjs PORT WORKERS
//
// Prints "listening on 127.0.0.1:PORT" once every worker listens. SIGTERM or
// SIGINT on the primary stops the workers and exits 0; a worker whose primary
// is gone exits too.
import net from 'node:net';
import { runClusterPeer } from './lib/cluster-peer.mjs';

const port = Number(process.argv[2] ?? 7100);
const workers = Math.max(1, Number(process.argv[3] ?? 2));

runClusterPeer('node-echo-cluster', port, workers, () => {
  net.createServer({ noDelay: true }, (s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  }).listen(port, '127.0.0.1');
});
