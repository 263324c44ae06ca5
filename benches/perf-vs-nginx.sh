#!/usr/bin/env bash
# Side-by-side throughput: isa-gateway vs nginx as a plain mTLS reverse proxy, same run, same
# load generator (oha), same HTTPS receiver (nginx, requiring the caller's client certificate).
#   gateway path: oha --mTLS+JWT--> isa-gateway (schema, ledger, outbox) --mTLS--> receiver
#   nginx path:   oha --mTLS------> nginx proxy                          --mTLS--> receiver
# Usage: benches/perf-vs-nginx.sh [N] [C]   (from the project checkout, after cargo build --release;
# BIN=path picks another gateway binary). Prints figures, then a last line:
# "ratio gateway/nginx delivered/s = R", and the gateway's peak RSS.
# DEST=dir keeps the development profile's drop-folder destination for the GP (files are
# counted in its folder, concurrency DIR_CONCURRENCY, default 64; every file and its directory entry flushed before "delivered").
# Derived from ../shared/tools/perf-vs-nginx.sh; differs only in that the benchmark's calling
# system may send as fast as it can (the per-system rate limit raised), in reporting RSS, and in
# reporting the drain: the rate at which the backlog left when the load stopped was delivered.
set -u
N=${1:-4000}; C=${2:-32}
P=$(pwd); BIN=${BIN:-"$P/target/release/isa-gateway"}
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
[ -x "$BIN" ] || { echo "no release binary"; exit 1; }
[ -x "$OHA" ] || { echo "no oha (cargo install oha)"; exit 1; }
command -v nginx >/dev/null || { echo "no nginx (apt-get install nginx)"; exit 1; }
W=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null; sleep 0.5; }
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
git clone -q "$P" "$W/p"; cd "$W/p" || exit 1
"$BIN" certs dev --out certs/dev >/dev/null 2>&1 || { echo "certs dev failed"; exit 1; }
D=$W/p/certs/dev
RP=$(port); NP=$(port); GP=$(port)
mkdir -p "$W/ng/logs" "$W/ng/tmp"
cat > "$W/ng/nginx.conf" <<EOF
worker_processes auto;
pid $W/nginx.pid;
error_log $W/ng/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $W/ng/tmp/body; proxy_temp_path $W/ng/tmp/proxy;
  fastcgi_temp_path $W/ng/tmp/f; uwsgi_temp_path $W/ng/tmp/u; scgi_temp_path $W/ng/tmp/s;
  keepalive_requests 1000000;
  # the receiver: requires a client certificate from the dev CA; counts what it gets
  log_format cnt '\$request_uri';
  server {
    listen 127.0.0.1:$RP ssl;
    ssl_certificate $D/server.crt; ssl_certificate_key $D/server.key;
    ssl_client_certificate $D/ca.crt; ssl_verify_client on;
    location / { access_log $W/ng/logs/received.log cnt; client_body_buffer_size 64k; return 200 '{"ok":true}'; }
  }
  upstream receiver { server 127.0.0.1:$RP; keepalive 64; }
  # the reference: a plain mTLS reverse proxy, no policy
  server {
    listen 127.0.0.1:$NP ssl;
    ssl_certificate $D/server.crt; ssl_certificate_key $D/server.key;
    ssl_client_certificate $D/ca.crt; ssl_verify_client on;
    location / {
      proxy_pass https://receiver; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_certificate $D/gateway-client.crt; proxy_ssl_certificate_key $D/gateway-client.key;
      proxy_ssl_trusted_certificate $D/ca.crt; proxy_ssl_verify on; proxy_ssl_name localhost;
      proxy_ssl_session_reuse on;
    }
  }
}
EOF
nginx -c "$W/ng/nginx.conf" -p "$W/ng" || { echo "nginx failed"; cat "$W/ng/logs/error.log"; exit 1; }
# gateway: the dev profile, GP destination switched to HTTPS to the receiver
python3 - "$W/p/gateway.toml" "$RP" "$D" "${DEST:-https}" <<'PY'
import sys, re
f, rp, d, dest = sys.argv[1:]
s = open(f).read()
if dest == "https": s = s.replace('''id = "y99001-gp-drop"
transport = "dir"
path = "var/deliveries/y99001-gp"''', f'''id = "y99001-gp-drop"
transport = "https"
url = "https://localhost:{rp}/inbox"
ca = "{d}/ca.crt"
client_cert = "{d}/gateway-client.crt"
client_key = "{d}/gateway-client.key"
[destinations.delivery]
concurrency = 64''')
if dest == "dir": s = s.replace('path = "var/deliveries/y99001-gp"', 'path = "var/deliveries/y99001-gp"\n[destinations.delivery]\nconcurrency = ' + __import__("os").environ.get("DIR_CONCURRENCY", "64"))
s = s.replace('max_body_bytes = 262144', 'max_body_bytes = 262144\nrequests_per_sec = 1000000\nrequest_burst = 1000000')
open(f, "w").write(s)
PY
"$BIN" serve --listen "127.0.0.1:$GP" >"$W/gw.log" 2>&1 & GW=$!; PIDS+=($GW)
for _ in $(seq 1 60); do (exec 3<>"/dev/tcp/127.0.0.1/$GP") 2>/dev/null && break; sleep 0.5; done
TOKEN=$("$BIN" token dev --sub perf --role practitioner)
BODY=$W/p/examples/gp_update.json
CERT=(--cacert "$D/ca.crt" --cert "$D/clients/tt-case-system.crt" --key "$D/clients/tt-case-system.key")
received() { [ -f "$W/ng/logs/received.log" ] && wc -l <"$W/ng/logs/received.log" || echo 0; }
if [ "${DEST:-https}" = dir ]; then
  gw_received() { find "$W/p/var/deliveries/y99001-gp" -name '*.json' 2>/dev/null | wc -l; }
else
  gw_received() { received; }
fi
run_oha() { # url n -> prints req/s and p50/p99 ms
  "$OHA" --no-tui --output-format json -n "$2" -c "$C" -m POST -D "$BODY" -T application/json \
    -H "authorization: Bearer $TOKEN" "${CERT[@]}" "$1" 2>/dev/null |
  python3 -c 'import json,sys
j=json.load(sys.stdin); s=j["summary"]; p=j.get("latencyPercentiles",{})
codes=j.get("statusCodeDistribution",{})
print("%.0f %.1f %.1f %s"%(s["requestsPerSec"], 1000*p.get("p50",0), 1000*p.get("p99",0), json.dumps(codes).replace(" ","")))'
}
# warm both paths
run_oha "https://localhost:$NP/inbox" 200 >/dev/null
run_oha "https://localhost:$GP/v1/agreements/nvtt-gp-update/transfers" 200 >/dev/null
sleep 2
# nginx proxy
r0=$(received); t0=$(date +%s.%N)
read -r n_rps n_p50 n_p99 n_codes <<<"$(run_oha "https://localhost:$NP/inbox" "$N")"
t1=$(date +%s.%N); r1=$(received)
n_deliv=$(python3 -c "print(round(($r1-$r0)/($t1-$t0)))")
# gateway: accepted/s from oha; delivered/s = receiver count over the time to the last delivery
r0=$(gw_received); t0=$(date +%s.%N)
read -r g_rps g_p50 g_p99 g_codes <<<"$(run_oha "https://localhost:$GP/v1/agreements/nvtt-gp-update/transfers" "$N")"
tl=$(date +%s.%N); rl=$(gw_received)
# wait for every accepted transfer (202) to arrive: past a system's connection cap some
# connections are answered 429 and send nothing
ACCEPTED=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("202", 0))' "$g_codes")
for _ in $(seq 1 3000); do [ $(( $(gw_received) - r0 )) -ge "$ACCEPTED" ] && break; sleep 0.1; done
t1=$(date +%s.%N); r1=$(gw_received)
g_deliv=$(python3 -c "print(round(($r1-$r0)/($t1-$t0)))")
echo "N=$N C=$C"
echo "nginx mTLS proxy : ${n_rps} req/s, delivered ${n_deliv}/s, p50 ${n_p50} ms, p99 ${n_p99} ms, codes ${n_codes}"
echo "isa-gateway      : accepted ${g_rps}/s, delivered ${g_deliv}/s ($((r1-r0)) of $ACCEPTED accepted, $N sent), p50 ${g_p50} ms, p99 ${g_p99} ms, codes ${g_codes}"
python3 -c "print('ratio gateway/nginx delivered/s = %.3f (accepted/s ratio %.3f)'%($g_deliv/$n_deliv, $g_rps/$n_rps))"
# the backlog left when the load stopped, delivered with nothing else arriving
python3 -c "print('drain after the load: %d transfers in %.2f s = %.0f/s' % ($r1-$rl, $t1-$tl, ($r1-$rl)/max($t1-$tl, 1e-3)))"
echo "gateway peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$GW/status)"
