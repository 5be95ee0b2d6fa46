// A pool worker: makes its own module instance, then runs the event loop until
// the pool stops it or it retires for idleness. Accepting lives here too, since
// whichever worker wakes on the listener accepts.
import { parentPort, workerData } from 'node:worker_threads';
import { constants as os } from 'node:os';
import pino from 'pino';
import { CloseReason, LOG_LEVELS } from '../module/abi.js';
import type { ModuleFault } from '../module/errors.js';
import type { ModuleInstance } from '../module/instance.js';
import { adoptModule, instantiate, type CompiledModule } from '../module/load.js';
import { Counters, FAULT_KINDS, G, S, T } from '../pool/counters.js';
import { C, native } from '../sys.js';
import { TAG_LISTEN, type WorkerConfig } from './config.js';
import { CONN_EVENTS, EventLoop } from './loop.js';

const cfg = workerData as WorkerConfig;
const ctr = new Counters(cfg.sab);
const t = ctr.totalsBase(cfg.slot);
const log = pino({ level: cfg.logLevel, base: { worker: cfg.slot } }, pino.destination({ fd: 2, sync: true }));
const EMFILE = -os.errno.EMFILE;
const ENFILE = -os.errno.ENFILE;
const EAGAIN = -os.errno.EAGAIN;

let faultLogBudget = 10;
setInterval(() => (faultLogBudget = 10), 1000).unref();

const compiled: CompiledModule = await adoptModule(cfg.moduleFile, cfg.moduleBytes, cfg.module, {
  memoryCap: cfg.memoryCap, config: cfg.moduleConfig,
});

const hooks = {
  send(_conn: number, mem: ArrayBuffer, ptr: number, len: number): number {
    // A send may block up to the send timeout: that time is not the module's.
    loop.leaveCall();
    const ok = loop.send(loop.fd, mem, ptr, len);
    loop.enterCall(loop.fd, _conn);
    return ok ? 0 : -1;
  },
  log(level: number, message: string, conn: number): void {
    log[LOG_LEVELS[level] ?? 'info']({ module: compiled.name, conn }, message);
  },
};

function newInstance(): ModuleInstance {
  const inst = instantiate(compiled, hooks);
  ctr.f64[t + T.INSTANCES]++;
  return inst;
}

function renew(fault: ModuleFault, conn: number): ModuleInstance {
  ctr.f64[t + T.FAULTS + FAULT_KINDS.indexOf(fault.kind)]++;
  if (faultLogBudget-- > 0) log.error({ module: compiled.name, conn, kind: fault.kind }, `module fault: ${fault.message}`);
  return newInstance();
}

function accept(): void {
  const fds: number[] = [];
  for (;;) {
    const c = native.accept(cfg.listenFd);
    if (c >= 0) {
      fds.push(c);
      continue;
    }
    if (c === EMFILE || c === ENFILE) {
      log.warn('accept: out of file descriptors; backing off 10 ms');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    } else if (c !== EAGAIN && !ctr.get(G.STOP)) log.warn({ errno: c }, 'accept failed');
    break;
  }
  // Re-arm before running on_open, so a slow module never holds up accepting.
  native.epollCtl(cfg.epfd, C.EPOLL_CTL_MOD, cfg.listenFd, C.EPOLLIN | C.EPOLLONESHOT, TAG_LISTEN);
  for (const fd of fds) open(fd);
}

function open(fd: number): void {
  if (cfg.keepalive) {
    const [idle, intvl, cnt] = cfg.keepalive;
    native.setsockoptInt(fd, C.SOL_SOCKET, C.SO_KEEPALIVE, 1);
    native.setsockoptInt(fd, C.IPPROTO_TCP, C.TCP_KEEPIDLE, idle);
    native.setsockoptInt(fd, C.IPPROTO_TCP, C.TCP_KEEPINTVL, intvl);
    native.setsockoptInt(fd, C.IPPROTO_TCP, C.TCP_KEEPCNT, cnt);
  }
  native.setsockoptInt(fd, C.IPPROTO_TCP, C.TCP_NODELAY, 1);
  const conn = native.connOpen(fd, cfg.epfd, loop.inst.desc.stateSize);
  ctr.add(G.CONNECTIONS, 1);
  ctr.f64[t + T.ACCEPTED]++;
  if (ctr.get(G.WANT_EVENTS)) notify('connection', conn, 0);
  if (!loop.open(fd, conn)) return;
  if (native.epollCtl(cfg.epfd, C.EPOLL_CTL_ADD, fd, CONN_EVENTS, conn) < 0) loop.close(fd, conn, CloseReason.SOCKET_ERROR);
}

/** The seed's rule: a worker that takes an event while every worker is busy asks for one more. */
function grow(): void {
  if (ctr.get(G.WORKERS) < ctr.get(G.MAX) && Atomics.compareExchange(ctr.i32, G.GROW, 0, 1) === 0) parentPort!.postMessage({ type: 'grow' });
}

function notify(type: 'connection' | 'close', conn: number, reason: number): void {
  parentPort!.postMessage({ type, conn, reason });
}

const loop = new EventLoop(newInstance(), cfg, ctr, { renew, accept, grow, notify });
ctr.set(ctr.slotCell(cfg.slot, S.ALIVE), 1);
parentPort!.postMessage({ type: 'ready' });
const retired = loop.run();
ctr.set(ctr.slotCell(cfg.slot, S.ALIVE), 0);
parentPort!.postMessage({ type: 'leaving', retired });
process.exit(0);
