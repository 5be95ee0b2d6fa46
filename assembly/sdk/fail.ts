// SDK contract violations (bad configure() sizes, consume/byte out of range, ...).
// `abort` is aliased to the `tcpmod.abort` import, whose host side ends the call
// as a module fault. The trailing `unreachable` guarantees the call stops here
// even if an import implementation returned, so no half-updated state leaks into
// the result record. (An explicit abort passes no file/line: those are 0.)

export function fail(message: string): void {
  abort(message);
  unreachable();
}
