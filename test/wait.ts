// Waiting in tests: the one polling wait and the one sleep every test file uses.

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Calls `f` (every `every` ms) until it returns something truthy, and resolves
 * with that; after `ms` milliseconds without, rejects with an error naming
 * `what`. `f` may be async: the next call waits for its answer.
 */
export async function until<T>(f: () => T | Promise<T>, ms: number, what: string, every = 20): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}

/**
 * Waits (every 10 ms) until `cond()` holds; after `ms` rejects with `what()`, made at that
 * moment so that it can show the state the condition was waiting on.
 */
export async function waitFor(cond: () => boolean, what: () => string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what()}`);
    await sleep(10);
  }
}
