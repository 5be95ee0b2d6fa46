// A worker thread of test/stale-event.test.ts: one epollWait on the shared set
// (the test has set the wait pause, so the claim comes after the test has
// closed the connection the event was for and reused its fd). Posts what it got.
import { createRequire } from 'node:module';
import { workerData, parentPort } from 'node:worker_threads';

const require = createRequire(import.meta.url);
const native = require('../../host/native/build/Release/tcpmod_native.node');
const { ep, holder, timeoutMs } = workerData;
const ev = new Float64Array(5);
const cells = new Int32Array(2);
const rc = native.epollWait(ep, timeoutMs, ev, holder, cells, 0, 1, 1);
parentPort.postMessage({ rc, fd: ev[0], kind: ev[1], id: ev[3] });
