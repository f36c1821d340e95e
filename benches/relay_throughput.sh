#!/bin/bash
# Relay throughput, first measurement (issue 19): smtp-loadgen -> fastsmtpd relay (--spool,
# durable, --dsn off) -> fastsmtpd next hop (--api, a 64 MiB capture store, evicting).
# Prints the relay's accept rate (the generator's), the time until the next hop has every
# accepted message (polling its GET /api/v1/stats accepted_total), the delivery rate that
# makes (accepted / that time, from the start of the load) and the relay's CPU per message.
#
# Usage: benches/relay_throughput.sh [SECONDS] [CONNECTIONS]   (defaults 10, 20)
# Environment: RATE=N  an open loop of N msgs/s (default: closed loop, as fast as accepted).
# Needs target/release/{fastsmtpd,smtp-loadgen} (cargo build --release -p fastsmtpd -p smtp-loadgen),
# curl, python3.
set -eu
case "${1:-}" in
    -h | --help)
        echo "usage: benches/relay_throughput.sh [SECONDS] [CONNECTIONS]   (RATE=N for an open loop)"
        echo "loadgen -> fastsmtpd --spool --relay-to -> fastsmtpd --api; accept rate, delivery rate, relay CPU/msg"
        exit 0
        ;;
esac
D=${1:-10}
C=${2:-20}
RATE=${RATE:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/target/release
fp() { python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"; }
S=$(fp); A=$(fp); R=$(fp)
TMP=$(mktemp -d)
trap 'kill $SINK $RELAY 2>/dev/null || true; rm -rf "$TMP"' EXIT
"$B/fastsmtpd" --listen "127.0.0.1:$S" --threads 1 --max-connections-per-ip 1000 \
    --api "127.0.0.1:$A" --capture-memory 64MiB >"$TMP/sink.log" 2>&1 &
SINK=$!
"$B/fastsmtpd" --listen "127.0.0.1:$R" --threads 1 --max-connections-per-ip 1000 \
    --spool "$TMP/spool" --relay-to "127.0.0.1:$S" --dsn off >"$TMP/relay.log" 2>&1 &
RELAY=$!
sleep 1
t0=$(date +%s.%N)
"$B/smtp-loadgen" --target "127.0.0.1:$R" -c "$C" -d "${D}s" -s 1k ${RATE:+--rate "$RATE"} -q \
    --json "$TMP/loadgen.json" >/dev/null 2>&1
t1=$(date +%s.%N)
read -r acc rate < <(python3 -c "import json,sys;t=json.load(open(sys.argv[1]))['totals'];print(t['accepted'], round(t['msgs_per_sec']))" "$TMP/loadgen.json")
got=0
for _ in $(seq 1200); do
    got=$(curl -s -H "Host: 127.0.0.1" "http://127.0.0.1:$A/api/v1/stats" |
        python3 -c "import json,sys;print(json.load(sys.stdin)['accepted_total'])")
    [ "$got" -ge "$acc" ] && break
    sleep 0.1
done
t2=$(date +%s.%N)
cpu=$(awk '{print ($14+$15)/100}' "/proc/$RELAY/stat")
python3 -c "
import sys
acc, rate, got = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
t0, t1, t2, cpu = map(float, sys.argv[4:8])
print(f'accepted {acc} at {rate} msgs/s over {t1-t0:.1f}s; next hop has {got} after {t2-t0:.1f}s '
      f'({t2-t1:.1f}s after the load): delivery {got/(t2-t0):.0f} msgs/s; relay CPU {cpu:.2f}s = {cpu*1e6/max(acc,1):.1f} us/msg')
" "$acc" "$rate" "$got" "$t0" "$t1" "$t2" "$cpu"
