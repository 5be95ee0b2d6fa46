// The thread a trial instance runs in (host/startup.ts): a module's start-up
// (_initialize, its start function, tcpmod_io_desc, tcpmod_init) and
// tcpmod_state_version, off the thread that starts it, so that a module that
// loops there can be stopped (the thread is terminated) while the main thread
// goes on serving metrics, signals and the watchdog. Every outcome is one
// message; log lines are posted as they come, so that those a module wrote
// before it hung are not lost. A thread whose trial ended in time takes the
// next trial it is sent (thread start-up costs ~100 ms; a trial of a small
// module ~1 ms).
import { parentPort } from 'node:worker_threads';
import { ModuleConfigRefused, ModuleLoadError } from '../module/errors.js';
import { adoptModule, probeModule } from '../module/load.js';
import { PAGE } from '../module/abi.js';
import type { TrialData, TrialMessage } from '../startup.js';

const port = parentPort!;
const post = (m: TrialMessage) => port.postMessage(m);

/** One trial; the thread takes the next one when this one is over (the main thread reuses it). */
async function trial(d: TrialData): Promise<void> {
  try {
    const compiled = await adoptModule(d.file, d.bytes, d.module, { memoryCap: d.memoryCap, config: d.config });
    post({ type: 'start' });
    const inst = probeModule(compiled, { send: () => -1, log: (level, message) => post({ type: 'log', level, message }) });
    try {
      let stateVersion: number | null;
      try {
        stateVersion = inst.stateVersion();
      } catch (e) {
        throw new ModuleLoadError(d.file, [`tcpmod_state_version failed: ${(e as Error).message}`]);
      }
      post({ type: 'done', result: { stateVersion, desc: { ...inst.desc }, pagesAfterStartup: inst.buffer.byteLength / PAGE } });
    } finally {
      inst.dispose();
    }
  } catch (e) {
    if (e instanceof ModuleLoadError) post({ type: 'failed', load: e.problems });
    else if (e instanceof ModuleConfigRefused) post({ type: 'failed', status: e.status });
    else post({ type: 'failed', message: (e as Error)?.stack ?? String(e) });
  }
}

port.on('message', (d: TrialData) => void trial(d));
