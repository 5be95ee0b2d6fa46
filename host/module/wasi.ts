// @wasmer/wasi is loaded, and initialised once per thread, only for modules that
// import WASI: loading it costs about 60 ms, which would otherwise be paid by
// every start-up and every new worker for modules that never touch it.
type WasiPackage = typeof import('@wasmer/wasi');

let loading: Promise<void> | null = null;
let wasiClass: WasiPackage['WASI'] | null = null;

export function loadWasi(): Promise<void> {
  loading ??= import('@wasmer/wasi').then(async (pkg) => {
    await pkg.init();
    wasiClass = pkg.WASI;
  });
  return loading;
}

/** The WASI class; loadWasi() must have completed on this thread. */
export function wasiClassLoaded(): WasiPackage['WASI'] {
  if (!wasiClass) throw new Error('a WASI module was instantiated before loadWasi() completed');
  return wasiClass;
}
