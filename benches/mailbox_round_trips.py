#!/usr/bin/env python3
"""Parallel test workers, each with its own mailbox: send-and-await round trips.

Issue 18: "8 parallel test workers, each with its own mailbox, 1 000 send-and-await round
trips each: no cross-talk, p99 round trip <= 20 ms on loopback."

fastsmtpd runs with `--api` (memory store, one worker per core). WORKERS processes (not
threads: no shared interpreter lock between them) each create a mailbox (`POST
/api/v1/mailboxes`), keep one SMTP connection and one keep-alive HTTP connection, and ROUNDS
times: send a message to the mailbox's address with a subject naming worker and round, then
`GET /api/v1/await?mailbox=ID&after=CURSOR&timeout=10s` and check that exactly that message
came back (cross-talk: any other message, or none). The round trip is timed from just before
`MAIL FROM` to the await's answer. Prints p50/p90/p99/max over all round trips, the
cross-talk count, and each mailbox's final count against ROUNDS.

Run: benches/mailbox_round_trips.py [--workers 8] [--rounds 1000]
Needs target/release/fastsmtpd (or BIN_DIR=...). Loopback only.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BIN_DIR", os.path.join(ROOT, "target/release"))
HOST = {"Host": "127.0.0.1"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(conn, method, path, body=None):
    headers = dict(HOST)
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    return r.status, json.loads(r.read() or b"null")


def worker(args):
    index, smtp, api, rounds = args
    conn = http.client.HTTPConnection("127.0.0.1", api, timeout=30)
    status, box = call(conn, "POST", "/api/v1/mailboxes", json.dumps({"ttl": "10m"}))
    assert status == 201, (status, box)
    status, head = call(conn, "GET", "/api/v1/cursor")
    cursor = head["cursor"]
    times, crosstalk = [], 0
    with smtplib.SMTP("127.0.0.1", smtp, timeout=30) as s:
        s.ehlo(f"worker{index}.example")
        for i in range(rounds):
            subject = f"worker {index} round {i}"
            start = time.perf_counter()
            s.sendmail("sender@example.com", [box["address"]],
                       f"Subject: {subject}\r\n\r\nround trip\r\n")
            status, found = call(
                conn, "GET",
                f"/api/v1/await?mailbox={box['id']}&after={cursor}&timeout=10s")
            times.append((time.perf_counter() - start) * 1000)
            got = [m.get("subject") for m in found.get("messages", [])]
            if status != 200 or got != [subject]:
                crosstalk += 1
            cursor = found.get("cursor", cursor)
    status, final = call(conn, "GET", f"/api/v1/mailboxes/{box['id']}")
    return times, crosstalk, final.get("count")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1000)
    args = parser.parse_args()
    smtp, api = free_port(), free_port()
    server = subprocess.Popen(
        [os.path.join(BIN, "fastsmtpd"), "--listen", f"127.0.0.1:{smtp}",
         "--api", f"127.0.0.1:{api}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", smtp), 1).close()
                break
            except OSError:
                time.sleep(0.05)
        with multiprocessing.Pool(args.workers) as pool:
            results = pool.map(worker, [(w, smtp, api, args.rounds) for w in range(args.workers)])
        times = sorted(t for r in results for t in r[0])
        q = lambda p: times[min(len(times) - 1, int(p / 100 * len(times)))]
        print(f"{args.workers} workers x {args.rounds} round trips, each with its own mailbox: "
              f"cross-talk {sum(r[1] for r in results)}; mailbox counts "
              f"{[r[2] for r in results]} (each should be {args.rounds})")
        print(f"round trip (ms): p50 {q(50):.2f}  p90 {q(90):.2f}  p99 {q(99):.2f}  "
              f"max {times[-1]:.2f}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    sys.exit(main())
