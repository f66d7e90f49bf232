#!/bin/sh
# Builds a capture of mixed HTTP/1.x traffic on loopback, of at least $MB megabytes
# (default 220): nginx on 127.0.0.1:8088 (a port tshark decodes as HTTP by default) serving small and large files, gzip (chunked)
# responses, 204s, 404s, POST uploads and HEADs, loaded by three wrk runs at once:
# keep-alive (mixed.lua), pipelined (pipeline.lua) and one connection per request
# ("Connection: close", so client ports are reused), all captured by tcpdump.
# nginx's access log ($OUT/access.log, "METHOD URI STATUS") is the ground truth.
#
#   sh bench/packet/make_capture.sh [OUT_DIR]    (default /tmp/httpscope-packet-bench)
# Needs root (tcpdump), nginx, wrk, tcpdump. Nothing listens outside 127.0.0.1.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-/tmp/httpscope-packet-bench}
MB=${MB:-220}
PORT=${PORT:-8088}
mkdir -p "$OUT/www/s" "$OUT/www/gz" "$OUT/tmp"
rm -f "$OUT/access.log" "$OUT/http.pcap"

# Content: random text (compresses about 4:1 under gzip, so gzip responses stay chunked
# and mid-sized).
text() { head -c "$1" /dev/urandom | base64 -w 76 | head -c "$1"; }
for n in 100 1024 4096 10240 65536; do
  text $n > "$OUT/www/s/$n.txt"
  cp "$OUT/www/s/$n.txt" "$OUT/www/gz/$n.txt"
done

cat > "$OUT/nginx.conf" <<CONF
worker_processes 1;
pid $OUT/nginx.pid;
error_log $OUT/error.log;
events { worker_connections 4096; }
http {
  log_format tx '\$request_method \$uri \$status';
  access_log $OUT/access.log tx buffer=256k;
  client_body_temp_path $OUT/tmp/body;
  proxy_temp_path $OUT/tmp/proxy;
  fastcgi_temp_path $OUT/tmp/fastcgi;
  uwsgi_temp_path $OUT/tmp/uwsgi;
  scgi_temp_path $OUT/tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  default_type text/plain;
  server {
    listen 127.0.0.1:$PORT;
    root $OUT/www;
    location /gz/ { gzip on; gzip_min_length 0; gzip_types *; gzip_comp_level 1; }
    location = /empty { return 204; }
    location /api/ { return 200 '{"ok":true,"id":"\$uri"}'; }
    location = /upload { client_max_body_size 10m; return 201 'created'; }
  }
}
CONF
nginx -c "$OUT/nginx.conf"
trap 'kill -QUIT $(cat "$OUT/nginx.pid") 2>/dev/null || true' EXIT
sleep 0.5

tcpdump -q -i lo -s 0 -B 131072 -w "$OUT/http.pcap" "tcp port $PORT" 2> "$OUT/tcpdump.log" &
TCPDUMP=$!
sleep 1

URL=http://127.0.0.1:$PORT
wrk -t1 -c24 -d600s -s "$HERE/mixed.lua" "$URL" > "$OUT/wrk-mixed.log" 2>&1 &
W1=$!
wrk -t1 -c4 -d600s -s "$HERE/pipeline.lua" "$URL" > "$OUT/wrk-pipeline.log" 2>&1 &
W2=$!
wrk -t1 -c4 -d600s -H "Connection: close" -s "$HERE/mixed.lua" "$URL" > "$OUT/wrk-close.log" 2>&1 &
W3=$!

while [ "$(stat -c %s "$OUT/http.pcap")" -lt $((MB * 1000000)) ]; do sleep 0.5; done
kill -INT $W1 $W2 $W3 2>/dev/null || true
wait $W1 $W2 $W3 2>/dev/null || true
sleep 1
kill -INT $TCPDUMP
wait $TCPDUMP || true
kill -QUIT "$(cat "$OUT/nginx.pid")"
trap - EXIT
sleep 1
cat "$OUT/tcpdump.log"
ls -l "$OUT/http.pcap"
echo "nginx logged $(wc -l < "$OUT/access.log") requests"
