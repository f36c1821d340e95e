#!/bin/sh
# A restarted --store eml:DIR --api server indexes the messages already in DIR
# (docs/benchmarks/2026-12-07-eml-reindex.md): N messages of SIZE sent, the server stopped,
# started again RUNS times on the same directory; each start's "indexed" line, the API's
# count and the RSS after it.
usage() { echo "usage: benches/eml_reindex.sh FASTSMTPD LOADGEN N SIZE RUNS"; }
case "${1:-}" in
    -h | --help) usage; exit 0 ;;
esac
[ $# -eq 5 ] || { usage >&2; exit 2; }
set -e
bin=$1; loadgen=$2; n=$3; size=$4; runs=$5
mkdir -p /tmp/reindex-bench
dir=$(mktemp -d /tmp/reindex-bench/eml.XXXXXX)
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
# Starts the server on the directory and waits for its listening line; sets $pid $smtp $api.
start() {
    smtp=127.0.0.1:$(port); api=127.0.0.1:$(port)
    "$bin" --listen $smtp --threads 1 --api $api --store eml:$dir > $dir.log 2>&1 &
    pid=$!
    while ! grep -q 'listening on' $dir.log; do sleep 0.05; done
    sleep 0.2
}
stop() { kill -TERM $pid; wait $pid 2>/dev/null || true; }
start
"$loadgen" --target $smtp -n $n -s $size -c 8 -q --json $dir.json
stop
echo "files: $(ls $dir | wc -l) in $(du -sh $dir | cut -f1)"
for run in $(seq 1 $runs); do
    start
    count=$(curl -s -H 'Host: localhost' http://$api/api/v1/stats | python3 -c 'import json,sys;print(json.load(sys.stdin)["messages"])')
    echo "run $run: $(grep 'indexed' $dir.log); API count $count; $(grep VmRSS /proc/$pid/status | tr -s ' \t' ' ')"
    stop
done
rm -rf $dir $dir.log $dir.json
