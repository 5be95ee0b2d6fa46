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
import { until } from './wait.js';

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

  /**
   * Runs `fn` with strace counting the server's sendto calls; returns how many there were. Each count
   * is bounded by two markers: a probe line echoed on a fresh connection before and after `fn`. strace
   * writes a sendto's line when the call enters, before its bytes can reach a client, so once the
   * closing marker's line is in the file every sendto of `fn` (whose replies the client has read) is
   * before it, however late strace's output comes on a loaded machine.
   */
  let markers = 0;
  async function sendtos(fn: () => Promise<void>): Promise<number> {
    const file = join(dir, `trace-${Date.now()}`);
    const st = spawn('strace', ['-f', '-qq', '-e', 'trace=sendto', '-o', file, '-p', String(srv.proc.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    st.stderr!.on('data', (d) => (err += d));
    /** Echoes a new marker line; resolves with its text once strace has written its sendto, or null. */
    const marker = async (waitMs: number): Promise<string | null> => {
      const text = `mark-${++markers}`;
      const s = await open(srv.port);
      s.write(`${text}\n`);
      await readBytes(s, text.length + 1);
      s.destroy();
      try {
        await until(() => readFileSync(file, 'utf8').includes(`"${text}\\n"`), waitMs, `strace's line for ${text}`, 20);
        return text;
      } catch {
        return null;
      }
    };
    try {
      // strace attaches to every thread before it traces: a marker's sendto in the file shows it is on.
      let first: string | null = null;
      await until(async () => (first = await marker(200)), 20_000, `strace to attach (${err})`, 0);
      await fn();
      const last = await marker(20_000);
      if (!last) throw new Error(`strace never wrote the closing marker's sendto (${err})`);
      const lines = readFileSync(file, 'utf8').split('\n');
      const from = lines.findIndex((l) => l.includes(`"${first}\\n"`));
      const to = lines.findIndex((l) => l.includes(`"${last}\\n"`));
      return lines.slice(from + 1, to).filter((l) => /sendto\(/.test(l)).length;
    } finally {
      st.kill('SIGINT');
      await new Promise((r) => st.once('exit', r));
    }
  }

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
