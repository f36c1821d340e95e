#!/usr/bin/env python3
"""The capture store's resident memory under sustained overload, with the API busy.

Issue 18: "RSS <= budget + 10 % under sustained overload."

fastsmtpd runs with `--api --capture-memory BUDGET` (memory store, evict oldest); smtp-loadgen
sends closed loop for DURATION, far more than the budget holds, so the store evicts all along;
meanwhile READERS threads keep the API busy: list pages, message JSON (which parses the MIME
view into the view cache), raw reads and a body search, on keep-alive connections. The
server's resident set (VmRSS from /proc/PID/status) is sampled every 250 ms. Prints the RSS
idle before the load, its median over the last half of the run, its maximum, the budget and
the ratio max / budget, the octets accepted, and the store's evictions.

Run: benches/capture_rss.py [--budget 256MiB] [--duration 60s] [--size 8k] [--readers 4]
Needs target/release/{fastsmtpd,smtp-loadgen} (or BIN_DIR=...). Loopback only.
"""

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BIN_DIR", os.path.join(ROOT, "target/release"))
UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def octets(text):
    for unit, factor in UNITS.items():
        if text.endswith(unit):
            return int(text[: -len(unit)]) * factor
    return int(text)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def reader(port, stop, counts):
    """Keeps the API busy until `stop`: list, message JSON, raw, body search."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(path):
        nonlocal conn
        try:
            conn.request("GET", path, headers={"Host": "127.0.0.1"})
            r = conn.getresponse()
            body = r.read()
            counts[r.status] = counts.get(r.status, 0) + 1
            return r.status, body
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            counts["error"] = counts.get("error", 0) + 1
            return 0, b""

    while not stop.is_set():
        status, body = get("/api/v1/messages?limit=100")
        if status != 200:
            continue
        ids = [m["id"] for m in json.loads(body)["messages"]]
        for ident in random.sample(ids, min(5, len(ids))):
            get(f"/api/v1/messages/{ident}")
            get(f"/api/v1/messages/{ident}/raw")
        get("/api/v1/search?q=body:needle&limit=10")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", default="256MiB")
    parser.add_argument("--duration", default="60s")
    parser.add_argument("--size", default="8k")
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    budget = octets(args.budget)
    smtp, api = free_port(), free_port()
    server = subprocess.Popen(
        [os.path.join(BIN, "fastsmtpd"), "--listen", f"127.0.0.1:{smtp}",
         "--api", f"127.0.0.1:{api}", "--capture-memory", args.budget,
         "--max-connections-per-ip", "1000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", smtp), 1).close()
                break
            except OSError:
                time.sleep(0.05)
        idle = rss(server.pid)
        load = subprocess.Popen(
            [os.path.join(BIN, "smtp-loadgen"), "--target", f"127.0.0.1:{smtp}",
             "-c", str(args.connections), "-d", args.duration, "-s", args.size,
             "--to", "user{n}@example.net", "-q", "--json", "/tmp/capture-rss.json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        stop, counts = threading.Event(), {}
        threads = [threading.Thread(target=reader, args=(api, stop, counts))
                   for _ in range(args.readers)]
        for t in threads:
            t.start()
        samples = []
        while load.poll() is None:
            samples.append(rss(server.pid))
            time.sleep(0.25)
        stop.set()
        for t in threads:
            t.join()
        if load.returncode != 0:
            print(f"smtp-loadgen exited {load.returncode}: {load.stderr.read()}")
        totals = json.load(open("/tmp/capture-rss.json"))["totals"]
        conn = http.client.HTTPConnection("127.0.0.1", api, timeout=30)
        conn.request("GET", "/api/v1/stats", headers={"Host": "127.0.0.1"})
        stats = json.loads(conn.getresponse().read())
        late = samples[len(samples) // 2:]
        mib = lambda n: n / (1 << 20)
        print(f"budget {mib(budget):.0f} MiB; {args.size} messages closed loop for "
              f"{args.duration} over {args.connections} connections: accepted "
              f"{totals['accepted']} ({totals['msgs_per_sec']:.0f} msgs/s), API requests "
              f"{sum(v for v in counts.values())} by status {counts}")
        print(f"store: {json.dumps({k: v for k, v in stats.items() if 'evict' in k or k in ('messages', 'bytes', 'max_bytes')})}")
        print(f"RSS idle {mib(idle):.1f} MiB; under load median (2nd half) "
              f"{mib(statistics.median(late)):.1f} MiB, max {mib(max(samples)):.1f} MiB; "
              f"max / budget = {max(samples) / budget:.3f}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    sys.exit(main())
