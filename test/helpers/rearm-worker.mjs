// A worker thread of test/rearm-race.test.ts: takes events of the shared
// epoll set and gives each connection straight back, as fast as it can, for
// `ms`; marks every connection it holds in `inUse` (shared), so a second
// holder at the same time is seen. Posts { claims, doubles, failures }.
import { createRequire } from 'node:module';
import { workerData, parentPort } from 'node:worker_threads';

const require = createRequire(import.meta.url);
const native = require('../../host/native/build/Release/tcpmod_native.node');
const { ep, holder, ms, events, inUse } = workerData;
const use = new Int32Array(inUse);
const ev = new Float64Array(5);
const cells = new Int32Array(2);
let claims = 0;
let doubles = 0;
let failures = 0;
const end = Date.now() + ms;
while (Date.now() < end) {
  const n = native.epollWait(ep, 20, ev, holder, cells, 0, 1, 1);
  if (n !== 1) continue;
  const fd = ev[0];
  claims++;
  if (Atomics.add(use, fd, 1) !== 0) doubles++;
  Atomics.sub(use, fd, 1);
  if (native.connRearm(ep, fd, ev[3], events) !== 0) failures++;
}
parentPort.postMessage({ claims, doubles, failures });
