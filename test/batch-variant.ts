// The end-to-end suites of echo, HTTP and RESP run twice: as themselves, with
// the server's default --batch, and through a *.batch1.e2e.test.ts file that
// sets the batch to 1 (the one-event-per-wait loop) and imports them. Vitest
// runs each test file in a fresh context, so the setting stays in its file.
const KEY = Symbol.for('tcpmod.test.batch');

/** Sets the batch for the suite imported next (the *.batch1 files). */
export function useBatch(batch: number): void {
  (globalThis as Record<symbol, unknown>)[KEY] = batch;
}

/** The batch this file's suite runs with; undefined: the server's default. */
export function testBatch(): number | undefined {
  return (globalThis as Record<symbol, unknown>)[KEY] as number | undefined;
}

/** For createServer: { batch } when one is set. */
export function batchOption(): { batch?: number } {
  const b = testBatch();
  return b === undefined ? {} : { batch: b };
}

/** For `tcpmod serve`: ['--batch', N] when one is set. */
export function batchArgs(): string[] {
  const b = testBatch();
  return b === undefined ? [] : ['--batch', String(b)];
}
