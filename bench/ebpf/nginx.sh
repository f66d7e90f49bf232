# Sourced by run.sh and kcost.sh: starts nginx-light (1 worker, a 612-byte index.html) on
# 127.0.0.1:$PORT (default 18089) in a temporary directory $DIR, stopped and removed at exit.
# Sets DIR, PORT, URL.
DIR=$(mktemp -d /tmp/hs-ebpf-bench.XXXXXX)
chmod 755 "$DIR" # nginx workers do not run as root
PORT=${PORT:-18089}
mkdir -p "$DIR/www" "$DIR/tmp"
head -c 612 /dev/zero | tr '\0' n > "$DIR/www/index.html"
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
  sendfile on;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$PORT; root $DIR/www; }
}
EOF
/usr/sbin/nginx -p "$DIR" -c "$DIR/nginx.conf"
trap 'kill -QUIT $(cat $DIR/nginx.pid) 2>/dev/null; sleep 0.5; rm -rf $DIR' EXIT
sleep 0.5
URL=http://127.0.0.1:$PORT/index.html
