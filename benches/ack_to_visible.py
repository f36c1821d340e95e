#!/usr/bin/env python3
"""Ack-to-visible under load: from the `250` to the return of the `await` that asks for it.

Issue 18: "Ack-to-visible (250 sent -> await returns): p99 <= 5 ms at 10k msgs/s open loop;
after every run the API's count equals the generator's accepted count (zero lost)."

fastsmtpd runs with `--api` (memory store, one worker per core); smtp-loadgen sends an open
loop at RATE msgs/s for DURATION in the background; meanwhile a probe sends PROBES messages
one by one over its own SMTP connection, each to a recipient of its own, and for each takes a
cursor first, reads the `250`, then calls `GET /api/v1/await?rcpt=...&after=CURSOR` on a
keep-alive connection and times `250` -> `await` answered. Prints the probe's p50/p90/p99/max
and the generator's accepted count against the API's count of kept messages.

Run: benches/ack_to_visible.py [--rate 10000] [--duration 20s] [--probes 1000] [--gap 0.01]
(probes are spread over the run: one every GAP seconds)
Needs target/release/{fastsmtpd,smtp-loadgen}. Loopback only.
"""

import argparse
import http.client
import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "target/release/fastsmtpd")
LOADGEN = os.path.join(ROOT, "target/release/smtp-loadgen")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(conn, path):
    conn.request("GET", path)
    r = conn.getresponse()
    return r.status, json.loads(r.read())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=10000)
    parser.add_argument("--duration", default="20s")
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--gap", type=float, default=0.01, help="seconds between probes")
    args = parser.parse_args()
    smtp, api = free_port(), free_port()
    server = subprocess.Popen(
        [SERVER, "--listen", f"127.0.0.1:{smtp}", "--api", f"127.0.0.1:{api}",
         "--max-connections-per-ip", "1000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", smtp), 1).close()
                break
            except OSError:
                time.sleep(0.05)
        load = subprocess.Popen(
            [LOADGEN, "--target", f"127.0.0.1:{smtp}", "-c", str(args.connections),
             "--rate", str(args.rate), "-d", args.duration, "-q", "--json", "/tmp/ack-load.json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1)  # the load is running
        conn = http.client.HTTPConnection("127.0.0.1", api, timeout=30)
        times = []
        with smtplib.SMTP("127.0.0.1", smtp, timeout=30) as s:
            s.ehlo("probe.example.com")
            for i in range(args.probes):
                if load.poll() is not None:
                    break
                time.sleep(args.gap)
                cursor = get(conn, "/api/v1/cursor")[1]["cursor"]
                assert s.mail("probe@example.com")[0] == 250
                assert s.rcpt(f"probe{i}@example.com")[0] == 250
                code, _ = s.data(f"Subject: probe {i}\r\n\r\nprobe\r\n".encode())
                acked = time.perf_counter()
                assert code == 250
                status, found = get(
                    conn, f"/api/v1/await?rcpt=probe{i}@example.com&after={cursor}&timeout=10s")
                times.append((time.perf_counter() - acked) * 1000)
                assert status == 200 and len(found["messages"]) == 1, (status, found)
        load.wait()
        if load.returncode != 0:
            print(f"smtp-loadgen exited {load.returncode}: {load.stderr.read()}")
        totals = json.load(open("/tmp/ack-load.json"))["totals"]
        # A new connection: the API closes one idle for 5 s, as it was while the load ran on.
        conn = http.client.HTTPConnection("127.0.0.1", api, timeout=30)
        kept = get(conn, "/api/v1/stats")[1]["accepted_total"] - len(times)
        times.sort()
        q = lambda p: times[min(len(times) - 1, int(p / 100 * len(times)))]
        print(f"load: {args.rate} msgs/s intended for {args.duration} over {args.connections} "
              f"connections; achieved {totals['msgs_per_sec']:.0f} msgs/s, accepted "
              f"{totals['accepted']}, kept by the API {kept}"
              + ("" if kept == totals["accepted"] else f"  LOST {totals['accepted'] - kept}"))
        print(f"ack-to-visible over {len(times)} probes (ms): p50 {q(50):.3f}  p90 {q(90):.3f}  "
              f"p99 {q(99):.3f}  max {times[-1]:.3f}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    sys.exit(main())
