// Timed start-up (issue 26, item 2): _initialize, the start function,
// tcpmod_io_desc and tcpmod_init run under --startup-timeout wherever they run.
// At serve/inspect the trial instance runs in a thread of its own: a module
// that loops there is refused with one line naming the timeout, and a signal
// stops the command meanwhile. On reload the trial runs off the main thread
// too: the reload is refused while /metrics keeps answering. In a worker that
// makes a fresh instance after a fault, a hang is stopped by the pool's
// watchdog like a callback: the worker is replaced, the fault counted.
import { readFileSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { createConnection } from 'node:net';
import { describe, expect, it } from 'vitest';
import { fixture, scratchFile } from './fixtures.js';
import { metricsPort, scrape } from './metrics.js';
import { run, serve } from './server-process.js';
import { sleep, until } from './wait.js';

/** Sends `msg` on a new connection; resolves with what came back before the server closed it or `ms` passed. */
function exchange(port: number, msg: string, ms = 15_000): Promise<{ reply: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = createConnection(port, '127.0.0.1');
    let reply = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ reply, closed: false });
    }, ms);
    s.on('data', (d) => {
      reply += d;
      if (reply.length >= msg.length) {
        clearTimeout(timer);
        s.destroy();
        resolve({ reply, closed: false });
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ reply, closed: true });
    });
    s.write(msg);
  });
}

/** `tcpmod <args>` as a child; resolves with its exit code, stderr and how long it ran (ms), after `signal` at `signalAfter` if given. */
function tcpmod(args: string[], opts: { signal?: NodeJS.Signals; when?: RegExp; killAfterMs?: number } = {}): Promise<{ code: number | null; stderr: string; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const p = spawn(process.execPath, ['bin/tcpmod.js', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let signalled = 0;
    p.stderr.on('data', (d) => {
      stderr += d;
      if (opts.signal && opts.when?.test(stderr) && !signalled) {
        signalled = Date.now();
        p.kill(opts.signal);
      }
    });
    const killer = setTimeout(() => p.kill('SIGKILL'), opts.killAfterMs ?? 30_000);
    p.once('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stderr, ms: Date.now() - (signalled || started) });
    });
  });
}

describe('start-up at serve and inspect', () => {
  it('serve of a module whose tcpmod_init loops exits 1 with one line naming --startup-timeout, within the timeout', async () => {
    const r = await tcpmod(['serve', await fixture('startup-loop'), '--port', '0', '--log-level', 'warn', '--startup-timeout', '1s']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^tcpmod: \S+startup-loop\.wasm: start-up .*did not finish within --startup-timeout \(1000 ms\): module refused\n$/);
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
  });

  it('inspect (text and --json) refuses it the same way', async () => {
    const file = await fixture('startup-loop');
    const r = await tcpmod(['inspect', file, '--startup-timeout', '500ms']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/did not finish within --startup-timeout \(500 ms\)/);
    const j = await run(process.execPath, ['bin/tcpmod.js', 'inspect', '--json', file, '--startup-timeout', '500ms'], { timeoutMs: 30_000 });
    expect(j.code).toBe(1);
    expect(JSON.parse(j.stdout)).toMatchObject({ ok: false, code: 'TCPMOD_MODULE_INVALID', problems: [expect.stringMatching(/start-up timeout \(startupTimeout 500 ms\)/)] });
  });

  it('serve exits on SIGTERM (and SIGINT) while the start-up loops', async () => {
    const file = await fixture('startup-loop');
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      // The module's log line says the loop has begun; the timeout is far away.
      const r = await tcpmod(['serve', file, '--port', '0', '--startup-timeout', '1h'], { signal, when: /init: looping/, killAfterMs: 20_000 });
      expect(r.code, `${signal}: ${r.stderr}`).not.toBeNull(); // null: it ignored the signal and was killed
      expect(r.ms).toBeLessThan(15_000);
    }
  });
});

describe('start-up on reload', () => {
  it('a SIGHUP reload to a module whose start-up loops is refused, naming the timeout; /metrics answers throughout', async () => {
    const file = scratchFile('reload-to-loop.wasm', readFileSync(await fixture('init-hang')));
    const p = await serve(file, ['--threads', '1', '--startup-timeout', '2s', '--metrics', '127.0.0.1:0']);
    try {
      const mport = await metricsPort(p, 10_000);
      expect((await exchange(p.port, 'hi')).reply).toBe('hi');
      writeFileSync(file, readFileSync(await fixture('startup-loop')));
      p.proc.kill('SIGHUP');
      // While the trial loops (2 s), the main thread answers scrapes, each within 1 s.
      let scrapes = 0;
      while (!/reload refused/.test(p.stderr())) {
        const m = await scrape(mport, 1000);
        expect(m['tcpmod_module_generation']).toBe(1);
        scrapes++;
        if (scrapes > 200) throw new Error('no refusal');
        await sleep(100);
      }
      expect(scrapes).toBeGreaterThan(3);
      expect(p.stderr()).toMatch(/reload refused: start-up .*start-up timeout \(startupTimeout 2000 ms\)/);
      const m = await scrape(mport);
      expect(m['tcpmod_reloads_total{result="refused"}']).toBe(1);
      expect((await exchange(p.port, 'still')).reply).toBe('still');
    } finally {
      expect(await p.stop()).toBe(0);
    }
  });
});

describe('start-up in a worker, after a fault', () => {
  it('a fresh instance whose tcpmod_init hangs: the watchdog replaces the worker, the fault is counted, the server keeps serving', async () => {
    const p = await serve(await fixture('init-hang'), ['--threads', '1', '--startup-timeout', '500ms', '--metrics', '127.0.0.1:0']);
    try {
      const mport = await metricsPort(p, 10_000);
      for (let round = 1; round <= 3; round++) {
        // The trap sets the key: the worker's next instance loops in tcpmod_init.
        expect(await exchange(p.port, '!')).toMatchObject({ closed: true, reply: '' });
        // One worker only: nothing is served until the watchdog has replaced it.
        const r = await exchange(p.port, `hello ${round}`);
        expect(r.reply).toBe(`hello ${round}`);
        const m = await scrape(mport);
        expect(m['tcpmod_module_faults_total{kind="trap"}']).toBe(round);
        expect(m['tcpmod_module_faults_total{kind="timeout"}']).toBe(round);
      }
      expect(p.stderr()).toMatch(/start-up timeout; terminating its worker/);
    } finally {
      expect(await p.stop()).toBe(0);
    }
  });
});
