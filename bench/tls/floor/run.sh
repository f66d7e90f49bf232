#!/bin/sh
# The floor: what one probed call costs on this machine, whatever the BPF program does.
# A tiny function (f_push: first instruction `push %rbp`, emulated by the kernel; f_sub:
# `sub $0x18,%rsp`, single-stepped) is called N times, with no probe and with empty BPF
# programs attached in each way; the figure is ns per call, the difference from "none" the
# mechanism's cost per hit. Modes alternate with "none" in every round.
#
#   sudo bench/tls/floor/run.sh [rounds] [calls]       (defaults: 3 rounds, 200000 calls)
#   MODES="entry both" FNS="push nop5" ...               (default: all modes, all functions)
set -eu
ROUNDS=${1:-3}
N=${2:-200000}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$(mktemp -d /tmp/hs-floor.XXXXXX)}
gcc -O2 -o "$OUT/target" "$HERE/target.c"
clang -O2 -target bpf -I/usr/include/x86_64-linux-gnu -c "$HERE/empty.bpf.c" -o "$OUT/empty.bpf.o"
gcc -O2 -o "$OUT/loader" "$HERE/loader.c" -lbpf
MODES=${MODES:-entry ret both multi multi_ret multi_both session_both session_skip}
# File offset of a function (the PT_LOAD segment holding it maps vaddr - offset).
offset() {
  v=$((0x$(nm "$OUT/target" | awk -v f="$1" '$3 == f {print $1}')))
  readelf -lW "$OUT/target" | awk '$1 == "LOAD" {print $2, $3, $6}' | while read -r o a s; do
    if [ "$v" -ge $((a)) ] && [ "$v" -lt $((a + s)) ]; then printf '0x%x\n' $((v - a + o)); fi
  done
}
run() { # $1 mode, $2 function: prints ns per call
  if [ "$1" = none ]; then "$OUT/target" "$N" "$2"; return; fi
  rm -f "$OUT/l.out"
  "$OUT/loader" "$OUT/empty.bpf.o" "$OUT/target" "$(offset "f_$2")" "$1" > "$OUT/l.out" 2>&1 &
  L=$!
  while ! grep -q attached "$OUT/l.out" 2>/dev/null; do
    kill -0 $L 2>/dev/null || { cat "$OUT/l.out" >&2; exit 1; }
    sleep 0.05
  done
  "$OUT/target" "$N" "$2"
  kill -INT $L; wait $L || true
}
echo "getppid system call: $("$OUT/target" "$N" sys) ns"
printf '%-6s %-5s %-13s %9s %9s %12s\n' round fn mode ns_none ns_probed ns_per_hit
for r in $(seq 1 "$ROUNDS"); do
  for fn in ${FNS:-push nop5 sub}; do
    for m in $MODES; do
      B=$(run none $fn); P=$(run "$m" $fn)
      printf '%-6s %-5s %-13s %9s %9s %12s\n' "$r" "$fn" "$m" "$B" "$P" "$(awk -v b="$B" -v p="$P" 'BEGIN {printf "%.0f", p - b}')"
    done
  done
done
rm -rf "$OUT"
