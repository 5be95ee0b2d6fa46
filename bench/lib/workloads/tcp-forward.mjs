// An L4 forwarder: examples/tcp-forward (built here with `tcpmod build`'s
// function) against HAProxy in `mode tcp`, both in front of the same nginx
// (GET / answers 'Hello, World!'), measured with wrk -c 50 (each connection
// kept alive, so this is mostly the per-byte forwarding, not connects),
// interleaved rounds. The CPU per request is the forwarder's process group
// only (nginx's is the same work for both).
import os from 'node:os';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { wrk } from '../clients.mjs';
import { compareServers } from '../compare.mjs';
import { freePort, startServer } from '../proc.mjs';
import { nginxBin, nginxConfig } from '../servers.mjs';
import { WRK_THREADS } from './http.mjs';

export const title = 'tcp-forward';
export const MODULE = 'examples/tcp-forward/build/index.wasm';
export const CONNECTIONS = 50;

export async function run(ctx) {
  const cases = [{ id: 'tcp-forward-get', label: `GET / through the forwarder × ${CONNECTIONS} connections`, params: { connections: CONNECTIONS } }];
  const { buildModule } = await import(pathToFileURL(join(ctx.root, 'dist', 'build.js')).href);
  await buildModule({ baseDir: join(ctx.root, 'examples', 'tcp-forward'), outFile: join(ctx.root, MODULE) });
  const dir = mkdtempSync(join(os.tmpdir(), 'tcpmod-bench-forward-'));
  const backendPort = await freePort();
  writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, backendPort, ctx.threads, { keepaliveRequests: 1_000_000 }));
  const backend = await startServer({ name: 'nginx-backend', port: backendPort, cmd: nginxBin(), args: ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')] });
  try {
    const defs = [
      ctx.defs.tcpmod(MODULE, { args: ['--upstream', `backend=127.0.0.1:${backendPort}`], label: `tcpmod ×${ctx.threads} tcp-forward` }),
      {
        id: 'haproxy-tcp',
        label: `HAProxy mode tcp ×${ctx.threads}`,
        start: (port) => {
          const cfg = join(dir, `haproxy-${port}.cfg`);
          writeFileSync(cfg, [
            'global', `  nbthread ${ctx.threads}`, '  maxconn 4000',
            'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 60s', '  timeout server 60s',
            'frontend f', `  bind 127.0.0.1:${port}`, '  default_backend b',
            'backend b', `  server nginx 127.0.0.1:${backendPort}`, '',
          ].join('\n'));
          return { cmd: 'haproxy', args: ['-db', '-f', cfg] };
        },
      },
    ];
    const res = await compareServers({
      ctx,
      workload: 'tcp-forward',
      defs,
      cases,
      runOne: (p, server, seconds) => wrk(ctx.benchDir, { port: server.port, connections: p.connections, threads: WRK_THREADS, seconds, pipeline: 1 }),
    });
    return { status: 'ok', module: MODULE, client: `wrk -t ${WRK_THREADS} -c ${CONNECTIONS} -d SECONDS (through the forwarder to nginx)`, ...res };
  } finally {
    await backend.stop();
  }
}
