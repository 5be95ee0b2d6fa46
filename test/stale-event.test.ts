// An event epoll reported for a connection that closed before a worker claimed
// it must not be taken for the next connection on the same fd number (issue 20,
// defect 9): the event's data carries a tag of the connection's id, and the
// claim compares it. The window -- between epoll_wait's return and the claim --
// is held open by a test hook (testWaitPause) so the test closes the first
// connection and opens the second on its fd number inside it.
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { C, check, native } from '../host/sys.js';
import { until } from './wait.js';

const opened: number[] = [];
const track = (fd: number) => (opened.push(fd), fd);
afterEach(() => {
  native.testWaitPause(0);
  while (opened.length) native.close(opened.pop()!);
});

const EV = C.EPOLLIN | C.EPOLLET | C.EPOLLONESHOT;
const HOLDER = 7;

function acceptOne(l: number): number {
  let fd = -1;
  for (let t = 0; t < 1000 && fd < 0; t++) fd = native.accept(l);
  return check(fd, 'accept');
}

describe('stale epoll events', () => {
  it('an event for a closed connection is not claimed for the new one on its fd number', async () => {
    const ep = track(check(native.epollCreate(), 'epoll_create1'));
    const l = track(check(native.listenTcp('127.0.0.1', 0, 64), 'listen'));
    const port = (native.sockName(l) as { port: number }).port;
    // A: readable, armed in the set, nobody holds it.
    const clientA = track(check(native.connectTcp('127.0.0.1', port), 'connect'));
    const fdA = acceptOne(l);
    native.send(clientA, Buffer.from('x'), 0, 1, 1000);
    const idA = native.connOpen(fdA, ep, 0, 99);
    native.connOpened(fdA, idA);
    expect(native.connAdd(ep, fdA, idA, EV)).toBe(0);
    expect(native.connRearm(ep, fdA, idA, EV)).toBe(0);
    // B's client connects first, so that its own fd is not the one A frees.
    track(check(native.connectTcp('127.0.0.1', port), 'connect'));

    const pausesBefore = native.testWaitPause(400_000);
    const got = new Promise<{ rc: number; fd: number; kind: number; id: number }>((resolve, reject) => {
      const w = new Worker(new URL('./helpers/stale-worker.mjs', import.meta.url), { workerData: { ep, holder: HOLDER, timeoutMs: 1500 } });
      w.once('message', resolve);
      w.once('error', reject);
    });
    // The worker has A's event and sleeps before claiming it: close A, and open B on A's fd number.
    await until(() => native.testWaitPause(-1) > pausesBefore, 5000, 'the worker to take the event and pause');
    native.testWaitPause(0);
    expect(native.connClose(fdA, idA)).toBe(0);
    const fdB = track(acceptOne(l));
    expect(fdB, 'the new connection reuses the closed one\'s fd number').toBe(fdA);
    const idB = native.connOpen(fdB, ep, 0, 99);
    native.connOpened(fdB, idB);
    expect(native.connAdd(ep, fdB, idB, EV)).toBe(0);
    expect(native.connRearm(ep, fdB, idB, EV)).toBe(0); // B has nothing to report: its client sent nothing

    const r = await got;
    // Without the tag the worker claims B for A's event: a wake-up B never had, and B held by the worker.
    expect(r.rc === 1 && r.id === idB, `worker took ${JSON.stringify(r)} (B is ${idB})`).toBe(false);
    expect(native.connHeld(ep, HOLDER)).toEqual([]);
    expect(native.connClose(fdB, idB)).toBe(0);
    opened.splice(opened.indexOf(fdB), 1);
  }, 20_000);
});
