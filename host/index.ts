export { createServer, TcpmodServer, CLOSE_REASONS } from './server.js';
export type { AddressInfo, CloseOptions, ServerEvents, ReloadOptions, ReloadReport, ReloadResult, ServerState, ServerStats } from './server.js';
export { OptionError } from './options.js';
export type { ServerOptions } from './options.js';
export { ModuleConfigRefused, ModuleFault, ModuleLoadError } from './module/errors.js';
export { SysError } from './sys.js';
export type { LoggerOption, LogLevel } from './logger.js';
export type { CloseReasonName } from './module/abi.js';
