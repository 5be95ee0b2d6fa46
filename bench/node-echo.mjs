// The peer: Node's own `net` echo server (one process), for side-by-side runs.
//   node bench/node-echo.mjs PORT      (prints "listening on 127.0.0.1:PORT"; SIGTERM/SIGINT exit 0)
import net from 'node:net';
const port = Number(process.argv[2] ?? 7100);
net.createServer({ noDelay: true }, (s) => {
  s.on('error', () => s.destroy());
  s.pipe(s);
}).listen(port, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${port}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
