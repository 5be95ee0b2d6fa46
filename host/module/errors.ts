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
