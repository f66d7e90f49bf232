#!/bin/sh
# Stand-in for tls_watch in bench/tls/run.sh: attaches *empty* BPF programs where the TLS
# source puts its probes (OpenSSL's ssl_read_internal and ssl_write_internal, found as the
# call right after SSL_read_ex's / SSL_write_ex's prologue), so the run measures the probe
# mechanism alone inside nginx and wrk.
#   WATCH=bench/tls/floor/empty_watch.sh FLOOR_MODE=both|entry bench/tls/run.sh ...
# Arguments (--port ...) are ignored. LIBSSL=path, LOADER=path, OBJ=path to override.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
LIBSSL=${LIBSSL:-/usr/lib/x86_64-linux-gnu/libssl.so.3}
B=${FLOOR_BUILD:-/tmp/hs-floor-build}
mkdir -p "$B"
LOADER=${LOADER:-$B/loader}
OBJ=${OBJ:-$B/empty.bpf.o}
[ -x "$LOADER" ] || gcc -O2 -o "$LOADER" "$HERE/loader.c" -lbpf
[ -f "$OBJ" ] || clang -O2 -target bpf -I/usr/include/x86_64-linux-gnu -c "$HERE/empty.bpf.c" -o "$OBJ"
internal() { # file offset of the function $1 calls right after its prologue (text vaddr = offset here)
  a=$(nm -D "$LIBSSL" | awk -v f="$1" '$3 ~ "^"f"(@|$)" {print $1}')
  objdump -d --start-address=0x$a --stop-address=$((0x$a + 16)) "$LIBSSL" |
    awk '{for (i = 1; i <= NF; i++) if ($i == "call") {print "0x"$(i+1); exit}}'
}
R=$(internal SSL_read_ex); W=$(internal SSL_write_ex)
[ -n "$R" ] && [ -n "$W" ] || { echo "no internal functions found in $LIBSSL" >&2; exit 1; }
# exec: the loader handles SIGINT itself (a background shell script could not trap it).
exec "$LOADER" "$OBJ" "$LIBSSL" "$R,$W" "${FLOOR_MODE:-both}"
