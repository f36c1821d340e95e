#!/bin/bash
# Instructions per message of the whole server with the API busy, under callgrind (issue 18,
# docs/benchmarks/2026-12-06-capture-ingest.md round 4): one worker, --api, a 16 MiB capture
# budget, one SSE subscriber and 100 idle awaits (curl), N messages of 1 KiB over 20 connections.
# Usage: benches/callgrind_api.sh BIN OUT [N]; then: callgrind_annotate --inclusive=yes OUT
# Needs valgrind, curl, python3 and smtp-loadgen (LOADGEN=..., default target/release).
usage() { echo "usage: benches/callgrind_api.sh BIN OUT [N]   (N messages, default 20000)"; }
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
esac
[ $# -ge 2 ] || { usage >&2; exit 2; }
BIN=$1; OUT=$2; N=${3:-20000}
case "$N" in ''|*[!0-9]*) echo "callgrind_api.sh: N must be a whole number, got '$N'" >&2; exit 2 ;; esac
# Scratch files of this run only (two runs at once must not share them).
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
P=$(python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
A=$(python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
valgrind --tool=callgrind --callgrind-out-file=$OUT $BIN --listen 127.0.0.1:$P --threads 1 --max-connections-per-ip 1000 --api 127.0.0.1:$A --capture-memory 16MiB > $TMP/server.log 2>&1 &
VP=$!
sleep 8
curl -sN -H "Host: 127.0.0.1" http://127.0.0.1:$A/api/v1/events > /dev/null &
CP=$!
for i in $(seq 1 100); do curl -s -H "Host: 127.0.0.1" "http://127.0.0.1:$A/api/v1/await?rcpt=idle$i@example.org&timeout=600s" >/dev/null & done
sleep 3
${LOADGEN:-$(dirname "$0")/../target/release/smtp-loadgen} --target 127.0.0.1:$P -c 20 -n $N -s 1k -q --json $TMP/loadgen.json > /dev/null
sleep 2
kill -TERM $VP; wait $VP
kill $CP 2>/dev/null
python3 -c "import json;print('accepted', json.load(open('$TMP/loadgen.json'))['totals']['accepted'])"
