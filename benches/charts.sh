#!/usr/bin/env bash
# The benchmark record docs/benchmarks/2026-11-29-charts-sweep.md (chart and sweep), made by
# smtp-loadgen itself from one run here:
# fastsmtpd against Postfix's smtp-sink on workload W1 (1 KiB messages, 20 connections reused,
# pipelined where offered), then a rate sweep of each at the SLO `eod:p99<5ms`.
#   cargo build --release && benches/charts.sh [OUT_DIR]
# Each server is pinned to CPU 0 (one worker / one process), the generator to CPU 1.
# Writes OUT_DIR/{fastsmtpd,smtp-sink}.hlog, the overlaid report (compare.html and SVGs under
# OUT_DIR/charts/), and the sweeps (sweep-*.json, sweep-*/ charts); copies the W1 percentile
# chart to docs/w1-eod-percentiles.svg.
set -euo pipefail
usage() {
    cat <<'USAGE'
usage: benches/charts.sh [OUT_DIR]

fastsmtpd against Postfix's smtp-sink on workload W1 (1 KiB messages, 20 connections reused,
pipelined where offered), charted by smtp-loadgen, then a rate sweep of each at the SLO
eod:p99<5ms. Build first: cargo build --release. Needs 2 CPUs, taskset and
/usr/sbin/smtp-sink (Debian: postfix).

  OUT_DIR   where the logs, reports and charts go [default: target/charts]
  -h, --help  print this help

Environment: SWEEP (10k..200k), STEP (10k), STEP_SECONDS (5s), SWEEP_CONNECTIONS (200).
Copies the W1 percentile chart to docs/w1-eod-percentiles.svg.
Record: docs/benchmarks/2026-11-29-charts-sweep.md
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
if [ $# -gt 1 ] || [[ ${1:-} == -* ]]; then
    usage >&2
    exit 2
fi
cd "$(dirname "$0")/.."
root=$(pwd)
release=${CARGO_TARGET_DIR:-$root/target}/release
out=${1:-$root/target/charts}
mkdir -p "$out"
loadgen=(taskset -c 1 "$release/smtp-loadgen")
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2).close()" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

fast=$(port)
taskset -c 0 "$release/fastsmtpd" --listen "127.0.0.1:$fast" --threads 1 \
    --max-connections-per-ip 20000 >"$out/fastsmtpd.log" 2>&1 &
pids+=($!)
sink=$(port)
taskset -c 0 /usr/sbin/smtp-sink -u nobody -m 15000 "127.0.0.1:$sink" 1024 &
pids+=($!)
wait_port "$fast"
wait_port "$sink"

# W1, closed loop: the same load for both.
for server in fastsmtpd smtp-sink; do
    p=$fast
    [ "$server" = smtp-sink ] && p=$sink
    "${loadgen[@]}" --target "127.0.0.1:$p" -c 20 -d 20s --warmup 3s --size 1024 --quiet \
        --hdr-log "$out/$server.hlog" --json "$out/w1-$server.json" >"$out/w1-$server.txt"
done
"$release/smtp-loadgen" report "$out/fastsmtpd.hlog" "$out/smtp-sink.hlog" \
    --label fastsmtpd --label 'Postfix smtp-sink' --html "$out/compare.html" --svg "$out/charts"
mkdir -p docs
cp "$out/charts/percentiles-eod.svg" docs/w1-eod-percentiles.svg

# Rate sweeps at eod:p99<5ms, open loop, 200 connections (open loop keeps one message in
# flight per connection: 20 would cap the offered rate near 20 / round trip), each step 5 s
# after 1 s warm-up.
for server in fastsmtpd smtp-sink; do
    p=$fast
    [ "$server" = smtp-sink ] && p=$sink
    "${loadgen[@]}" --target "127.0.0.1:$p" -c "${SWEEP_CONNECTIONS:-200}" --size 1024 --sweep "${SWEEP:-10k..200k}" \
        --step "${STEP:-10k}" -d "${STEP_SECONDS:-5s}" --warmup 1s --slo 'eod:p99<5ms' --quiet \
        --json "$out/sweep-$server.json" --svg "$out/sweep-$server" >"$out/sweep-$server.txt" || true
    echo "== $server"
    tail -n 3 "$out/sweep-$server.txt"
done
