// The typed face of the native shim: the only TypeScript that loads it. Hot
// paths use `native` directly and test the sign of results; everything else
// goes through `check`, which turns -errno into a Node-style error.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import type { NativeBinding } from './native/native.js';

const require = createRequire(import.meta.url);
const packageRoot = fileURLToPath(new URL('..', import.meta.url));

/**
 * The addon: the one compiled here (host/native/build/Release: a checkout, or an install where the
 * prebuilt did not fit or --build-from-source was asked for) when there is one, else the prebuilt the
 * package ships for this platform (scripts/build-native.mjs checked at install that it loads).
 */
export const nativePath = [
  join(packageRoot, 'host', 'native', 'build', 'Release', 'tcpmod_native.node'),
  join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`, 'tcpmod_native.node'),
].find((p) => existsSync(p));
if (!nativePath) throw new Error(`tcpmod: no native shim for ${process.platform}-${process.arch} in ${packageRoot}: run \`npm rebuild tcpmod\` to compile it`);
// Copied by spread into objects of V8's fast properties: the addon's own exports object (153 properties) is
// in dictionary mode, so every `native.x` on the hot path was a LoadIC call (~90 instructions; 6 per echo
// request, bench/results/ceiling-profile.md), where a load from a fast object is inlined.
export const native: NativeBinding = { ...require(nativePath) };
export const C = { ...native.constants };

/** A failed syscall, shaped like Node's own system errors. */
export class SysError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;
  constructor(rc: number, syscall: string, detail?: string) {
    const code = errnoName(rc);
    super(`${syscall} ${code}${detail ? ` ${detail}` : ''}`);
    this.name = 'SysError';
    this.code = code;
    this.errno = rc;
    this.syscall = syscall;
  }
}

export function errnoName(rc: number): string {
  try {
    return getSystemErrorName(rc);
  } catch {
    return `E${-rc}`;
  }
}

/** Returns rc when it is not negative; otherwise throws a SysError for the syscall. */
export function check(rc: number, syscall: string, detail?: string): number {
  if (rc < 0) throw new SysError(rc, syscall, detail);
  return rc;
}

export const EAGAIN = -osConstants.errno.EAGAIN;
export const ETIMEDOUT = -osConstants.errno.ETIMEDOUT;
export const EMFILE = -osConstants.errno.EMFILE;
export const ENFILE = -osConstants.errno.ENFILE;
export const EINVAL = -osConstants.errno.EINVAL;
export const EPROTO = -osConstants.errno.EPROTO;
export const ENOBUFS = -osConstants.errno.ENOBUFS;
export const ENOTCONN = -osConstants.errno.ENOTCONN;
export const ECANCELED = -osConstants.errno.ECANCELED;
