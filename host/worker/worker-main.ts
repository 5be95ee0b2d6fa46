// A pool worker's thread: loads its copy of the module, then runs the event
// loop until the pool stops it or it retires for idleness. Everything about
// events and connections is the loop's (loop.ts).
import { parentPort, workerData } from 'node:worker_threads';
import pino from 'pino';
import { forwardingDestination } from '../logger.js';
import { LOG_LEVELS } from '../module/abi.js';
import { adoptModule, instantiate, type CompiledModule } from '../module/load.js';
import type { GenerationSpec } from './generations.js';
import { Counters, G, S, T } from '../pool/counters.js';
import { native } from '../sys.js';
import type { WorkerConfig } from './config.js';
import { EventLoop } from './loop.js';

const cfg = workerData as WorkerConfig;
const ctr = new Counters(cfg.sab);
const log = pino({ level: cfg.logLevel, base: { worker: cfg.slot } },
  cfg.forwardLogs ? forwardingDestination((m) => parentPort!.postMessage(m)) : pino.destination({ fd: 2, sync: true }));

let faultLogBudget = 10;
setInterval(() => (faultLogBudget = 10), 1000).unref();

// Every generation this worker starts with, compiled for this thread (WASI loaded if any needs it).
const adopted: [GenerationSpec, CompiledModule][] = [];
for (const spec of cfg.generations) {
  adopted.push([spec, await adoptModule(spec.file, spec.bytes, spec.module, { memoryCap: cfg.memoryCap, config: spec.config })]);
}

// Before any instance exists (tcpmod_init may use the store). A wait on Redis marks this worker
// blocked through its send cells, and errors are counted in its totals slot.
if (cfg.kv) {
  const at = (f: number) => ctr.slotCell(cfg.slot, f);
  native.kvBackend(cfg.kv, ctr.i32, at(S.SEND_SEQ), at(S.SEND_START), at(S.CALL_EXCLUDED), ctr.f64, ctr.totalsBase(cfg.slot) + T.KV_ERRORS);
}

const loop = new EventLoop(cfg, ctr, {
  instantiate: (compiled, hooks) => instantiate(compiled, hooks),
  faulted(fault, conn, module) {
    if (faultLogBudget-- > 0) log.error({ module, conn, kind: fault.kind }, `module fault: ${fault.message}`);
  },
  log(level, message, conn, module) {
    log[LOG_LEVELS[level] ?? 'info']({ module, conn }, message);
  },
  instances(gen, n) {
    parentPort!.postMessage({ type: 'instances', gen, n });
  },
  warn(message, detail) {
    log.warn(detail ?? {}, message);
  },
  /** The seed's rule: a worker that takes an event while every worker is busy asks for one more. */
  grow() {
    if (ctr.get(G.WORKERS) < ctr.get(G.MAX) && Atomics.compareExchange(ctr.i32, G.GROW, 0, 1) === 0) parentPort!.postMessage({ type: 'grow' });
  },
  notify(type, conn, reason) {
    parentPort!.postMessage({ type, conn, reason });
  },
});
for (const [spec, compiled] of adopted) loop.gens.add(spec, compiled);
// The current generation's instance now, as before reloads existed: a worker is ready to serve at once
// (unless tcpmod_init cannot run now, e.g. its store is down: then it is made at first use).
loop.gens.sync();
loop.prepare();
ctr.set(ctr.slotCell(cfg.slot, S.ALIVE), 1);
parentPort!.postMessage({ type: 'ready' });
const retired = loop.run();
ctr.set(ctr.slotCell(cfg.slot, S.ALIVE), 0);
parentPort!.postMessage({ type: 'leaving', retired });
process.exit(0);
