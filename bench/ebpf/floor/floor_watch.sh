#!/bin/sh
# Stand-in for ebpf_watch in bench/ebpf/run.sh: loads floor.bpf.c in one mode (see there)
# on nginx's port and consumes its per-CPU rings as cheaply as possible (loader.c):
#   WATCH=bench/ebpf/floor/floor_watch.sh FLOOR_MODE=empty|state|summary|copy|copydyn \
#     bench/ebpf/run.sh 5 10
# Takes run.sh's `--port P`. Prints mode=, events=, bytes=, payload=, kernel_written=,
# kernel_lost=, cpu_s= (no transaction counts: nothing is parsed). Built into
# $FLOOR_BUILD (default /tmp/hs-ebpf-floor-build) when missing or older than the sources.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
CAP=$HERE/../../../crates/httpscope-capture/bpf
B=${FLOOR_BUILD:-/tmp/hs-ebpf-floor-build}
mkdir -p "$B"
PORT=0
while [ $# -gt 0 ]; do
  case $1 in --port) PORT=$2; shift 2 ;; *) shift ;; esac
done
if [ ! -x "$B/loader" ] || [ "$HERE/loader.c" -nt "$B/loader" ] || [ "$HERE/floor.h" -nt "$B/loader" ]; then
  gcc -O2 -Wall -o "$B/loader" "$HERE/loader.c" -lbpf
fi
if [ ! -f "$B/floor.bpf.o" ] || [ "$HERE/floor.bpf.c" -nt "$B/floor.bpf.o" ]; then
  clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -I"$CAP" -c "$HERE/floor.bpf.c" -o "$B/floor.bpf.o"
fi
# exec: the loader handles SIGINT itself (a background shell script could not trap it).
exec "$B/loader" "$B/floor.bpf.o" "${FLOOR_MODE:-copy}" "$PORT"
