#!/bin/sh
# 10 000 messages of 100 KiB over --store eml:DIR --api, then the API's stats and the RSS
# (docs/benchmarks/2026-12-07-durable-api.md): what the capture holds when bodies stay in files.
usage() { echo "usage: benches/durable_api.sh FASTSMTPD LOADGEN LABEL"; }
case "${1:-}" in
    -h | --help) usage; exit 0 ;;
esac
[ $# -eq 3 ] || { usage >&2; exit 2; }
set -e
bin=$1; loadgen=$2; label=$3
mkdir -p /tmp/durable-bench
dir=$(mktemp -d /tmp/durable-bench/eml.XXXXXX)
smtp=127.0.0.1:$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
api=127.0.0.1:$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$bin" --listen $smtp --threads 1 --api $api --store eml:$dir --capture-memory 2GiB > $dir.log 2>&1 &
pid=$!
sleep 2
start=$(date +%s.%N)
"$loadgen" --target $smtp -n 10000 -s 100K -c 8 -q --json $dir.json
end=$(date +%s.%N)
stats=$(curl -s -H 'Host: localhost' http://$api/api/v1/stats)
# One raw read, to check that the server answers from what it kept.
id=$(curl -s -H 'Host: localhost' "http://$api/api/v1/messages?limit=1" | python3 -c 'import json,sys;print(json.load(sys.stdin)["messages"][0]["id"])')
rawlen=$(curl -s -H 'Host: localhost' http://$api/api/v1/messages/$id/raw | wc -c)
echo "$label: $(echo "$end - $start" | bc) s; stats $stats"
echo "$label: raw of $id: $rawlen octets; file: $(stat -c %s $dir/$id.eml)"
grep -E 'VmRSS|VmHWM' /proc/$pid/status | sed "s/^/$label: /"
kill $pid; wait $pid 2>/dev/null || true
rm -rf $dir $dir.log $dir.json
