#!/usr/bin/env bash
# Server CPU per operation of memcached and memcache.wasm, one connection and
# one server thread each, from /proc (utime + stime of the whole process):
# the focused measurement behind bench/memcache.mjs's large-value case.
#   bench/memcache-cpu.sh [N=20000] [get|set]
# Env: SIZE (value bytes, default 102400), MPORT/TPORT (17211/17212),
# W (the tcpmod checkout to run, default this one), TARGS (extra serve options).
# Two rounds, alternating servers; the client is bench/memcache-get.py.
set -u
N=${1:-20000}; M=${2:-get}
HERE=$(cd "$(dirname "$0")" && pwd)
W=${W:-$(dirname "$HERE")}
MPORT=${MPORT:-17211}; TPORT=${TPORT:-17212}
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
memcached -p "$MPORT" -U 0 -l 127.0.0.1 -t 1 -m 1024 -I 2m -u root & MP=$!
(cd "$W" && exec node bin/tcpmod.js serve build/memcache.wasm --port "$TPORT" --threads 1 --log-level warn ${TARGS:-}) & TP=$!
trap 'kill $MP $TP 2>/dev/null; wait 2>/dev/null' EXIT
sleep 1.5
for round in 1 2; do
  for p in "$MPORT" "$TPORT"; do
    if [ "$p" = "$MPORT" ]; then P=$MP; name=memcached; else P=$TP; name=tcpmod; fi
    python3 "$HERE/memcache-get.py" "$p" 2000 "${SIZE:-102400}" "$M" >/dev/null
    c0=$(cpu "$P"); w=$(python3 "$HERE/memcache-get.py" "$p" "$N" "${SIZE:-102400}" "$M"); c1=$(cpu "$P")
    echo "$name $M: $(( (c1 - c0) * 10000 / N )) us/op server CPU, $w"
  done
done
