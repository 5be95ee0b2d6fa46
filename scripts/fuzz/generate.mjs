// The hostile-module generator of the sandbox fuzzer (issue 26): from a seed,
// the WAT text of one echo module that carries CASES generated cases, each a
// sequence of calls to every tcpmod.* and WASI import with edge arguments
// (pointers at and past the end of memory, ranges that wrap 2^32, negative and
// huge lengths, other connections' ids), storms (timers, logs, store calls),
// and a terminal behaviour (none, a bad result record, a trap, an abort,
// proc_exit, memory grown until refused, an endless loop).
//
// The module echoes every byte but its commands, so a well-behaved client
// beside the hostile ones checks the server's data. A command is two bytes,
// [where][case], case 'A' + k:
//   d  run the case now, in on_data           o  in the next instance's... next on_open (store key "o")
//   t  in on_timer (set_timer(conn, 1) now)   c  in on_close (then the module closes the connection)
//   i  in tcpmod_init of the next instance (store key "i"; then a trap makes the worker renew it)
//   D  the next instance's tcpmod_io_desc moves its state slot (store key "D"; then a trap)
// The well-behaved client sends digits only.

/** Cases per generated module, named 'A'.. in commands. */
export const CASES = 26;
/** Terminal behaviours; the ones after 'none' fault the callback (counted as a module fault). */
export const TERMINALS = ['none', 'consumed', 'action', 'outlen', 'trap', 'abort', 'exit', 'grow', 'loop'];

/** xorshift32: the one random source of a run, reproducible from its seed. */
export function rng(seed) {
  let x = seed >>> 0 || 0x9e3779b9;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
  next.int = (n) => Math.floor(next() * n);
  next.pick = (a) => a[Math.floor(next() * a.length)];
  return next;
}

const PAGE = 65536;
// Edges around the first page's end (memory starts at 1 page, may grow to 4), the ABI regions, and 2^31/2^32.
const PTRS = [0, 1, 64, 512, 1024, 2048, 4096, PAGE - 8, PAGE - 4, PAGE - 1, PAGE, PAGE + 1, 4 * PAGE,
  0x7fffffff, 0x80000000, 0xfffffff0, 0xfffffff8, 0xffffffff];
const LENS = [0, 1, 4, 8, 100, 4096, PAGE - 4096, PAGE, PAGE + 1, 0x7fffffff, 0x80000000, 0xfffffff8, 0xffffffff];
const i32 = (v) => `(i32.const ${v | 0})`;

/** One conn argument: the connection's own id or another one. */
function connArg(r) {
  return r.pick(['(local.get $conn)', '(local.get $conn)', '(i32.add (local.get $conn) (i32.const 1))',
    '(i32.sub (local.get $conn) (i32.const 1))', i32(0), i32(-1), i32(0x7fffffff)]);
}
const ptr = (r) => (r() < 0.15 ? i32(4096 + r.int(4096)) : i32(r.pick(PTRS)));
const len = (r) => (r() < 0.15 ? i32(r.int(256)) : i32(r.pick(LENS)));

/** Kinds of statement `call` makes (the cases of its switch). */
const CALL_KINDS = 19;

/** One statement calling one import with edge arguments (its result dropped); `kind` picks its kind. */
function call(r, kind) {
  const k = r.int(CALL_KINDS);
  switch (kind ?? k) {
    case 0: return `(drop (call $send ${connArg(r)} ${ptr(r)} ${len(r)}))`;
    case 1: return `(call $log ${i32(r.pick([0, 1, 2, 3, -1, 99]))} ${ptr(r)} ${len(r)})`;
    case 2: return '(drop (call $now_ms))';
    case 3: return `(drop (call $kv_get ${ptr(r)} ${len(r)} ${ptr(r)} ${len(r)}))`;
    case 4: return `(drop (call $kv_set ${ptr(r)} ${len(r)} ${ptr(r)} ${len(r)}))`;
    case 5: return `(drop (call $kv_del ${ptr(r)} ${len(r)}))`;
    case 6: return `(drop (call $kv_incr ${ptr(r)} ${len(r)} (i64.const ${r.pick(['0', '1', '-1', '9223372036854775807', '-9223372036854775808'])}) ${ptr(r)}))`;
    case 7: return `(drop (call $conn_info ${connArg(r)} ${i32(r.pick([0, 1, 2, 3, -1, 0x7fffffff]))} ${ptr(r)} ${len(r)}))`;
    case 8: return `(drop (call $set_timer ${connArg(r)} ${i32(r.pick([0, 1, 5, 1000, 86_400_000, 0x7fffffff, -1]))}))`;
    case 9: return '(drop (call $draining))';
    case 10: return `(drop (call $want ${connArg(r)} ${len(r)}))`;
    case 11: return `(drop (call $peer_addr ${connArg(r)} ${ptr(r)} ${len(r)}))`;
    case 12: // an iovec with edge fields at 4096, then fd_write with an edge count
      return `(i32.store (i32.const 4096) ${ptr(r)}) (i32.store (i32.const 4100) ${len(r)}) ` +
        `(drop (call $fd_write ${i32(r.pick([1, 2, 1, 2, 0, 3, -1]))} ${r() < 0.7 ? i32(4096) : ptr(r)} ${i32(r.pick([0, 1, 1, 2, 8192, 0x20000000, -1]))} ${ptr(r)}))`;
    case 13: return `(drop (call $clock_time_get ${i32(r.pick([0, 1, 2, 3, 4, 5, -1, 0x7fffffff]))} (i64.const ${r.pick(['0', '1', '-1'])}) ${ptr(r)}))`;
    case 14: return `(drop (call $random_get ${ptr(r)} ${len(r)}))`;
    case 15: return storm(r, `(drop (call $set_timer (local.get $conn) (i32.sub (i32.const 100000) (local.get $i))))`);
    case 16: return storm(r, `(call $log (i32.const 2) (i32.const 4096) ${i32(r.pick([100, 1000, 4000]))})`);
    case 17: return storm(r, '(drop (call $kv_incr (i32.const 160) (i32.const 1) (i64.const 1) (i32.const 192)))');
    default: return `(drop (call $fd_write (i32.const 2) (i32.const 4096) (i32.const 1) (i32.const 4104)))`;
  }
}

/** A loop of one call, a thousand to twenty thousand times. */
function storm(r, body) {
  return `(local.set $i (i32.const 0)) (loop $storm ${body} ` +
    `(local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $storm (i32.lt_u (local.get $i) ${i32(r.pick([1000, 5000, 20000]))})))`;
}

/**
 * One case: its calls and its terminal. Returns { wat, terminal }; the case
 * function returns 0 (go on), or 1..3 for a bad result record the caller
 * (on_data) then gives (consumed > in_len, action 7, out_len > out_cap).
 */
function genCase(r, k, loops) {
  // Every module holds every kind: case k's first call is of kind k % CALL_KINDS, and the first
  // cases end in each terminal in turn (CASES >= both counts), so a short round can run them all.
  const calls = Array.from({ length: 1 + r.int(6) }, (_, j) => call(r, j === 0 ? k % CALL_KINDS : undefined));
  const allowed = TERMINALS.slice(0, loops ? TERMINALS.length : TERMINALS.length - 1);
  let terminal = r() < 0.45 ? 'none' : r.pick(allowed.slice(1));
  if (k < allowed.length) terminal = allowed[k];
  const end = {
    none: '(i32.const 0)', consumed: '(i32.const 1)', action: '(i32.const 2)', outlen: '(i32.const 3)',
    trap: 'unreachable', abort: `(call $abort ${ptr(r)} ${ptr(r)} ${i32(r.int(100))} ${i32(r.int(100))}) (i32.const 0)`,
    exit: `(call $proc_exit ${i32(r.int(256))}) (i32.const 0)`,
    grow: '(block $refused (loop $more (br_if $refused (i32.eq (memory.grow (i32.const 1)) (i32.const -1))) (br $more))) unreachable',
    loop: '(loop $forever (br $forever)) (i32.const 0)',
  }[terminal];
  if (terminal === 'abort') terminal = 'abort';
  return {
    terminal,
    wat: `  (func $case_${k} (param $conn i32) (param $len i32) (result i32)\n    (local $i i32)\n    ${calls.join('\n    ')}\n    ${end})`,
  };
}

/**
 * The WAT text of one hostile module and what each case ends with.
 * `loops`: whether cases may end in an endless loop (each costs a worker and a handler timeout).
 */
export function generateModule(seed, { loops = true } = {}) {
  const r = rng(seed);
  const cases = Array.from({ length: CASES }, (_, k) => genCase(r, k, loops));
  const dispatch = cases.map((_, k) => `    (if (i32.eq (local.get $case) (i32.const ${k})) (then (return (call $case_${k} (local.get $conn) (local.get $len)))))`).join('\n');
  const wat = `;; generated by scripts/fuzz/generate.mjs, seed ${seed}
(module
  (import "tcpmod" "send" (func $send (param i32 i32 i32) (result i32)))
  (import "tcpmod" "log" (func $log (param i32 i32 i32)))
  (import "tcpmod" "now_ms" (func $now_ms (result f64)))
  (import "tcpmod" "abort" (func $abort (param i32 i32 i32 i32)))
  (import "tcpmod" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i32)))
  (import "tcpmod" "kv_set" (func $kv_set (param i32 i32 i32 i32) (result i32)))
  (import "tcpmod" "kv_del" (func $kv_del (param i32 i32) (result i32)))
  (import "tcpmod" "kv_incr" (func $kv_incr (param i32 i32 i64 i32) (result i32)))
  (import "tcpmod" "conn_info" (func $conn_info (param i32 i32 i32 i32) (result i32)))
  (import "tcpmod" "set_timer" (func $set_timer (param i32 i32) (result i32)))
  (import "tcpmod" "draining" (func $draining (result i32)))
  (import "tcpmod" "want" (func $want (param i32 i32) (result i32)))
  (import "tcpmod" "peer_addr" (func $peer_addr (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1 4)
  ;; IoDesc at 0, result at 64, store keys "i" "o" "D" at 160.., store value out at 192,
  ;; state [512, +64), input [1024, +1024), output [2048, +1024), scratch from 4096.
  (data (i32.const 160) "ioD")
  (global $timer_case (mut i32) (i32.const -1))
  (global $close_case (mut i32) (i32.const -1))

  (func (export "tcpmod_abi_v1"))

  ;; The case stored under key [key], deleted as it is taken; -1 when none.
  (func $take (param $key i32) (result i32)
    (if (i32.lt_s (call $kv_get (local.get $key) (i32.const 1) (i32.const 192) (i32.const 8)) (i32.const 0)) (then (return (i32.const -1))))
    (drop (call $kv_del (local.get $key) (i32.const 1)))
    (i32.load8_u (i32.const 192)))

  (func $put (param $key i32) (param $case i32)
    (i32.store8 (i32.const 196) (local.get $case))
    (drop (call $kv_set (local.get $key) (i32.const 1) (i32.const 196) (i32.const 1))))

  (func (export "tcpmod_io_desc") (result i32)
    (local $moved i32)
    (local.set $moved (i32.ge_s (call $take (i32.const 162)) (i32.const 0)))
    (i32.store offset=0 (i32.const 0) (i32.const 1024))
    (i32.store offset=4 (i32.const 0) (i32.const 1024))
    (i32.store offset=8 (i32.const 0) (i32.const 2048))
    (i32.store offset=12 (i32.const 0) (i32.const 1024))
    (i32.store offset=16 (i32.const 0) (select (i32.const 65520) (i32.const 512) (local.get $moved)))
    (i32.store offset=20 (i32.const 0) (select (i32.const 16) (i32.const 64) (local.get $moved)))
    (i32.store offset=24 (i32.const 0) (i32.const 64))
    (i32.store offset=28 (i32.const 0) (i32.const 0))
    (i32.const 0))

${cases.map((c) => c.wat).join('\n')}

  (func $run (param $case i32) (param $conn i32) (param $len i32) (result i32)
${dispatch}
    (i32.const 0))

  (func (export "tcpmod_init") (param $len i32) (result i32)
    (local $case i32)
    (local.set $case (call $take (i32.const 160)))
    (if (i32.ge_s (local.get $case) (i32.const 0)) (then (drop (call $run (local.get $case) (i32.const 0) (i32.const 0)))))
    (i32.const 0))

  (func (export "tcpmod_on_open") (param $conn i32) (result i32)
    (local $case i32)
    (i32.store (i32.const 68) (i32.const 0))
    (local.set $case (call $take (i32.const 161)))
    (if (i32.ge_s (local.get $case) (i32.const 0)) (then (drop (call $run (local.get $case) (local.get $conn) (i32.const 0)))))
    (i32.store (i32.const 68) (i32.const 0))
    (i32.const 0))

  (func (export "tcpmod_on_timer") (param $conn i32) (param $len i32) (result i32)
    (local $case i32)
    (local.set $case (global.get $timer_case))
    (global.set $timer_case (i32.const -1))
    (if (i32.ge_s (local.get $case) (i32.const 0)) (then (drop (call $run (local.get $case) (local.get $conn) (i32.const 0)))))
    (i32.store (i32.const 64) (i32.const 0))
    (i32.store (i32.const 68) (i32.const 0))
    (i32.const 0))

  (func (export "tcpmod_on_close") (param $conn i32) (param $reason i32)
    (local $case i32)
    (local.set $case (global.get $close_case))
    (global.set $close_case (i32.const -1))
    (if (i32.ge_s (local.get $case) (i32.const 0)) (then (drop (call $run (local.get $case) (local.get $conn) (i32.const 0))))))

  (func (export "tcpmod_on_data") (param $conn i32) (param $len i32) (param $flags i32) (result i32)
    (local $i i32) (local $o i32) (local $b i32) (local $case i32) (local $bad i32)
    (block $end
      (loop $next
        (br_if $end (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $b (i32.load8_u offset=1024 (local.get $i)))
        (if (i32.and (i32.ge_u (local.get $b) (i32.const 0x41)) (i32.le_u (local.get $b) (i32.const 0x7a)))
          (then
            ;; a command: [where][case]; a lone last byte waits for its case (not consumed)
            (br_if $end (i32.ge_u (i32.add (local.get $i) (i32.const 1)) (local.get $len)))
            (local.set $case (i32.sub (i32.load8_u offset=1025 (local.get $i)) (i32.const 0x41)))
            (if (i32.ge_u (local.get $case) (i32.const ${CASES})) (then (local.set $case (i32.const 0))))
            (local.set $i (i32.add (local.get $i) (i32.const 2)))
            (if (i32.eq (local.get $b) (i32.const 0x64)) ;; d
              (then
                (local.set $bad (call $run (local.get $case) (local.get $conn) (local.get $len)))
                (if (i32.eq (local.get $bad) (i32.const 1))
                  (then (i32.store (i32.const 64) (i32.add (local.get $len) (i32.const 1))) (i32.store (i32.const 68) (i32.const 0)) (return (i32.const 0))))
                (if (i32.eq (local.get $bad) (i32.const 2))
                  (then (i32.store (i32.const 64) (local.get $len)) (i32.store (i32.const 68) (i32.const 0)) (return (i32.const 7))))
                (if (i32.eq (local.get $bad) (i32.const 3))
                  (then (i32.store (i32.const 64) (local.get $len)) (i32.store (i32.const 68) (i32.const 0x7fffffff)) (return (i32.const 0))))))
            (if (i32.eq (local.get $b) (i32.const 0x6f)) (then (call $put (i32.const 161) (local.get $case)))) ;; o
            (if (i32.eq (local.get $b) (i32.const 0x74)) ;; t
              (then (global.set $timer_case (local.get $case)) (drop (call $set_timer (local.get $conn) (i32.const 1)))))
            (if (i32.eq (local.get $b) (i32.const 0x63)) ;; c
              (then
                (global.set $close_case (local.get $case))
                (i32.store (i32.const 64) (local.get $len)) (i32.store (i32.const 68) (local.get $o))
                (return (i32.const 1))))
            (if (i32.eq (local.get $b) (i32.const 0x69)) (then (call $put (i32.const 160) (local.get $case)) unreachable)) ;; i
            (if (i32.eq (local.get $b) (i32.const 0x44)) (then (call $put (i32.const 162) (local.get $case)) unreachable)) ;; D
            (br $next)))
        (i32.store8 offset=2048 (local.get $o) (local.get $b))
        (local.set $o (i32.add (local.get $o) (i32.const 1)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.store (i32.const 64) (local.get $i))
    (i32.store (i32.const 68) (local.get $o))
    (i32.const 0)))
`;
  return { wat, terminals: cases.map((c) => c.terminal) };
}
