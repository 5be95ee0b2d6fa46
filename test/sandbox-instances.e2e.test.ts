// Issue 26, defect 1: every instance is checked like the first. A module whose
// tcpmod_io_desc describes a smaller state slot at the end of memory for one
// later instance (test/fixtures/iodesc-moves.wat, after a request sets a store
// key and traps) used to kill the worker with a native RangeError at the next
// event of any connection it held ("worker failed", well-behaved connections
// closed with it). Now that instance is refused as a load fault (counted as a
// fault of kind result), the worker goes on, and a well-behaved connection
// beside it is served throughout, with one worker or two.
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { fixture } from './fixtures.js';
import { metricsPort, scrape } from './metrics.js';
import { open, readBytes, untilClosed } from './net-client.js';
import { serve, type ServedProcess } from './server-process.js';
import { until } from './wait.js';

async function exchange(s: Socket, msg: string): Promise<string> {
  const got = readBytes(s, msg.length, 10_000);
  s.write(msg);
  return (await got).toString();
}

describe('a later instance whose IoDesc differs from the trial instance', () => {
  let srv: ServedProcess | null = null;
  afterEach(async () => {
    await srv?.stop();
    srv = null;
  });

  for (const threads of ['1', '2']) {
    it(`is a counted load fault, never a worker failure (--threads ${threads})`, async () => {
      srv = await serve(await fixture('iodesc-moves'), ['--threads', threads, '--metrics', '127.0.0.1:0']);
      const mport = await metricsPort(srv, 20_000);
      const good = await open(srv.port);
      good.on('error', () => undefined);
      expect(await exchange(good, 'hello-0')).toBe('hello-0');
      const rounds = 8;
      for (let i = 1; i <= rounds; i++) {
        const bad = await open(srv.port);
        const closed = untilClosed(bad);
        bad.write('m');
        expect((await closed).length).toBe(0);
        // The faulting worker closes the connection before it renews its instance (which takes the key);
        // until then any worker making an instance would take it, for whatever connection it serves.
        await until(async () => (await scrape(mport))['tcpmod_module_faults_total{kind="result"}'] >= i, 10_000, `refused instance ${i}`);
        // The well-behaved connection is served by whichever worker holds it, with the right bytes.
        const got = await exchange(good, `hello-${i}`).catch((e: Error) => `${e.message}; server log:\n${srv!.stderr()}`);
        expect(got).toBe(`hello-${i}`);
      }
      const m = await until(async () => {
        const x = await scrape(mport);
        return x['tcpmod_module_faults_total{kind="result"}'] >= rounds ? x : null;
      }, 10_000, 'every refused instance to be counted');
      expect(m['tcpmod_module_faults_total{kind="trap"}']).toBe(rounds);
      expect(m['tcpmod_module_faults_total{kind="result"}']).toBe(rounds);
      expect(m['tcpmod_connections_closed_total{reason="fault"}']).toBe(rounds);
      expect(srv.stderr()).not.toMatch(/worker failed|RangeError/);
      expect(srv.stderr()).toMatch(/IoDesc/);
      good.destroy();
    }, 60_000);
  }
});
