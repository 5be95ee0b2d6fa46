// Named errors of the module layer, each with a stable code (undici style), so
// callers and tests match on `code`, never on message text.

/** A module that does not follow ABI v1; `problems` lists every reason, one line each. */
export class ModuleLoadError extends Error {
  readonly code = 'TCPMOD_MODULE_INVALID';
  constructor(readonly file: string, readonly problems: string[]) {
    super(`${file}: ${problems.length === 1 ? problems[0] : `${problems.length} problems:\n  ${problems.join('\n  ')}`}`);
    this.name = 'ModuleLoadError';
  }
}

/** tcpmod_init returned non-zero: the module refused its --config. */
export class ModuleConfigRefused extends Error {
  readonly code = 'TCPMOD_CONFIG_REFUSED';
  constructor(readonly file: string, readonly status: number) {
    super(`${file}: tcpmod_init refused the config (returned ${status})`);
    this.name = 'ModuleConfigRefused';
  }
}

/** What went wrong in a module callback; the one list of fault kinds (stats, metrics, counters). */
export const FAULT_KINDS = ['trap', 'abort', 'exit', 'timeout', 'result'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** The module misbehaved during a callback; its instance must be discarded. */
export class ModuleFault extends Error {
  readonly code = 'TCPMOD_MODULE_FAULT';
  constructor(readonly kind: FaultKind, message: string) {
    super(message);
    this.name = 'ModuleFault';
  }
}

/**
 * The module's start-up (_initialize, its start function, tcpmod_io_desc, tcpmod_init) ran past the
 * start-up timeout and was stopped. A ModuleLoadError (the module is refused wherever one is), with
 * one problem, which the CLI prints on one line.
 */
export class StartupTimeout extends ModuleLoadError {
  constructor(file: string, readonly timeoutMs: number) {
    super(file, [`start-up (_initialize, the start function, tcpmod_io_desc, tcpmod_init) did not finish within the start-up timeout (startupTimeout ${timeoutMs} ms): stopped`]);
    this.name = 'StartupTimeout';
  }

  /** The message with the option spelled by `name` (the CLI's flag). */
  describe(name: (option: string) => string): string {
    return `${this.file}: start-up (_initialize, the start function, tcpmod_io_desc, tcpmod_init) did not finish within ${name('startupTimeout')} (${this.timeoutMs} ms): module refused`;
  }
}
