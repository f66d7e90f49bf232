#!/bin/sh
# Like toggle.sh, but for whole watcher processes (the real capture, or floor_watch.sh modes):
# inside ONE wrk run, phases with no watcher and with each watcher alternate; a watcher is
# started and attached before its phase starts and stopped after it ends (loading and
# verifying happen outside the measured interval, but the first events of each socket in a
# phase find no socket state yet, as after a fresh start).
#
#   sudo bench/ebpf/floor/toggle_watch.sh [cycles] [phase_s]     (defaults: 10 cycles of 2 s)
#   WATCHERS="real copy"   real = REAL (default $CARGO_TARGET_DIR/release/examples/ebpf_watch),
#                          any other word = floor_watch.sh in that FLOOR_MODE
#   LOCK=path              the bench lock, held for the whole run (default
#                          /work/targets/bench.lock; LOCK= for none)
# Per phase: requests (access-log growth / line length), req/s, nginx+wrk CPU per request,
# the watcher's own CPU per request (its cpu_s, attach to stop, over the phase's requests).
set -eu
CYCLES=${1:-10}
PHASE=${2:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REAL=${REAL:-$CARGO_TARGET_DIR/release/examples/ebpf_watch}
WATCHERS=${WATCHERS:-real copy}
LOCK=${LOCK-/work/targets/bench.lock}
FLOOR_MODE=empty "$HERE/floor_watch.sh" --port 1 > /dev/null 2>&1 &
B=$!; sleep 1; kill -INT $B 2>/dev/null || true; wait $B || true

. "$ROOT/bench/ebpf/nginx.sh"
TCK=$(getconf CLK_TCK)
WORKER=$(pgrep -P "$(cat "$DIR/nginx.pid")" | head -1)
curl -s -o /dev/null "$URL"
LINE=$(wc -c < "$DIR/access.log")
NW=$(echo $WATCHERS | wc -w)
SECS=$(( CYCLES * NW * 2 * (PHASE + 2) + PHASE + 10 ))
[ -n "$LOCK" ] && { exec 9>>"$LOCK"; flock -x 9; }
wrk -t2 -c32 -d"${SECS}s" "$URL" > "$DIR/wrk.txt" 9>&- &
WRK=$!
sleep 1
# time, access-log bytes, nginx worker + wrk CPU seconds
snap() { echo "$(date +%s.%N) $(stat -c %s "$DIR/access.log") $(cat /proc/$WORKER/stat /proc/$WRK/stat | awk -v t="$TCK" '{ sub(/^.*\) /, ""); s += ($12 + $13) / t } END { print s }')"; }
phase() { # $1 cycle, $2 name, $3 watcher cpu_s (or -): one line from snapshots S0 and S1
  echo "$S0 $S1" | awk -v c="$1" -v m="$2" -v w="$3" -v l="$LINE" '{
    dt = $4 - $1; req = ($5 - $2) / l
    printf "phase %s %s %.3f %.0f %.1f %.3f %s\n", c, m, dt, req, req / dt, ($6 - $3) * 1e6 / req, (w == "-") ? 0 : sprintf("%.4f", w * 1e6 / req) }' >> "$DIR/phases.txt"
}
: > "$DIR/phases.txt"
for c in $(seq 1 "$CYCLES"); do
  i=0
  ORDER=$(for w in $WATCHERS; do echo "$(( (i - c + 1 + NW * 100) % NW )) $w"; i=$((i + 1)); done | sort -n | awk '{print $2}')
  for w in $ORDER; do
    S0=$(snap); sleep "$PHASE"; S1=$(snap); phase "$c" off -
    rm -f "$DIR/watch.err"
    if [ "$w" = real ]; then
      "$REAL" --port "$PORT" > "$DIR/watch.out" 2> "$DIR/watch.err" 9>&- &
    else
      FLOOR_MODE=$w "$HERE/floor_watch.sh" --port "$PORT" > "$DIR/watch.out" 2> "$DIR/watch.err" 9>&- &
    fi
    WPID=$!
    while ! grep -q attached "$DIR/watch.err" 2>/dev/null; do
      kill -0 $WPID 2>/dev/null || { echo "$w failed:"; cat "$DIR/watch.err"; exit 1; }
      sleep 0.05
    done
    S0=$(snap); sleep "$PHASE"; S1=$(snap)
    kill -INT $WPID; wait $WPID || true
    CPU=$(tail -1 "$DIR/watch.out" | tr ' ' '\n' | awk -F= '$1 == "cpu_s" {print $2}')
    phase "$c" "$w" "${CPU:--}"
  done
done
S0=$(snap); sleep "$PHASE"; S1=$(snap); phase "$CYCLES" off -
kill -INT $WRK 2>/dev/null || true; wait $WRK || true
[ -n "$LOCK" ] && flock -u 9
cat "$DIR/phases.txt"
awk -v l="$LINE" 'length($0) + 1 != l { bad++; if (bad <= 3) print "  " $0 } END {
  printf "access-log lines of another length: %d (of %d)\n", bad, NR }' "$DIR/access.log"
echo
echo "medians over $CYCLES cycles (min-max); ratio: a phase's rate over the mean of the off phases before and after it"
printf '%-8s %22s %16s %16s %12s\n' watcher ratio app_us_req_off app_us_req_on own_us_req
awk '{ m[NR] = $3; rate[NR] = $6; app[NR] = $7; own[NR] = $8 }
  END { for (i = 2; i < NR; i++) if (m[i] != "off" && m[i - 1] == "off" && m[i + 1] == "off")
    print m[i], 2 * rate[i] / (rate[i - 1] + rate[i + 1]), (app[i - 1] + app[i + 1]) / 2, app[i], own[i] }' "$DIR/phases.txt" > "$DIR/pairs.txt"
med() { sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f (%.3f-%.3f)", m, v[1], v[NR] }'; }
med1() { sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f", m }'; }
for w in $WATCHERS; do
  col() { awk -v m="$w" -v c="$1" '$1 == m { print $c }' "$DIR/pairs.txt"; }
  printf '%-8s %22s %16s %16s %12s\n' "$w" "$(col 2 | med)" "$(col 3 | med1)" "$(col 4 | med1)" "$(col 5 | med1)"
done
echo
echo "CPU per request, per pair: added = app_on - app_off + own; predicted ratio = app_off / (app_on + own)"
for w in $WATCHERS; do
  awk -v m="$w" '$1 == m { print $4 - $3 + $5, $3 / ($4 + $5) }' "$DIR/pairs.txt" > "$DIR/cpu.txt"
  printf '%-8s added %s us/request, predicted ratio %s\n' "$w" "$(awk '{print $1}' "$DIR/cpu.txt" | med)" "$(awk '{print $2}' "$DIR/cpu.txt" | med)"
done
