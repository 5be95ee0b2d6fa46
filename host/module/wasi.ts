// The four WASI calls a module may import (docs/abi.md §9), implemented by the
// host. @wasmer/wasi used to answer them; the sandbox fuzzer (issue 26) showed
// that its runtime, one per thread, can be damaged for good by a module's
// arguments even when every pointer is inside memory: random_get of 1 MiB
// panics and leaves the runtime unusable ("recursive use of an object"), an
// in-bounds fd_write of 1000 iovecs of 1 MiB each buffers 1 GiB inside it, and
// stdout that is not UTF-8 makes reading it back throw. Each call is a few
// lines here, checks every argument before it touches memory, answers with the
// error codes of the WASI spec, and costs a fraction of the runtime's (numbers
// in the README's design notes).
import { randomFillSync } from 'node:crypto';
import { ModuleFault } from './errors.js';

/** WASI errno values (wasi_snapshot_preview1) the four calls answer with. */
export const WasiErrno = { SUCCESS: 0, BADF: 8, FAULT: 21, INVAL: 28 } as const;

/** What the calls need of the instance they serve. */
export interface WasiHost {
  /** The module memory's current buffer (a call may follow a grow). */
  buffer(): ArrayBuffer;
  /** Bytes [ptr, ptr + len) of `mem` written to fd 1 or 2 (checked to be in memory). */
  write(fd: number, mem: ArrayBuffer, ptr: number, len: number): void;
}

/** Largest total of one fd_write: the u32 nwritten must hold it (POSIX writev: EINVAL past SSIZE_MAX). */
const WRITE_TOTAL_MAX = 0xffffffff;

/**
 * random_get's bytes come from a pool filled 4 KiB at a time: one
 * randomFillSync costs about 10 us whatever its size, which small requests
 * (a hash seed, an id) would otherwise pay each time. Larger ones fill directly.
 */
const POOL_SIZE = 4096;
const pool = new Uint8Array(POOL_SIZE);
let poolUsed = POOL_SIZE;

function randomInto(dst: Uint8Array): void {
  if (dst.length > POOL_SIZE) return void randomFillSync(dst);
  if (poolUsed + dst.length > POOL_SIZE) {
    randomFillSync(pool);
    poolUsed = 0;
  }
  dst.set(pool.subarray(poolUsed, poolUsed + dst.length));
  // Bytes given out are wiped, so that no two requests ever share them.
  pool.fill(0, poolUsed, poolUsed + dst.length);
  poolUsed += dst.length;
}

/** The wasi_snapshot_preview1 import object for one instance. */
export function wasiImports(host: WasiHost): Record<string, Function> {
  return {
    /** fd_write(fd, iovs, iovs_len, nwritten): only fds 1 and 2 exist. Nothing is written unless every iovec is valid. */
    fd_write: (fd: number, iovs: number, n: number, nwritten: number): number => {
      if (fd !== 1 && fd !== 2) return WasiErrno.BADF;
      const mem = host.buffer();
      const size = mem.byteLength;
      const at = iovs >>> 0;
      const count = n >>> 0;
      const out = nwritten >>> 0;
      if (at + count * 8 > size || out + 4 > size) return WasiErrno.FAULT;
      const v = new DataView(mem);
      let total = 0;
      for (let i = 0; i < count; i++) {
        const p = v.getUint32(at + i * 8, true);
        const l = v.getUint32(at + i * 8 + 4, true);
        if (p + l > size) return WasiErrno.FAULT;
        total += l;
      }
      if (total > WRITE_TOTAL_MAX) return WasiErrno.INVAL;
      for (let i = 0; i < count; i++) {
        const l = v.getUint32(at + i * 8 + 4, true);
        if (l) host.write(fd, mem, v.getUint32(at + i * 8, true), l);
      }
      v.setUint32(out, total, true);
      return WasiErrno.SUCCESS;
    },
    /** clock_time_get(id, precision, time): clocks 0 realtime, 1 monotonic, 2 process and 3 thread CPU time, in ns. */
    clock_time_get: (id: number, _precision: bigint, time: number): number => {
      const clock = id >>> 0;
      if (clock > 3) return WasiErrno.INVAL;
      const mem = host.buffer();
      const at = time >>> 0;
      if (at + 8 > mem.byteLength) return WasiErrno.FAULT;
      let ns: bigint;
      if (clock === 0) ns = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
      else if (clock === 1) ns = process.hrtime.bigint();
      else {
        // Node gives no per-thread CPU clock: both are the process's.
        const u = process.cpuUsage();
        ns = BigInt(u.user + u.system) * 1000n;
      }
      new DataView(mem).setBigUint64(at, ns, true);
      return WasiErrno.SUCCESS;
    },
    /** random_get(buf, len): len random bytes from the system's CSPRNG. */
    random_get: (buf: number, len: number): number => {
      const mem = host.buffer();
      const at = buf >>> 0;
      const n = len >>> 0;
      if (at + n > mem.byteLength) return WasiErrno.FAULT;
      if (n) randomInto(new Uint8Array(mem, at, n));
      return WasiErrno.SUCCESS;
    },
    proc_exit: (code: number): never => {
      throw new ModuleFault('exit', `module called proc_exit(${code})`);
    },
  };
}
