// TLS settings to a native context: reads the PEM files named by the options,
// checks them (each problem one line naming its option), warns about a
// certificate outside its validity, and creates the process-wide context that
// workers attach new connections to. Used at listen and on every reload.
import { readFileSync } from 'node:fs';
import { OptionError, type TlsOptions } from './options.js';
import { native } from './sys.js';

export interface TlsWarning { message: string; detail: object }

function read(option: 'tlsCert' | 'tlsKey' | 'tlsCa', file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new OptionError(option, `cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** Which option a native context error is about, from its first word. */
function optionOf(message: string): 'tlsCert' | 'tlsKey' | 'tlsCa' | 'alpn' | 'tlsClientAuth' | 'tlsMinVersion' {
  if (message.startsWith('key')) return 'tlsKey';
  if (message.startsWith('ca:')) return 'tlsCa';
  if (message.startsWith('alpn')) return 'alpn';
  if (message.startsWith('clientAuth')) return 'tlsClientAuth';
  if (message.startsWith('minVersion')) return 'tlsMinVersion';
  return 'tlsCert';
}

/**
 * Creates the context for `tls`; returns its id and the warnings to log (an
 * expired or not yet valid certificate still serves: the operator decides).
 * Throws an OptionError naming the option at fault.
 */
export function createTlsContext(tls: TlsOptions, now = Date.now()): { id: number; warnings: TlsWarning[] } {
  const cert = read('tlsCert', tls.cert);
  const key = read('tlsKey', tls.key);
  const ca = tls.ca === null ? undefined : read('tlsCa', tls.ca);
  const id = native.tlsContextCreate({ cert, key, ca, clientAuth: tls.clientAuth, minVersion: tls.minVersion, alpn: tls.alpn });
  if (typeof id === 'string') {
    const option = optionOf(id);
    const file = option === 'tlsCert' ? tls.cert : option === 'tlsKey' ? tls.key : option === 'tlsCa' ? tls.ca : null;
    throw new OptionError(option, `${file ? `${file}: ` : ''}${id.replace(/^(certificate|key|ca|alpn|clientAuth|minVersion): /, '')}`);
  }
  const warnings: TlsWarning[] = [];
  const info = native.tlsCertInfo(cert);
  if (typeof info !== 'string') {
    const detail = { file: tls.cert, subject: info.subject, notBefore: new Date(info.notBefore).toISOString(), notAfter: new Date(info.notAfter).toISOString() };
    if (info.notAfter < now) warnings.push({ message: 'the TLS certificate has expired; serving it anyway', detail });
    else if (info.notBefore > now) warnings.push({ message: 'the TLS certificate is not valid yet; serving it anyway', detail });
  }
  return { id, warnings };
}
