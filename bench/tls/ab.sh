#!/bin/sh
# Two builds of the TLS capture side by side: rounds alternate OLD and NEW (each round one
# off/on pair of bench/tls/run.sh), then one bpf_stats pass of each, then the in-kernel ns
# per run of each build's BPF object on a stand-in function (bench/tls/floor/retcost.c).
#   sudo flock -x /work/targets/bench.lock env OLD=path/to/tls_watch NEW=path/to/tls_watch \
#        OLD_OBJ=old/tls.bpf.o NEW_OBJ=new/tls.bpf.o bench/tls/ab.sh [rounds] [seconds]
set -eu
ROUNDS=${1:-3}
DUR=${2:-10}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
date -u; uptime
for r in $(seq 1 "$ROUNDS"); do
  for b in OLD NEW; do
    eval w=\$$b
    echo "== round $r $b ($w)"
    WATCH=$w NO_BUILD=1 KSTATS=0 bench/tls/run.sh 1 "$DUR" 2>&1 | grep -v "^  tls_watch" | grep -v "^round"
  done
done
for b in OLD NEW; do
  eval w=\$$b
  echo "== bpf_stats $b"
  WATCH=$w NO_BUILD=1 bench/tls/run.sh 1 3 2>&1 | sed -n '/in-kernel/,$p'
done
if [ -n "${OLD_OBJ:-}" ] && [ -n "${NEW_OBJ:-}" ]; then
  RC=$(mktemp /tmp/hs-retcost.XXXXXX)
  gcc -O2 -o "$RC" bench/tls/floor/retcost.c -lbpf
  sysctl -qw kernel.bpf_stats_enabled=1
  for r in $(seq 1 "$ROUNDS"); do
    for v in "$OLD_OBJ" "$NEW_OBJ"; do
      printf '%s %-50s ' "$r" "$v"
      "$RC" "$v" 8000 612 | awk '/hs_ssl_ret/ {printf "ret %s ", $2} /hs_ssl_write_ex/ {printf "entry %s ", $2} /per call/ {printf "call %s ", $1} END {print ""}'
    done
  done
  sysctl -qw kernel.bpf_stats_enabled=0
  rm -f "$RC"
fi
date -u
