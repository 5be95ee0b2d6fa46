#!/bin/bash
# The load-independent cost of an unpipelined proxied request (issue 23): two
# redis-server shards, the proxy (build/redis-proxy.wasm, --threads 2) or
# nutcracker with the bench's configuration in front of them, redis-benchmark
# -c 50 -n N -t TEST after a warm-up of N/2, and one of:
#   strace     syscalls by kind of the proxy (strace -f -c) and of each shard, over the N requests
#   callgrind  the proxy's user-space instructions over the N requests (valgrind --instr-atstart=no,
#              callgrind_control -i on/off around them); tcpmod runs with long connect/handler timeouts
#   none       the proxy's and the shards' CPU (utime+stime from /proc) over the N requests
# Prints where the outputs are (st.txt, sh<i>.txt, cg.out.1, rb.csv). Everything it starts it stops.
# usage: bench/redis-proxy-cost.sh tcpmod|nutcracker strace|callgrind|none N [get|set]
set -u
MODE=$1 TOOL=$2 N=$3 TEST=${4:-get}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
D=$(mktemp -d /tmp/redis-proxy-cost.XXXX)
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
SP=() SPID=()
for i in 0 1; do
  p=$(port); SP+=("$p")
  redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --daemonize no --logfile '' >/dev/null 2>&1 &
  SPID+=($!)
done
PP=$(port)
cd "$ROOT"
if [ "$MODE" = tcpmod ]; then
  CMD=(node bin/tcpmod.js serve build/redis-proxy.wasm --host 127.0.0.1 --port "$PP" --threads 2 --log-level warn
       --upstream "s0=127.0.0.1:${SP[0]}" --upstream "s1=127.0.0.1:${SP[1]}" --config servers=s0,s1)
  [ "$TOOL" = callgrind ] && CMD+=(--upstream-connect-timeout 60s --handler-timeout 60s)
else
  printf 'pool:\n  listen: 127.0.0.1:%s\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n  auto_eject_hosts: false\n  servers:\n   - 127.0.0.1:%s:1 s0\n   - 127.0.0.1:%s:1 s1\n' \
    "$PP" "${SP[0]}" "${SP[1]}" > "$D/nc.yml"
  CMD=(nutcracker -c "$D/nc.yml" -s "$(port)")
fi
if [ "$TOOL" = callgrind ]; then
  valgrind --tool=callgrind --callgrind-out-file="$D/cg.out" --instr-atstart=no "${CMD[@]}" > "$D/srv.log" 2>&1 &
else
  "${CMD[@]}" > "$D/srv.log" 2>&1 &
fi
PID=$!
for _ in $(seq 1 600); do redis-cli -p "$PP" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-benchmark -p "$PP" -c 50 -n $((N / 2)) -t "$TEST" -q >/dev/null 2>&1
STS=()
if [ "$TOOL" = strace ]; then
  strace -f -c -o "$D/st.txt" -p "$PID" 2>/dev/null & STS+=($!)
  for i in 0 1; do strace -f -c -o "$D/sh$i.txt" -p "${SPID[$i]}" 2>/dev/null & STS+=($!); done
  sleep 1.5
elif [ "$TOOL" = callgrind ]; then
  callgrind_control -i on "$PID" >/dev/null
fi
C0=$(cpu "$PID") S0=$(( $(cpu "${SPID[0]}") + $(cpu "${SPID[1]}") ))
redis-benchmark -p "$PP" -c 50 -n "$N" -t "$TEST" --csv > "$D/rb.csv" 2>&1
C1=$(cpu "$PID") S1=$(( $(cpu "${SPID[0]}") + $(cpu "${SPID[1]}") ))
if [ "$TOOL" = strace ]; then
  kill -INT "${STS[@]}"; wait "${STS[@]}" 2>/dev/null
elif [ "$TOOL" = callgrind ]; then
  callgrind_control -i off "$PID" >/dev/null; callgrind_control -d "$PID" >/dev/null; sleep 1
fi
kill "$PID"; wait "$PID" 2>/dev/null
kill "${SPID[@]}"; wait "${SPID[@]}" 2>/dev/null
echo "proxy CPU ticks: $((C1 - C0)), shards' CPU ticks: $((S1 - S0)) (per $(getconf CLK_TCK) a second)"
echo "redis-benchmark: $(tail -1 "$D/rb.csv")"
echo "outputs in $D"
