#!/bin/sh
# Ingest rate of the capture store against the discard store, side by side (issue 18:
# "ingest >= 0.9x the same run's discard store"). W1 closed loop: 1 KiB messages over 20
# reused connections, smtp-loadgen sending N messages; one server worker pinned to CPU 0, the
# generator to CPU 1 (as benches/compare.py does). Modes alternate within each round, so a
# noisy neighbour hits both alike. Prints one line per run: mode, msgs/s (the generator's),
# server CPU microseconds per message (from /proc), the server's peak RSS.
#
# Run: benches/capture_ingest.sh [ROUNDS] [MESSAGES] [SIZE]   (after cargo build --release)
# Modes: discard; memory (256MiB budget, no eviction at 100k x 1 KiB); memory-evict (a 16MiB
# budget: every insert past the first ~12k evicts).
#
# Environment:
#   WATCHERS=1   the memory modes serve the API (--api on a free port) with, during the run,
#                one SSE subscriber (curl -N /api/v1/events) and 100 idle waiters
#                (curl /api/v1/await?rcpt=idleN@x&timeout=300s), all curl pinned to CPU 1
#                beside the generator (issue 18's condition). Discard has no API (--api
#                implies the capture store).
#   PIPELINING=off  the generator does not pipeline (one command per round trip; the issue's
#                "W1 closed loop" beside the default "pipelined W1"); auto|on|off as
#                smtp-loadgen --pipelining takes it.
#   PIN=0        nothing is pinned: the server's worker, its API thread and the generator share
#                both CPUs as the scheduler likes (default 1: server on CPU 0, the rest on CPU 1).
#   BASELINE=PATH  a second fastsmtpd binary (e.g. main's, copied before the change): each
#                round also runs the memory modes with it, labelled "before-...", so before
#                and after are side by side in one run.
set -eu
case "${1:-}" in
    -h | --help)
        echo "usage: benches/capture_ingest.sh [ROUNDS] [MESSAGES] [SIZE]"
        echo "W1 closed loop (1 KiB, 20 connections) against --store memory and discard, side by side;"
        echo "modes alternate within each round. Needs target/release/{fastsmtpd,smtp-loadgen}"
        echo "(cargo build --release -p fastsmtpd -p smtp-loadgen), taskset, python3."
        echo "Defaults: 3 rounds of 100000 messages of 1k (W1); SIZE as smtp-loadgen -s takes it."
        exit 0
        ;;
esac
ROUNDS=${1:-3}
N=${2:-100000}
SIZE=${3:-1k}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVER=$ROOT/target/release/fastsmtpd
LOADGEN=$ROOT/target/release/smtp-loadgen
TICKS=$(getconf CLK_TCK)
WATCHERS=${WATCHERS:-0}
BASELINE=${BASELINE:-}
PIPELINING=${PIPELINING:-auto}
PIN=${PIN:-1}
case "$PIPELINING" in auto | on | off) ;; *) echo "PIPELINING must be auto, on or off" >&2; exit 2 ;; esac
case "$PIN" in 0 | 1) ;; *) echo "PIN must be 0 or 1" >&2; exit 2 ;; esac
# The pinning prefixes (empty with PIN=0); a prefix, not a shell function, so that $! is the
# server's own pid.
CPU0=""
CPU1=""
if [ "$PIN" = 1 ]; then
    CPU0="taskset -c 0"
    CPU1="taskset -c 1"
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# run MODE BINARY [SERVER ARGS...]
run() {
    mode=$1
    binary=$2
    shift 2
    port=$(free_port)
    api=""
    watchers=""
    if [ "$WATCHERS" = 1 ] && [ "$mode" != discard ]; then
        api=$(free_port)
        set -- "$@" --api "127.0.0.1:$api"
    fi
    $CPU0 "$binary" --listen "127.0.0.1:$port" --threads 1 --max-connections-per-ip 1000 \
        "$@" >/dev/null 2>&1 &
    pid=$!
    # Wait for the greeting.
    python3 - "$port" <<'EOF'
import socket, sys, time
for _ in range(200):
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)
        if s.recv(100).startswith(b"220"):
            break
    except OSError:
        time.sleep(0.05)
EOF
    if [ -n "$api" ]; then
        python3 - "$api" <<'EOF'
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()
        break
    except OSError:
        time.sleep(0.05)
EOF
        $CPU1 curl -sN "http://127.0.0.1:$api/api/v1/events" >/dev/null 2>&1 &
        watchers="$!"
        for i in $(seq 100); do
            $CPU1 curl -s "http://127.0.0.1:$api/api/v1/await?rcpt=idle$i@x&timeout=300s" \
                >/dev/null 2>&1 &
            watchers="$watchers $!"
        done
        # Let the waiters register.
        sleep 1
    fi
    before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    out=$($CPU1 "$LOADGEN" --target "127.0.0.1:$port" -c 20 -n "$N" -s "$SIZE" --pipelining "$PIPELINING" -q \
        --json /tmp/capture-ingest.json 2>&1) || { echo "$out"; kill "$pid"; exit 1; }
    after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    # shellcheck disable=SC2086
    [ -z "$watchers" ] || kill $watchers 2>/dev/null || true
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    python3 - "$mode" "$before" "$after" "$TICKS" "$N" "$rss" <<'EOF'
import json, sys
mode, before, after, ticks, n, rss = sys.argv[1:]
totals = json.load(open("/tmp/capture-ingest.json"))["totals"]
rate, accepted = totals["msgs_per_sec"], totals["accepted"]
cpu_us = (int(after) - int(before)) / int(ticks) * 1e6 / int(n)
print(f"{mode:14} msgs/s={rate:9.0f} accepted={accepted} server_cpu_us_per_msg={cpu_us:6.2f} peak_rss_kib={rss}")
EOF
}

for round in $(seq "$ROUNDS"); do
    echo "round $round"
    run discard "$SERVER"
    if [ -n "$BASELINE" ]; then
        run before-memory "$BASELINE" --store memory
        run before-evict "$BASELINE" --store memory --capture-memory 16MiB
    fi
    run memory "$SERVER" --store memory
    run memory-evict "$SERVER" --store memory --capture-memory 16MiB
done
