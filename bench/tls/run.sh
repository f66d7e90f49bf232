#!/bin/sh
# Overhead of the TLS source (uprobes on OpenSSL/GnuTLS) on nginx over https, measured side
# by side in one run.
#
#   sudo bench/tls/run.sh [rounds] [duration]      (defaults: 3 rounds of 10 s)
#   KSTATS=0 ...      skip the final run with kernel.bpf_stats_enabled (in-kernel ns per request)
#   WATCH_PORT=1 ...  attach with a port filter that matches nothing: the probes fire (and the
#                     uprobe traps cost what they cost) but no event is copied or sent
#   NO_BUILD=1 ...    use the tls_watch binary already built (WATCH=path to choose another)
#   SIZE=16384 ...    size of the served file in bytes (default 612)
#
# nginx (Debian nginx-light, OpenSSL, 1 worker) serves a 612-byte index.html over TLS on
# 127.0.0.1 with a certificate made here; each round runs `wrk -t2 -c32 -d10s https://...`
# once without and once with the capture attached (the tls_watch example, release build,
# filtered on nginx's port, as `httpscope watch` runs it), alternating. wrk itself uses
# OpenSSL, so both sides of every request are captured (two transactions per request).
#
# Columns: req_per_s and ratio (monitored / unmonitored rate of the same round; on a shared,
# noisy machine this ratio moves with other people's load); transactions (client + server
# side) against nginx's access-log lines; kernel losses; cpu_us_per_tx, the capture process's
# user+sys CPU per transaction; app_cpu_us_req, nginx's worker plus wrk's user+sys CPU per
# request: it includes the uprobe traps (which bpf_stats does not see) and hardly depends on
# the host's load, so its on/off difference is the per-request cost to the traced programs.
# The last run reports bpf_stats: runs and ns of each program per request.
set -eu
ROUNDS=${1:-3}
DUR=${2:-10}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WATCH=${WATCH:-$CARGO_TARGET_DIR/release/examples/tls_watch}
if [ -z "${NO_BUILD:-}" ]; then
  (cd "$ROOT" && cargo build --release -q -p httpscope-capture --example tls_watch)
fi

DIR=$(mktemp -d /tmp/hs-tls-bench.XXXXXX)
chmod 755 "$DIR" # nginx workers do not run as root
PORT=${PORT:-18443}
mkdir -p "$DIR/www" "$DIR/tmp"
head -c "${SIZE:-612}" /dev/zero | tr '\0' n > "$DIR/www/index.html"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
  -keyout "$DIR/key.pem" -out "$DIR/cert.pem" 2>/dev/null
chmod 644 "$DIR/key.pem"
cat > "$DIR/nginx.conf" <<EOF
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/error.log;
events { worker_connections 1024; }
http {
  log_format hs '\$request_method \$uri \$status \$body_bytes_sent';
  access_log $DIR/access.log hs;
  client_body_temp_path $DIR/tmp/body;
  proxy_temp_path $DIR/tmp/proxy;
  fastcgi_temp_path $DIR/tmp/fastcgi;
  uwsgi_temp_path $DIR/tmp/uwsgi;
  scgi_temp_path $DIR/tmp/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$PORT ssl;
    ssl_certificate $DIR/cert.pem;
    ssl_certificate_key $DIR/key.pem;
    root $DIR/www;
  }
}
EOF
/usr/sbin/nginx -p "$DIR" -c "$DIR/nginx.conf"
trap 'kill -QUIT $(cat $DIR/nginx.pid) 2>/dev/null; sleep 0.5; rm -rf $DIR' EXIT
sleep 0.5
URL=https://127.0.0.1:$PORT/index.html
curl -sk -o /dev/null -w '%{http_code}' "$URL" | grep -q 200 || { echo "nginx does not serve $URL" >&2; exit 1; }

rate() { awk '/Requests\/sec/ {print $2}' "$1"; }
TCK=$(getconf CLK_TCK)
WORKER=$(pgrep -P "$(cat "$DIR/nginx.pid")" | head -1)
ncpu() { awk -v t="$TCK" '{print ($14 + $15) / t}' "/proc/$WORKER/stat"; }
runwrk() { /usr/bin/time -f "%U %S" -o "$2" wrk -t2 -c32 -d"${3:-$DUR}s" "$URL" > "$1"; }
percpu() { # $1 wrk output, $2 time output, $3 nginx cpu seconds, $4 duration: us of CPU per request
  awk -v n="$3" -v r="$(rate "$1")" -v d="$4" '{ c = $1 + $2 } END { printf "%.1f", (c + n) * 1e6 / (r * d) }' "$2"; }
lines() { wc -l < "$DIR/access.log"; }
start_watch() {
  rm -f "$DIR/watch.err"
  "$WATCH" --port "${WATCH_PORT:-$PORT}" > "$DIR/watch.out" 2> "$DIR/watch.err" &
  WPID=$!
  while ! grep -q attached "$DIR/watch.err" 2>/dev/null; do
    kill -0 $WPID 2>/dev/null || { cat "$DIR/watch.err" >&2; exit 1; }
    sleep 0.1
  done
}

printf '%-6s %-6s %11s %16s %8s %6s %13s %7s %14s\n' round mode req_per_s transactions logged lost cpu_us_per_tx ratio app_cpu_us_req
SUMOFF=0; SUMON=0
for r in $(seq 1 "$ROUNDS"); do
  C0=$(ncpu); runwrk "$DIR/base.txt" "$DIR/base.time"; C1=$(ncpu)
  BASE=$(rate "$DIR/base.txt")
  APPOFF=$(percpu "$DIR/base.txt" "$DIR/base.time" "$(echo "$C1 $C0" | awk '{print $1 - $2}')" "$DUR")
  printf '%-6s %-6s %11s %16s %8s %6s %13s %7s %14s\n' "$r" off "$BASE" - - - - - "$APPOFF"

  start_watch
  L0=$(lines)
  C0=$(ncpu); runwrk "$DIR/mon.txt" "$DIR/mon.time"; C1=$(ncpu)
  APPON=$(percpu "$DIR/mon.txt" "$DIR/mon.time" "$(echo "$C1 $C0" | awk '{print $1 - $2}')" "$DUR")
  sleep 1
  L1=$(lines)
  kill -INT $WPID; wait $WPID || true
  MON=$(rate "$DIR/mon.txt")
  OUT=$(tail -1 "$DIR/watch.out")
  get() { echo "$OUT" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'; }
  TX=$(get transactions); SRV=$(get server); LOST=$(get kernel_lost); CPU=$(get cpu_s)
  LOGGED=$((L1 - L0))
  PER=$(awk -v c="$CPU" -v t="$TX" 'BEGIN { if (t > 0) printf "%.3f", c * 1e6 / t; else print "n/a" }')
  RATIO=$(awk -v m="$MON" -v b="$BASE" 'BEGIN { printf "%.3f", m / b }')
  printf '%-6s %-6s %11s %16s %8s %6s %13s %7s %14s\n' "$r" on "$MON" "$TX(srv $SRV)" "$LOGGED" "$LOST" "$PER" "$RATIO" "$APPON"
  echo "  tls_watch: $OUT"
  SUMOFF=$(awk -v a="$SUMOFF" -v b="$APPOFF" 'BEGIN { print a + b }')
  SUMON=$(awk -v a="$SUMON" -v b="$APPON" 'BEGIN { print a + b }')
done
awk -v off="$SUMOFF" -v on="$SUMON" -v n="$ROUNDS" 'BEGIN {
  printf "mean app CPU per request: %.1f us off, %.1f us on: +%.1f us per request (%.1f%%), a rate ratio of %.3f when CPU-bound\n",
    off / n, on / n, (on - off) / n, 100 * (on - off) / off, off / on }'

if [ "${KSTATS:-1}" != 0 ]; then
  # One more monitored run with kernel.bpf_stats_enabled (two clock reads per program run,
  # so it is kept out of the rate comparison above).
  start_watch
  L0=$(lines)
  sysctl -qw kernel.bpf_stats_enabled=1
  runwrk "$DIR/k.txt" "$DIR/k.time" 5
  bpftool prog show | awk '{for (i=1;i<NF;i++) {if ($i=="name") n=$(i+1); if ($i=="run_time_ns") t=$(i+1); if ($i=="run_cnt") c=$(i+1)}} n ~ /^hs_(ssl|gnutls|tls)/ && c != "" {print n, t, c} {n=""; t=""; c=""}' > "$DIR/progs.txt"
  sysctl -qw kernel.bpf_stats_enabled=0
  sleep 1
  L1=$(lines)
  kill -INT $WPID; wait $WPID || true
  N=$((L1 - L0))
  awk -v n="$N" '{t += $2} END { printf "in-kernel (bpf_stats, %d requests): %.0f ns of BPF programs per request (both sides)\n", n, t / n }' "$DIR/progs.txt"
  awk -v n="$N" '$3 > 0 { printf "    %-18s %6.2f runs/request %6.0f ns/run %6.0f ns/request\n", $1, $3 / n, $2 / $3, $2 / n }' "$DIR/progs.txt"
fi
