#!/usr/bin/env python3
"""Hostile TLS clients against fastsmtpd (issue 16, item 8), bounded, over loopback.

Each scenario starts a fresh server (the binary given, default target/release/fastsmtpd) with
an implicit-TLS listener and a certificate made here with `openssl req` for the key type
asked (--key), runs for a bounded time and prints what the clients saw. Each attacker has its
own source address from 127.0.0.0/8.

Scenarios (pick with --only, comma-separated; default all):
  replay   one address (127.0.0.3) with --conns connections replaying a recorded ClientHello
           (no crypto on its side: connect, send it, read the server's first flight, close),
           while another address (127.0.0.2) opens --probes ordinary TLS sessions one after
           the other: its time from connect to the 250 of EHLO, and the round trip of a NOOP
           on one session kept open all along
  refuse   --max-connections-per-ip 1: a second implicit-TLS connection from one address,
           past the cap: what its TLS client sees (a plaintext 421 breaks the TLS record layer;
           a close without a byte is a clean refusal)
  keycost  the server's CPU time per full handshake (from /proc/PID/stat over --handshakes
           handshakes without resumption) for each key type: ECDSA P-256, RSA-2048, RSA-4096

Extra server flags go after `--`, e.g. `-- --tls-max-handshakes-per-ip 4`.
"""

import argparse
import multiprocessing
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = {
    "p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "rsa2048": ["-newkey", "rsa:2048"],
    "rsa4096": ["-newkey", "rsa:4096"],
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def certificate(directory, key):
    cert, keyfile = os.path.join(directory, f"{key}.crt"), os.path.join(directory, f"{key}.key")
    subprocess.run(["openssl", "req", "-x509", *KEYS[key], "-nodes", "-keyout", keyfile,
                    "-out", cert, "-subj", "/CN=mx.test", "-days", "2"],
                   check=True, capture_output=True, timeout=120)
    return cert, keyfile


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, binary, key, extra, threads):
        self.dir = tempfile.mkdtemp(prefix="tls-attacks-")
        cert, keyfile = certificate(self.dir, key)
        self.port, self.tls_port, self.metrics = free_port(), free_port(), free_port()
        args = [binary, "--listen", f"127.0.0.1:{self.port}",
                "--listen-tls", f"127.0.0.1:{self.tls_port}", "--hostname", "mx.test",
                "--tls-cert", cert, "--tls-key", keyfile, "--threads", str(threads),
                "--metrics", f"127.0.0.1:{self.metrics}", *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("fastsmtpd listening"):
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.proc.stderr.read()}")

    def scrape(self, prefix):
        with socket.create_connection(("127.0.0.1", self.metrics), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return [l for l in data.decode(errors="replace").splitlines() if l.startswith(prefix)]

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def client_context(resume=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if not resume:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


def recorded_client_hello():
    """The bytes of a TLS 1.3 ClientHello (X25519 key share), made once with a memory BIO."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context().wrap_bio(incoming, outgoing, server_hostname="mx.test")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def connect(port, source, timeout=10):
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((source, 0))
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    return sock


def read_reply(tls):
    data = b""
    while True:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
        lines = data.split(b"\r\n")
        if any(len(l) >= 4 and l[3:4] == b" " for l in lines[:-1]):
            return data


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def replay_attacker(port, conns, stop, flights):
    """The attacker, in a process of its own (its threads must not hold the probe's GIL)."""
    hello = recorded_client_hello()
    lock = threading.Lock()

    def attacker():
        while not stop.is_set():
            try:
                sock = connect(port, "127.0.0.3", timeout=5)
                sock.sendall(hello)
                if sock.recv(65536):
                    with lock:
                        flights.value += 1
                sock.close()
            except OSError:
                stop.wait(0.01)

    threads = [threading.Thread(target=attacker, daemon=True) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def replay(server, args):
    stop = multiprocessing.Event()
    flights = multiprocessing.Value("q", 0)

    # An established session, opened before the flood: NOOP round trips during it.
    ctx = client_context()
    kept = ctx.wrap_socket(connect(server.tls_port, "127.0.0.2"), server_hostname="mx.test")
    read_reply(kept)
    kept.sendall(b"EHLO kept.test\r\n")
    read_reply(kept)
    process = multiprocessing.Process(target=replay_attacker,
                                      args=(server.tls_port, args.conns, stop, flights))
    started = time.time()
    process.start()
    time.sleep(args.warmup)
    to_250, noop = [], []
    for _ in range(args.probes):
        t0 = time.time()
        kept.sendall(b"NOOP\r\n")
        read_reply(kept)
        noop.append((time.time() - t0) * 1000)
        t0 = time.time()
        try:
            tls = ctx.wrap_socket(connect(server.tls_port, "127.0.0.2", timeout=30),
                                  server_hostname="mx.test")
            read_reply(tls)
            tls.sendall(b"EHLO probe.test\r\n")
            read_reply(tls)
            to_250.append((time.time() - t0) * 1000)
            tls.close()
        except (OSError, ConnectionError) as e:
            to_250.append(float("inf"))
            if args.verbose:
                print(f"  probe failed: {e}", file=sys.stderr)
        if args.verbose:
            print(f"  time to 250 {to_250[-1]:.0f} ms, NOOP {noop[-1]:.1f} ms", file=sys.stderr)
        time.sleep(args.pause)
    elapsed = time.time() - started
    stop.set()
    process.join(15)
    if process.is_alive():
        process.kill()
    kept.close()
    metrics = server.scrape("fastsmtpd_tls_handshake")
    return (f"replay ({args.key}): {args.conns} connections from 127.0.0.3 replaying a ClientHello, "
            f"{flights.value / elapsed:.0f} server flights/s received; 127.0.0.2: time to 250 p50 "
            f"{pct(to_250, 50):.0f} ms, p90 {pct(to_250, 90):.0f} ms, max {max(to_250):.0f} ms; "
            f"NOOP on an established session p50 {pct(noop, 50):.1f} ms, max {max(noop):.1f} ms "
            f"({args.probes} probes); metrics {metrics}")


def refuse(server, args):
    ctx = client_context()
    first = ctx.wrap_socket(connect(server.tls_port, "127.0.0.4"), server_hostname="mx.test")
    read_reply(first)
    raw = connect(server.tls_port, "127.0.0.4")
    try:
        second = ctx.wrap_socket(raw, server_hostname="mx.test")
        outcome = f"handshake completed, then {read_reply(second)!r}"
    except ssl.SSLError as e:
        outcome = f"TLS error: {e.reason or e}"
    except (ConnectionError, OSError) as e:
        outcome = f"closed: {type(e).__name__} {e}"
    first.close()
    time.sleep(0.3)
    metrics = server.scrape("fastsmtpd_connections_refused") + server.scrape(
        "fastsmtpd_tls_handshake_failures_total")
    return f"refuse: the second connection's TLS client saw: {outcome}; metrics {metrics}"


def keycost(binary, args):
    lines = []
    # One client address makes every handshake: lift the per-address rate where there is one.
    help_text = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    lift = (["--tls-handshake-rate-per-ip", "0"]
            if "--tls-handshake-rate-per-ip" in help_text else [])
    for key in args.keys.split(","):
        server = Server(binary, key, [*lift, *args.extra], threads=1)
        try:
            ctx = client_context(resume=False)

            def handshake():
                tls = ctx.wrap_socket(connect(server.tls_port, "127.0.0.2"),
                                      server_hostname="mx.test")
                read_reply(tls)
                tls.close()

            for _ in range(20):
                handshake()  # warm up
            before = cpu_seconds(server.proc.pid)
            t0 = time.time()
            for _ in range(args.handshakes):
                handshake()
            wall = time.time() - t0
            cpu = cpu_seconds(server.proc.pid) - before
            lines.append(f"keycost {key}: server CPU {cpu / args.handshakes * 1000:.2f} ms per full "
                         f"handshake ({args.handshakes} handshakes, TLS 1.3, {wall:.1f} s wall)")
        finally:
            server.close()
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/fastsmtpd"))
    parser.add_argument("--only", default="replay,refuse,keycost",
                        help="scenarios, comma-separated (default: all)")
    parser.add_argument("--key", default="rsa4096", choices=sorted(KEYS),
                        help="replay, refuse: the server's key type")
    parser.add_argument("--keys", default="p256,rsa2048,rsa4096", help="keycost: key types")
    parser.add_argument("--threads", type=int, default=2, help="server workers")
    parser.add_argument("--conns", type=int, default=48, help="replay: attacker connections")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="replay: seconds of flood before the first probe")
    parser.add_argument("--probes", type=int, default=20, help="replay: probes")
    parser.add_argument("--pause", type=float, default=0.1, help="replay: seconds between probes")
    parser.add_argument("--handshakes", type=int, default=300, help="keycost: per key type")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each probe")
    parser.add_argument("extra", nargs="*", help="extra server flags (after --)")
    args = parser.parse_args()
    for name in args.only.split(","):
        if name == "keycost":
            print(keycost(args.binary, args), flush=True)
            continue
        flags = {"replay": [], "refuse": ["--max-connections-per-ip", "1"]}.get(name)
        if flags is None:
            parser.error(f"unknown scenario {name!r} (known: replay, refuse, keycost)")
        server = Server(args.binary, args.key, [*flags, *args.extra], args.threads)
        try:
            print({"replay": replay, "refuse": refuse}[name](server, args), flush=True)
        finally:
            server.close()


if __name__ == "__main__":
    sys.exit(main())
