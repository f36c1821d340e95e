#!/usr/bin/env python3
"""Idle RSS per connection: how much server memory an idle SMTP session holds, by kind.

For each mode, starts a fresh fastsmtpd (release build, one worker, a self-signed certificate
so both listeners speak TLS), opens N connections of that kind, leaves them idle and reads
the server's VmRSS from /proc/PID/status before and after:

  plaintext  connect, greeting, EHLO                                    (--listen)
  tls        TLS handshake, greeting inside TLS, EHLO                   (--listen-tls, RFC 8314)
  starttls   connect, greeting, EHLO, STARTTLS, handshake, EHLO again   (--listen, RFC 3207)

"Before" is taken after a warm-up (WARMUP connections of the same kind opened, used and
closed), so one-off allocations (rustls's tables, the first slab pages) are not charged to the
connections. Prints KiB per connection for each mode, and the RSS once they are closed again.
The server is checked to hold all N (SIGUSR1 stats line: `connections open=N`).

Usage (as root, or with a hard descriptor limit above N + 100 for both processes):

  cargo build --release
  python3 benches/idle_rss.py --connections 10000 --modes plaintext,tls,starttls

Options: --binary (default: $CARGO_TARGET_DIR/release/fastsmtpd, else target/release),
--no-tls (with --modes plaintext: a server with no TLS configured at all),
--tls-version 1.2|1.3 (default: whatever both prefer, TLS 1.3), --sources K (spread the client
side over 127.0.0.1 .. 127.0.0.K when ephemeral ports run short), --json FILE.
"""

import argparse
import json
import os
import resource
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP = 50
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux


def default_binary():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "fastsmtpd")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def read_reply(sock):
    """One whole SMTP reply (up to the line with a space after its code)."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError(f"closed mid-reply: {data!r}")
        data += chunk
        if data.endswith(b"\r\n"):
            last = data[:-2].rsplit(b"\r\n", 1)[-1]
            if len(last) >= 4 and last[3:4] == b" ":
                return data


def expect(sock, code):
    reply = read_reply(sock)
    if not reply.startswith(code):
        raise RuntimeError(f"expected {code!r}, got {reply!r}")


class Client:
    """Opens idle sessions of one mode against a server."""

    def __init__(self, mode, plain_port, tls_port, sources, tls_version):
        self.mode = mode
        self.plain_port = plain_port
        self.tls_port = tls_port
        self.sources = sources
        self.count = 0
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        if tls_version:
            version = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[tls_version]
            self.ctx.minimum_version = version
            self.ctx.maximum_version = version

    def connect(self, port):
        """A TCP connection; closing it later sends RST (SO_LINGER 0), so repeated runs do
        not pile up TIME_WAIT ports on the client side."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(60)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if self.sources > 1:
            # Bound to the address only: the port is picked at connect (per destination).
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((f"127.0.0.{1 + self.count % self.sources}", 0))
        self.count += 1
        sock.connect(("127.0.0.1", port))
        return sock

    def open(self):
        """One session of this mode, idle after its (last) EHLO."""
        if self.mode == "tls":
            sock = self.ctx.wrap_socket(self.connect(self.tls_port), server_hostname="mx.test")
        else:
            sock = self.connect(self.plain_port)
        expect(sock, b"220 ")
        sock.sendall(b"EHLO client.example\r\n")
        expect(sock, b"250")
        if self.mode == "starttls":
            sock.sendall(b"STARTTLS\r\n")
            expect(sock, b"220 ")
            sock = self.ctx.wrap_socket(sock, server_hostname="mx.test")
            sock.sendall(b"EHLO client.example\r\n")
            expect(sock, b"250")
        return sock


def open_connections(server, stats_line):
    """Asks the server for its stats line (SIGUSR1) and returns `connections open=`."""
    server.send_signal(signal.SIGUSR1)
    deadline = time.time() + 10
    while time.time() < deadline:
        line = stats_line()
        if line.startswith("stats:"):
            return int(line.split("open=")[1].split()[0])
    raise RuntimeError("no stats line")


def measure(binary, mode, connections, sources, tls_version, threads, tls_config=True):
    plain_port, tls_port = free_port(), free_port()
    cap = str(connections + 1000)
    command = [binary, "--listen", f"127.0.0.1:{plain_port}",
               "--hostname", "mx.test", "--threads", str(threads),
               "--max-connections", cap, "--max-connections-per-ip", cap,
               "--idle-timeout", "3600"]
    if tls_config:
        command += ["--listen-tls", f"127.0.0.1:{tls_port}", "--tls-self-signed"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    socks = []
    try:
        first = server.stdout.readline()
        if not first.startswith("fastsmtpd listening on"):
            raise RuntimeError(f"server did not start: {first!r} {server.stderr.read()}")
        client = Client(mode, plain_port, tls_port, sources, tls_version)
        warm = [client.open() for _ in range(WARMUP)]
        for s in warm:
            s.close()
        time.sleep(1.0)
        before = rss_kib(server.pid)
        started = time.time()
        for i in range(connections):
            socks.append(client.open())
            if (i + 1) % 2000 == 0:
                print(f"idle_rss: {mode}: {i + 1} open", file=sys.stderr, flush=True)
        opening = time.time() - started
        time.sleep(1.0)
        after = rss_kib(server.pid)
        held = open_connections(server, server.stdout.readline)
        if held != connections:
            raise RuntimeError(f"the server holds {held} connections, not {connections}")
        for s in socks:
            s.close()
        socks = []
        time.sleep(2.0)
        closed = rss_kib(server.pid)
        return {"mode": mode, "server_tls": tls_config, "connections": connections,
                "tls_version": tls_version or "default",
                "rss_before_kib": before, "rss_after_kib": after, "rss_after_close_kib": closed,
                "kib_per_connection": (after - before) / connections,
                "seconds_to_open": round(opening, 1)}
    finally:
        for s in socks:
            s.close()
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=default_binary())
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--modes", default="plaintext,tls,starttls")
    parser.add_argument("--tls-version", choices=["1.2", "1.3"])
    parser.add_argument("--sources", type=int, default=1,
                        help="client source addresses 127.0.0.1 .. 127.0.0.K")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-tls", action="store_true",
                        help="start the server without any TLS configuration (plaintext only)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.no_tls and args.modes != "plaintext":
        sys.exit("idle_rss: --no-tls goes with --modes plaintext")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + WARMUP + 100
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            sys.exit(f"idle_rss: the descriptor limit is {hard}, {want} needed (ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    results = []
    print("| mode | TLS | connections | RSS before KiB | RSS with them KiB | KiB per connection | RSS after close KiB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for mode in args.modes.split(","):
        r = measure(args.binary, mode, args.connections, args.sources, args.tls_version,
                    args.threads, tls_config=not args.no_tls)
        results.append(r)
        tls = r["tls_version"]
        if mode == "plaintext":
            tls = "- (server has TLS)" if r["server_tls"] else "- (server without TLS)"
        print(f"| {mode} | {tls} | {r['connections']} | {r['rss_before_kib']} | "
              f"{r['rss_after_kib']} | {r['kib_per_connection']:.2f} | "
              f"{r['rss_after_close_kib']} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
