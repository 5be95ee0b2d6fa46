// `npm run test:unit`: the quick loop for an edit-test cycle. Tests of modules and of the
// harness that need no server, no socket and no compile of the native shim: the SDK, the
// options table, tcpmod/testing, the key-value store, the PROXY parser, the scaffold. They
// share no ports or processes, so files run in parallel. `npm test` still runs everything
// (the shipped modules' full split tests, resp.unit and http.unit, and every e2e file among it).
import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// Not mergeConfig: it would append this include list to the base's test/**/*.test.ts.
export default defineConfig({
  test: {
    ...base.test,
    include: [
      'test/echo.unit.test.ts',
      'test/coalesce.unit.test.ts',
      'test/http-peer.unit.test.ts',
      'test/resp-peer.unit.test.ts',
      'test/sdk-decimal.test.ts',
      'test/sdk-memory.test.ts',
      'test/testing.test.ts',
      'test/kv.test.ts',
      'test/options.test.ts',
      'test/proxy-protocol.test.ts',
      'test/scaffold.test.ts',
    ],
    fileParallelism: true,
  },
});
