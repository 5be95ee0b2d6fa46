// createServer inside an application: its events carry close reasons by name and
// are typed so (checked by a strict tsc over test/types/server-events.ts), and the
// application chooses who hears the server's log: its own pino logger, a level,
// or silence; by default the API logs warnings and errors only, while the CLI
// keeps its JSON lines at info.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createServer, OptionError } from '../dist/index.js';
import { fixture, ROOT } from './fixtures.js';
import { open, readBytes } from './net-client.js';
import { serve } from './server-process.js';

/** Runs `node -e code` (an ES module) in the repository; resolves with its output once it exits. */
function node(code: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', code], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.once('error', reject);
    p.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A server started and stopped from a child process with these createServer options (source text). */
const lifecycle = (options: string) => `
  import { createServer } from './dist/index.js';
  const server = createServer({ module: 'build/echo.wasm', host: '127.0.0.1', port: 0, threads: 1${options} });
  await server.listen();
  await server.close();
  console.log('level=' + server.options.logLevel);
`;

describe('events', () => {
  it("'close' gives the connection id and the reason's name, the names stats() counts by", async () => {
    const server = createServer({ module: 'build/echo.wasm', host: '127.0.0.1', port: 0, threads: 1, logger: false });
    const { port } = await server.listen();
    try {
      const seen: [number, string][] = [];
      const opened: number[] = [];
      server.on('connection', (conn) => opened.push(conn));
      server.on('close', (conn, reason) => seen.push([conn, reason]));
      const c = await open(port);
      const back = readBytes(c, 2);
      c.write('hi');
      await back;
      c.end();
      for (let i = 0; i < 250 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(seen).toEqual([[opened[0], 'peer']]);
      expect(server.stats().connectionsClosed.peer).toBe(1);
    } finally {
      await server.close();
    }
  });

  it('are typed with the reason names: an application compiles under tsc --strict, and misuse does not', async () => {
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const args = ['--strict', '--noEmit', '--target', 'ES2022', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--types', 'node', '--skipLibCheck', 'false'];
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn(process.execPath, [tsc, ...args, 'test/types/server-events.ts'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (out += d));
      p.once('close', (code) => resolve({ code, out }));
    });
    expect(r.out).toBe('');
    expect(r.code).toBe(0);
  }, 120_000);
});

describe('logging', () => {
  it('by default the API writes nothing at info (only warnings and errors would show)', async () => {
    const r = await node(lifecycle(''));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('level=warn\n');
    expect(r.stderr).toBe('');
  });

  it('a level gives the built-in JSON lines on stderr at that level', async () => {
    const r = await node(lifecycle(", logger: 'info'"));
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { msg: string; level: number });
    expect(lines.map((l) => l.msg)).toEqual(['listening', 'stopped']);
    expect(r.stdout).toBe('level=info\n');
  });

  it('false is silence, and so is logLevel silent', async () => {
    for (const opt of [', logger: false', ", logLevel: 'silent'"]) {
      const r = await node(lifecycle(opt));
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('level=silent\n');
    }
  });

  it("the application's own pino logger gets the lines, and worker threads log at its level", async () => {
    const lines: { msg: string; level: number }[] = [];
    const sink = new Writable({ write(chunk, _enc, done) { lines.push(JSON.parse(String(chunk))); done(); } });
    const logger = pino({ level: 'debug' }, sink);
    const server = createServer({ module: 'build/echo.wasm', host: '127.0.0.1', port: 0, threads: 1, logger });
    expect(server.options.logLevel).toBe('debug');
    await server.listen();
    await server.close();
    expect(lines.map((l) => l.msg)).toEqual(expect.arrayContaining(['listening', 'stopped']));
    const trace = createServer({ module: 'build/echo.wasm', logger: pino({ level: 'trace' }, sink) });
    expect(trace.options.logLevel).toBe('debug'); // pino's trace is finer than any worker level: the nearest
  });

  it("worker threads' records (module logs, module faults) reach the application's logger, not stderr, rate limits kept", async () => {
    // In a child, so that anything a worker thread writes on stderr itself is seen. 30 connections each
    // make the module log through WASI stdio ("hello", "oops"), then trap: 30 faults within a few seconds.
    const r = await node(`
      import { Writable } from 'node:stream';
      import { connect } from 'node:net';
      import pino from 'pino';
      import { createServer } from './dist/index.js';
      const records = [];
      const sink = new Writable({ write(chunk, _enc, done) { records.push(JSON.parse(String(chunk))); done(); } });
      const server = createServer({ module: ${JSON.stringify(await fixture('faulty'))}, host: '127.0.0.1', port: 0, threads: 1,
        logger: pino({ level: 'info' }, sink) });
      const { port } = await server.listen();
      const t0 = Date.now();
      for (let i = 0; i < 30; i++) {
        await new Promise((resolve) => {
          const s = connect({ port, host: '127.0.0.1' }, () => s.write('ht'));
          s.on('data', () => undefined);
          s.on('error', () => undefined);
          s.on('close', resolve);
        });
      }
      const deadline = Date.now() + 10_000;
      while (server.stats().moduleFaults.trap < 30 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const seconds = (Date.now() - t0) / 1000;
      await server.close();
      console.log(JSON.stringify({ seconds, faults: server.stats().moduleFaults.trap, records }));
    `);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe(''); // no worker thread wrote its own lines
    const out = JSON.parse(r.stdout) as { seconds: number; faults: number; records: Record<string, unknown>[] };
    expect(out.faults).toBe(30);
    const faults = out.records.filter((l) => String(l.msg).startsWith('module fault'));
    expect(faults.length).toBeGreaterThan(0);
    expect(faults[0]).toMatchObject({ level: 50, worker: 0, kind: 'trap', module: expect.stringContaining('faulty') });
    expect(typeof faults[0].conn).toBe('number');
    // The worker's limit (10 fault lines a second) still holds on the way through.
    expect(faults.length).toBeLessThanOrEqual(10 * (Math.ceil(out.seconds) + 1));
    const hello = out.records.filter((l) => l.msg === 'hello');
    expect(hello.length).toBeGreaterThan(0);
    expect(hello[0]).toMatchObject({ level: 30, worker: 0, module: expect.stringContaining('faulty') });
    expect(out.records.map((l) => l.msg)).toEqual(expect.arrayContaining(['listening', 'oops', 'stopped']));
  });

  it('refuses a logger it cannot use, naming the option', () => {
    expect(() => createServer({ module: 'build/echo.wasm', logger: {} as pino.Logger })).toThrow(OptionError);
    expect(() => createServer({ module: 'build/echo.wasm', logger: {} as pino.Logger })).toThrow(
      'logger must be a pino logger, a level (debug, info, warn, error, silent) or false',
    );
    expect(() => createServer({ module: 'build/echo.wasm', logger: 'loud' as 'info' })).toThrow('logger must be one of debug, info, warn, error, silent; got "loud"');
    expect(() => createServer({ module: 'build/echo.wasm', logger: 'info', logLevel: 'warn' })).toThrow(
      'logger cannot be combined with logLevel (give the level as logger, or set it on your logger)',
    );
  });

  it('the CLI keeps its JSON lines at info', async () => {
    const s = await serve('build/echo.wasm', ['--log-level', 'info']);
    const code = await s.stop();
    expect(code).toBe(0);
    expect(s.stderr()).toMatch(/"msg":"listening"/);
  });
});
