// The servers under test: tcpmod and the peers users would pick instead. Each
// definition says how to start it on a port; launch() starts it (in its own
// process group, see proc.mjs) and returns a handle whose stop() also removes
// any temporary files it needed.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { freePort, startServer } from './proc.mjs';
import { hasCommand } from './tools.mjs';

const LISTENING = /listening on \S+:\d+/;
/** Descriptor limit for every server: the scale workload holds 10,000 connections. */
const NOFILE = 65536;

/**
 * The definitions. `root` is the project directory, `bins` the compiled C
 * programs, `threads` the worker count given to tcpmod and to the multi-process peers.
 */
export function serverDefs({ root, bins, threads }) {
  const node = process.execPath;
  const nginxBin = hasCommand('nginx') ? 'nginx' : '/usr/sbin/nginx';
  return {
    tcpmod: (module, { workers = threads, id = 'tcpmod', label = `tcpmod ×${workers}` } = {}) => ({
      id,
      label,
      module,
      start: (port) => ({
        cmd: node,
        args: ['bin/tcpmod.js', 'serve', module, '--host', '127.0.0.1', '--port', String(port), '--threads', String(workers), '--log-level', 'warn'],
        readyLine: LISTENING,
      }),
    }),
    nodeEcho: () => ({
      id: 'node-net',
      label: 'node net',
      start: (port) => ({ cmd: node, args: ['bench/node-echo.mjs', String(port)], readyLine: LISTENING }),
    }),
    nodeEchoCluster: () => ({
      id: 'node-net-cluster',
      label: `node net cluster ×${threads}`,
      start: (port) => ({ cmd: node, args: ['bench/node-echo-cluster.mjs', String(port), String(threads)], readyLine: LISTENING }),
    }),
    cEcho: () => ({
      id: 'c-epoll',
      label: 'C epoll (ceiling)',
      start: (port) => ({ cmd: bins['c-echo-server'], args: [String(port)], readyLine: LISTENING }),
    }),
    nodeHttp: () => ({
      id: 'node-http',
      label: 'node http',
      start: (port) => ({ cmd: node, args: ['bench/node-http.mjs', String(port)], readyLine: LISTENING }),
    }),
    nodeHttpCluster: () => ({
      id: 'node-http-cluster',
      label: `node http cluster ×${threads}`,
      start: (port) => ({ cmd: node, args: ['bench/node-http.mjs', String(port), String(threads)], readyLine: LISTENING }),
    }),
    nginx: () => ({
      id: 'nginx',
      label: `nginx ×${threads}`,
      start: (port) => {
        const dir = mkdtempSync(join(os.tmpdir(), 'tcpmod-bench-nginx-'));
        const conf = join(dir, 'nginx.conf');
        writeFileSync(conf, nginxConfig(dir, port, threads));
        return {
          cmd: nginxBin,
          args: ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')],
          cleanup: () => rmSync(dir, { recursive: true, force: true }),
        };
      },
    }),
    redis: () => ({
      id: 'redis-server',
      label: 'redis-server',
      start: (port) => ({
        cmd: 'redis-server',
        args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--logfile', ''],
      }),
    }),
  };
}

/** A temporary nginx configuration: `return 200 'Hello, World!'` from N workers, no logging to files outside dir. */
export function nginxConfig(dir, port, workers) {
  return `daemon off;
master_process on;
worker_processes ${workers};
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events {
  worker_connections 16384;
}
http {
  access_log off;
  client_body_temp_path ${join(dir, 'client_body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:${port};
    location / {
      default_type text/plain;
      return 200 'Hello, World!';
    }
  }
}
`;
}

/** Starts a definition on a free port; the handle's stop() also cleans up after it. */
export async function launch(def, { root }) {
  const port = await freePort();
  const s = def.start(port);
  let server;
  try {
    server = await startServer({ name: def.label, cwd: root, nofile: NOFILE, port, ...s });
  } catch (e) {
    s.cleanup?.();
    throw e;
  }
  const stop = server.stop;
  server.stop = async () => {
    try {
      return await stop();
    } finally {
      s.cleanup?.();
    }
  };
  return Object.assign(server, { id: def.id, label: def.label });
}

/** Whether a module file exists (rows for a missing one are marked "skipped: module missing"). */
export function moduleExists(root, module) {
  return existsSync(join(root, module));
}
