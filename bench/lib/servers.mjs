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
  return {
    /** tls: { cert, key } serves TLS 1.2–1.3 with ALPN http/1.1 (OpenSSL's default ciphers, server order, tickets on). */
    /** batch: --batch (default: the server's). Its syscalls per request are counted in a separate strace run. */
    /** args: more `serve` options, after all the others (the soak's timeouts). */
    tcpmod: (module, { workers = threads, tls = null, batch = null, args = [], id = 'tcpmod', label = `tcpmod ×${workers}${tls ? ' TLS' : ''}${batch ? ` --batch ${batch}` : ''}` } = {}) => ({
      id,
      label,
      module,
      strace: true,
      start: (port) => ({
        cmd: node,
        args: [
          'bin/tcpmod.js', 'serve', module, '--host', '127.0.0.1', '--port', String(port), '--threads', String(workers), '--log-level', 'warn',
          ...(tls ? ['--tls-cert', tls.cert, '--tls-key', tls.key, '--tls-min-version', '1.2', '--alpn', 'http/1.1'] : []),
          ...(batch ? ['--batch', String(batch)] : []),
          ...args,
        ],
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
    /** Node's `https`, one process, on tls: { cert, key } (TLS settings in bench/node-https.mjs). */
    nodeHttps: ({ tls }) => ({
      id: 'node-https',
      label: 'node https',
      start: (port) => ({ cmd: node, args: ['bench/node-https.mjs', String(port), tls.cert, tls.key], readyLine: LISTENING }),
    }),
    nginx: ({ tls = null } = {}) => ({
      id: 'nginx',
      label: `nginx ×${threads}${tls ? ' TLS' : ''}`,
      start: (port) => {
        const dir = mkdtempSync(join(os.tmpdir(), 'tcpmod-bench-nginx-'));
        const conf = join(dir, 'nginx.conf');
        writeFileSync(conf, nginxConfig(dir, port, threads, { tls, keepaliveRequests: 1_000_000 }));
        return {
          cmd: nginxBin(),
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

/** OpenSSL's default TLS 1.3 suites in its order: what tcpmod's SSL_CTX (and bench/node-https.mjs) use. */
export const TLS13_SUITES = 'TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256';

/**
 * nginx's TLS settings, made to match tcpmod's native TLS (tls.cc): TLS 1.2
 * and 1.3; OpenSSL's DEFAULT TLS 1.2 list and default 1.3 suites, server
 * order; default groups (ssl_ecdh_curve auto); session tickets on (nginx's,
 * OpenSSL's and Node's default) with the ticket key made at start-up, which
 * the forked workers share as tcpmod's threads share its one SSL_CTX's; no
 * session cache (ssl_session_cache off): TLS 1.3 tickets are stateless and
 * need none, and tcpmod's built-in cache only serves TLS 1.2 session ids.
 */
function nginxTls(tls) {
  return `    ssl_certificate ${tls.cert};
    ssl_certificate_key ${tls.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers DEFAULT;
    ssl_conf_command Ciphersuites ${TLS13_SUITES};
    ssl_prefer_server_ciphers on;
    ssl_ecdh_curve auto;
    ssl_session_cache off;
    ssl_session_tickets on;
`;
}

/**
 * A temporary nginx configuration: `return 200 'Hello, World!'` on GET / from
 * N workers, no logging to files outside dir. The options add directives to
 * it; each one not given is left out of the text (nginx's default then holds):
 *   tls                { cert, key }: HTTPS (see nginxTls)
 *   keepaliveRequests  requests served on one keep-alive connection before
 *                      nginx closes it (its default is 1000)
 *   timeouts           { directive: value } for the http block, in that order,
 *                      e.g. { send_timeout: '20s' }
 *   maxBody            client_max_body_size, e.g. '2m'
 *   kv                 true: dir/www is the document root, sent with sendfile;
 *                      PUT under /kv/ stores files there (DAV module), GET
 *                      reads them; only exactly / answers Hello, World!
 */
export function nginxConfig(dir, port, workers, { tls = null, keepaliveRequests = null, timeouts = {}, maxBody = null, kv = false } = {}) {
  const http = [
    ...(keepaliveRequests === null ? [] : [`keepalive_requests ${keepaliveRequests}`]),
    ...(kv ? ['sendfile on'] : []),
    ...Object.entries(timeouts).map(([k, v]) => `${k} ${v}`),
    ...(maxBody === null ? [] : [`client_max_body_size ${maxBody}`]),
  ];
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
${http.map((d) => `  ${d};\n`).join('')}  server {
    listen 127.0.0.1:${port}${tls ? ' ssl' : ''};
${tls ? nginxTls(tls) : ''}${kv ? `    root ${join(dir, 'www')};\n` : ''}    location ${kv ? '= ' : ''}/ {
      default_type text/plain;
      return 200 'Hello, World!';
    }
${kv ? NGINX_KV_LOCATION : ''}  }
}
`;
}

const NGINX_KV_LOCATION = `    location /kv/ {
      default_type application/octet-stream;
      dav_methods PUT;
    }
`;

/** The nginx binary: on PATH, else where Debian's package puts it (sbin is not on every PATH). */
export function nginxBin() {
  return hasCommand('nginx') ? 'nginx' : '/usr/sbin/nginx';
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
  return Object.assign(server, { id: def.id, label: def.label, strace: def.strace === true });
}

/**
 * tcpmod again with --batch 1 (one event per epoll_wait, the loop before
 * batches), beside the default, so a full run shows what batching bought;
 * --quick leaves it out.
 */
export function batchOne(ctx, module) {
  return ctx.quick ? [] : [ctx.defs.tcpmod(module, { batch: 1, id: 'tcpmod-batch1' })];
}

/** Whether a module file exists (rows for a missing one are marked "skipped: module missing"). */
export function moduleExists(root, module) {
  return existsSync(join(root, module));
}
