#!/bin/sh
# Overhead of the eBPF source on nginx, measured side by side in one run.
#
#   sudo bench/ebpf/run.sh [rounds] [duration]      (defaults: 3 rounds of 10 s)
#   BPF_STATS=1 ...   also reports the programs' in-kernel ns per request (kernel.bpf_stats_enabled
#                     adds two clock reads per program run, so leave it off for the rate ratio)
#   WATCH_PORT=1 ...  attach with a port filter that matches nothing: the cost of the hooks alone
#   PERF=1 ...        perf record -a (cpu-clock) during monitored runs; prints the BPF programs'
#                     and their helpers' share of all samples
#
# Ends with a summary line: medians over the rounds, kernel losses, and whether every request
# nginx logged was counted.
# nginx (Debian nginx-light, 1 worker) serves a 612-byte index.html on 127.0.0.1; each round
# runs `wrk -t2 -c32 -d10s` once without and once with the capture attached (the
# ebpf_watch example, release build, filtered on nginx's port, as `httpscope watch --source
# ebpf` would run it), alternating. For monitored runs it records the transactions
# (client + server side), kernel losses, nginx's access-log lines for that run, and the
# capture process's user+sys CPU divided by the transactions it produced.
set -eu
ROUNDS=${1:-3}
DUR=${2:-10}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WATCH=${WATCH:-$CARGO_TARGET_DIR/release/examples/ebpf_watch}
if [ -z "${NO_BUILD:-}" ]; then
  (cd "$ROOT" && cargo build --release -q -p httpscope-capture --example ebpf_watch)
fi

. "$ROOT/bench/ebpf/nginx.sh"

rate() { awk '/Requests\/sec/ {print $2}' "$1"; }
# CPU seconds (user+sys) used so far by nginx's worker: contention from other work on the host
# changes the request rate a lot, but hardly the CPU each request costs the served program.
TCK=$(getconf CLK_TCK)
WORKER=$(pgrep -P "$(cat "$DIR/nginx.pid")" | head -1)
ncpu() { awk -v t="$TCK" '{print ($14 + $15) / t}' "/proc/$WORKER/stat"; }
# wrk's own user+sys CPU comes from /usr/bin/time -f "%U %S" (last line of its stderr).
runwrk() { /usr/bin/time -f "%U %S" -o "$2" wrk -t2 -c32 -d"${DUR}s" "$URL" > "$1"; }
percpu() { # $1 wrk output, $2 time output, $3 nginx cpu seconds: us of nginx+wrk CPU per request
  awk -v n="$3" -v r="$(rate "$1")" -v d="$DUR" '{ c = $1 + $2 } END { printf "%.1f", (c + n) * 1e6 / (r * d) }' "$2"; }
lines() { wc -l < "$DIR/access.log"; }

printf '%-6s %-10s %12s %12s %10s %10s %12s %10s %14s\n' round mode req_per_s transactions logged lost cpu_us_per_tx ratio app_cpu_us_req
for r in $(seq 1 "$ROUNDS"); do
  C0=$(ncpu); runwrk "$DIR/base.txt" "$DIR/base.time"; C1=$(ncpu)
  BASE=$(rate "$DIR/base.txt")
  APPOFF=$(percpu "$DIR/base.txt" "$DIR/base.time" "$(echo "$C1 $C0" | awk '{print $1 - $2}')")
  printf '%-6s %-10s %12s %12s %10s %10s %12s %10s %14s\n' "$r" off "$BASE" - - - - - "$APPOFF"

  rm -f "$DIR/watch.err"
  "$WATCH" --port "${WATCH_PORT:-$PORT}" > "$DIR/watch.out" 2> "$DIR/watch.err" &
  WPID=$!
  while ! grep -q attached "$DIR/watch.err" 2>/dev/null; do sleep 0.1; done
  L0=$(lines)
  [ -n "${BPF_STATS:-}" ] && sysctl -qw kernel.bpf_stats_enabled=1
  [ -n "${PERF:-}" ] && { perf record -q -a -e cpu-clock -F 4999 -o "$DIR/perf.data" -- sleep "$DUR" 2>/dev/null & PERFPID=$!; }
  C0=$(ncpu); runwrk "$DIR/mon.txt" "$DIR/mon.time"; C1=$(ncpu)
  [ -n "${PERF:-}" ] && wait "$PERFPID"
  APPON=$(percpu "$DIR/mon.txt" "$DIR/mon.time" "$(echo "$C1 $C0" | awk '{print $1 - $2}')")
  if [ -n "${BPF_STATS:-}" ]; then
    # name run_time_ns run_cnt, one line per hs_ program
    # only this capture's programs (others may be attached on a shared host)
    IDS=$(cat /proc/$WPID/fdinfo/* 2>/dev/null | awk '$1 == "prog_id:" {print $2}' | sort -u | tr '\n' ' ')
    for id in $IDS; do bpftool prog show id "$id"; done | awk '{for (i=1;i<NF;i++) {if ($i=="name") n=$(i+1); if ($i=="run_time_ns") t=$(i+1); if ($i=="run_cnt") c=$(i+1)}} n ~ /^hs_/ && c != "" {print n, t, c} {n=""; t=""; c=""}' > "$DIR/progs.txt"
    KNS=$(awk '{t += $2} END {print t+0}' "$DIR/progs.txt")
    sysctl -qw kernel.bpf_stats_enabled=0
  fi
  sleep 1
  L1=$(lines)
  kill -INT $WPID; wait $WPID || true
  MON=$(rate "$DIR/mon.txt")
  OUT=$(tail -1 "$DIR/watch.out")
  get() { echo "$OUT" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'; }
  TX=$(get transactions); SRV=$(get server); LOST=$(get kernel_lost); CPU=$(get cpu_s)
  SRV=${SRV:--} # a WATCH that parses nothing (bench/ebpf/floor) prints no transaction counts
  LOGGED=$((L1 - L0))
  PER=$(awk -v c="$CPU" -v t="$TX" 'BEGIN { if (t > 0) printf "%.3f", c * 1e6 / t; else print "n/a" }')
  RATIO=$(awk -v m="$MON" -v b="$BASE" 'BEGIN { printf "%.3f", m / b }')
  printf '%-6s %-10s %12s %12s %10s %10s %12s %10s %14s\n' "$r" on "$MON" "$TX(srv $SRV)" "$LOGGED" "$LOST" "$PER" "$RATIO" "$APPON"
  echo "  ebpf_watch: $OUT"
  echo "$RATIO $PER $APPOFF $APPON $LOST $SRV $LOGGED" >> "$DIR/summary.txt"
  if [ -n "${BPF_STATS:-}" ]; then
    awk -v k="$KNS" -v n="$LOGGED" 'BEGIN { printf "  in-kernel: %.0f ns of BPF programs per request (both sides)\n", k / n }'
    awk -v n="$LOGGED" '$3 > 0 { printf "    %-14s %8.2f runs/request %6.0f ns/run %6.0f ns/request\n", $1, $3 / n, $2 / $3, $2 / n }' "$DIR/progs.txt"
  fi
  if [ -n "${PERF:-}" ]; then
    perf report -i "$DIR/perf.data" --no-children --sort sym --stdio 2>/dev/null |
      awk '/%/ && /bpf_|ringbuf|probe_read|copy_from_user|sk_storage|ktime|__htab|htab_map/ {print "   ", $0}' | head -25
  fi
done
# Medians over the rounds, and the two exact checks.
med() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$1" '{ print $c }' "$DIR/summary.txt" | med; }
echo
echo "summary over $ROUNDS rounds: on/off rate median $(col 1) (target >= 0.97)," \
  "capture CPU $(col 2) us/transaction median (target <= 1)," \
  "nginx+wrk CPU per request median $(col 3) -> $(col 4) us"
awk '{ lost += $5; if ($6 != "-" && $6 != $7) bad++ } END {
  printf "kernel lost events: %d (target 0); rounds where server-side transactions != nginx log lines: %d (target 0)\n", lost, bad + 0 }' "$DIR/summary.txt"
