// CA certificates for the host's own TLS clients (the Redis store and the bus
// over rediss://, upstreams with --upstream-tls): read and checked on the main
// thread, once, so that a bad file is one line naming its option.
import { readFileSync } from 'node:fs';
import { createSecureContext, rootCertificates } from 'node:tls';
import { OptionError, type ResolvedOptions } from '../options.js';

/** The PEM CAs of option `name`'s file, or Node's bundled roots when no file was given. */
export function caPem(name: string, file: string | null): string {
  if (file === null) return rootCertificates.join('\n');
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (e) {
    throw new OptionError(name, `could not be read: ${(e as Error).message}`);
  }
  try {
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate found');
    createSecureContext({ ca: pem });
  } catch (e) {
    throw new OptionError(name, `is not a PEM CA certificate file (${(e as Error).message}): ${file}`);
  }
  return pem;
}

/** --upstream as upstreamsConfigure takes it: each --upstream-tls name with the CAs and the name its certificates must have. */
export function nativeUpstreams(o: ResolvedOptions): { name: string; addresses: { host: string; port: number }[]; tls?: { ca: string; servername?: string } }[] {
  const tls = o.upstreams.some((u) => u.tls) ? caPem('upstreamCa', o.upstreamCa) : '';
  return o.upstreams.map((u) => ({
    name: u.name,
    addresses: u.addresses,
    ...(u.tls ? { tls: { ca: tls, ...(u.tls.servername !== null ? { servername: u.tls.servername } : {}) } } : {}),
  }));
}
