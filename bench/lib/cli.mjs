// The command-line frame of the bench's scripts (bench/run.mjs, bench/soak.mjs):
// reading flags and durations, and the way in and out (cleanup installed
// first, everything started killed on every exit). One definition, so the
// scripts read their options and fail alike.
import { installCleanup, killAll } from './proc.mjs';

/** Progress and errors go to stderr; stdout carries only --help. */
export const log = (msg) => process.stderr.write(`${msg}\n`);

/** Seconds from a duration: 90, 90s, 1500ms, 10m, 1h (a bare number is seconds). */
export function parseDuration(v, option) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(String(v ?? '').trim());
  if (!m) throw new Error(`${option} must be a duration like 3s, 500ms, 10m or 1h, got ${JSON.stringify(v)}`);
  const unit = { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] ?? 's'];
  return Number(m[1]) * unit;
}

/** A flag's value as a whole number of at least 1. */
export function positiveInteger(v, option) {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${option} must be a positive integer`);
  return n;
}

/**
 * Walks argv (`--flag value` or `--flag=value`), calling handlers[flag](value)
 * for each flag; value() returns the flag's value (an Error "--flag needs a
 * value" when there is none), and a flag that takes none never calls it.
 * --help and -h print usage and exit 0; any other flag is an Error that names
 * it and carries the usage.
 */
export function parseFlags(argv, usage, handlers) {
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].startsWith('--') && argv[i].includes('=') ? argv[i].split(/=(.*)/s) : [argv[i], undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === '--help' || flag === '-h') {
      process.stdout.write(`${usage}\n`);
      process.exit(0);
    }
    if (!Object.hasOwn(handlers, flag)) throw new Error(`unknown option ${argv[i]}\n${usage}`);
    handlers[flag](value);
  }
}

/**
 * Runs the script `npm run <name>`: parse(argv) gives its options (an Error
 * there prints "<name>: message" and exits 2); then, with proc.mjs's cleanup
 * installed, main(options, command) runs, command being the npm command line
 * as typed. Exits with the status main resolves, or 1 when it throws, after
 * killing whatever it left running.
 */
export function runScript(name, parse, main) {
  const argv = process.argv.slice(2);
  let opts;
  try {
    opts = parse(argv);
  } catch (e) {
    log(`${name}: ${e.message}`);
    process.exit(2);
  }
  installCleanup();
  const command = `npm run ${name}${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  main(opts, command).then(
    (code) => {
      killAll();
      process.exit(code);
    },
    (e) => {
      log(`${name}: ${e.stack ?? e}`);
      killAll();
      process.exit(1);
    },
  );
}
