// Test certificates made with the `openssl` CLI in a fresh temporary directory:
// a root CA; an intermediate CA it signs; a server certificate for localhost and
// 127.0.0.1 signed by the intermediate (so the chain file, leaf then
// intermediate, is what lets a client that trusts only the root verify it); a
// client certificate signed by the root; an expired server certificate; and an
// unrelated key. EC P-256 throughout, so the whole set takes well under a second.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCerts {
  dir: string;
  caCert: string; // the root, self-signed: what clients (and client-auth) trust
  caKey: string;
  intermediateCert: string;
  serverCert: string; // the leaf alone
  serverChain: string; // leaf, then the intermediate
  serverKey: string;
  otherKey: string; // matches no certificate
  expiredCert: string; // leaf for localhost, valid Jan 2020 only, signed by the root
  expiredKey: string;
  clientCert: string; // CN=tcpmod test client, clientAuth, signed by the root
  clientKey: string;
  /** Removes the directory. */
  remove(): void;
}

// Every extension section used, so the result never depends on the system's openssl.cnf.
const CONFIG = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
default_ca = test_ca
[test_ca]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_intermediate]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_server]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
authorityKeyIdentifier = keyid
[v3_client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
`;

export function makeTestCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), 'tcpmod-tls-'));
  const p = (name: string) => join(dir, name);
  const openssl = (...args: string[]) =>
    execFileSync('openssl', args, { cwd: dir, timeout: 10_000, stdio: ['ignore', 'ignore', 'pipe'] });
  const key = (name: string) => openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', p(name));
  const csr = (keyName: string, cn: string, out: string) =>
    openssl('req', '-new', '-config', 'openssl.cnf', '-key', keyName, '-subj', `/CN=${cn}`, '-out', out);
  const sign = (csrName: string, caCert: string, caKey: string, ext: string, out: string, serial: string) =>
    openssl('x509', '-req', '-in', csrName, '-CA', caCert, '-CAkey', caKey, '-set_serial', serial, '-days', '30',
      '-extfile', 'openssl.cnf', '-extensions', ext, '-out', out);
  try {
    writeFileSync(p('openssl.cnf'), CONFIG);
    writeFileSync(p('index.txt'), '');
    writeFileSync(p('serial'), '1000\n');
    key('ca.key');
    openssl('req', '-new', '-x509', '-config', 'openssl.cnf', '-key', 'ca.key', '-subj', '/CN=tcpmod test CA',
      '-days', '30', '-extensions', 'v3_ca', '-out', 'ca.crt');
    key('intermediate.key');
    csr('intermediate.key', 'tcpmod test intermediate', 'intermediate.csr');
    sign('intermediate.csr', 'ca.crt', 'ca.key', 'v3_intermediate', 'intermediate.crt', '2');
    key('server.key');
    csr('server.key', 'localhost', 'server.csr');
    sign('server.csr', 'intermediate.crt', 'intermediate.key', 'v3_server', 'server.crt', '3');
    key('client.key');
    csr('client.key', 'tcpmod test client', 'client.csr');
    sign('client.csr', 'ca.crt', 'ca.key', 'v3_client', 'client.crt', '4');
    key('other.key');
    // `openssl x509` cannot backdate; `openssl ca` takes explicit dates.
    key('expired.key');
    csr('expired.key', 'localhost', 'expired.csr');
    openssl('ca', '-batch', '-config', 'openssl.cnf', '-cert', 'ca.crt', '-keyfile', 'ca.key', '-in', 'expired.csr',
      '-startdate', '20200101000000Z', '-enddate', '20200201000000Z', '-extensions', 'v3_server', '-notext',
      '-out', 'expired.crt');
    writeFileSync(p('server-chain.crt'), readFileSync(p('server.crt'), 'utf8') + readFileSync(p('intermediate.crt'), 'utf8'));
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    dir,
    caCert: p('ca.crt'),
    caKey: p('ca.key'),
    intermediateCert: p('intermediate.crt'),
    serverCert: p('server.crt'),
    serverChain: p('server-chain.crt'),
    serverKey: p('server.key'),
    otherKey: p('other.key'),
    expiredCert: p('expired.crt'),
    expiredKey: p('expired.key'),
    clientCert: p('client.crt'),
    clientKey: p('client.key'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * Another server certificate for localhost and 127.0.0.1, signed by the same
 * intermediate as `certs.serverCert` but with its own key, subject CN and serial
 * (hex, e.g. "77"): what a certificate rotation installs. Files go to certs.dir
 * as NAME.key, NAME.crt and NAME-chain.crt (leaf, then the intermediate).
 */
export function issueServerCert(certs: TestCerts, name: string, cn: string, serial: string): { cert: string; chain: string; key: string } {
  const p = (f: string) => join(certs.dir, f);
  const openssl = (...args: string[]) =>
    execFileSync('openssl', args, { cwd: certs.dir, timeout: 10_000, stdio: ['ignore', 'ignore', 'pipe'] });
  openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', p(`${name}.key`));
  openssl('req', '-new', '-config', 'openssl.cnf', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'intermediate.crt', '-CAkey', 'intermediate.key', '-set_serial', `0x${serial}`,
    '-days', '30', '-extfile', 'openssl.cnf', '-extensions', 'v3_server', '-out', `${name}.crt`);
  writeFileSync(p(`${name}-chain.crt`), readFileSync(p(`${name}.crt`), 'utf8') + readFileSync(certs.intermediateCert, 'utf8'));
  return { cert: p(`${name}.crt`), chain: p(`${name}-chain.crt`), key: p(`${name}.key`) };
}
