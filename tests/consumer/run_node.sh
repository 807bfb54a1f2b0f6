#!/usr/bin/env bash
# Runs the consumer's node binary (tests/consumer/node.cpp) built against
# the install: waits for its listening line, checks /health/live and
# /health/ready, a durable write and a read, that /admin answers 401
# without the token, then stops it with SIGTERM and expects exit 0.
set -euo pipefail
bin=$1
work=$(mktemp -d)
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$work"' EXIT
echo "consumer-token-$$" > "$work/token"
[[ $("$bin" --version) == "mnemo-consumer-node "[0-9]* ]] || { echo "consumer node: --version"; exit 1; }
"$bin" --data "$work/data" --listen 127.0.0.1:0 \
  --admin-token-file "$work/token" > "$work/out" 2>&1 &
pid=$!
for _ in $(seq 200); do
  grep -q '"event":"listening"' "$work/out" && break
  sleep 0.05
done
port=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$work/out" | head -1)
[[ -n $port ]] || { cat "$work/out"; echo "consumer node: no listening line"; exit 1; }
# One request on its own connection (bash's /dev/tcp): prints the answer.
call() {
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf '%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n' \
    "$1" "$2" >&3
  cat <&3
  exec 3<&-
}
expect() {  # METHOD TARGET TEXT
  local answer
  answer=$(call "$1" "$2")
  if [[ $answer != *"$3"* ]]; then
    echo "consumer node: $1 $2 did not answer '$3':"
    echo "$answer"
    exit 1
  fi
}
expect GET /health/live '"status":"live"'
expect GET /health/ready '"status":"ready"'
expect POST /notes '"version":1'
expect POST /notes '"version":2'
expect GET /notes '"notes":2'
expect GET /admin/projections ' 401 '
kill -TERM $pid
status=0
wait $pid || status=$?
[[ $status -eq 0 ]] || { cat "$work/out"; echo "consumer node: exit $status"; exit 1; }
grep -q '"event":"stopped"' "$work/out"
echo "consumer node: OK"
