// tcpmod/testing: unit tests of protocol modules without sockets. Load a module
// as `serve` would, open connections, send bytes, read what the module sent;
// `sendInPieces` checks that an input gives the same answer however TCP cuts
// it. Works in vitest, node:test or a plain script (no sockets, no worker
// threads, no test-runner imports). docs/testing.md shows it in use.
import { CLOSE_REASONS } from './module/abi.js';

export {
  loadModule, LoadedModule, TestConn, TestClock,
  type LoadOptions, type SendOptions, type PiecesOptions, type SendResult, type TimerFiring, type MessageDelivery, type LogLine, type LogLevelName, type CloseReasonName,
} from './testing/module.js';
export { ModuleKv, type KvBytes, type KvOp } from './testing/kv.js';
export { TestUpstream, type UpstreamFailure, type UpstreamState } from './testing/upstream.js';
export { SplitMismatchError, splitPlans, randomPlans, type PieceRun } from './testing/split.js';
export { ModuleFault, ModuleLoadError, ModuleConfigRefused, type FaultKind } from './module/errors.js';
export { OptionError } from './options.js';
export { CLOSE_REASONS };
