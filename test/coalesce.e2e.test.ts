// Pipelined replies over a real socket: the worker writes what one event
// answered with one sendto (the driver stages the replies of the progress loop,
// and the last write goes out with the save and re-arm), and a tcpmod.send in
// the middle keeps its place. Counted by strace on the server process.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './fixtures.js';
import { open, readBytes } from './net-client.js';
import { requireTool, serve, type ServedProcess } from './server-process.js';
import { sleep, until } from './wait.js';

const lines = (n: number) => Array.from({ length: n }, (_, i) => `line ${i}\n`).join('');

describe.each([1, 8])('sendto calls for pipelined replies (--batch %i)', (batch) => {
  let srv: ServedProcess;
  let dir: string;
  beforeAll(async () => {
    await requireTool('strace');
    srv = await serve(await fixture('oneline'), ['--threads', '2', '--batch', String(batch)]);
    dir = mkdtempSync(join(tmpdir(), 'tcpmod-coalesce-'));
  });
  afterAll(async () => {
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs `fn` with strace counting the server's sendto calls; returns how many there were. */
  async function sendtos(fn: () => Promise<void>): Promise<number> {
    const file = join(dir, `trace-${Date.now()}`);
    const st = spawn('strace', ['-f', '-qq', '-e', 'trace=sendto', '-o', file, '-p', String(srv.proc.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    st.stderr!.on('data', (d) => (err += d));
    try {
      // strace attaches to every thread before it traces: a probe connection's reply shows it is on.
      await until(async () => {
        const s = await open(srv.port);
        s.write('probe\n');
        await readBytes(s, 6);
        s.destroy();
        await sleep(50);
        return /sendto\(/.test(readFileSync(file, 'utf8'));
      }, 20_000, `strace to attach (${err})`, 100);
      const before = count(file);
      await fn();
      await sleep(100);
      return count(file) - before;
    } finally {
      st.kill('SIGINT');
      await new Promise((r) => st.once('exit', r));
    }
  }
  const count = (file: string) => (readFileSync(file, 'utf8').match(/sendto\(/g) ?? []).length;

  it('16 lines in one write, one line per module call: one sendto; a tcpmod.send between replies: three', async () => {
    const s = await open(srv.port);
    try {
      const n = await sendtos(async () => {
        const input = lines(16);
        s.write(input);
        expect((await readBytes(s, input.length)).toString()).toBe(input);
      });
      expect(n).toBe(1);
      const m = await sendtos(async () => {
        const input = 'a\nb\nSx\nc\nd\n';
        s.write(input);
        expect((await readBytes(s, input.length)).toString()).toBe(input);
      });
      expect(m).toBe(3);
    } finally {
      s.destroy();
    }
  }, 60_000);
});
