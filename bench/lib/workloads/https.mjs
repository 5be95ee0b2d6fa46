// HTTPS: tcpmod's http module behind tcpmod's native TLS (--tls-cert/--tls-key)
// against nginx (`ssl`, as many workers as tcpmod has) and Node's `https`
// (one process), all three on one self-signed EC P-256 certificate made with
// the openssl CLI for this run (in a temporary directory removed afterwards).
// TLS settings are matched as far as each server allows: TLS 1.2–1.3,
// OpenSSL's default cipher lists in server order, default groups, session
// tickets on, no nginx session cache (see nginxConfig in ../servers.mjs and
// bench/node-https.mjs). Two cases, wrk with 50 connections on GET /:
// keep-alive, and `Connection: close`, where every request is a new TCP
// connection and TLS handshake (handshakes/s = req/s). wrk (OpenSSL) offers
// its last session when it reconnects, so these handshakes are TLS 1.3
// resumptions (PSK + ECDHE) wherever the server renews its ticket on a
// resumed connection, and otherwise every other one is full. Before a
// server's first run, one TLS client checks what it negotiates, that it
// answers `Connection: close` with that header and closes (what makes wrk
// reconnect), and how it resumes; kept as `tls.checks` and in `notes`.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { wrk } from '../clients.mjs';
import { compareServers } from '../compare.mjs';
import { commandLine } from '../proc.mjs';
import { moduleExists, TLS13_SUITES } from '../servers.mjs';

export const title = 'https';
export const MODULE = 'build/http.wasm';
export const CONNECTIONS = 50;
/** wrk's own threads; the load generator shares the machine's cores with the server. */
export const WRK_THREADS = 2;
const BODY = 'Hello, World!';

/** A self-signed EC P-256 certificate for 127.0.0.1/localhost in dir: { cert, key, command }. */
export function makeCertificate(dir) {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const args = [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-sha256', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert,
  ];
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  return { cert, key, command: commandLine('openssl', args) };
}

/** One TLS connection: GET / with `Connection: close`, read until the server closes (or timeoutMs). */
function closeRequest(port, session, timeoutMs = 3000) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let data = '';
    let info = null;
    let done = false;
    let ticket = null;
    const finish = (extra) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      const [head = '', body = ''] = data.split('\r\n\r\n');
      resolve({ ...info, ticket, ms: Math.round((performance.now() - t0) * 10) / 10, status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0), head, body, ...extra });
    };
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, session }, () => {
      const k = s.getEphemeralKeyInfo();
      info = { protocol: s.getProtocol(), cipher: s.getCipher()?.name, group: k?.name ?? k?.type ?? null, resumed: s.isSessionReused() };
      s.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`);
    });
    s.setEncoding('utf8');
    s.on('session', (t) => (ticket = t));
    s.on('data', (d) => (data += d));
    s.on('end', () => finish({ serverClosed: true }));
    s.on('close', () => finish({ serverClosed: true }));
    s.on('error', (e) => finish({ error: e.message }));
    const timer = setTimeout(() => finish({ serverClosed: false }), timeoutMs);
  });
}

/**
 * What the server negotiates with an OpenSSL client offering the defaults, and
 * whether it does what the handshake case needs: 200 "Hello, World!",
 * `Connection: close` in the answer and the connection closed by the server.
 * A second connection offers the first one's session (ticket): resumed or not,
 * and given a new ticket or not.
 */
export async function checkServer(port) {
  const a = await closeRequest(port);
  const problems = [];
  if (a.error) problems.push(`TLS error: ${a.error}`);
  if (a.status !== 200 || a.body !== BODY) problems.push(`answer was ${a.status || 'none'} ${JSON.stringify(a.body.slice(0, 40))}`);
  if (!/\r\nconnection: *close\r?$/im.test(`${a.head}\r\n`)) problems.push('no `Connection: close` in the answer');
  if (!a.serverClosed) problems.push('the server kept the connection open after answering `Connection: close`');
  const b = a.ticket ? await closeRequest(port, a.ticket) : null;
  return {
    ok: problems.length === 0,
    problems,
    protocol: a.protocol ?? null,
    cipher: a.cipher ?? null,
    group: a.group ?? null,
    closesAfterConnectionClose: a.serverClosed === true && problems.length === 0,
    ticketIssued: a.ticket !== null,
    resumesFromTicket: b ? b.resumed === true : false,
    // An OpenSSL client such as wrk does not offer a TLS 1.3 session twice: with
    // a fresh ticket on every resumed connection, its reconnections all resume
    // (abbreviated handshake, still ECDHE); without one, every other one is full.
    ticketOnResumption: b ? b.resumed === true && b.ticket !== null : false,
  };
}

/** The OpenSSL nginx was built with (nginx -V prints it on stderr). */
function nginxOpenssl() {
  for (const bin of ['nginx', '/usr/sbin/nginx']) {
    const r = spawnSync(bin, ['-V'], { encoding: 'utf8' });
    const m = /built with (OpenSSL [^\s]+)/.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`);
    if (m) return m[1];
  }
  return null;
}

export async function run(ctx) {
  const cases = [
    { id: 'https', label: `HTTPS GET / × ${CONNECTIONS} conn, keep-alive`, params: { connections: CONNECTIONS, connectionClose: false } },
    {
      id: 'https-handshake',
      label: `HTTPS new handshake per request × ${CONNECTIONS} conn (handshakes/s = req/s)`,
      params: { connections: CONNECTIONS, connectionClose: true },
    },
  ];
  if (!moduleExists(ctx.root, MODULE)) return { status: 'skipped', reason: `module missing: ${MODULE}`, plannedCases: cases.map((c) => c.label) };
  const dir = mkdtempSync(join(os.tmpdir(), 'tcpmod-bench-tls-'));
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  process.once('exit', removeDir); // also on Ctrl-C (proc.mjs exits the process)
  try {
    const cert = makeCertificate(dir);
    ctx.log(`[https] certificate: EC P-256, self-signed, in ${dir}`);
    const tlsFiles = { cert: cert.cert, key: cert.key };
    const d = ctx.defs;
    const checks = {};
    const res = await compareServers({
      ctx,
      workload: 'https',
      defs: [d.tcpmod(MODULE, { tls: tlsFiles }), d.nodeHttps({ tls: tlsFiles }), d.nginx({ tls: tlsFiles })],
      cases,
      runOne: async (p, server, seconds) => {
        // Once per server, before its first run (2 TLS connections, negligible next to a run).
        if (!checks[server.id]) {
          checks[server.id] = await checkServer(server.port);
          const c = checks[server.id];
          ctx.log(
            `[https] ${server.label}: ${c.protocol} ${c.cipher} ${c.group}; ` +
              `${c.closesAfterConnectionClose ? 'closes after `Connection: close`' : `PROBLEM: ${c.problems.join('; ')}`}; ` +
              `ticket ${c.ticketIssued ? (c.resumesFromTicket ? 'issued and resumed' : 'issued, not resumed') : 'not issued'}` +
              `${c.resumesFromTicket ? (c.ticketOnResumption ? ', renewed on resumption' : ', not renewed on resumption') : ''}`,
          );
        }
        if (p.connectionClose && !checks[server.id].closesAfterConnectionClose) {
          throw new Error(`not a handshake per request: ${checks[server.id].problems.join('; ')}`);
        }
        return wrk(ctx.benchDir, {
          port: server.port,
          connections: p.connections,
          threads: WRK_THREADS,
          seconds,
          scheme: 'https',
          headers: p.connectionClose ? ['Connection: close'] : [],
        });
      },
    });
    const notes = [
      'One self-signed EC P-256 certificate for all servers. TLS 1.2–1.3, OpenSSL’s default cipher lists in server order, default groups, ' +
        'session tickets on; nginx: ssl_session_cache off (details: `tls.settings` in the JSON).',
      ...Object.entries(checks).map(([id, c]) => {
        const label = res.servers[id]?.label ?? id;
        if (!c.ok) return `${label}: ${c.problems.join('; ')}`;
        const resumption = !c.resumesFromTicket
          ? 'no ticket resumption, so every reconnection is a full handshake'
          : c.ticketOnResumption
            ? 'resumes from its ticket and renews it, so wrk’s reconnections are abbreviated (PSK + ECDHE) handshakes after the first per connection'
            : 'resumes from its ticket without renewing it, so about every other reconnection of wrk is a full handshake';
        return `${label}: ${c.protocol}, ${c.cipher}, ${c.group}; closes after \`Connection: close\`; ${resumption}.`;
      }),
    ];
    return {
      status: 'ok',
      module: MODULE,
      notes,
      client: `wrk -t ${WRK_THREADS} -c ${CONNECTIONS} -d SECONDS [-H 'Connection: close'] https://127.0.0.1:PORT/`,
      tls: {
        certificate: 'self-signed, EC P-256 (ECDSA with SHA-256), CN=localhost, SAN DNS:localhost IP:127.0.0.1; one for all servers, made per run',
        certificateCommand: cert.command.split(dir).join('$TMP'),
        settings:
          `all: TLS 1.2–1.3, OpenSSL DEFAULT (TLS 1.2) and ${TLS13_SUITES} (TLS 1.3) in server order, default groups, session tickets on. ` +
          'tcpmod: --tls-min-version 1.2 --alpn http/1.1 (its SSL_CTX otherwise keeps OpenSSL defaults; built-in session cache for TLS 1.2 ids). ' +
          'nginx: ssl_protocols TLSv1.2 TLSv1.3; ssl_ciphers DEFAULT; ssl_conf_command Ciphersuites; ssl_prefer_server_ciphers on; ' +
          'ssl_ecdh_curve auto; ssl_session_cache off; ssl_session_tickets on. ' +
          'node https: minVersion TLSv1.2, maxVersion TLSv1.3, ciphers = the TLS 1.3 suites + DEFAULT, honorCipherOrder true.',
        openssl: { 'tcpmod and node (bundled)': process.versions.openssl, nginx: nginxOpenssl() },
        checks,
      },
      ...res,
    };
  } finally {
    removeDir();
    process.removeListener('exit', removeDir);
  }
}
