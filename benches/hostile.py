#!/usr/bin/env python3
"""Hostile-client figures for fastsmtpd (the hardening issue's reproductions, at full scale).

Each scenario starts a fresh server (the binary given, default target/release/fastsmtpd) on
loopback, reads its RSS (VmRSS) before, at peak and after the clients close, and prints one
line per scenario. Bounded: every scenario has a time limit and closes what it opened.

Scenarios (pick with --only):
  amplification  EHLO x repeated 131 072 times on N connections that never read (item 2)
  envelope       1 000 RCPT TO with 1 859-octet paths on N connections, no DATA (item 4)
  descriptors    1 500 connection attempts with a soft limit of 1 024 descriptors (item 5)
  bigmessages    N connections each sending 30 MiB of content with --store eml (item 3)
  scrape         a metrics scrape's latency under slowloris and idle connections (item 8)
"""

import argparse
import hashlib
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def supports(binary, flag):
    """Whether `binary --help` mentions `flag` (older builds lack the newer limits)."""
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10).stdout
    return flag in out


class Server:
    def __init__(self, binary, args=(), preexec=None):
        self.port = free_port()
        # All the hostile clients come from 127.0.0.1: lift the per-address cap where the
        # binary has one, so the scenario measures what it is about.
        extra = (["--max-connections-per-ip", "100000"]
                 if supports(binary, "--max-connections-per-ip") else [])
        self.proc = subprocess.Popen(
            [binary, "--listen", f"127.0.0.1:{self.port}", "--threads", "1",
             "--max-connections", "20000", *extra, *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=preexec)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.recv(100)
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("server did not start")
        time.sleep(0.2)
        self.before = rss_kib(self.proc.pid)
        self.peak = self.before

    def sample(self):
        self.peak = max(self.peak, rss_kib(self.proc.pid))

    def stop(self):
        after = rss_kib(self.proc.pid)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return after


def report(name, server, after, extra=""):
    print(f"{name}: RSS before {server.before / 1024:.1f} MiB, peak {server.peak / 1024:.1f} MiB, "
          f"after close {after / 1024:.1f} MiB{extra}", flush=True)


def amplification(binary, connections):
    raise_nofile(connections + 100)
    # EHLO counts as a junk command in newer builds, which would close these sessions after
    # 100: lift that limit, so what is measured is the output budget.
    junk = (["--max-junk-commands", "1000000000"]
            if supports(binary, "--max-junk-commands") else [])
    server = Server(binary, junk)
    flood = b"EHLO x\r\n" * 131072
    socks = []
    try:
        for _ in range(connections):
            s = socket.create_connection(("127.0.0.1", server.port))
            s.setblocking(False)
            socks.append([s, 0])
        # Push for a while: the server reads, answers into the kernel's buffers, and then
        # (before the fix) into its own.
        deadline = time.time() + max(8.0, connections * 0.02)
        while time.time() < deadline:
            for entry in socks:
                s, sent = entry
                if sent >= len(flood):
                    continue
                try:
                    entry[1] += s.send(flood[sent:sent + 65536])
                except BlockingIOError:
                    pass
            server.sample()
            time.sleep(0.01)
        server.sample()
    finally:
        for s, _ in socks:
            s.close()
    time.sleep(1.0)
    after = server.stop()
    report(f"amplification ({connections} connections never reading)", server, after,
           f"; {(server.peak - server.before) / connections:.0f} KiB per connection at peak")


def envelope(binary, connections):
    raise_nofile(connections + 100)
    # The error cap would end each session after 20 refusals: lift it, to see every RCPT.
    server = Server(binary, ["--max-errors", "100000"])
    local = "l" * 64
    domain = ".".join(["d" * 59] * 30)  # 1 799 octets, valid syntax
    path = f"{local}@{domain}"
    socks = []
    refused = 0
    try:
        for _ in range(connections):
            s = socket.create_connection(("127.0.0.1", server.port))
            s.recv(200)
            s.sendall(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\n")
            socks.append(s)
        batch = b"".join(f"RCPT TO:<{path}>\r\n".encode() for _ in range(1000))
        for s in socks:
            s.sendall(batch)
        for s in socks:
            data = b""
            s.settimeout(30)
            while data.count(b"\r\n") < 8 + 1 + 1000:  # EHLO reply, MAIL, each RCPT
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            refused += data.count(b"501 ")
            server.sample()
        server.sample()
    finally:
        for s in socks:
            s.close()
    time.sleep(1.0)
    after = server.stop()
    report(f"envelope ({connections} connections x 1 000 RCPT of {len(path)} octets)", server,
           after, f"; {(server.peak - server.before) / connections:.0f} KiB per connection at peak; "
           f"{refused} RCPT refused")


def descriptors(binary, attempts, hard_too):
    raise_nofile(attempts + 200)

    def limit_nofile():
        hard = 1024 if hard_too else resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    server = Server(binary, preexec=limit_nofile)
    greeted = refused = silent = 0
    socks = []
    try:
        for _ in range(attempts):
            try:
                socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
            except OSError:
                silent += 1
        # Wait for every first reply at once (5 s in all): a silent connection costs no more
        # than the rest.
        import selectors
        sel = selectors.DefaultSelector()
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        first = {}
        deadline = time.time() + 5
        while len(first) < len(socks) and time.time() < deadline:
            for key, _ in sel.select(timeout=max(0.0, deadline - time.time())):
                try:
                    first[key.fileobj] = key.fileobj.recv(200)
                except OSError:
                    first[key.fileobj] = b""
                sel.unregister(key.fileobj)
        for s in socks:
            data = first.get(s, b"")
            if data.startswith(b"220"):
                greeted += 1
            elif data.startswith(b"421"):
                refused += 1
            else:
                silent += 1
        server.sample()
    finally:
        for s in socks:
            s.close()
    after = server.stop()
    err = server.proc.stderr.read().decode(errors="replace").strip().splitlines()
    limits = "soft and hard limit 1024" if hard_too else "soft limit 1024"
    report(f"descriptors ({attempts} attempts, {limits})", server, after,
           f"; greeted {greeted}, 421 {refused}, nothing {silent}; server stderr lines {len(err)}"
           + (f" (first: {err[0]!r})" if err else ""))


def bigmessages(binary, connections, mib):
    raise_nofile(connections + 100)
    store = tempfile.mkdtemp(prefix="fastsmtpd-hostile-")
    server = Server(binary, ["--store", f"eml:{store}"])
    line = b"x" * 998 + b"\r\n"
    chunk = line * 64
    total = mib * 1024 * 1024
    results = {}
    small_latency = []

    def sender(i):
        try:
            s = socket.create_connection(("127.0.0.1", server.port), timeout=120)
            s.recv(200)
            s.sendall(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
            got = b""
            while b"\r\n354 " not in got:
                got += s.recv(4096)
            sent = 0
            while sent < total:
                s.sendall(chunk)
                sent += len(chunk)
            s.sendall(b".\r\n")
            reply = s.recv(200)
            results[i] = reply.startswith(b"250")
            s.close()
        except OSError as e:
            results[i] = f"error {e}"

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    # A small message from another client while the big ones stream.
    s = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    s.recv(200)
    start = time.time()
    s.sendall(b"EHLO y\r\nMAIL FROM:<s@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    got = b""
    while b"\r\n354 " not in got:
        got += s.recv(4096)
    t0 = time.time()
    s.sendall(b"Subject: small\r\n\r\nhello\r\n.\r\n")
    reply = s.recv(200)
    small_latency.append(time.time() - t0)
    s.close()
    deadline = time.time() + 600
    while any(t.is_alive() for t in threads) and time.time() < deadline:
        server.sample()
        time.sleep(0.2)
    for t in threads:
        t.join(timeout=1)
    after = server.stop()
    ok = sum(1 for v in results.values() if v is True)
    # Every stored .eml must be exactly what was sent (the small one aside).
    chunks = -(-total // len(chunk))
    want = hashlib.sha256()
    for _ in range(chunks):
        want.update(chunk)
    exact = 0
    for name in os.listdir(store):
        if not name.endswith(".eml"):
            continue
        path = os.path.join(store, name)
        if os.path.getsize(path) != chunks * len(chunk):
            continue
        got_hash = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                got_hash.update(block)
        exact += got_hash.digest() == want.digest()
    shutil.rmtree(store, ignore_errors=True)
    report(f"bigmessages ({connections} x {mib} MiB, --store eml)", server, after,
           f"; {ok}/{connections} got 250, {exact} stored byte-exact; small message's end-of-data reply after "
           f"{small_latency[0] * 1000:.0f} ms ({reply[:3].decode(errors='replace')})")


def scrape(binary, idle):
    raise_nofile(idle + 200)
    mport = free_port()
    server = Server(binary, ["--metrics", f"127.0.0.1:{mport}"])
    socks = []
    stop = threading.Event()

    def slowloris(s):
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
            while not stop.is_set():
                s.sendall(b"X-a: b\r\n")
                stop.wait(1.0)
        except OSError:
            pass

    threads = []
    try:
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", mport), timeout=5)
            socks.append(s)
            t = threading.Thread(target=slowloris, args=(s,), daemon=True)
            t.start()
            threads.append(t)
        for _ in range(6 + idle):
            try:
                socks.append(socket.create_connection(("127.0.0.1", mport), timeout=5))
            except OSError:
                break
        time.sleep(0.5)
        start = time.time()
        try:
            with socket.create_connection(("127.0.0.1", mport), timeout=60) as s:
                s.settimeout(60)
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            took = time.time() - start
            status = data.split(b"\r\n", 1)[0].decode(errors="replace")
        except OSError as e:
            took = time.time() - start
            status = f"failed: {e}"
        server.sample()
    finally:
        stop.set()
        for s in socks:
            s.close()
    after = server.stop()
    report(f"scrape (4 slowloris + {6 + idle} idle connections)", server, after,
           f"; scrape answered in {took * 1000:.0f} ms ({status})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "fastsmtpd"))
    parser.add_argument("--only", default="amplification,envelope,descriptors,bigmessages,scrape")
    parser.add_argument("--connections", type=int, default=400,
                        help="connections for amplification (the issue: 400 and 1 500)")
    parser.add_argument("--envelope-connections", type=int, default=300)
    parser.add_argument("--big-connections", type=int, default=200)
    parser.add_argument("--big-mib", type=int, default=30)
    parser.add_argument("--idle", type=int, default=5000, help="extra idle metrics connections")
    args = parser.parse_args()
    print(f"binary: {args.binary}", flush=True)
    for name in args.only.split(","):
        if name == "amplification":
            amplification(args.binary, args.connections)
        elif name == "envelope":
            envelope(args.binary, args.envelope_connections)
        elif name == "descriptors":
            descriptors(args.binary, 1500, hard_too=False)
            descriptors(args.binary, 1500, hard_too=True)
        elif name == "bigmessages":
            bigmessages(args.binary, args.big_connections, args.big_mib)
        elif name == "scrape":
            scrape(args.binary, args.idle)
        else:
            sys.exit(f"unknown scenario {name}")


if __name__ == "__main__":
    main()
