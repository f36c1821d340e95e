#!/usr/bin/env python3
"""fastsmtpd --api against maildev 3.0 (the popular test catcher on npm), side by side.

Issue 18 asks for the comparison on the same machine, in the same run, with the same
retention cap and the API on in both. For each target, in turn within each round:

- ingest: smtp-loadgen sends N messages of SIZE over C connections (closed loop); msgs/s as
  the generator measured it, and whether the target's own count afterwards equals the
  generator's accepted count (a target that loses a message fails its cell: `LOST n`);
- memory per message: the target's RSS after ingest minus its RSS at start, over N;
- list and search latency with N kept messages: 200 requests each on one keep-alive
  connection, p50 and p99 (list: the first page of 50 summaries; search: an exact recipient
  that matches 1 message, as each target spells it: fastsmtpd
  `/api/v1/search?q=rcpt:ADDR`, maildev `/api/email?envelope.to.address=ADDR`, its exact
  filter);
- ack-to-visible: 200 messages sent one by one with smtplib; the time from the `250` to the
  first successful read of that message by id over the API (both name the id in the `250`),
  polled in a tight loop (fastsmtpd publishes before the `250`, so its first read succeeds).

Run: benches/catcher_compare.py [--rounds 3] [--messages 10000] [--size 1k]
Needs target/release/{fastsmtpd,smtp-loadgen} (cargo build --release --workspace), node and
npm (maildev is installed with `npm install maildev@3.0.0` into MAILDEV_DIR, default
/tmp/fastsmtpd-maildev, on first use). Loopback only; every process it starts is stopped.
"""

import argparse
import http.client
import json
import os
import re
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "target/release/fastsmtpd")
LOADGEN = os.path.join(ROOT, "target/release/smtp-loadgen")
MAILDEV_DIR = os.environ.get("MAILDEV_DIR", "/tmp/fastsmtpd-maildev")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_for(check, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"catcher_compare: {what} did not come up within {timeout}s")


def greets(port):
    with socket.create_connection(("127.0.0.1", port), 1) as s:
        return s.recv(100).startswith(b"220")


class Api:
    """One keep-alive HTTP connection."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path):
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        return r.status, r.read()


class Fastsmtpd:
    name = "fastsmtpd --api"

    def start(self, cap):
        self.smtp, self.http = free_port(), free_port()
        self.proc = subprocess.Popen(
            [SERVER, "--listen", f"127.0.0.1:{self.smtp}", "--api", f"127.0.0.1:{self.http}",
             "--capture-max-messages", str(cap), "--max-connections-per-ip", "1000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: greets(self.smtp), "fastsmtpd")

    def count(self, api):
        return json.loads(api.get("/api/v1/stats")[1])["messages"]

    def list_path(self):
        return "/api/v1/messages?limit=50"

    def search_path(self, rcpt):
        return "/api/v1/search?q=" + urllib.parse.quote(f"rcpt:{rcpt}")

    def by_id(self, ident):
        return f"/api/v1/messages/{ident}"

    def id_of(self, reply):
        return re.search(rb"queued as (\S+)", reply).group(1).decode()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


class Maildev:
    name = "maildev 3.0.0"

    def start(self, cap):
        script = os.path.join(MAILDEV_DIR, "node_modules/maildev/dist/bin/maildev.js")
        if not os.path.exists(script):
            os.makedirs(MAILDEV_DIR, exist_ok=True)
            subprocess.run(["npm", "install", "--silent", "maildev@3.0.0"], cwd=MAILDEV_DIR,
                           check=True, stdout=subprocess.DEVNULL)
        self.smtp, self.http = free_port(), free_port()
        tmp = os.path.join(MAILDEV_DIR, f"tmp-{self.smtp}")
        os.makedirs(tmp, exist_ok=True)
        # maildev writes every message to $TMPDIR/maildev: a directory of the run's own.
        env = dict(os.environ, TMPDIR=tmp)
        self.proc = subprocess.Popen(
            ["node", script, "--smtp", str(self.smtp), "--ip", "127.0.0.1", "--web",
             str(self.http), "--web-ip", "127.0.0.1", "--silent", "--max-emails", str(cap)],
            cwd=MAILDEV_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: greets(self.smtp), "maildev SMTP")
        wait_for(lambda: Api(self.http).get("/api/healthz")[0] == 200, "maildev API")
        self.tmp = tmp

    def count(self, api):
        return json.loads(api.get("/api/email/summary?limit=1")[1])["total"]

    def list_path(self):
        return "/api/email/summary?limit=50"

    def search_path(self, rcpt):
        return "/api/email?" + urllib.parse.urlencode({"envelope.to.address": rcpt})

    def by_id(self, ident):
        return f"/api/email/{ident}"

    def id_of(self, reply):
        return re.search(rb"queued as (\S+)", reply).group(1).decode()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        subprocess.run(["rm", "-rf", self.tmp])


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def timed(api, path, n=200):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        status, _ = api.get(path)
        times.append((time.perf_counter() - t) * 1000)
        assert status == 200, (path, status)
    return percentile(times, 50), percentile(times, 99)


def ack_to_visible(target, n=200):
    times = []
    with smtplib.SMTP("127.0.0.1", target.smtp, timeout=30) as s:
        s.ehlo("probe.example.com")
        api = Api(target.http)
        for i in range(n):
            code, reply = s.mail("probe@example.com")
            assert code == 250, (target.name, "MAIL", code, reply)
            code, reply = s.rcpt(f"probe{i}@example.com")
            assert code == 250, (target.name, "RCPT", code, reply)
            code, reply = s.data(f"Subject: probe {i}\r\n\r\nprobe\r\n".encode())
            acked = time.perf_counter()
            assert code == 250, (code, reply)
            path = target.by_id(target.id_of(reply))
            while api.get(path)[0] != 200:
                pass
            times.append((time.perf_counter() - acked) * 1000)
    return percentile(times, 50), percentile(times, 99)


def run(target, args):
    target.start(args.messages + 1000)
    try:
        start_rss = rss_kib(target.proc.pid)
        out = subprocess.run(
            [LOADGEN, "--target", f"127.0.0.1:{target.smtp}", "-c", str(args.connections),
             "-n", str(args.messages), "-s", args.size, "--to", "user{n}@example.net", "-q",
             "--json", "/tmp/catcher.json"],
            capture_output=True, text=True)
        if out.returncode not in (0,):
            raise SystemExit(f"smtp-loadgen failed against {target.name}:\n{out.stdout}{out.stderr}")
        totals = json.load(open("/tmp/catcher.json"))["totals"]
        api = Api(target.http)
        # The last messages may still be on their way to a slow target's index.
        deadline = time.monotonic() + 30
        kept = target.count(api)
        while kept < totals["accepted"] and time.monotonic() < deadline:
            time.sleep(0.1)
            kept = target.count(api)
        per_msg = (rss_kib(target.proc.pid) - start_rss) * 1024 / max(1, kept)
        # Each message of the run has a recipient of its own (--to user{n}@): one matches.
        rcpt = "user42@example.net"
        found = json.loads(api.get(target.search_path(rcpt))[1])
        found = found["messages"] if isinstance(found, dict) else found
        assert len(found) == 1, (target.name, "search matched", len(found))
        list_p = timed(api, target.list_path())
        search_p = timed(api, target.search_path(rcpt))
        ack = ack_to_visible(target)
        return {
            "msgs_per_sec": totals["msgs_per_sec"], "accepted": totals["accepted"], "kept": kept,
            "bytes_per_msg": per_msg, "list": list_p, "search": search_p, "ack": ack,
        }
    finally:
        target.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--size", default="1k")
    args = parser.parse_args()
    print(f"{args.rounds} rounds; {args.messages} messages of {args.size} over "
          f"{args.connections} connections; cap {args.messages + 1000} messages in both")
    print("target          round  msgs/s   kept/accepted  B/msg  list p50/p99 ms  "
          "search p50/p99 ms  ack-to-visible p50/p99 ms")
    for r in range(1, args.rounds + 1):
        for target in (Fastsmtpd(), Maildev()):
            x = run(target, args)
            lost = x["accepted"] - x["kept"]
            kept = f"{x['kept']}/{x['accepted']}" + (f" LOST {lost}" if lost > 0 else "")
            print(f"{target.name:15} {r:5}  {x['msgs_per_sec']:7.0f}  {kept:13}  "
                  f"{x['bytes_per_msg']:5.0f}  {x['list'][0]:6.2f}/{x['list'][1]:6.2f}  "
                  f"{x['search'][0]:8.2f}/{x['search'][1]:7.2f}  "
                  f"{x['ack'][0]:8.3f}/{x['ack'][1]:7.3f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
