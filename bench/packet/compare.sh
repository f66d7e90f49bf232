#!/bin/sh
# Side by side, in one run, on the capture made by make_capture.sh:
#   1. httpscope's packet source (examples/packet_count, release build) - throughput, memory,
#      complete transactions;
#   2. tshark with the issue's exact command - throughput, memory, requests printed;
#   3. tshark pairing (responses linked to their request, single pass) - how many
#      transactions tshark pairs;
#   4. nginx's own log as ground truth, compared as multisets of "METHOD PATH STATUS".
#
#   sh bench/packet/compare.sh [OUT_DIR]
# Set COUNT to the packet_count binary (default: $CARGO_TARGET_DIR or target, release).
set -eu
OUT=${1:-/tmp/httpscope-packet-bench}
CAP="$OUT/http.pcap"
COUNT=${COUNT:-${CARGO_TARGET_DIR:-target}/release/examples/packet_count}
cat "$CAP" > /dev/null   # warm the page cache for both tools
SIZE=$(stat -c %s "$CAP")
echo "capture: $CAP, $SIZE bytes"

/usr/bin/time -v "$COUNT" "$CAP" --list > "$OUT/httpscope.list" 2> "$OUT/httpscope.time"
/usr/bin/time -v tshark -r "$CAP" -Y http.request -T fields -e http.request.method \
  -e http.request.uri -e http.response.code > "$OUT/tshark.out" 2> "$OUT/tshark.time"
tshark -r "$CAP" -Y http.response -T fields -e http.request_in -e http.response.code \
  > "$OUT/tshark-pairs.out" 2>/dev/null

secs() { grep "Elapsed (wall clock)" "$1" | awk -F': ' '{print $2}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }'; }
rss() { grep "Maximum resident" "$1" | awk '{print $NF}'; }
cpu() { awk -F': ' '/User time|System time/ { t += $2 } END { print t }' "$1"; }
HS=$(secs "$OUT/httpscope.time"); TS=$(secs "$OUT/tshark.time")
HC=$(cpu "$OUT/httpscope.time"); TC=$(cpu "$OUT/tshark.time")
echo "httpscope: $(head -1 "$OUT/httpscope.time")"
awk -v s="$SIZE" -v h="$HS" -v t="$TS" -v hc="$HC" -v tc="$TC" -v hr="$(rss "$OUT/httpscope.time")" -v tr="$(rss "$OUT/tshark.time")" 'BEGIN {
  printf "httpscope: %.2f s, %.0f MB/s, peak RSS %.1f MB\n", h, s/1e6/h, hr/1024;
  printf "tshark:    %.2f s, %.1f MB/s, peak RSS %.1f MB\n", t, s/1e6/t, tr/1024;
  printf "ratio (tshark time / httpscope time): %.1fx wall\n", t/h;
  printf "CPU time (user+sys): httpscope %.2f s = %.0f MB per CPU-second; tshark %.2f s = %.1f MB per CPU-second; ratio %.1fx\n", hc, s/1e6/hc, tc, s/1e6/tc, tc/hc }'
echo "nginx access log:             $(wc -l < "$OUT/access.log") requests"
echo "httpscope complete:           $(wc -l < "$OUT/httpscope.list")"
echo "tshark requests printed:      $(wc -l < "$OUT/tshark.out")"
echo "tshark responses paired:      $(awk -F'\t' '$1 != ""' "$OUT/tshark-pairs.out" | wc -l)"
# Correct = present in nginx's log (multiset intersection of METHOD PATH STATUS).
sort "$OUT/access.log" > "$OUT/access.sorted"
sort "$OUT/httpscope.list" > "$OUT/httpscope.sorted"
echo "httpscope transactions matching nginx's log: $(comm -12 "$OUT/access.sorted" "$OUT/httpscope.sorted" | wc -l)"
