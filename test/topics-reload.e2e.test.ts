// Live reload with subscriptions (docs/abi.md §11, §15): a subscribed
// connection that moves to a new module generation keeps its subscriptions and
// its mailbox, and the new generation's tcpmod_on_message receives what is
// published after the swap; one whose new module has no tcpmod_on_message stays
// pinned to the old generation (the compatibility verdict) and still receives.
// The chat room of test/fixtures/chat.wat, in variants.
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type TcpmodServer } from '../dist/index.js';
import { FIXTURES, scratchFile, watToWasm } from './fixtures.js';
import { lines, open } from './net-client.js';
import { until } from './wait.js';

const servers: TcpmodServer[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  while (servers.length) await servers.pop()!.close({ drainTimeout: 0 });
});

let seq = 0;
/**
 * chat.wat, movable (tcpmod_state_version 1), its delivered lines prefixed by `tag` so the
 * generation that delivered them shows; without `onMessage`, no tcpmod_on_message (and no
 * subscribe: a module importing subscribe must export it).
 */
async function chat(tag: string, onMessage = true): Promise<string> {
  let text = readFileSync(join(FIXTURES, 'chat.wat'), 'utf8');
  const swap = (from: string, to: string) => {
    if (!text.includes(from)) throw new Error(`chat.wat has no ${from}`);
    text = text.replace(from, to);
  };
  swap('(func (export "tcpmod_abi_v1"))', '(func (export "tcpmod_abi_v1"))\n  (func (export "tcpmod_state_version") (result i32) (i32.const 1))');
  // The message (after the sender's 4 bytes) is copied to the output at 5121 instead of 5120, after the tag.
  swap('(local.set $out (i32.sub (local.get $mlen) (i32.const 4)))', `(local.set $out (i32.sub (local.get $mlen) (i32.const 3)))\n        (i32.store8 (i32.const 5120) (i32.const ${tag.charCodeAt(0)}))`);
  swap('(memory.copy (i32.const 5120) (i32.add (local.get $at) (i32.const 4)) (local.get $out))', '(memory.copy (i32.const 5121) (i32.add (local.get $at) (i32.const 4)) (i32.sub (local.get $out) (i32.const 1)))');
  if (!onMessage) {
    text = text.replace(/\n  \(func \(export "tcpmod_on_message"\)[\s\S]*?\n\n/, '\n\n');
    swap('(import "tcpmod" "subscribe" (func $subscribe (param i32 i32 i32 i32) (result i32)))', '');
    swap('(drop (call $subscribe (local.get $conn) (i32.const 0) (i32.const 200) (i32.const 4)))', '');
    if (text.includes('(export "tcpmod_on_message")')) throw new Error('tcpmod_on_message left in the variant');
  }
  return scratchFile(`chat-${tag}-${seq++}.wasm`, await watToWasm('chat.wat', text));
}


async function start(module: string): Promise<{ srv: TcpmodServer; port: number }> {
  const srv = createServer({ logLevel: 'silent', port: 0, module, threads: 2 });
  servers.push(srv);
  const { port } = await srv.listen();
  return { srv, port };
}

/** A chat client, subscribed once "/n" has been answered (its on_open ran before). */
async function member(port: number): Promise<{ s: Socket; got: string[] }> {
  const s = await open(port);
  sockets.push(s);
  const got = lines(s);
  s.write('/n\n');
  await until(() => got.length >= 1, 10_000, 'the /n answer');
  got.splice(0);
  return { s, got };
}

describe('reload while subscribed', () => {
  it('a subscriber that moves to the new generation keeps its subscription: the new on_message delivers what is published after', async () => {
    const { srv, port } = await start(await chat('A'));
    const [x, y] = [await member(port), await member(port)];
    x.s.write('before\n');
    await until(() => y.got.length >= 1, 10_000, 'the line before the reload');
    expect(y.got).toEqual(['Abefore']);
    expect((await srv.reload({ module: await chat('B') })).result).toBe('applied');
    // x publishes (its data moves it to generation 2); y's delivery moves y: both keep "room".
    x.s.write('after\n');
    await until(() => y.got.length >= 2, 10_000, `the line after the reload (${JSON.stringify(y.got)})`);
    y.s.write('back\n');
    await until(() => x.got.length >= 1, 10_000, `y's line to x (${JSON.stringify(x.got)})`);
    expect(y.got).toEqual(['Abefore', 'Bafter']);
    expect(x.got).toEqual(['Bback']);
    // A client of the new generation is in the same room as the moved ones.
    const z = await member(port);
    z.s.write('new\n');
    await until(() => x.got.length >= 2 && y.got.length >= 3, 10_000, 'the new client\'s line');
    expect([x.got[1], y.got[2]]).toEqual(['Bnew', 'Bnew']);
    const st = srv.stats();
    expect(st.generations).toEqual({ 2: 3 });
    expect(st.topics.subscriptions).toBe(3);
  }, 60_000);

  it('a new module without tcpmod_on_message pins the subscribers to the old generation, where they keep receiving', async () => {
    const { srv, port } = await start(await chat('A'));
    const [x, y] = [await member(port), await member(port)];
    expect((await srv.reload({ module: await chat('B', false) })).result).toBe('applied');
    x.s.write('pinned\n');
    await until(() => y.got.length >= 1, 10_000, 'the line after the reload');
    expect(y.got).toEqual(['Apinned']);
    expect(srv.stats().generations).toEqual({ 1: 2 });
    expect(srv.stats().topics.subscriptions).toBe(2);
  }, 60_000);
});
