#!/usr/bin/env python3
"""Does reading the capture API hold up SMTP ingest? (issue 18: "the HTTP side never blocks
the SMTP path"; a fresh review found a count over 120 000 messages stalling inserts 158 ms.)

One server (--api, one worker, a 1 GiB capture budget) is filled with FILL messages of 1 KiB
to one recipient; then, for each phase, smtp-loadgen sends an open loop of RATE msgs/s for
SECONDS while a client loops one kind of API request against the same server:

  idle      no API request (the baseline)
  rcpt      GET /api/v1/messages?rcpt=<the filled recipient>&limit=1  (a page and its total)
  scan      GET /api/v1/messages?subject~=no-such-text&limit=1        (examines every message)
  delete    one DELETE /api/v1/messages (every kept message) once the load runs

Prints per phase the generator's end-of-data latency (p50, p99, max: what a sender waited
for its 250) and the API requests' count and median time. With --baseline BIN the same
phases run against a second binary too, side by side: each phase runs against both in turn
(e.g. main before a change), so that a change in the machine's load hits both alike.

Usage: benches/api_vs_ingest.py [--fill N] [--rate R] [--seconds S] [--baseline BIN]
Needs target/release/{fastsmtpd,smtp-loadgen} (cargo build --release -p fastsmtpd -p smtp-loadgen).
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILLED = "sink0@example.net"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, seconds=15):
    end = time.time() + seconds
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on 127.0.0.1:{port}")


def call(api, method, path, timeout=60):
    request = urllib.request.Request(f"http://127.0.0.1:{api}{path}", method=method)
    request.add_header("Host", f"127.0.0.1:{api}")
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return answer.read()


def loadgen(binary, port, args, out):
    command = [binary, "--target", f"127.0.0.1:{port}", "-s", "1k", "-q", "--json", out] + args
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=600)
    with open(out) as f:
        return json.load(f)


def phase(name, server_port, api, generator, rate, seconds, scratch):
    """Runs the open loop with the phase's API client beside it; its figures."""
    times = []
    stop = threading.Event()

    def reader(path):
        while not stop.is_set():
            started = time.perf_counter()
            call(api, "GET", path)
            times.append(time.perf_counter() - started)

    def deleter():
        time.sleep(seconds / 3)
        started = time.perf_counter()
        call(api, "DELETE", "/api/v1/messages")
        times.append(time.perf_counter() - started)

    client = {
        "idle": None,
        "rcpt": threading.Thread(target=reader, args=(f"/api/v1/messages?rcpt={FILLED}&limit=1",)),
        "scan": threading.Thread(target=reader, args=("/api/v1/messages?subject~=no-such-text&limit=1",)),
        "delete": threading.Thread(target=deleter),
    }[name]
    if client:
        client.start()
    result = loadgen(
        generator,
        server_port,
        ["-c", "10", "--rate", str(rate), "-d", f"{seconds}s", "--to", "other{r}@example.net"],
        scratch,
    )
    stop.set()
    if client:
        client.join()
    eod = result["latency"]["eod"]
    api_ms = f"{len(times)} requests, median {statistics.median(times) * 1e3:.1f} ms" if times else "-"
    return (
        f"{name:7} eod p50 {eod['p50_ms']:7.3f} ms  p99 {eod['p99_ms']:8.3f} ms  "
        f"max {eod['max_ms']:8.3f} ms  accepted {result['totals']['accepted']:6}  api: {api_ms}"
    )


def start(server):
    """Starts one server; its process and ports."""
    port, api = free_port(), free_port()
    process = subprocess.Popen(
        [server, "--listen", f"127.0.0.1:{port}", "--threads", "1", "--api", f"127.0.0.1:{api}",
         "--capture-memory", "1GiB", "--capture-max-messages", "1000000",
         "--max-connections-per-ip", "1000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    wait_port(api)
    return process, port, api


def run(servers, generator, fill, rate, seconds):
    """Every phase against every server in turn (phase by phase, so that a change in the
    machine's load hits each binary alike)."""
    started = []
    try:
        for label, server in servers:
            started.append((label,) + start(server))
        with tempfile.TemporaryDirectory() as scratch:
            out = os.path.join(scratch, "loadgen.json")
            for name in ["idle", "rcpt", "scan", "delete"]:
                for label, _, port, api in started:
                    # Every phase starts from the same store: FILL messages to one recipient.
                    call(api, "DELETE", "/api/v1/messages")
                    loadgen(generator, port, ["-c", "4", "-n", str(fill)], out)
                    print(f"{label:8} {phase(name, port, api, generator, rate, seconds, out)}", flush=True)
                    # Leave the idle server with an empty store (less memory, less to sweep).
                    call(api, "DELETE", "/api/v1/messages")
    finally:
        for _, process, _, _ in started:
            process.terminate()
            process.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fill", type=int, default=120_000, help="messages kept before each phase")
    parser.add_argument("--rate", type=int, default=1000, help="the open loop's msgs/s")
    parser.add_argument("--seconds", type=int, default=5, help="each phase's length")
    parser.add_argument("--server", default=os.path.join(ROOT, "target/release/fastsmtpd"))
    parser.add_argument("--loadgen", default=os.path.join(ROOT, "target/release/smtp-loadgen"))
    parser.add_argument("--baseline", help="a second fastsmtpd binary, run side by side")
    args = parser.parse_args()
    for binary in [args.server, args.loadgen] + ([args.baseline] if args.baseline else []):
        if not os.access(binary, os.X_OK):
            sys.exit(f"{binary}: not found (cargo build --release -p fastsmtpd -p smtp-loadgen)")
    print(f"fill {args.fill} x 1 KiB to {FILLED}; open loop {args.rate} msgs/s for {args.seconds}s per phase")
    servers = ([("baseline", args.baseline)] if args.baseline else []) + [("server", args.server)]
    run(servers, args.loadgen, args.fill, args.rate, args.seconds)


if __name__ == "__main__":
    main()
