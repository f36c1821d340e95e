#!/usr/bin/env bash
# Store throughput side by side: fastsmtpd --threads 1 (event loop and storage threads) on
# CPU 0, smtp-loadgen on CPU 1, 1 KiB messages, 20 connections; discard vs jsonl vs maildir vs
# eml, with and without group commit (--store-batch 1). Files go under target/storebench on
# the disk the repository is on (fsync on tmpfs would prove nothing). Usage: benches/stores.sh [RUNS]
# SERVER=path/to/fastsmtpd benches/stores.sh compares another build (e.g. the one before a change)
# with the same load generator.
set -euo pipefail
usage() {
    cat <<'USAGE'
usage: benches/stores.sh [RUNS]

Store throughput side by side: fastsmtpd --threads 1 on CPU 0, smtp-loadgen on CPU 1,
1 KiB messages, 20 connections; discard vs jsonl vs maildir vs eml, with and without group
commit (--store-batch 1). Builds both binaries in release mode. Files go under
target/storebench, on the disk the repository is on. Needs 2 CPUs and taskset.
Record: docs/benchmarks/2026-11-29-stores.md

  RUNS        rounds of every row [default: 2]
  -h, --help  print this help

Environment: SERVER=path/to/fastsmtpd measures another build with the same load generator.
USAGE
}
for arg in "$@"; do
    case $arg in
    -h | --help)
        usage
        exit 0
        ;;
    esac
done
if [ $# -gt 1 ] || ! [[ ${1:-2} =~ ^[1-9][0-9]*$ ]]; then
    usage >&2
    exit 2
fi
cd "$(dirname "$0")/.."
runs=${1:-2}
cargo build --release -q -p fastsmtpd -p smtp-loadgen
B=target/release
SERVER=${SERVER:-$B/fastsmtpd}
D=target/storebench
port=2799
run() { # name, loadgen args..., -- server args...
    local name=$1; shift
    local lg=(); while [ "$1" != "--" ]; do lg+=("$1"); shift; done; shift
    rm -rf "$D"; mkdir -p "$D"
    taskset -c 0 "$SERVER" --listen 127.0.0.1:$port --threads 1 "$@" >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
    local t0; t0=$(awk '{print $14+$15}' /proc/$pid/stat)
    taskset -c 1 $B/smtp-loadgen --target 127.0.0.1:$port --quiet --json "$D.json" "${lg[@]}" >/dev/null
    local t1; t1=$(awk '{print $14+$15}' /proc/$pid/stat)
    kill $pid; wait $pid 2>/dev/null || true
    python3 - "$name" $((t1 - t0)) "$(getconf CLK_TCK)" "$D.json" <<'PY'
import json, sys
name, ticks, hz, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
r = json.load(open(path)); t = r["totals"]; l = r["latency"]
stage = l.get("eod") or l.get("bdat")
cpu = ticks / hz * 1e6 / max(t["accepted"], 1)
print(f"| {name} | {t['msgs_per_sec']:.0f} | {stage['p50_ms']:.2f} | {stage['p99_ms']:.2f} | {cpu:.0f} | {t['failed']} |")
PY
}
echo "| store | msgs/s | eod p50 ms | eod p99 ms | server CPU µs/msg | failed |"
echo "|---|---:|---:|---:|---:|---:|"
for _ in $(seq "$runs"); do
    run "discard, DATA" -c 20 -n 20000 --
    run "jsonl, DATA" -c 20 -n 20000 -- --store "jsonl:$D/m.jsonl"
    run "jsonl, DATA, --store-batch 1" -c 20 -n 10000 -- --store "jsonl:$D/m.jsonl" --store-batch 1
    run "maildir, DATA" -c 20 -n 20000 -- --store "maildir:$D/Maildir"
    run "maildir, DATA, --store-batch 1" -c 20 -n 10000 -- --store "maildir:$D/Maildir" --store-batch 1
    run "eml, DATA" -c 20 -n 10000 -- --store "eml:$D/eml"
    run "jsonl, BDAT 8 in flight" -c 20 -n 50000 --bdat --inflight 8 -- --store "jsonl:$D/m.jsonl"
    run "maildir + jsonl, BDAT 8 in flight" -c 20 -n 20000 --bdat --inflight 8 -- --store "maildir:$D/Maildir" --store "jsonl:$D/m.jsonl"
done
