// The bound on what a module may log (tcpmod.log and WASI fds 1 and 2):
// bytes per one-second window, per connection and per instance (a module has
// one instance per worker thread, so a module's total is at most the threads
// times the instance bound). What is over either bound is dropped, counted,
// and summed up in one warning line per window that dropped something (with
// the next message, or flush() from an idle worker).

/** Log bytes one connection may have logged per second (docs/abi.md §8). */
export const LOG_BYTES_PER_CONN = 16 * 1024;
/** Log bytes one instance (a module in one worker thread) may log per second, all its connections together. */
export const LOG_BYTES_PER_INSTANCE = 256 * 1024;
const WINDOW_MS = 1000;

export class LogLimit {
  private windowStart = 0;
  private used = 0;
  private readonly perConn = new Map<number, number>();
  private droppedBytes = 0;
  private droppedLines = 0;

  /**
   * @param dropped told of every dropped message's bytes (a metric)
   * @param summary one line for a window that dropped something, logged when the next message comes
   */
  constructor(
    private readonly dropped: (bytes: number) => void,
    private readonly summary: (text: string) => void,
    private readonly perConnMax = LOG_BYTES_PER_CONN,
    private readonly perInstanceMax = LOG_BYTES_PER_INSTANCE,
  ) {}

  /** Whether a message of `bytes` for connection `conn` (0: none) may be logged now; counts it either way. */
  take(conn: number, bytes: number): boolean {
    const now = Date.now();
    if (now - this.windowStart >= WINDOW_MS) this.roll(now);
    const mine = conn === 0 ? 0 : this.perConn.get(conn) ?? 0;
    if (this.used + bytes > this.perInstanceMax || (conn !== 0 && mine + bytes > this.perConnMax)) {
      this.droppedBytes += bytes;
      this.droppedLines++;
      this.dropped(bytes);
      return false;
    }
    this.used += bytes;
    if (conn !== 0) this.perConn.set(conn, mine + bytes);
    return true;
  }

  /** Logs the summary of a finished window that dropped something, if no message has done it yet. */
  flush(): void {
    const now = Date.now();
    if (this.droppedLines && now - this.windowStart >= WINDOW_MS) this.roll(now);
  }

  private roll(now: number): void {
    if (this.droppedLines) {
      this.summary(`module log limit: dropped ${this.droppedLines} messages (${this.droppedBytes} bytes) in ${now - this.windowStart} ms ` +
        `(at most ${this.perConnMax} bytes/s per connection, ${this.perInstanceMax} per instance)`);
    }
    this.windowStart = now;
    this.used = 0;
    this.droppedBytes = this.droppedLines = 0;
    this.perConn.clear();
  }
}
