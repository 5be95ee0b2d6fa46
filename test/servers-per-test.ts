// In-process servers for a test file's cases: start() makes one with the file's
// defaults under the case's options; after each case every server it made is
// closed (no drain) and every socket pushed to `sockets` destroyed.
import type { Socket } from 'node:net';
import { afterEach } from 'vitest';
import { createServer, type TcpmodServer } from '../dist/index.js';

type Options = Parameters<typeof createServer>[0];

export function serversPerTest(defaults: () => Options | Promise<Options>): {
  start(opts: Partial<Options>): Promise<{ server: TcpmodServer; port: number }>;
  sockets: Socket[];
} {
  const servers: TcpmodServer[] = [];
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    while (servers.length) await servers.pop()!.close({ drainTimeout: 0 });
  });
  return {
    sockets,
    async start(opts) {
      const server = createServer({ ...(await defaults()), ...opts });
      servers.push(server);
      const { port } = await server.listen();
      return { server, port };
    },
  };
}
