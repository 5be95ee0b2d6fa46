// The Node peer of the mqtt workload: aedes (in-memory, one process) on a TCP port.
//   node bench/mqtt-aedes.mjs PORT      (prints "listening on 127.0.0.1:PORT"; SIGTERM/SIGINT exit 0)
import net from 'node:net';
import { Aedes } from 'aedes';

const port = Number(process.argv[2] ?? 1883);
const aedes = await Aedes.createBroker();
net.createServer({ noDelay: true }, aedes.handle).listen(port, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${port}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
