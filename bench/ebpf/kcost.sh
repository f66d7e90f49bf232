#!/bin/sh
# In-kernel cost of the eBPF programs per nginx request, for one or more capture binaries,
# alternating within one run so that host load hits them alike.
#
#   sudo bench/ebpf/kcost.sh [rounds] [duration] [WATCH_BINARY...]
#     defaults: 5 rounds of 5 s, the release ebpf_watch example of this tree
#   e.g. compare two builds of the C:  bench/ebpf/kcost.sh 5 5 /tmp/watch-old /tmp/watch-new
#
# Each run attaches one binary (filtered on nginx's port), enables kernel.bpf_stats_enabled,
# drives nginx with `wrk -t2 -c32`, and prints per program: runs per request and ns per run
# (bpf_stats' run_time_ns / run_cnt; it includes two clock reads per run, and a program
# preempted or descheduled by the hypervisor counts that time too, so compare medians of
# alternating runs, not single figures). The last lines are the median ns per request of each
# binary over the rounds.
set -eu
ROUNDS=${1:-5}
DUR=${2:-5}
[ $# -ge 2 ] && shift 2 || shift $#
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ $# -eq 0 ]; then
  if [ -z "${NO_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release -q -p httpscope-capture --example ebpf_watch)
  fi
  set -- "$CARGO_TARGET_DIR/release/examples/ebpf_watch"
fi

. "$ROOT/bench/ebpf/nginx.sh"
lines() { wc -l < "$DIR/access.log"; }
: > "$DIR/results.txt"

for r in $(seq 1 "$ROUNDS"); do
  i=0
  for WATCH in "$@"; do
    i=$((i + 1))
    rm -f "$DIR/watch.err"
    "$WATCH" --port "$PORT" > "$DIR/watch.out" 2> "$DIR/watch.err" &
    WPID=$!
    while ! grep -q attached "$DIR/watch.err" 2>/dev/null; do
      kill -0 $WPID 2>/dev/null || { cat "$DIR/watch.err"; exit 1; }
      sleep 0.1
    done
    L0=$(lines)
    sysctl -qw kernel.bpf_stats_enabled=1
    wrk -t2 -c32 -d"${DUR}s" "$URL" > /dev/null
    # only this binary's programs (others may be attached on a shared host)
    IDS=$(cat /proc/$WPID/fdinfo/* 2>/dev/null | awk '$1 == "prog_id:" {print $2}' | sort -u | tr '\n' ' ')
    for id in $IDS; do bpftool prog show id "$id"; done | awk '{for (i=1;i<NF;i++) {if ($i=="name") n=$(i+1); if ($i=="run_time_ns") t=$(i+1); if ($i=="run_cnt") c=$(i+1)}} n ~ /^hs_/ && c != "" {print n, t, c} {n=""; t=""; c=""}' > "$DIR/progs.txt"
    sysctl -qw kernel.bpf_stats_enabled=0
    L1=$(lines)
    kill -INT $WPID; wait $WPID || true
    N=$((L1 - L0))
    awk -v n="$N" -v r="$r" -v b="$i" -v w="$WATCH" '
      { t += $2; line = line sprintf(" %s %.2f runs/req %.0f ns/run;", $1, $3 / n, $3 ? $2 / $3 : 0) }
      END { printf "round %s binary %s: %6.0f ns/request over %d requests:%s\n", r, b, t / n, n, line }' "$DIR/progs.txt"
    awk -v n="$N" -v b="$i" '{ t += $2 } END { print b, t / n }' "$DIR/progs.txt" >> "$DIR/results.txt"
  done
done
i=0
for WATCH in "$@"; do
  i=$((i + 1))
  awk -v b="$i" '$1 == b { print $2 }' "$DIR/results.txt" | sort -n |
    awk -v b="$i" -v w="$WATCH" '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "binary %s (%s): median %.0f ns/request (min %.0f, max %.0f, %d runs)\n", b, w, m, v[1], v[NR], NR }'
done
