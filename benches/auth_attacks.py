#!/usr/bin/env python3
"""Hostile AUTH clients against fastsmtpd `--auth file:` (issue 16, items 3 and 8), bounded.

Each scenario starts a fresh server (the binary given, default target/release/fastsmtpd) on
loopback with a bcrypt password file (user `alice`, password `secret`, made here with
Python's `crypt`, cost --cost) and `--auth-plaintext` (so the attackers spend no TLS), runs
for a bounded time, and prints what the clients saw. Each attacker has its own source address
from 127.0.0.0/8 (Linux routes the whole /8 to loopback, so binding 127.0.0.N needs nothing).

Scenarios (pick with --only, comma-separated; default all):
  pool       --pool parallel correct logins from one address: how many got 235, how many 454
             (item 3: a pool of 5 lost 3 to 454 with a per-address queue of 2)
  guess      one address with --conns connections guessing passwords for --duration s, the
             right one planted at guess --plant; a reply not heard within --hangup s counts
             as "wrong" and the connection is reset (a 235 comes at once, a held 535 does not)
  starve     --attackers addresses, each with --per-attacker connections sending wrong
             passwords as fast as answered, while another address logs in --logins times in a
             row: the time each correct login took (AUTH sent to reply) and its replies
  free454    --holders connections of one address keep a check queued each, then one more
             connection of that address pipelines --pipelined AUTH PLAIN lines: how many 454,
             and whether the connection was closed (item 8: 454 was never counted)
  hangup     --max-connections-per-ip 1: a connection resets while its AUTH is pending; how
             long until the same address may connect again (the slot is freed at close)
  hangupfin  the same with a normal close (FIN, shutdown(SHUT_WR)) instead of a reset: a
             client that closes its side right behind its AUTH is gone too (reviewer B, F3:
             the slot stayed taken until the check was done)
  timing     --logins right and --logins wrong passwords, interleaved, one connection each,
             each wrong one from a fresh address (so no failure limit is reached): the time
             from AUTH sent to its reply, per kind (a client must learn nothing from it)

Extra server flags go after `--`, e.g. `-- --auth-max-failures-per-ip 5`.
"""

import argparse
import base64
import multiprocessing
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)
import crypt  # noqa: E402 (deprecated in 3.11, gone in 3.13: only makes the bcrypt hash)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

USER = "alice"
PASSWORD = "secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plain(user, password):
    raw = b"\0" + user.encode() + b"\0" + password.encode()
    return base64.b64encode(raw).decode()


class Server:
    """The binary on a free loopback port with the password file; stopped on close()."""

    def __init__(self, binary, cost, extra):
        self.dir = tempfile.mkdtemp(prefix="auth-attacks-")
        path = os.path.join(self.dir, "users")
        salt = crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=2 ** cost)
        with open(path, "w") as f:
            f.write(f"{USER}:{crypt.crypt(PASSWORD, salt)}\n")
        self.port = free_port()
        self.metrics = free_port()
        args = [binary, "--listen", f"127.0.0.1:{self.port}", "--hostname", "mx.test",
                "--auth", f"file:{path}", "--auth-plaintext",
                "--metrics", f"127.0.0.1:{self.metrics}", *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("fastsmtpd listening"):
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.proc.stderr.read()}")
        self.addr = ("127.0.0.1", self.port)

    def scrape(self, prefix):
        """Samples of the metrics whose name starts with `prefix`."""
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


class Smtp:
    """A minimal SMTP client from a chosen source address."""

    def __init__(self, addr, source="127.0.0.1", timeout=10.0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect(addr)
        self.buf = b""

    def reply(self, timeout=None):
        """One whole reply as (code, text); (None, '') if the server closed."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while True:
            lines = self.buf.split(b"\r\n")
            for i, line in enumerate(lines[:-1]):
                if len(line) < 4 or line[3:4] == b" ":
                    text = b"\r\n".join(lines[: i + 1]).decode(errors="replace")
                    self.buf = b"\r\n".join(lines[i + 1:])
                    return int(line[:3]), text
            chunk = self.sock.recv(65536)
            if not chunk:
                return None, ""
            self.buf += chunk

    def send(self, text):
        self.sock.sendall(text.encode() if isinstance(text, str) else text)

    def hello(self):
        code, _ = self.reply()
        if code != 220:
            return code
        self.send("EHLO attacker.test\r\n")
        return self.reply()[0]

    def auth(self, user, password):
        self.send(f"AUTH PLAIN {plain(user, password)}\r\n")

    def finish(self):
        """Closes its side normally (FIN), as a client that simply quits does; the socket
        stays open for reading (close() later)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def reset(self):
        """Closes with a TCP reset (SO_LINGER 0), as a client that gives up does."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()

    def close(self):
        self.sock.close()


def tally(counter, key, lock):
    with lock:
        counter[key] = counter.get(key, 0) + 1


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


# --- scenarios --------------------------------------------------------------------------------


def pool(server, args):
    """args.pool parallel correct logins from one address."""
    barrier = threading.Barrier(args.pool)
    codes, lock = {}, threading.Lock()

    def one():
        try:
            c = Smtp(server.addr)
            c.hello()
            barrier.wait(timeout=10)
            c.auth(USER, PASSWORD)
            code, _ = c.reply()
            tally(codes, code, lock)
            c.close()
        except Exception as e:  # noqa: a failure is a result here
            tally(codes, type(e).__name__, lock)

    threads = [threading.Thread(target=one) for _ in range(args.pool)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return f"pool of {args.pool} correct logins from 127.0.0.1: replies {dict(sorted(codes.items(), key=str))}"


def guess(server, args):
    """One address guessing with args.conns connections, hanging up after args.hangup s."""
    stop = time.time() + args.duration
    lock = threading.Lock()
    state = {"next": 0, "decided": 0, "found_at": None, "found_after": None}
    codes = {}
    start = time.time()

    def next_guess():
        with lock:
            n = state["next"]
            state["next"] += 1
        return n, (PASSWORD if n == args.plant else f"guess{n}")

    def worker():
        c, retry = None, None
        while time.time() < stop and state["found_at"] is None:
            try:
                if c is None:
                    c = Smtp(server.addr, args.source)
                    if c.hello() != 250:
                        tally(codes, "refused", lock)
                        c.close()
                        c = None
                        time.sleep(0.05)
                        continue
                n, password = retry if retry is not None else next_guess()
                retry = None
                c.auth(USER, password)
                try:
                    code, _ = c.reply(timeout=args.hangup)
                except socket.timeout:
                    # Silence: a right password would have been answered by now (true before
                    # the fix), so the attacker takes the guess as wrong and hangs up.
                    tally(codes, "silent", lock)
                    with lock:
                        state["decided"] += 1
                        if n == args.plant:
                            state["planted_silent"] = True
                    c.reset()
                    c = None
                    continue
                c.sock.settimeout(10)
                tally(codes, code, lock)
                if code in (235, 535):
                    with lock:
                        state["decided"] += 1
                else:
                    retry = (n, password)  # 454 and the like decide nothing: try it again
                if code == 235:
                    with lock:
                        state["found_at"] = n
                        state["found_after"] = time.time() - start
                elif code is None or code == 421:
                    c.close()
                    c = None
                elif code == 454:
                    time.sleep(0.1)  # refused unchecked: retrying faster gains nothing
            except OSError:
                tally(codes, "error", lock)
                if c is not None:
                    c.close()
                c = None
                time.sleep(0.01)
        if c is not None:
            c.close()

    threads = [threading.Thread(target=worker) for _ in range(args.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.duration + 30)
    elapsed = time.time() - start
    if state["found_at"] is not None:
        found = (f"planted password found at guess {state['found_at']} after "
                 f"{state['found_after']:.1f} s")
    elif state.get("planted_silent"):
        found = f"planted password (guess {args.plant}) missed: its answer was not heard in time"
    else:
        found = f"planted password (guess {args.plant}) not reached"
    answered = codes.get(235, 0) + codes.get(535, 0)
    return (f"guess: {args.conns} connections from {args.source}, {elapsed:.1f} s: "
            f"{state['decided']} guesses taken as decided ({state['decided'] / elapsed:.1f}/s; "
            f"{answered} answered 235/535, {codes.get('silent', 0)} silent after "
            f"{args.hangup} s and taken as wrong), {found}; replies "
            f"{dict(sorted(codes.items(), key=str))}")


def attackers_flood(addr, attackers, per_attacker, first, stop, results):
    """args.attackers addresses x args.per_attacker connections sending wrong passwords as
    fast as they are answered, until `stop`; puts the replies' tally on `results`. Runs in a
    process of its own, so its threads never hold the measuring client's GIL."""
    codes, lock = {}, threading.Lock()

    def worker(source):
        c = None
        while not stop.is_set():
            try:
                if c is None:
                    c = Smtp(addr, source)
                    if c.hello() != 250:
                        c.close()
                        c = None
                        stop.wait(0.05)
                        continue
                c.auth(USER, "wrong")
                code, _ = c.reply(timeout=30)
                tally(codes, code, lock)
                if code is None or code == 421:
                    c.close()
                    c = None
                elif code == 454:
                    stop.wait(0.1)  # refused unchecked: retrying faster gains nothing
            except OSError:
                if c is not None:
                    c.close()
                c = None
                stop.wait(0.01)
        if c is not None:
            c.close()

    threads = []
    for a in range(attackers):
        source = f"127.0.{first + a // 250}.{1 + a % 250}"
        for _ in range(per_attacker):
            t = threading.Thread(target=worker, args=(source,), daemon=True)
            t.start()
            threads.append(t)
    for t in threads:
        t.join(35)
    results.put(codes)


def starve(server, args):
    """A correct login from 127.0.0.2, args.logins times, under a flood of wrong ones."""
    stop, results = multiprocessing.Event(), multiprocessing.Queue()
    flood = multiprocessing.Process(
        target=attackers_flood,
        args=(server.addr, args.attackers, args.per_attacker, 10, stop, results))
    flood.start()
    time.sleep(args.warmup)
    times, legit = [], {}
    for _ in range(args.logins):
        c = Smtp(server.addr, "127.0.0.2", timeout=30)
        try:
            c.hello()
            t0 = time.time()
            c.auth(USER, PASSWORD)
            code, _ = c.reply()
        except socket.timeout:
            code = "timeout"
        times.append(time.time() - t0)
        legit[code] = legit.get(code, 0) + 1
        if args.verbose:
            print(f"  login: {code} after {times[-1] * 1000:.0f} ms", file=sys.stderr)
        c.close()
        time.sleep(args.pause)
    stop.set()
    codes = results.get(timeout=60)
    flood.join(10)
    ms = [t * 1000 for t in times]
    return (f"starve: {args.attackers} attacking addresses x {args.per_attacker} connections; "
            f"{args.logins} correct logins from 127.0.0.2: replies {legit}, time to reply "
            f"p50 {pct(ms, 50):.0f} ms, p90 {pct(ms, 90):.0f} ms, max {max(ms):.0f} ms; "
            f"attackers' replies {dict(sorted(codes.items(), key=str))}")


def free454(server, args):
    """Pipelined AUTHs on one connection while the address's queue is full."""
    holders = []
    for _ in range(args.holders):
        c = Smtp(server.addr, "127.0.0.3")
        c.hello()
        c.auth(USER, "wrong")
        holders.append(c)
    c = Smtp(server.addr, "127.0.0.3")
    c.hello()
    c.send("".join(f"AUTH PLAIN {plain(USER, 'wrong')}\r\n" for _ in range(args.pipelined)))
    codes, closed = {}, False
    for _ in range(args.pipelined):
        try:
            code, _ = c.reply(timeout=30)
        except socket.timeout:
            break
        if code is None:
            closed = True
            break
        codes[code] = codes.get(code, 0) + 1
        if code == 421:
            closed = c.reply(timeout=5)[0] is None
            break
    c.close()
    for h in holders:
        h.close()
    time.sleep(0.5)
    metrics = server.scrape("fastsmtpd_auth") + server.scrape("fastsmtpd_command_errors")
    return (f"free454: {args.holders} holders + {args.pipelined} pipelined AUTH PLAIN on one "
            f"connection from 127.0.0.3: replies {codes}, connection closed: {closed}; "
            f"metrics {metrics}")


def hangup(server, args, fin=False):
    """How long a connection that hangs up (reset, or FIN with fin) with a pending AUTH
    keeps its per-address slot."""
    results = []
    for _ in range(args.logins):
        c = Smtp(server.addr, "127.0.0.4")
        c.hello()
        c.auth(USER, "wrong")
        c.reply()  # a first failure
        c.auth(USER, "wrong")  # the second: held (before) or pending
        time.sleep(0.05)
        if fin:
            c.finish()
        else:
            c.reset()
        t0 = time.time()
        while True:
            d = Smtp(server.addr, "127.0.0.4")
            code, _ = d.reply()
            d.close()
            if code == 220:
                break
            time.sleep(0.005)
        results.append((time.time() - t0) * 1000)
        c.close()
        time.sleep(0.2)
    kind = "a connection closed with FIN" if fin else "a reset connection"
    return (f"hangup{'fin' if fin else ''}: slot of {kind} free again after p50 "
            f"{pct(results, 50):.0f} ms, max {max(results):.0f} ms ({len(results)} tries); "
            f"metrics {server.scrape('fastsmtpd_auth')}")


def hangupfin(server, args):
    """hangup, closing with FIN instead of a reset."""
    return hangup(server, args, fin=True)


def timing(server, args):
    """Answer times of right and wrong passwords."""
    right, wrong = [], []
    for i in range(args.logins):
        for password, into, source in ((PASSWORD, right, "127.0.0.30"),
                                       ("wrong", wrong, f"127.0.3.{1 + i % 250}")):
            c = Smtp(server.addr, source)
            c.hello()
            t0 = time.time()
            c.auth(USER, password)
            code, _ = c.reply()
            into.append((time.time() - t0) * 1000)
            assert code == (235 if password == PASSWORD else 535), code
            c.close()
    # A second wrong password from the address of a first one: a failure delay shows here.
    again = []
    for i in range(min(args.logins, 10)):
        c = Smtp(server.addr, f"127.0.3.{1 + i % 250}")
        c.hello()
        t0 = time.time()
        c.auth(USER, "wrong")
        code, _ = c.reply()
        again.append((time.time() - t0) * 1000)
        c.close()

    def show(values):
        return f"p50 {pct(values, 50):.0f} ms, p90 {pct(values, 90):.0f} ms, max {max(values):.0f} ms"

    return (f"timing ({args.logins} each): right password (235) {show(right)}; wrong password "
            f"(535) {show(wrong)}; a second wrong one from the same address {show(again)}")


SCENARIOS = {
    "pool": (pool, []),
    "guess": (guess, []),
    "starve": (starve, []),
    "free454": (free454, []),
    "hangup": (hangup, ["--max-connections-per-ip", "1"]),
    "hangupfin": (hangupfin, ["--max-connections-per-ip", "1"]),
    "timing": (timing, []),
}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/fastsmtpd"))
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help="scenarios, comma-separated (default: all)")
    parser.add_argument("--cost", type=int, default=10, help="bcrypt cost of the password file")
    parser.add_argument("--pool", type=int, default=20, help="pool: parallel logins")
    parser.add_argument("--conns", type=int, default=48, help="guess: connections")
    parser.add_argument("--source", default="127.0.0.5", help="guess: the attacker's address")
    parser.add_argument("--duration", type=float, default=10, help="guess: seconds")
    parser.add_argument("--plant", type=int, default=60,
                        help="guess: the guess number that is the right password")
    parser.add_argument("--hangup", type=float, default=0.25,
                        help="guess: seconds of silence after which a guess counts as wrong")
    parser.add_argument("--attackers", type=int, default=64, help="starve: attacking addresses")
    parser.add_argument("--per-attacker", type=int, default=2,
                        help="starve: connections per attacking address")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="starve: seconds of flood before the first correct login")
    parser.add_argument("--logins", type=int, default=24,
                        help="starve, hangup, timing: logins measured / tries")
    parser.add_argument("--pause", type=float, default=0.2,
                        help="starve: seconds between correct logins")
    parser.add_argument("--holders", type=int, default=2,
                        help="free454: connections holding a queued check")
    parser.add_argument("--pipelined", type=int, default=200, help="free454: AUTH lines")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each login")
    parser.add_argument("extra", nargs="*", help="extra server flags (after --)")
    args = parser.parse_args()
    for name in args.only.split(","):
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
        run, flags = SCENARIOS[name]
        server = Server(args.binary, args.cost, [*flags, *args.extra])
        try:
            print(run(server, args), flush=True)
        finally:
            server.close()


if __name__ == "__main__":
    sys.exit(main())
