#!/bin/sh
# The floor of the eBPF source's overhead on nginx, every floor mode and the real capture
# measured side by side, interleaved round by round so that the host's drift hits all alike.
#
#   sudo bench/ebpf/floor/compare.sh [rounds] [duration]       (defaults: 5 rounds of 10 s)
#   MODES="empty state summary copy copydyn real"  what to run (real = the ebpf_watch example)
#   REAL=path       the real capture (default $CARGO_TARGET_DIR/release/examples/ebpf_watch)
#   BPF_STATS=1     also the programs' in-kernel ns per request (kernel.bpf_stats_enabled adds
#                   two clock reads per program run: keep it off for the rate ratios)
#   LOCK=path       the bench lock, taken exclusively for each round (default
#                   /work/targets/bench.lock; LOCK= to take none)
#   PAIRED=1        an unmonitored run after every mode, not only at the round's ends: each
#                   mode's ratio is then over the runs just before and after it (use with short
#                   durations when the host's speed drifts within a round)
#
# nginx and the load are bench/ebpf/run.sh's (nginx.sh: 1 worker, a 612-byte file,
# `wrk -t2 -c32 -d${duration}s` on 127.0.0.1). Each round, under the lock: one unmonitored
# run, every mode once (the order rotated by one each round), one unmonitored run again.
# A mode's ratio is its rate over the mean of its round's two unmonitored rates.
# Per monitored run: app CPU (nginx worker + wrk user+sys) per request, the watcher's own
# CPU per request (from attach to stop, as it reports cpu_s), records per request, kernel
# losses, and for `real` its transactions against nginx's access-log lines.
set -eu
ROUNDS=${1:-5}
DUR=${2:-10}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REAL=${REAL:-$CARGO_TARGET_DIR/release/examples/ebpf_watch}
MODES=${MODES:-empty state summary copy copydyn real}
LOCK=${LOCK-/work/targets/bench.lock}
# build the floor loader and object now, not inside a measured run
FLOOR_MODE=empty "$HERE/floor_watch.sh" --port 1 > /dev/null 2>&1 &
B=$!; sleep 1; kill -INT $B 2>/dev/null || true; wait $B || true

. "$ROOT/bench/ebpf/nginx.sh"

TCK=$(getconf CLK_TCK)
WORKER=$(pgrep -P "$(cat "$DIR/nginx.pid")" | head -1)
ncpu() { awk -v t="$TCK" '{print ($14 + $15) / t}' "/proc/$WORKER/stat"; }
rate() { awk '/Requests\/sec/ {print $2}' "$1"; }
lines() { wc -l < "$DIR/access.log"; }
# one wrk run: prints "req_per_s app_cpu_us_per_request requests_logged"
load() {
  C0=$(ncpu); L0=$(lines)
  /usr/bin/time -f "%U %S" -o "$DIR/w.time" wrk -t2 -c32 -d"${DUR}s" "$URL" > "$DIR/w.txt" 9>&-
  C1=$(ncpu); L1=$(lines)
  awk -v c0="$C0" -v c1="$C1" -v r="$(rate "$DIR/w.txt")" -v d="$DUR" -v n=$((L1 - L0)) \
    '{ printf "%s %.2f %d\n", r, ($1 + $2 + c1 - c0) * 1e6 / (r * d), n }' "$DIR/w.time"
}
: > "$DIR/runs.txt"
printf '%-5s %-8s %9s %7s %9s %9s %8s %6s %9s %s\n' round mode req_per_s ratio app_us_req \
  watch_us_req rec_req lost kns_req check
for r in $(seq 1 "$ROUNDS"); do
  [ -n "$LOCK" ] && { exec 9>>"$LOCK"; flock -x 9; }
  : > "$DIR/round.txt"
  set -- $(load); echo "off $1 $2" >> "$DIR/round.txt"
  # the modes, rotated by r-1
  set -- $MODES; n=$#; i=0
  ORDER=$(for m in $MODES; do echo "$(( (i - r + 1 + n * 100) % n )) $m"; i=$((i + 1)); done | sort -n | awk '{print $2}')
  for m in $ORDER; do
    rm -f "$DIR/watch.err"
    if [ "$m" = real ]; then
      "$REAL" --port "$PORT" > "$DIR/watch.out" 2> "$DIR/watch.err" 9>&- &
    else
      FLOOR_MODE=$m "$HERE/floor_watch.sh" --port "$PORT" > "$DIR/watch.out" 2> "$DIR/watch.err" 9>&- &
    fi
    WPID=$!
    while ! grep -q attached "$DIR/watch.err" 2>/dev/null; do
      kill -0 $WPID 2>/dev/null || { echo "$m failed:"; cat "$DIR/watch.err"; exit 1; }
      sleep 0.1
    done
    [ -n "${BPF_STATS:-}" ] && sysctl -qw kernel.bpf_stats_enabled=1
    set -- $(load); RATE=$1; APP=$2; LOGGED=$3
    KNS=-
    if [ -n "${BPF_STATS:-}" ]; then
      IDS=$(cat /proc/$WPID/fdinfo/* 2>/dev/null | awk '$1 == "prog_id:" {print $2}' | sort -u | tr '\n' ' ')
      KNS=$(for id in $IDS; do bpftool prog show id "$id"; done | awk -v n="$LOGGED" '
        {for (i=1;i<NF;i++) {if ($i=="name") nm=$(i+1); if ($i=="run_time_ns") t+= ($(i+1))}}
        END { printf "%.0f", t / n }')
      sysctl -qw kernel.bpf_stats_enabled=0
    fi
    sleep 0.5
    kill -INT $WPID; wait $WPID || true
    OUT=$(tail -1 "$DIR/watch.out")
    get() { echo "$OUT" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'; }
    CPU=$(get cpu_s); LOST=$(get kernel_lost)
    if [ "$m" = real ]; then
      EV=$(get transactions); CHECK="srv=$(get server) logged=$LOGGED"
    else
      EV=$(get events); CHECK="written=$(get kernel_written) read=$EV"
    fi
    WUS=$(awk -v c="$CPU" -v n="$LOGGED" 'BEGIN { printf "%.3f", c * 1e6 / n }')
    REC=$(awk -v e="$EV" -v n="$LOGGED" 'BEGIN { printf "%.2f", e / n }')
    echo "$m $RATE $APP $WUS $REC $LOST $KNS $CHECK" >> "$DIR/round.txt"
    [ -n "${PAIRED:-}" ] && { set -- $(load); echo "off $1 $2" >> "$DIR/round.txt"; }
  done
  [ -z "${PAIRED:-}" ] && { set -- $(load); echo "off $1 $2" >> "$DIR/round.txt"; }
  [ -n "$LOCK" ] && flock -u 9
  # each mode's ratio: over the mean of the unmonitored runs just before and after it
  awk -v r="$ROUNDS" -v round="$r" '
    { line[NR] = $0; m[NR] = $1; rate[NR] = $2 }
    END {
      for (i = 1; i <= NR; i++) {
        if (m[i] == "off") { split(line[i], f, " "); printf "%s off %s - %s\n", round, f[2], f[3]; continue }
        for (p = i - 1; m[p] != "off"; p--) ;
        for (n = i + 1; m[n] != "off"; n++) ;
        split(line[i], f, " ")
        rest = ""
        for (k = 3; k <= 7; k++) rest = rest " " f[k]
        chk = ""
        for (k = 8; k in f; k++) chk = chk " " f[k]
        printf "%s %s %s %.3f%s |%s\n", round, f[1], f[2], 2 * f[2] / (rate[p] + rate[n]), rest, chk
      }
    }' "$DIR/round.txt" > "$DIR/round.out"
  while IFS='|' read -r FIELDS CHECK; do
    set -- $FIELDS
    if [ "$2" = off ]; then
      printf '%-5s %-8s %9s %7s %9s\n' "$1" off "$3" - "$5"
      echo "$FIELDS" >> "$DIR/runs.txt"
    else
      printf '%-5s %-8s %9s %7s %9s %9s %8s %6s %9s%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$9" "$CHECK"
      echo "$FIELDS" >> "$DIR/runs.txt"
    fi
  done < "$DIR/round.out"
done
echo
echo "medians over $ROUNDS rounds (min-max); ratio: rate over the mean of the unmonitored runs just before and after"
printf '%-8s %22s %20s %16s %10s %10s %6s\n' mode ratio req_per_s app_us_req watch_us_req kns_req lost
for m in off $MODES; do
  awk -v m="$m" '$2 == m' "$DIR/runs.txt" > "$DIR/m.txt"
  stat() { # column: median (min-max)
    awk -v c="$1" '{print $c}' "$DIR/m.txt" | grep -v '^-$' | sort -n | awk '{ v[NR] = $1 }
      END { if (NR == 0) { print "-"; exit } m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%s (%s-%s)", m, v[1], v[NR] }'
  }
  if [ "$m" = off ]; then
    printf '%-8s %22s %20s %16s\n' off - "$(stat 3)" "$(stat 5)"
  else
    printf '%-8s %22s %20s %16s %10s %10s %6s\n' "$m" "$(stat 4)" "$(stat 3)" "$(stat 5)" \
      "$(awk '{print $6}' "$DIR/m.txt" | sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}')" \
      "$(awk '{print $9}' "$DIR/m.txt" | grep -v '^-$' | sort -n | awk '{v[NR]=$1} END {if (NR) print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; else print "-"}')" \
      "$(awk '{s += $8} END {print s + 0}' "$DIR/m.txt")"
  fi
done
