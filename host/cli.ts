// The `tcpmod` command: `serve` runs a module, `inspect` checks one. Option
// errors and module errors print one line each (no stack) and exit 1.
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { ModuleConfigRefused, ModuleLoadError } from './module/errors.js';
import { inspectModule } from './inspect.js';
import { OptionError, type ServerOptions } from './options.js';
import { createServer } from './server.js';
import { parseSize } from './size.js';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('tcpmod')
  .description('A multi-threaded TCP server whose protocol logic runs in sandboxed WebAssembly modules.')
  .version(version)
  .exitOverride()
  .configureOutput({ outputError: (s, write) => write(s) });

const durationHelp = '(ms, or with a unit: 500ms, 2s, 1m)';

program
  .command('serve')
  .description('serve a protocol module (.wasm built against tcpmod ABI v1)')
  .argument('<module>', 'path of the module, e.g. build/echo.wasm')
  .option('--host <host>', 'address to listen on (IPv4 or IPv6)', '127.0.0.1')
  .option('--port <port>', 'TCP port; 0 lets the kernel choose', '7000')
  .option('--threads <n>', 'fixed number of worker threads (sets min and max)')
  .option('--min-threads <n>', 'workers kept even when idle (default: CPUs)')
  .option('--max-threads <n>', 'most workers the pool grows to (default: 4 x min, at most 64)')
  .option('--idle-timeout <duration>', `an idle worker above min leaves after this ${durationHelp}`, '20s')
  .option('--send-timeout <duration>', `a send blocked this long closes its connection ${durationHelp}`, '20s')
  .option('--handler-timeout <duration>', `a module callback running longer is stopped ${durationHelp}`, '1s')
  .option('--drain-timeout <duration>', `on SIGINT/SIGTERM, open connections get this long ${durationHelp}`, '5s')
  .option('--keepalive <spec>', 'TCP keepalive IDLE,INTERVAL,COUNT in seconds/probes, or "off"', '1800,5,3')
  .option('--backlog <n>', 'listen backlog (the kernel caps it at net.core.somaxconn)', '4096')
  .option('--module-memory <size>', 'largest memory a module may have (bytes, or 16MiB, 512KiB)', '32MiB')
  .option('--config <string|@file>', "bytes given to the module's tcpmod_init (@path reads a file)")
  .option('--kv-max-bytes <size>', 'byte budget of the shared key-value store', '64MiB')
  .option('--metrics <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics')
  .addOption(new Option('--log-level <level>', 'log level on stderr').choices(['debug', 'info', 'warn', 'error', 'silent']).default('info'))
  .action(serve);

program
  .command('inspect')
  .description('check a module against ABI v1 and describe it; exit 1 listing every problem')
  .argument('<module>', 'path of the module')
  .option('--module-memory <size>', 'memory cap to check against', '32MiB')
  .option('--config <string|@file>', "bytes to try the module's tcpmod_init with")
  .action(async (file: string, o: { moduleMemory: string; config?: string }) => {
    try {
      const memoryCap = size('--module-memory', o.moduleMemory);
      if (memoryCap < 65536) throw new OptionError('--module-memory', `must be at least 65536 bytes (one page), got ${JSON.stringify(o.moduleMemory)}`);
      const text = await inspectModule(file, { memoryCap, config: config(o.config) });
      process.stdout.write(text);
    } catch (e) {
      fail(e);
    }
  });

function size(option: string, v: string): number {
  const n = parseSize(v);
  if (!Number.isFinite(n) || n < 0) throw new OptionError(option, `must be a size in bytes (e.g. 65536, 512KiB, 32MiB), got ${JSON.stringify(v)}`);
  return n;
}

function config(v: string | undefined): Uint8Array | undefined {
  if (v === undefined) return undefined;
  if (!v.startsWith('@')) return new TextEncoder().encode(v);
  try {
    return new Uint8Array(readFileSync(v.slice(1)));
  } catch (e) {
    throw new OptionError('--config', `cannot read ${v.slice(1)}: ${(e as NodeJS.ErrnoException).code}`);
  }
}

const CLI_NAMES: Record<string, string> = {
  minThreads: '--min-threads', maxThreads: '--max-threads', workerIdleTimeout: '--idle-timeout', sendTimeout: '--send-timeout',
  handlerTimeout: '--handler-timeout', drainTimeout: '--drain-timeout', keepalive: '--keepalive', moduleMemory: '--module-memory',
  kvMaxBytes: '--kv-max-bytes', threads: '--threads', port: '--port', host: '--host', backlog: '--backlog', logLevel: '--log-level',
};

function fail(e: unknown): never {
  if (e instanceof OptionError) {
    process.stderr.write(`tcpmod: ${CLI_NAMES[e.option] ?? e.option}${e.message.slice(e.option.length)}\n`);
  } else if (e instanceof ModuleLoadError) {
    process.stderr.write(`tcpmod: ${e.file}: invalid module\n${e.problems.map((p) => `  - ${p}\n`).join('')}`);
  } else if (e instanceof ModuleConfigRefused || (e as { code?: string })?.code) {
    process.stderr.write(`tcpmod: ${(e as Error).message}\n`);
  } else {
    process.stderr.write(`tcpmod: ${(e as Error)?.stack ?? String(e)}\n`);
  }
  process.exit(1);
}

async function serve(file: string, o: Record<string, string | undefined>): Promise<void> {
  let server;
  let metrics: { host: string; port: number } | null = null;
  try {
    if (o.metrics !== undefined) {
      const m = /^(.*):(\d+)$/.exec(o.metrics);
      if (!m || Number(m[2]) > 65535) throw new OptionError('--metrics', `must be HOST:PORT, got ${JSON.stringify(o.metrics)}`);
      metrics = { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
    }
    const opts: ServerOptions = {
      module: file,
      host: o.host,
      port: o.port as unknown as number,
      backlog: o.backlog as unknown as number,
      workerIdleTimeout: o.idleTimeout,
      sendTimeout: o.sendTimeout,
      handlerTimeout: o.handlerTimeout,
      drainTimeout: o.drainTimeout,
      keepalive: o.keepalive,
      moduleMemory: size('--module-memory', o.moduleMemory!),
      kvMaxBytes: size('--kv-max-bytes', o.kvMaxBytes!),
      config: config(o.config),
      logLevel: o.logLevel as ServerOptions['logLevel'],
    };
    if (o.threads !== undefined) opts.threads = o.threads as unknown as number;
    if (o.minThreads !== undefined) opts.minThreads = o.minThreads as unknown as number;
    if (o.maxThreads !== undefined) opts.maxThreads = o.maxThreads as unknown as number;
    server = createServer(opts);
  } catch (e) {
    fail(e);
  }
  let signals = 0;
  const onSignal = (sig: string) => {
    signals++;
    if (signals > 1) {
      process.stderr.write(`tcpmod: second ${sig}: stopping at once\n`);
      server.abort();
      process.exit(1);
    }
    server.close().then(() => process.exit(0), (e) => fail(e));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const addr = await server.listen();
    if (metrics) {
      // prom-client takes ~80 ms to load: only when metrics are asked for.
      const { serveMetrics } = await import('./metrics.js');
      const m = await serveMetrics(server, metrics.host, metrics.port);
      m.http.unref();
      process.stderr.write(`metrics on http://${metrics.host}:${m.port}/metrics\n`);
    }
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    process.stdout.write(`listening on ${host}:${addr.port}\n`);
  } catch (e) {
    fail(e);
  }
}

program.parseAsync(process.argv).catch((e) => {
  if (e instanceof CommanderError) process.exit(e.exitCode);
  fail(e);
});
