import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // End-to-end suites start servers and real clients; on a 2-core box run files one at a time.
    fileParallelism: false,
    reporters: ['default', './test/summary-reporter.ts'],
    // Fails the run when a test leaves a server (or a server's worker) running.
    globalSetup: ['./test/global-strays.ts'],
  },
});
