#!/bin/sh
# Records the small real-traffic fixtures in crates/httpscope-capture/tests/fixtures/packet/:
# curl against nginx on 127.0.0.1:18091, captured at the same time by
#   tcpdump -i lo      -> nginx-curl-lo.pcap         (Ethernet, microseconds)
#   tcpdump -i any     -> nginx-curl-any.pcap        (Linux cooked v2, nanoseconds)
#   tshark  -i lo      -> nginx-curl-lo.pcapng       (pcapng, written by dumpcap)
# and nginx's own access log -> nginx-curl.expected ("METHOD URI STATUS BODY_BYTES" per
# request, in log order), the ground truth the test compares with.
# Needs root, nginx, curl, tcpdump, tshark. Re-running changes timestamps and ports only.
set -eu
FIX=$(cd "$(dirname "$0")/../.." && pwd)/crates/httpscope-capture/tests/fixtures/packet
W=$(mktemp -d /tmp/httpscope-fixture.XXXXXX); chmod 755 "$W"
PORT=18091
mkdir -p "$W/www" "$W/tmp"
printf 'hello from nginx\n' > "$W/www/index.html"
chmod -R a+rX "$W/www"
head -c 30000 /dev/zero | tr '\0' 'a' > "$W/www/big.txt"
cat > "$W/nginx.conf" <<CONF
worker_processes 1;
pid $W/nginx.pid;
error_log $W/error.log;
events { worker_connections 64; }
http {
  log_format tx '\$request_method \$request_uri \$status \$body_bytes_sent';
  access_log $W/access.log tx;
  client_body_temp_path $W/tmp/body;
  proxy_temp_path $W/tmp/proxy;
  fastcgi_temp_path $W/tmp/fastcgi;
  uwsgi_temp_path $W/tmp/uwsgi;
  scgi_temp_path $W/tmp/scgi;
  default_type text/plain;
  if_modified_since before;
  server {
    listen 127.0.0.1:$PORT;
    root $W/www;
    location = /gz/big.txt { gzip on; gzip_min_length 0; gzip_types *; alias $W/www/big.txt; }
    location = /empty { return 204; }
    location = /upload { client_max_body_size 1m; return 201 'created\n'; }
  }
}
CONF
nginx -c "$W/nginx.conf"
tcpdump -q -i lo -s 0 -w "$W/lo.pcap" "tcp port $PORT" 2>/dev/null & T1=$!
tcpdump -q -i any -s 0 --time-stamp-precision=nano -w "$W/any.pcap" "tcp port $PORT" 2>/dev/null & T2=$!
tshark -q -i lo -f "tcp port $PORT" -w "$W/lo.pcapng" 2>/dev/null & T3=$!
sleep 2
U=http://127.0.0.1:$PORT
# keep-alive: several URLs on one connection
curl -s -o /dev/null -o /dev/null -o /dev/null "$U/" "$U/missing" "$U/big.txt"
# HEAD
curl -s -I -o /dev/null "$U/big.txt"
# chunked (gzip) response
curl -s -o /dev/null -H 'Accept-Encoding: gzip' "$U/gz/big.txt"
# 204
curl -s -o /dev/null -X DELETE "$U/empty"
# POST with Expect: 100-continue
head -c 5000 /dev/zero | tr '\0' 'p' | curl -s -o /dev/null -H 'Expect: 100-continue' --data-binary @- "$U/upload"
# HTTP/1.0
curl -s -0 -o /dev/null "$U/"
# 304
curl -s -o /dev/null -H "If-Modified-Since: $(date -u -R -d '+1 day' | sed 's/+0000/GMT/')" "$U/"
sleep 2
kill -INT $T1 $T2 $T3
wait $T1 $T2 $T3 || true
kill -QUIT "$(cat "$W/nginx.pid")"
sleep 1
cp "$W/lo.pcap" "$FIX/nginx-curl-lo.pcap"
cp "$W/any.pcap" "$FIX/nginx-curl-any.pcap"
cp "$W/lo.pcapng" "$FIX/nginx-curl-lo.pcapng"
cp "$W/access.log" "$FIX/nginx-curl.expected"
rm -rf "$W"
ls -l "$FIX"
cat "$FIX/nginx-curl.expected"
