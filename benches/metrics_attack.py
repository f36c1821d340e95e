#!/usr/bin/env python3
"""Scrape latency of `fastsmtpd --metrics` while slow and idle clients hold connections.

Starts the given fastsmtpd binary (one worker, loopback ports), measures a few scrapes
without load, then opens the attack and measures scrapes again:

  - SLOWLORIS connections (default 4) that send a request head one byte a second;
  - IDLE connections (default 6) that send nothing;
  - FLOOD more idle connections (default 5000).

With --reopen, a connection the server closes is opened again at once (a sustained attack:
the same number of sockets stays open from the client's side, and the server churns).

Each scrape is `GET /metrics` with `Connection: close` on a new connection, timed from
connect to the last byte, and abandoned after --scrape-timeout seconds (reported as a
timeout). The whole run is bounded by --time-limit; the server is killed at the end.
RLIMIT_NOFILE is raised to its hard limit for this script and the server.

Usage:
  benches/metrics_attack.py target/debug/fastsmtpd
  benches/metrics_attack.py /work/before/fastsmtpd --flood 5000 --scrapes 3 --scrape-timeout 30

Prints one line per scrape and a summary line (median and max latency, in ms).
"""

import argparse
import os
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def scrape(addr, timeout):
    """Seconds for one scrape, or None after `timeout` seconds (or an error)."""
    start = time.monotonic()
    deadline = start + timeout
    try:
        with socket.create_connection(addr, timeout=timeout) as s:
            s.settimeout(max(0.001, deadline - time.monotonic()))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                s.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        if not data.startswith(b"HTTP/1.1 200") or b"fastsmtpd_connections_total" not in data:
            return None
        return time.monotonic() - start
    except OSError:
        return None


class Attack:
    """Holds the attack's sockets; a thread drips slowloris bytes and reopens closed ones."""

    HEAD = b"GET /metrics HTTP/1.1\r\nHost: bench\r\nX-Slow: "

    def __init__(self, addr, slowloris, idle, flood, reopen):
        self.addr = addr
        self.reopen = reopen
        self.selector = selectors.DefaultSelector()
        self.slow = set()
        self.sent = {}  # slowloris socket -> bytes of HEAD sent so far
        self.stop = threading.Event()
        self.opened = 0
        self.closed_by_server = 0
        for _ in range(slowloris):
            self.open(slow=True)
        for _ in range(idle + flood):
            self.open(slow=False)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def open(self, slow):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(self.addr)  # completes in the background (or waits in the backlog)
        self.selector.register(s, selectors.EVENT_READ, slow)
        if slow:
            self.slow.add(s)
            self.sent[s] = 0
        self.opened += 1

    def drop(self, s):
        self.selector.unregister(s)
        self.slow.discard(s)
        self.sent.pop(s, None)
        s.close()

    def run(self):
        next_drip = time.monotonic()
        while not self.stop.is_set():
            for key, _ in self.selector.select(timeout=0.1):
                s, slow = key.fileobj, key.data
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                # Any answer (a timeout status) or EOF: the server is done with it.
                self.closed_by_server += 1
                self.drop(s)
                if self.reopen:
                    self.open(slow)
            if time.monotonic() >= next_drip:
                next_drip += 1.0
                for s in list(self.slow):
                    n = self.sent[s]
                    byte = self.HEAD[n : n + 1] if n < len(self.HEAD) else b"a"
                    try:
                        s.send(byte)
                        self.sent[s] = n + 1
                    except (BlockingIOError, OSError):
                        pass

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", help="the fastsmtpd binary to measure")
    parser.add_argument("--slowloris", type=int, default=4)
    parser.add_argument("--idle", type=int, default=6)
    parser.add_argument("--flood", type=int, default=5000, help="more idle connections")
    parser.add_argument("--reopen", action="store_true", help="reopen what the server closes")
    parser.add_argument("--scrapes", type=int, default=5, help="scrapes under attack")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between scrapes")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds from attack to first scrape")
    parser.add_argument("--scrape-timeout", type=float, default=30.0)
    parser.add_argument("--time-limit", type=float, default=300.0, help="bound on the whole run")
    args = parser.parse_args()

    nofile = raise_nofile()
    need = args.slowloris + args.idle + args.flood + 64
    if nofile < need:
        sys.exit(f"RLIMIT_NOFILE is {nofile}, need {need}: raise the hard limit (ulimit -Hn)")
    # The run is bounded whatever the server does.
    signal.signal(signal.SIGALRM, lambda *_: sys.exit("time limit reached"))
    signal.alarm(int(args.time_limit))

    smtp, metrics = free_port(), free_port()
    addr = ("127.0.0.1", metrics)
    server = subprocess.Popen(
        [args.binary, "--listen", f"127.0.0.1:{smtp}", "--metrics", f"127.0.0.1:{metrics}",
         "--threads", "1"],
        stdout=subprocess.DEVNULL,
        preexec_fn=raise_nofile,
    )
    attack = None
    try:
        for _ in range(100):
            if scrape(addr, 1.0) is not None:
                break
            time.sleep(0.05)
        else:
            sys.exit("the server's metrics endpoint never answered")
        quiet = [scrape(addr, args.scrape_timeout) for _ in range(5)]
        print(f"no attack: {fmt(quiet)}")

        started = time.monotonic()
        attack = Attack(addr, args.slowloris, args.idle, args.flood, args.reopen)
        print(f"attack: {args.slowloris} slowloris + {args.idle} idle + {args.flood} idle "
              f"connections opened in {time.monotonic() - started:.2f} s"
              f"{' (reopened when closed)' if args.reopen else ''}")
        time.sleep(args.settle)
        results = []
        for i in range(args.scrapes):
            took = scrape(addr, args.scrape_timeout)
            results.append(took)
            print(f"scrape {i + 1}: {ms(took, args.scrape_timeout)}"
                  f"  (server closed {attack.closed_by_server} attack connections so far)")
            time.sleep(args.interval)
        print(f"under attack: {fmt(results, args.scrape_timeout)}")
    finally:
        if attack:
            attack.close()
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def ms(took, timeout=None):
    if took is None:
        return f"timeout (> {timeout:.0f} s) or error" if timeout else "error"
    return f"{took * 1000:.1f} ms"


def fmt(results, timeout=None):
    ok = [r for r in results if r is not None]
    failed = len(results) - len(ok)
    if not ok:
        return f"all {failed} scrapes failed" + (f" (timeout {timeout:.0f} s)" if timeout else "")
    return (f"median {statistics.median(ok) * 1000:.1f} ms, max {max(ok) * 1000:.1f} ms"
            f" over {len(ok)} scrapes" + (f", {failed} timed out or failed" if failed else ""))


if __name__ == "__main__":
    main()
