#!/bin/bash
# What one relayed message costs the relay, per thread: N messages of 1 KiB sent by
# smtp-loadgen (20 connections, closed loop) to a fastsmtpd relay (--spool, durable,
# --dsn off, one worker) delivering to a fastsmtpd next hop (--api); once the next hop holds
# all N, prints each relay thread's CPU time per message (/proc/PID/task/*/schedstat) and
# context switches per 1 000 messages. With STRACE=1 it prints instead the relay's system
# calls per message (strace -c -f over the whole run: slower, but the counts are exact).
# With RATE=R the N messages are sent in an open loop at R msgs/s instead (the cost at a
# steady rate below the maximum, where batches are small).
#
# Usage: benches/relay_cost.sh [N]   (default 20000; BINDIR=DIR for other builds, RATE=R)
# Needs target/release/{fastsmtpd,smtp-loadgen}, curl, python3 (and strace for STRACE=1).
set -eu
case "${1:-}" in
    -h | --help)
        echo "usage: benches/relay_cost.sh [N]   (STRACE=1: system calls per message; BINDIR=DIR; RATE=R: open loop)"
        echo "loadgen -> fastsmtpd --spool --relay-to -> fastsmtpd --api; relay CPU per thread per message"
        exit 0
        ;;
esac
N=${1:-20000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${BINDIR:-$ROOT/target/release}
fp() { python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"; }
S=$(fp); A=$(fp); R=$(fp)
TMP=$(mktemp -d)
SINK=""; RELAY=""; ST=""
trap 'kill $SINK $RELAY $ST 2>/dev/null || true; rm -rf "$TMP"' EXIT
"$B/fastsmtpd" --listen "127.0.0.1:$S" --threads 1 --max-connections-per-ip 1000 \
    --api "127.0.0.1:$A" --capture-memory 64MiB >"$TMP/sink.log" 2>&1 &
SINK=$!
"$B/fastsmtpd" --listen "127.0.0.1:$R" --threads 1 --max-connections-per-ip 1000 \
    --spool "$TMP/spool" ${RELAY_ARGS:-} --relay-to "127.0.0.1:$S" --dsn off >"$TMP/relay.log" 2>&1 &
RELAY=$!
sleep 1
snap() {
    for t in /proc/$RELAY/task/*; do
        echo "$(tr -d ' ' <"$t/comm")_$(basename "$t") $(awk '{print $1}' "$t/schedstat") $(awk '/^voluntary_ctxt/ {v=$2} /^nonvoluntary/ {n=$2} END {print v+n}' "$t/status")"
    done
}
if [ "${STRACE:-0}" = 1 ]; then
    strace -f -c -p "$RELAY" -o "$TMP/strace" 2>/dev/null &
    ST=$!
    sleep 1
fi
snap >"$TMP/s0"
"$B/smtp-loadgen" --target "127.0.0.1:$R" -c 20 -n "$N" -s 1k ${RATE:+--rate "$RATE"} -q \
    --json "$TMP/loadgen.json" >/dev/null 2>&1
for _ in $(seq 1200); do
    got=$(curl -s -H "Host: 127.0.0.1" "http://127.0.0.1:$A/api/v1/stats" |
        python3 -c "import json,sys;print(json.load(sys.stdin)['accepted_total'])")
    [ "$got" -ge "$N" ] && break
    sleep 0.1
done
snap >"$TMP/s1"
if [ -n "$ST" ]; then
    sleep 1.5 # the journal's last write and sync
    kill -INT "$ST"
    wait "$ST" 2>/dev/null || true
    ST=""
    python3 - "$N" "$TMP/strace" <<'P'
import sys
n = int(sys.argv[1]); rows = []
for line in open(sys.argv[2]):
    f = line.split()
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls = int(f[3]); errors = int(f[4]) if len(f) == 6 else 0
        rows.append((calls, errors, f[-1]))
rows.sort(reverse=True)
print(f"system calls per message ({n} messages): {sum(c for c, _, _ in rows) / n:.1f}")
for calls, errors, name in rows:
    if calls / n >= 0.05:
        print(f"  {name:14} {calls / n:5.2f}" + (f"  ({errors / n:.2f} failed)" if errors else ""))
P
    exit 0
fi
rate=$(python3 -c "import json,sys;print(round(json.load(open(sys.argv[1]))['totals']['msgs_per_sec']))" "$TMP/loadgen.json")
python3 - "$N" "$rate" "$TMP/s0" "$TMP/s1" <<'P'
import sys
n = int(sys.argv[1])
before = {l.split()[0]: l.split() for l in open(sys.argv[3])}
total = 0.0; out = []
for line in open(sys.argv[4]):
    name, ns, cs = line.split()
    b = before.get(name, [name, "0", "0"])
    us = (int(ns) - int(b[1])) / 1e3 / n; total += us
    if us > 0.05:
        out.append(f"{name.split('_')[0]} {us:.1f} us ({(int(cs) - int(b[2])) * 1000 / n:.0f} cs/k)")
print(f"accepted at {sys.argv[2]} msgs/s; relay CPU {total:.1f} us/msg: " + ", ".join(out))
P
