// Compiled by test/embedding.test.ts with `tsc --strict --noEmit` (never run): what an embedding
// application writes against tcpmod's typings. Every @ts-expect-error line must stay an error.
import pino from 'pino';
import { createServer, type CloseReasonName, type LoggerOption } from '../../dist/index.js';

const server = createServer({ module: 'build/echo.wasm', port: 0, logger: false });

server.on('connection', (conn) => {
  const id: number = conn;
  void id;
});

server.on('close', (conn, reason) => {
  const id: number = conn;
  const why: 'peer' | 'module' | 'socket_error' | 'overflow' | 'send_timeout' | 'shutdown' | 'fault' | 'timeout' | 'tls' = reason;
  // The same names count closes in stats() (and label tcpmod_connections_closed_total).
  const counted: number | undefined = server.stats().connectionsClosed[reason];
  // @ts-expect-error no such close reason: the names are a closed set
  if (reason === 'reset') return;
  void id, why, counted;
});

// @ts-expect-error the reason is a name, not a number
server.on('close', (_conn: number, _reason: number) => undefined);
// @ts-expect-error the server has no such event
server.on('closed', () => undefined);
// @ts-expect-error 'close' gives a connection id first
server.once('close', (_conn: string) => undefined);

export const all: CloseReasonName[] = ['peer', 'tls'];

// Who hears the server: a pino logger, a level, or silence.
const choices: LoggerOption[] = [pino({ level: 'info' }), 'debug', 'silent', false];
for (const logger of choices) createServer({ module: 'build/echo.wasm', logger });
// @ts-expect-error not a level
createServer({ module: 'build/echo.wasm', logger: 'loud' });
// @ts-expect-error true is not a logger (false is silence)
createServer({ module: 'build/echo.wasm', logger: true });
