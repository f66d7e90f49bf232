#!/bin/sh
# The floor modes against no programs, alternated every PHASE_MS inside one wrk run (toggle.c):
# drift of the host between runs (+-20% here within seconds) mostly cancels between adjacent
# phases. nginx as bench/ebpf/run.sh's (nginx.sh), `wrk -t2 -c32` for the whole experiment.
#
#   sudo bench/ebpf/floor/toggle.sh [cycles] [phase_ms]        (defaults: 20 cycles, 1000 ms)
#   MODES="empty state summary copy copydyn"   the modes (each cycle: off, mode, for each mode)
#   BPF_STATS=1   kernel.bpf_stats_enabled during the run: BPF ns per request per phase (adds
#                 two clock reads per program run: use a separate run for the rate ratios)
#   LOCK=path     the bench lock, held for the whole run (default /work/targets/bench.lock;
#                 LOCK= for none). Keep cycles x modes x 2 x phase under ~6 minutes.
# A mode phase's ratio: its rate over the mean of the off phases just before and after it.
set -eu
CYCLES=${1:-20}
PHASE=${2:-1000}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
MODES=${MODES:-empty state summary copy copydyn}
LOCK=${LOCK-/work/targets/bench.lock}
B=${FLOOR_BUILD:-/tmp/hs-ebpf-floor-build}
mkdir -p "$B"
gcc -O2 -Wall -o "$B/toggle" "$HERE/toggle.c" -lbpf
clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -I"$ROOT/crates/httpscope-capture/bpf" \
  -c "$HERE/floor.bpf.c" -o "$B/floor.bpf.o"

. "$ROOT/bench/ebpf/nginx.sh"
WORKER=$(pgrep -P "$(cat "$DIR/nginx.pid")" | head -1)
curl -s -o /dev/null "$URL"
LINE=$(wc -c < "$DIR/access.log")
NM=$(echo $MODES | wc -w)
SECS=$(( (CYCLES * NM * 2 * PHASE + 999) / 1000 + 5 ))
[ -n "$LOCK" ] && { exec 9>>"$LOCK"; flock -x 9; }
[ -n "${BPF_STATS:-}" ] && sysctl -qw kernel.bpf_stats_enabled=1
wrk -t2 -c32 -d"${SECS}s" "$URL" > "$DIR/wrk.txt" 9>&- &
WRK=$!
sleep 1
"$B/toggle" "$B/floor.bpf.o" "$PORT" "$DIR/access.log" "$LINE" "$PHASE" "$CYCLES" "$WORKER,$WRK" $MODES \
  > "$DIR/phases.txt" 2> "$DIR/toggle.err" 9>&- || { cat "$DIR/toggle.err"; exit 1; }
[ -n "${BPF_STATS:-}" ] && sysctl -qw kernel.bpf_stats_enabled=0
wait $WRK
[ -n "$LOCK" ] && flock -u 9
cat "$DIR/phases.txt"
# the request counts rely on every log line having the same length; requests cut short when
# wrk stops (499, after the last phase) are the expected exceptions
awk -v l="$LINE" 'length($0) + 1 != l { bad++; if (bad <= 3) print "  " $0 } END {
  printf "access-log lines of another length: %d (of %d)\n", bad, NR }' "$DIR/access.log"
echo
echo "medians over $CYCLES cycles (min-max); ratio: a phase's rate over the mean of the off phases before and after it"
printf '%-8s %22s %22s %18s %12s %10s %10s\n' mode ratio app_us_req_off app_us_req_on own_us_req rec_req bpf_ns_req
awk '{ m[NR] = $3; rate[NR] = $6; app[NR] = $7; own[NR] = $8; rec[NR] = $9; ns[NR] = $10; req[NR] = $5 }
  END {
    for (i = 1; i <= NR; i++) if (m[i] != "off") {
      p = i - 1; n = i + 1
      if (p < 1 || n > NR || m[p] != "off" || m[n] != "off") continue
      print m[i], 2 * rate[i] / (rate[p] + rate[n]), (app[p] + app[n]) / 2, app[i], own[i], rec[i] / req[i], ns[i] / req[i]
    }
  }' "$DIR/phases.txt" > "$DIR/pairs.txt"
med() { sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f (%.3f-%.3f)", m, v[1], v[NR] }'; }
med1() { sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f", m }'; }
for m in $MODES; do
  col() { awk -v m="$m" -v c="$1" '$1 == m { print $c }' "$DIR/pairs.txt"; }
  printf '%-8s %22s %22s %18s %12s %10s %10s\n' "$m" "$(col 2 | med)" "$(col 3 | med1)" "$(col 4 | med1)" \
    "$(col 5 | med1)" "$(col 6 | med1)" "$(col 7 | med1)"
done
# the ratio predicted from CPU: app_off / (app_on + own), per pair
echo
echo "CPU per request, per pair: added = app_on - app_off + own; predicted ratio = app_off / (app_on + own)"
for m in $MODES; do
  awk -v m="$m" '$1 == m { print $4 - $3 + $5, $3 / ($4 + $5) }' "$DIR/pairs.txt" > "$DIR/cpu.txt"
  printf '%-8s added %s us/request, predicted ratio %s\n' "$m" "$(awk '{print $1}' "$DIR/cpu.txt" | med)" "$(awk '{print $2}' "$DIR/cpu.txt" | med)"
done
