// The part every `cluster` peer shares: the primary forks the workers, says
// "listening on 127.0.0.1:PORT" once all of them listen, exits 1 if one dies
// unasked, and on SIGTERM/SIGINT stops them and exits 0; a worker exits with
// its primary. `listen()` starts the actual server in a worker.
import cluster from 'node:cluster';

export function runClusterPeer(name, port, workers, listen) {
  if (cluster.isPrimary) {
    let listening = 0;
    let stopping = false;
    for (let i = 0; i < workers; i++) cluster.fork();
    cluster.on('listening', () => {
      if (++listening === workers) console.log(`listening on 127.0.0.1:${port}`);
    });
    cluster.on('exit', (w, code, signal) => {
      if (!stopping) {
        console.error(`${name}: worker ${w.process.pid} died (${signal ?? code})`);
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
    listen();
  }
}
