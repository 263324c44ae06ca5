#!/usr/bin/env bash
# Exercise the MESH API v2 against a running mesh-sandbox and print every exchange.
#
#   bash scripts/mesh-sandbox-probe.sh PORT            (or MESH_BASE=http://127.0.0.1:PORT)
#
# Start the sandbox first:  read PORT PID < <(bash scripts/mesh-sandbox.sh start /tmp/mesh)
# Assumes STORE_MODE=memory AUTH_MODE=full SHARED_KEY=TestKey (as scripts/mesh-sandbox.sh does).
# WARNING: calls DELETE /admin/reset first (wipes the sandbox store).
# Needs: curl, openssl, gzip. Sections a-g match the protocol notes in the gateway docs.
set -euo pipefail

BASE=${MESH_BASE:-http://127.0.0.1:${1:?usage: $0 PORT}}
KEY=${MESH_SHARED_KEY:-TestKey}
PW=password
V2='application/vnd.mesh.v2+json'
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT

# Authorization: NHSMESH MB:nonce:nonce_count:yyyyMMddHHmm(UTC):hex(HMAC-SHA256(key, "MB:nonce:nc:password:ts"))
NC=0
token() {
  local mb=$1 nonce ts mac
  nonce=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || openssl rand -hex 16)
  ts=$(date -u +%Y%m%d%H%M)
  NC=$((NC + 1))
  mac=$(printf '%s' "$mb:$nonce:$NC:$PW:$ts" | openssl dgst -sha256 -hmac "$KEY" | awk '{print $NF}')
  printf 'NHSMESH %s:%s:%s:%s:%s' "$mb" "$nonce" "$NC" "$ts" "$mac"
}

# req LABEL MB METHOD PATH [curl args...]  -> prints request headers, status, response headers, body.
# Body is saved in $TMP/body, headers in $TMP/hdr. MB='-' means no Authorization header.
req() {
  local label=$1 mb=$2 method=$3 path=$4; shift 4
  local auth=()
  [[ "$mb" != - ]] && auth=(-H "Authorization: $(token "$mb")")
  echo
  echo "===== $label"
  echo ">>> $method $path"
  local a; for a in "$@"; do [[ "$a" == -H ]] || [[ "$a" == --* ]] || echo ">>> $a"; done
  curl -sS -X "$method" "${auth[@]}" "$@" -D "$TMP/hdr" -o "$TMP/body" "$BASE$path" || true
  tr -d '\r' < "$TMP/hdr" | sed 's/^/<<< /'
  if [[ -s "$TMP/body" ]]; then
    if grep -qi '^content-encoding: *gzip' "$TMP/hdr"; then
      echo "<<< [body gzip, $(wc -c < "$TMP/body") bytes] gunzipped:"; gzip -dc < "$TMP/body"; echo
    else
      echo "<<< [body $(wc -c < "$TMP/body") bytes]:"; cat "$TMP/body"; echo
    fi
  else
    echo "<<< [empty body]"
  fi
}
status() { tr -d '\r' < "$TMP/hdr" | awk 'NR==1{print $2}'; }
json_field() { sed -n "s/.*\"$1\": *\"\\([^\"]*\\)\".*/\\1/p" "$TMP/body" | head -n1; }
hdr() { tr -d '\r' < "$TMP/hdr" | awk -v k="$(echo "$1" | tr 'A-Z' 'a-z')" -F': ' 'tolower($1)==k{print $2}'; }

req "health" - GET /health
req "reset whole store (sandbox only)" - DELETE /admin/reset

##### a. handshake
req "a1. handshake POST (v2)" X26ABC1 POST /messageexchange/X26ABC1 \
  -H "Accept: $V2" -H "mex-ClientVersion: isa-gateway==0.1.0" -H "mex-OSName: Linux" \
  -H "mex-OSVersion: 6.1" -H "mex-OSArchitecture: x86_64" -H "mex-JavaVersion: N/A"
req "a2. handshake without mex-ClientVersion (expect 400)" X26ABC1 POST /messageexchange/X26ABC1 \
  -H "Accept: $V2" -H "mex-OSName: Linux" -H "mex-OSVersion: 6.1"
req "a3. handshake with wrong key (expect 403)" - POST /messageexchange/X26ABC1 \
  -H "Authorization: NHSMESH X26ABC1:00000000-0000-0000-0000-000000000000:0:202601011200:deadbeef" \
  -H "Accept: $V2" -H "mex-ClientVersion: x" -H "mex-OSName: Linux" -H "mex-OSVersion: 6.1"

##### b. single-part send
req "b1. send single message X26ABC1 -> X26ABC2" X26ABC1 POST /messageexchange/X26ABC1/outbox \
  -H "Accept: $V2" -H "Content-Type: text/plain" \
  -H "Mex-From: X26ABC1" -H "Mex-To: X26ABC2" -H "Mex-WorkflowID: TEST_WORKFLOW" \
  -H "Mex-LocalID: LOCAL-B1" -H "Mex-FileName: hello.txt" -H "Mex-Subject: probe single" \
  -H "Mex-Content-Type: text/plain" \
  --data-binary 'hello MESH from isa-gateway'
MID_B1=$(json_field message_id); echo "--> MID_B1=$MID_B1"

printf 'gzip body from isa-gateway %.0s' $(seq 1 20) | gzip -c > "$TMP/b2.gz"
req "b2. send gzip-encoded single message (Content-Encoding: gzip, Mex-Content-Compressed: Y)" X26ABC1 POST /messageexchange/X26ABC1/outbox \
  -H "Accept: $V2" -H "Content-Type: application/octet-stream" -H "Content-Encoding: gzip" \
  -H "Mex-Content-Compressed: Y" -H "Mex-To: X26ABC2" -H "Mex-WorkflowID: TEST_WORKFLOW" \
  -H "Mex-LocalID: LOCAL-B2" -H "Mex-FileName: gz.txt" -H "Mex-Subject: probe gzip" \
  --data-binary @"$TMP/b2.gz"
MID_B2=$(json_field message_id); echo "--> MID_B2=$MID_B2"

req "b3. send to unknown mailbox (expect 417 code 12)" X26ABC1 POST /messageexchange/X26ABC1/outbox \
  -H "Accept: $V2" -H "Content-Type: text/plain" -H "Mex-To: NOPE999" -H "Mex-WorkflowID: TEST_WORKFLOW" \
  --data-binary 'x'
req "b4. send with Content-Encoding: br (expect 422)" X26ABC1 POST /messageexchange/X26ABC1/outbox \
  -H "Accept: $V2" -H "Content-Type: text/plain" -H "Content-Encoding: br" -H "Mex-To: X26ABC2" \
  -H "Mex-WorkflowID: TEST_WORKFLOW" --data-binary 'x'

##### c. chunked send (2 chunks, each gzipped independently)
printf 'chunk-one;' | gzip -c > "$TMP/c1.gz"
printf 'chunk-two.' | gzip -c > "$TMP/c2.gz"
req "c1. chunked send: chunk 1 of 2" X26ABC1 POST /messageexchange/X26ABC1/outbox \
  -H "Accept: $V2" -H "Content-Type: application/octet-stream" -H "Content-Encoding: gzip" \
  -H "Mex-Chunk-Range: 1:2" -H "Mex-To: X26ABC2" -H "Mex-WorkflowID: TEST_WORKFLOW" \
  -H "Mex-LocalID: LOCAL-C" -H "Mex-FileName: chunked.txt" -H "Mex-Subject: probe chunked" \
  -H "Mex-Content-Type: text/plain" -H "Mex-Content-Compressed: Y" \
  --data-binary @"$TMP/c1.gz"
MID_C=$(json_field message_id); echo "--> MID_C=$MID_C"
req "c2. tracking between chunks (expect status uploading)" X26ABC1 GET "/messageexchange/X26ABC1/outbox/tracking?messageID=$MID_C" \
  -H "Accept: $V2"
req "c3. recipient inbox between chunks (message not yet listed)" X26ABC2 GET /messageexchange/X26ABC2/inbox -H "Accept: $V2"
req "c4. chunked send: chunk 2 of 2" X26ABC1 POST "/messageexchange/X26ABC1/outbox/$MID_C/2" \
  -H "Accept: $V2" -H "Content-Type: application/octet-stream" -H "Content-Encoding: gzip" \
  -H "Mex-Chunk-Range: 2:2" --data-binary @"$TMP/c2.gz"
req "c5. chunk 2 again after completion (expect 423)" X26ABC1 POST "/messageexchange/X26ABC1/outbox/$MID_C/2" \
  -H "Accept: $V2" -H "Content-Type: application/octet-stream" -H "Content-Encoding: gzip" \
  -H "Mex-Chunk-Range: 2:2" --data-binary @"$TMP/c2.gz"

##### d. tracking
req "d1. tracking by messageID (v2)" X26ABC1 GET "/messageexchange/X26ABC1/outbox/tracking?messageID=$MID_B1" -H "Accept: $V2"
req "d2. tracking by ?localID= only (expect 400: messageID required)" X26ABC1 GET "/messageexchange/X26ABC1/outbox/tracking?localID=LOCAL-B1" -H "Accept: $V2"
req "d3. deprecated tracking by local id path (v1 body even with v2 Accept)" X26ABC1 GET "/messageexchange/X26ABC1/outbox/tracking/LOCAL-B1" -H "Accept: $V2"
req "d4. deprecated tracking by unknown local id (expect 404)" X26ABC1 GET "/messageexchange/X26ABC1/outbox/tracking/NO-SUCH-LOCAL" -H "Accept: $V2"
req "d5. tracking by recipient mailbox (expect 404)" X26ABC2 GET "/messageexchange/X26ABC2/outbox/tracking?messageID=$MID_B1" -H "Accept: $V2"
req "d6. outbox/rich listing (sandbox; carries local_id per message)" X26ABC1 GET "/messageexchange/X26ABC1/outbox/rich" -H "Accept: $V2"

##### e. recipient inbox
req "e1. list inbox X26ABC2" X26ABC2 GET /messageexchange/X26ABC2/inbox -H "Accept: $V2"
req "e2. download single message" X26ABC2 GET "/messageexchange/X26ABC2/inbox/$MID_B1" -H "Accept: $V2"
req "e3. download gzip message without Accept-Encoding (server gunzips)" X26ABC2 GET "/messageexchange/X26ABC2/inbox/$MID_B2" -H "Accept: $V2"
req "e4. download chunked message, chunk 1 (expect 206), Accept-Encoding: gzip" X26ABC2 GET "/messageexchange/X26ABC2/inbox/$MID_C" \
  -H "Accept: $V2" -H "Accept-Encoding: gzip"
req "e5. download chunked message, chunk 2 (expect 200)" X26ABC2 GET "/messageexchange/X26ABC2/inbox/$MID_C/2" \
  -H "Accept: $V2" -H "Accept-Encoding: gzip"
for m in "$MID_B1" "$MID_B2" "$MID_C"; do
  req "e6. acknowledge $m" X26ABC2 PUT "/messageexchange/X26ABC2/inbox/$m/status/acknowledged" -H "Accept: $V2"
done
req "e7. inbox after ack (empty)" X26ABC2 GET /messageexchange/X26ABC2/inbox -H "Accept: $V2"
req "e8. tracking after ack (status acknowledged)" X26ABC1 GET "/messageexchange/X26ABC1/outbox/tracking?messageID=$MID_B1" -H "Accept: $V2"

##### f. non-delivery report simulation
req "f0. send message that will 'fail'" X26ABC1 POST /messageexchange/X26ABC1/outbox \
  -H "Accept: $V2" -H "Content-Type: text/plain" -H "Mex-To: X26ABC2" -H "Mex-WorkflowID: TEST_WORKFLOW" \
  -H "Mex-LocalID: LOCAL-NDR" -H "Mex-FileName: ndr.txt" -H "Mex-Subject: probe ndr" --data-binary 'never collected'
MID_F=$(json_field message_id); echo "--> MID_F=$MID_F"
req "f1. admin: create NDR report into SENDER inbox (status defaults to undeliverable)" - POST /messageexchange/admin/report \
  -H "Content-Type: application/json" \
  --data-binary "{\"mailbox_id\":\"X26ABC1\",\"code\":\"14\",\"description\":\"ignored for undeliverable\",\"workflow_id\":\"TEST_WORKFLOW\",\"subject\":\"probe ndr\",\"local_id\":\"LOCAL-NDR\",\"file_name\":\"ndr.txt\",\"linked_message_id\":\"$MID_F\"}"
REPORT_ID=$(json_field message_id); echo "--> REPORT_ID=$REPORT_ID"
req "f2. sender X26ABC1 inbox list" X26ABC1 GET /messageexchange/X26ABC1/inbox -H "Accept: $V2"
req "f3. sender downloads the report" X26ABC1 GET "/messageexchange/X26ABC1/inbox/$REPORT_ID" -H "Accept: $V2"
req "f4. sender inbox/rich (sandbox-only rich listing)" X26ABC1 GET /messageexchange/X26ABC1/inbox/rich -H "Accept: $V2"
req "f5. admin: error report (status error, code 17)" - POST /messageexchange/admin/report \
  -H "Content-Type: application/json" \
  --data-binary "{\"mailbox_id\":\"X26ABC1\",\"status\":\"error\",\"code\":\"17\",\"description\":\"Workflow ID not registered for mailbox\",\"workflow_id\":\"TEST_WORKFLOW\",\"local_id\":\"LOCAL-NDR\",\"linked_message_id\":\"$MID_F\"}"
REPORT2_ID=$(json_field message_id); echo "--> REPORT2_ID=$REPORT2_ID"
req "f6. sender downloads the error report" X26ABC1 GET "/messageexchange/X26ABC1/inbox/$REPORT2_ID" -H "Accept: $V2"
for m in "$REPORT_ID" "$REPORT2_ID"; do
  req "f7. sender acknowledges report $m" X26ABC1 PUT "/messageexchange/X26ABC1/inbox/$m/status/acknowledged" -H "Accept: $V2"
done

##### g. tracking of the original after the NDR
req "g1. tracking original after admin/report (report does NOT change it)" X26ABC1 GET "/messageexchange/X26ABC1/outbox/tracking?messageID=$MID_F" -H "Accept: $V2"
req "g2. admin: mark original undeliverable (status event on the message itself)" - POST "/admin/message/$MID_F/event" \
  -H "Content-Type: application/json" \
  --data-binary '{"status":"undeliverable","code":"14","event":"TRANSFER","description":"Message not collected by recipient after 5 days"}'
req "g3. tracking original after status event" X26ABC1 GET "/messageexchange/X26ABC1/outbox/tracking?messageID=$MID_F" -H "Accept: $V2"
req "g4. recipient download of undeliverable message (expect 410)" X26ABC2 GET "/messageexchange/X26ABC2/inbox/$MID_F" -H "Accept: $V2"
req "g5. recipient inbox after status event" X26ABC2 GET /messageexchange/X26ABC2/inbox -H "Accept: $V2"
req "g6. deprecated tracking by local id after status event (v1)" X26ABC1 GET "/messageexchange/X26ABC1/outbox/tracking/LOCAL-NDR" -H "Accept: $V2"
req "g7. send a second message to fail with an 'error' event" X26ABC1 POST /messageexchange/X26ABC1/outbox \
  -H "Accept: $V2" -H "Content-Type: text/plain" -H "Mex-To: X26ABC2" -H "Mex-WorkflowID: TEST_WORKFLOW" \
  -H "Mex-LocalID: LOCAL-ERR" -H "Mex-FileName: err.txt" --data-binary 'will error'
MID_G=$(json_field message_id); echo "--> MID_G=$MID_G"
req "g8. admin: mark it error (code 14)" - POST "/admin/message/$MID_G/event" \
  -H "Content-Type: application/json" \
  --data-binary '{"status":"error","code":"14","event":"SEND","description":"Message not collected by recipient after 5 days"}'
req "g9. tracking after 'error' event (status_success false + status_* fields)" X26ABC1 GET "/messageexchange/X26ABC1/outbox/tracking?messageID=$MID_G" -H "Accept: $V2"
echo
echo "probe done"
