// test/echo.e2e.test.ts again, with --batch 1: one event per epoll_wait, the loop before batches.
import { useBatch } from './batch-variant.js';

useBatch(1);
await import('./echo.e2e.test.js');
