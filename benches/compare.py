#!/usr/bin/env python3
"""Side-by-side SMTP server comparison on one machine (run through benches/compare.sh).

Starts each server on loopback pinned to one CPU, drives it from the other CPU with each
generator, runs every workload several times and reports medians: msgs/s, MB/s, server CPU
microseconds per message (utime+stime from /proc/PID/stat), end-of-data latency p50/p99
(smtp-loadgen only: smtp-source measures none), and the server's peak RSS (VmHWM).

Each (server, workload) pair gets a fresh server process, so peak RSS belongs to that workload.
The servers of one (workload, generator) run at the same time, each on the server CPU, and their
runs are interleaved (run 1 of each server, then run 2 of each...), so a drift of the shared
machine's speed hits them alike. `--baseline BIN` adds "fastsmtpd-baseline": another fastsmtpd
binary (an older build) measured the same way, for before/after figures from one run.

TLS (`--tls`, or the workloads W1-TLS and W2-TLS): STARTTLS workloads driven by smtp-loadgen
against fastsmtpd (`--tls-self-signed`), a private Postfix instance (`postfix-tls`: `postfix -c
DIR` with its own configuration, queue and data directories under OUT, smtpd with TLS on a
loopback port, every message to the `discard` transport) and Haraka (`haraka`: one process,
`tls` plugin, `queue/discard`). Each server gets the whole process tree pinned to the server CPU;
its CPU time is read from a cgroup v2 of its own when one can be made (Postfix's master, smtpd,
cleanup, qmgr, discard, tlsmgr, anvil, postlogd... and every process that exited meanwhile),
else summed over its process tree from /proc. swaks sends one STARTTLS message to each server
before it is measured. Every run also records smtp-loadgen's own CPU time over its wall time
(was the generator the limit?), full and resumed handshakes, and how much of each CPU other
processes of the machine took meanwhile. W1-TLS is interleaved with fastsmtpd's plaintext W1 for
the W1-TLS ÷ W1 ratio; W2-TLS is two workloads, resumption on (W2-TLS-resume) and off
(W2-TLS-full). Idle sessions by kind (plaintext, implicit TLS, STARTTLS) come from
benches/idle_rss.py.

Writes a markdown table to stdout and to OUT/results.md, and everything to OUT/results.json.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# cargo builds into $CARGO_TARGET_DIR when it is set (compare.sh runs from ROOT, so a relative
# one resolves the same way here).
TARGET = os.path.abspath(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"))
RELEASE = os.path.join(TARGET, "release")
SERVER_CPU = "0"
CLIENT_CPU = "1"
TICKS = os.sysconf("SC_CLK_TCK")

# name: (description, size, connections, reuse, bdat, smtp-source messages (0: smtp-loadgen
# only), loadgen messages, further smtp-loadgen flags)
WORKLOADS = {
    "W1": ("1 KiB, 20 connections reused", 1024, 20, True, False, 20000, 100000, []),
    "W2": ("1 KiB, new connection per message", 1024, 20, False, False, 5000, 10000, []),
    "W3": ("64 KiB, 20 connections reused", 65536, 20, True, False, 5000, 20000, []),
    "W4": ("1 KiB, 200 connections reused", 1024, 200, True, False, 20000, 100000, []),
    "W5": ("1 MiB, 20 connections reused", 1048576, 20, True, False, 500, 2000, []),
    "W6": ("1 KiB, BDAT pipelined, 8 in flight", 1024, 20, True, True, 0, 300000, []),
    "W1-TLS": ("1 KiB, 20 STARTTLS connections reused", 1024, 20, True, False, 0, 100000,
               ["--starttls"]),
    "W2-TLS-resume": ("1 KiB, new connection + STARTTLS per message, resumption on", 1024, 20,
                      False, False, 0, 20000, ["--starttls", "--tls-resume", "on"]),
    "W2-TLS-full": ("1 KiB, new connection + STARTTLS per message, every handshake full", 1024,
                    20, False, False, 0, 20000, ["--starttls", "--tls-resume", "off"]),
}
# Names that stand for several workloads.
ALIASES = {"W2-TLS": ["W2-TLS-resume", "W2-TLS-full"]}
# A workload measured in the same interleaved group as another when both are asked for, so
# their ratio (W1-TLS ÷ W1) comes from runs taken side by side.
INTERLEAVE_WITH = {"W1-TLS": "W1"}
# Servers that exist here only for the TLS workloads (they are full MTAs, not sinks).
TLS_ONLY_SERVERS = ("postfix-tls", "haraka")
TLS_SERVERS = ("fastsmtpd", "fastsmtpd-baseline") + TLS_ONLY_SERVERS
# Postfix and Haraka take minutes for fastsmtpd's message counts: they get fewer (still runs
# of 20 s or more; the figures are per message).
FEWER_MESSAGES = {"W1-TLS": 20000, "W2-TLS-resume": 10000, "W2-TLS-full": 10000}


def is_tls(workload):
    return "--starttls" in WORKLOADS[workload][7]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc=None, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                if s.recv(100).startswith(b"220"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing greets on port {port}")


BASELINE = None  # --baseline: the path of another fastsmtpd binary


def has_flag(binary, flag):
    """Whether `binary --help` lists `flag` (older builds lack the newer limits)."""
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10).stdout
    return flag in out


def server_command(name, port, tls=False):
    """The command of a single-process server (Postfix and Haraka are set up by Server)."""
    if name in ("fastsmtpd", "fastsmtpd-baseline"):
        binary = os.path.join(RELEASE, "fastsmtpd") if name == "fastsmtpd" else BASELINE
        command = [binary, "--listen", f"127.0.0.1:{port}",
                   "--threads", "1", "--max-connections", "20000"]
        # Every generator connects from 127.0.0.1: the per-address cap would refuse the
        # idle-connection measurement's 10 000 sessions.
        if has_flag(binary, "--max-connections-per-ip"):
            command += ["--max-connections-per-ip", "20000"]
        if tls:
            command.append("--tls-self-signed")  # STARTTLS on --listen (ECDSA P-256, rcgen)
        return command
    if name == "smtp-sink":
        # -m: smtp-sink serves at most 256 sessions at once unless told otherwise.
        return ["/usr/sbin/smtp-sink", "-u", "nobody", "-m", "15000", f"127.0.0.1:{port}", "1024"]
    if name == "aiosmtpd":
        return [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                "-c", "aiosmtpd.handlers.Sink"]
    raise ValueError(name)


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        head, tail = f.read().rsplit(")", 1)
    return tail.split()  # fields from 3 (state) on


def cpu_ticks(pid):
    fields = proc_stat(pid)
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def cpu_busy_seconds():
    """Busy time of each CPU so far (all processes, ours and everyone's): wall time less idle
    and iowait from /proc/stat. Not the sum of its user/system fields: those are sampled at the
    timer tick and miss work that starts on a tick and sleeps before the next one (Haraka,
    woken by 40 ms delayed-ACK timers, showed 0.4 s there against 1.4 s of its own CPU time),
    while a tickless kernel accounts idle time exactly."""
    now = time.monotonic()
    busy = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                idle, iowait = int(fields[3]), int(fields[4])
                busy[name[3:]] = now - (idle + iowait) / TICKS
    return busy


WAIT_QUIET = 0.0        # --wait-quiet: longest wait for idle CPUs before each run, seconds
QUIET_THRESHOLD = 0.15  # "idle": neither CPU more than this busy over one second


def wait_for_quiet():
    """Before a run on a shared machine: wait (at most WAIT_QUIET seconds) for a second in which
    neither CPU was more than QUIET_THRESHOLD busy. The decision is taken before the run, from
    the load alone, never from the run's result. Returns the seconds waited."""
    started = time.time()
    while time.time() - started < WAIT_QUIET:
        before = cpu_busy_seconds()
        time.sleep(1.0)
        after = cpu_busy_seconds()
        if all(after[cpu] - before[cpu] <= QUIET_THRESHOLD for cpu in (SERVER_CPU, CLIENT_CPU)):
            break
    return time.time() - started


def find_cgroup2():
    """A cgroup v2 hierarchy we may create groups in, or None (then CPU is read from /proc)."""
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split()[1] for line in f if line.split()[2] == "cgroup2"]
    except OSError:
        return None
    for mount in mounts:
        probe = os.path.join(mount, f"compare-probe-{os.getpid()}")
        try:
            os.mkdir(probe)
            ok = os.path.exists(os.path.join(probe, "cpu.stat"))
            os.rmdir(probe)
            if ok:
                return mount
        except OSError:
            continue
    return None


CGROUP2 = None  # set in main(): the cgroup v2 mount used for server CPU accounting


def cpu_method():
    if CGROUP2:
        return ("server CPU is the usage_usec of a cgroup v2 holding the server's whole process "
                "tree (every process it forks, exited ones included)")
    return ("server CPU is utime+stime+cutime+cstime summed over the server's live process tree "
            "from /proc (10 ms ticks)")


def make_cert(out_dir):
    """An ECDSA P-256 self-signed certificate for Postfix and Haraka (fastsmtpd's
    --tls-self-signed makes the same kind with rcgen), so all sign with the same algorithm."""
    tls_dir = os.path.join(out_dir, "tls")
    cert, key = os.path.join(tls_dir, "cert.pem"), os.path.join(tls_dir, "key.pem")
    if not os.path.exists(cert):
        os.makedirs(tls_dir, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "30", "-subj", "/CN=bench.localhost"],
                       check=True, capture_output=True, timeout=60)
        os.chmod(key, 0o644)  # Postfix's smtpd and Haraka read it after dropping privileges
    return cert, key


def make_dhparams(out_dir):
    """RFC 7919's ffdhe2048 group for Haraka: without a dhparams.pem it spends up to 30 s of
    CPU generating one after it starts listening (`openssl dhparam 2048`), on the server CPU,
    under the other servers' runs."""
    path = os.path.join(out_dir, "tls", "dhparams.pem")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run(["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt",
                        "group:ffdhe2048", "-out", path], check=True, capture_output=True, timeout=60)
    return path


def postconf_default(name):
    return subprocess.run(["postconf", "-dh", name], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()


POSTFIX_MASTER_CF = """\
# service type  private unpriv chroot wakeup maxproc command
{listen} inet n - n - - smtpd
cleanup   unix  n - n -    0 cleanup
qmgr      unix  n - n 300  1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -    - trivial-rewrite
bounce    unix  - - n -    0 bounce
defer     unix  - - n -    0 bounce
trace     unix  - - n -    0 bounce
verify    unix  - - n -    1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -    - proxymap
showq     unix  n - n -    - showq
error     unix  - - n -    - error
retry     unix  - - n -    - error
discard   unix  - - n -    - discard
anvil     unix  - - n -    1 anvil
scache    unix  - - n -    1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def postfix_main_cf(base, port, cert, key):
    return f"""\
# A private Postfix instance for benches/compare.py: STARTTLS on 127.0.0.1:{port} only,
# every message to the discard transport. Written and removed by the harness.
compatibility_level = 3.6
config_directory = {base}/etc
queue_directory = {base}/queue
data_directory = {base}/data
command_directory = {postconf_default("command_directory")}
daemon_directory = {postconf_default("daemon_directory")}
shlib_directory = {postconf_default("shlib_directory")}
meta_directory = {postconf_default("meta_directory")}
mail_owner = {postconf_default("mail_owner")}
setgid_group = {postconf_default("setgid_group")}
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
myhostname = bench.localhost
mydomain = localhost
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
# Loopback clients may relay (Postfix refuses a rule set with no reject in it).
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
local_recipient_maps =
alias_maps =
alias_database =
default_transport = discard
relay_transport = discard
local_transport = discard
virtual_transport = discard
biff = no
# No DNS: the client's name is not looked up (it would be "localhost" from /etc/hosts anyway).
smtpd_peername_lookup = no
smtpd_tls_security_level = may
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_loglevel = 0
# Resumption both ways: a session cache (TLS 1.2 ids) and stateless tickets (TLS 1.3 and 1.2)
# whose keys tlsmgr hands out.
smtpd_tls_session_cache_database = btree:${{data_directory}}/smtpd_scache
smtpd_tls_session_cache_timeout = 3600s
tls_session_ticket_cipher = aes-256-cbc
# anvil's per-client limits lifted: every connection comes from 127.0.0.1.
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_client_new_tls_session_rate_limit = 0
smtpd_client_event_limit_exceptions = 127.0.0.0/8
default_process_limit = 200
"""


class Server:
    """One server under test, pinned to SERVER_CPU with every process it forks, in a cgroup of
    its own when cgroups v2 are usable (for its CPU time), stopped by stop()."""

    def __init__(self, name, tls, out_dir):
        self.name, self.tls, self.out_dir = name, tls, out_dir
        self.port = free_port()
        self.proc = None      # the process we started (single-process servers, Haraka)
        self.root_pid = None  # the process whose tree is the server (Postfix: master)
        self.cgroup = None
        self.base = None      # Postfix's and Haraka's own directory
        self.peak_kib = 0

    def _spawn(self, command, **kwargs):
        pinned = ["taskset", "-c", SERVER_CPU] + command
        if self.cgroup:
            # The shell joins the cgroup, then becomes the server: all it forks stays inside.
            pinned = ["sh", "-c", 'echo $$ >"$0/cgroup.procs" && exec "$@"', self.cgroup] + pinned
        return subprocess.Popen(pinned, **kwargs)

    def start(self):
        if CGROUP2:
            self.cgroup = os.path.join(CGROUP2, f"compare-{os.getpid()}-{self.name}-{self.port}")
            os.mkdir(self.cgroup)
        log = open(os.path.join(self.out_dir, f"{self.name}-{self.port}.log"), "wb")
        if self.name == "postfix-tls":
            self._start_postfix(log)
        elif self.name == "haraka":
            self._start_haraka(log)
        else:
            self.proc = self._spawn(server_command(self.name, self.port, self.tls),
                                    stdout=log, stderr=log)
            self.root_pid = self.proc.pid
            wait_listening(self.port, self.proc)
        log.close()
        if self.tls:
            self.check_starttls()

    def _start_postfix(self, log):
        cert, key = make_cert(self.out_dir)
        self.base = os.path.join(self.out_dir, f"postfix-{self.port}")
        shutil.rmtree(self.base, ignore_errors=True)
        etc = os.path.join(self.base, "etc")
        for d in ("etc", "queue", "data"):
            os.makedirs(os.path.join(self.base, d))
        with open(os.path.join(etc, "main.cf"), "w") as f:
            f.write(postfix_main_cf(self.base, self.port, cert, key))
        with open(os.path.join(etc, "master.cf"), "w") as f:
            f.write(POSTFIX_MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
        owner = postconf_default("mail_owner")
        shutil.chown(os.path.join(self.base, "data"), owner, owner)
        # `postfix start` makes the queue's subdirectories, then master detaches: it and all
        # it forks inherit the CPU pinning and the cgroup.
        self._spawn(["postfix", "-c", etc, "start"], stdout=log, stderr=log).wait(timeout=60)
        pid_file = os.path.join(self.base, "queue", "pid", "master.pid")
        deadline = time.time() + 10
        while not os.path.exists(pid_file) and time.time() < deadline:
            time.sleep(0.05)
        with open(pid_file) as f:
            self.root_pid = int(f.read().split()[0])
        wait_listening(self.port)

    def _start_haraka(self, log):
        cert, key = make_cert(self.out_dir)
        self.base = os.path.join(self.out_dir, f"haraka-{self.port}")
        shutil.rmtree(self.base, ignore_errors=True)
        subprocess.run(["haraka", "-i", self.base], check=True, stdout=log, stderr=log, timeout=60)
        config = os.path.join(self.base, "config")
        files = {
            # nodes=0: no cluster, one process (unset means a cluster master and one worker).
            "smtp.ini": f"listen=127.0.0.1:{self.port}\nnodes=0\n",
            # tls: STARTTLS; queue/discard: accept and drop (bench_sink marks every connection).
            "plugins": "bench_sink\ntls\nqueue/discard\n",
            "tls.ini": f"key={key}\ncert={cert}\n",
            "log.ini": "[main]\nlevel=warn\ntimestamps=false\nformat=default\n",
            "me": "bench.localhost\n",
        }
        for name, text in files.items():
            with open(os.path.join(config, name), "w") as f:
                f.write(text)
        shutil.copy(make_dhparams(self.out_dir), os.path.join(config, "dhparams.pem"))
        with open(os.path.join(self.base, "plugins", "bench_sink.js"), "w") as f:
            f.write(HARAKA_BENCH_PLUGIN)
        self.proc = self._spawn(["haraka", "-c", self.base], stdout=log, stderr=log)
        self.root_pid = self.proc.pid
        wait_listening(self.port, self.proc, timeout=30)

    def check_starttls(self):
        """One message through STARTTLS with swaks, before measuring (certificate unverified)."""
        out = subprocess.run(["swaks", "--server", f"127.0.0.1:{self.port}", "--tls",
                              "--from", "check@example.org", "--to", "sink@example.net",
                              "--helo", "check.example.org", "--timeout", "20"],
                             capture_output=True, text=True, timeout=60)
        # swaks exits non-zero when any reply is not the expected one (DATA's 250 included).
        if out.returncode != 0 or "=== TLS started" not in out.stdout:
            raise RuntimeError(f"{self.name}: swaks --tls failed:\n{out.stdout[-1500:]}"
                               f"{out.stderr[-500:]}")

    def settle(self, timeout=120.0):
        """Waits until the server has finished with what it accepted: Postfix's queue empty (its
        qmgr and discard work after the 250 is sent belongs to the run's CPU). The others
        discard before they answer the end of data."""
        if self.name != "postfix-tls":
            return
        queue = os.path.join(self.base, "queue")
        deadline = time.time() + timeout
        while time.time() < deadline:
            queued = sum(len(files) for d in ("maildrop", "incoming", "active", "deferred", "hold")
                         for _, _, files in os.walk(os.path.join(queue, d)))
            if queued == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"postfix-tls: {queued} messages still queued after {timeout:.0f} s")

    def pids(self):
        if self.cgroup:
            with open(os.path.join(self.cgroup, "cgroup.procs")) as f:
                return [int(line) for line in f if line.strip()]
        # The live tree under root_pid, from every process's parent.
        children = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    children.setdefault(int(proc_stat(entry)[1]), []).append(int(entry))
                except (OSError, IndexError):
                    pass
        tree, todo = [], [self.root_pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += children.get(pid, [])
        return tree

    def cpu_us(self):
        if self.cgroup:
            with open(os.path.join(self.cgroup, "cpu.stat")) as f:
                for line in f:
                    if line.startswith("usage_usec "):
                        return int(line.split()[1])
        total = 0
        for pid in self.pids():
            try:
                fields = proc_stat(pid)
            except OSError:
                continue
            # utime, stime, and cutime, cstime: children it reaped (Postfix's master reaps
            # every service process that exits).
            total += sum(int(fields[i]) for i in (11, 12, 13, 14))
        return total / TICKS * 1e6

    def sample_rss(self):
        """Peak memory so far: VmHWM of the server process, or for Postfix (many processes
        sharing their libraries) the sum of PSS over its live processes, sampled after each
        run (its smtpd processes are still there then); the largest sample is kept."""
        if self.name != "postfix-tls":
            self.peak_kib = max(self.peak_kib, peak_rss_kib(self.root_pid))
            return self.peak_kib
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    total += sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
            except OSError:
                pass
        self.peak_kib = max(self.peak_kib, total)
        return self.peak_kib

    def stop(self):
        if self.name == "postfix-tls" and self.base:
            subprocess.run(["postfix", "-c", os.path.join(self.base, "etc"), "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        deadline = time.time() + 15
        while self.cgroup or self.name == "postfix-tls":
            left = [pid for pid in self.pids() if os.path.exists(f"/proc/{pid}")]
            if not left or time.time() > deadline:
                for pid in left:
                    try:
                        os.kill(pid, 9)
                    except OSError:
                        pass
                break
            time.sleep(0.1)
        if self.cgroup:
            for _ in range(50):
                try:
                    os.rmdir(self.cgroup)
                    break
                except OSError:
                    time.sleep(0.1)


HARAKA_BENCH_PLUGIN = """\
// benches/compare.py: every connection from loopback may relay, no reverse DNS lookup, every
// recipient accepted and every message discarded by queue/discard.
exports.register = function () {
    this.register_hook('lookup_rdns', 'no_rdns')
    this.register_hook('connect_init', 'relay_and_discard')
    this.register_hook('rcpt', 'accept_rcpt')
}
exports.no_rdns = (next) => next(OK, 'localhost')
exports.relay_and_discard = (next, connection) => {
    connection.relaying = true
    connection.notes.discard = true
    next()
}
exports.accept_rcpt = (next) => next(OK)
"""


def run_generator(generator, workload, port, out_dir, tag, server=None):
    _, size, conns, reuse, bdat, source_n, loadgen_n, extra = WORKLOADS[workload]
    if server in TLS_ONLY_SERVERS:
        loadgen_n = FEWER_MESSAGES.get(workload, loadgen_n)
    pin = ["taskset", "-c", CLIENT_CPU]
    if generator == "smtp-source":
        cmd = pin + ["/usr/sbin/smtp-source", "-s", str(conns), "-m", str(source_n), "-l", str(size)]
        if reuse:
            cmd.append("-d")
        cmd.append(f"127.0.0.1:{port}")
        start = time.time()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=600)
        elapsed = time.time() - start
        return {"messages": source_n, "seconds": elapsed, "msgs_per_sec": source_n / elapsed,
                "mb_per_sec": source_n * size / elapsed / 1e6, "eod_p50_ms": None, "eod_p99_ms": None}
    json_path = os.path.join(out_dir, f"{tag}.json")
    cmd = pin + [os.path.join(RELEASE, "smtp-loadgen"), "--target", f"127.0.0.1:{port}",
                 "-c", str(conns), "-n", str(loadgen_n), "--size", str(size), "--quiet",
                 "--json", json_path, "--timeout", "60s"] + extra
    if not reuse:
        cmd += ["--msgs-per-conn", "1"]
    if bdat:
        cmd += ["--bdat", "--inflight", "8"]
    # The generator's own CPU (taskset execs it: same pid), to tell whether it was the limit.
    start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - start
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    with open(json_path) as f:
        result = json.load(f)
    totals = result["totals"]
    stage = result["latency"].get("bdat" if bdat else "eod", {})
    handshakes = totals.get("tls_handshakes", {})
    return {"messages": totals["accepted"], "seconds": totals["measured_seconds"],
            "msgs_per_sec": totals["msgs_per_sec"], "mb_per_sec": totals["mb_per_sec"],
            "eod_p50_ms": stage.get("p50_ms"), "eod_p99_ms": stage.get("p99_ms"),
            "failed": totals["failed"],
            "handshakes_full": handshakes.get("full"), "handshakes_resumed": handshakes.get("resumed"),
            "generator_cpu_s": usage.ru_utime + usage.ru_stime, "generator_wall_s": wall,
            "generator_busy": (usage.ru_utime + usage.ru_stime) / wall}


def measure_group(entries, generator, runs, out_dir):
    """Starts a server for every (server, workload) entry, then interleaves their runs;
    returns one result per entry."""
    started = {}
    try:
        for server, workload in entries:
            handle = Server(server, is_tls(workload), out_dir)
            started[(server, workload)] = handle
            handle.start()
        samples = {entry: [] for entry in entries}
        for run in range(runs):
            # Rotate who goes first, so no server always runs right after another.
            order = entries[run % len(entries):] + entries[:run % len(entries)]
            for entry in order:
                server, workload = entry
                handle = started[entry]
                waited = wait_for_quiet() if WAIT_QUIET > 0 else 0.0
                before, cpus_before = handle.cpu_us(), cpu_busy_seconds()
                sample = run_generator(generator, workload, handle.port, out_dir,
                                       f"{server}-{workload}-{generator}-{run}", server)
                handle.settle()
                sample["waited_for_quiet_s"] = waited
                used = handle.cpu_us() - before
                sample["server_cpu_us_per_msg"] = used / max(sample["messages"], 1)
                if "generator_wall_s" in sample:
                    wall = sample["generator_wall_s"]
                    cpus = cpu_busy_seconds()
                    sample["server_busy"] = used / 1e6 / wall
                    # What everyone else (other engineers' builds) took of the two CPUs meanwhile:
                    # CPU 0 less the server, CPU 1 less the generator.
                    sample["others_cpu0"] = max(0.0, (cpus[SERVER_CPU] - cpus_before[SERVER_CPU])
                                                / wall - sample["server_busy"])
                    sample["others_cpu1"] = max(0.0, (cpus[CLIENT_CPU] - cpus_before[CLIENT_CPU])
                                                / wall - sample["generator_busy"])
                handle.sample_rss()
                samples[entry].append(sample)
                print(f"compare:   {server} {workload} run {run + 1}: "
                      f"{sample['msgs_per_sec']:.0f} msgs/s, "
                      f"{sample['server_cpu_us_per_msg']:.1f} µs/msg server CPU"
                      + (f", generator busy {sample['generator_busy']:.0%}, server busy "
                         f"{sample['server_busy']:.0%}, others on CPU 0/1 "
                         f"{sample['others_cpu0']:.0%}/{sample['others_cpu1']:.0%}"
                         if "generator_busy" in sample else "")
                      + (f" (waited {waited:.0f} s for idle CPUs)" if waited >= 1.5 else ""),
                      file=sys.stderr, flush=True)
        peaks = {entry: handle.sample_rss() for entry, handle in started.items()}
    finally:
        for handle in started.values():
            handle.stop()
    results = []
    for entry in entries:
        server, workload = entry

        def median(key):
            values = [s[key] for s in samples[entry] if s.get(key) is not None]
            return statistics.median(values) if values else None

        def spread(key):
            values = [s[key] for s in samples[entry] if s.get(key) is not None]
            return [min(values), max(values)] if values else None

        results.append({"server": server, "workload": workload, "generator": generator,
                        "runs": samples[entry], "msgs_per_sec": median("msgs_per_sec"),
                        "msgs_per_sec_min_max": spread("msgs_per_sec"),
                        "mb_per_sec": median("mb_per_sec"),
                        "server_cpu_us_per_msg": median("server_cpu_us_per_msg"),
                        "server_cpu_us_per_msg_min_max": spread("server_cpu_us_per_msg"),
                        "eod_p50_ms": median("eod_p50_ms"), "eod_p99_ms": median("eod_p99_ms"),
                        "handshakes_full": median("handshakes_full"),
                        "handshakes_resumed": median("handshakes_resumed"),
                        "generator_busy": median("generator_busy"),
                        "generator_busy_min_max": spread("generator_busy"),
                        "server_busy": median("server_busy"),
                        "others_cpu0": median("others_cpu0"), "others_cpu1": median("others_cpu1"),
                        "peak_rss_kib": peaks[entry]})
    return results


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def idle_rss(server, connections):
    """RSS per idle connection: open `connections` sessions, EHLO each, compare RSS."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + 100
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    port = free_port()
    proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + server_command(server, port),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socks = []
    try:
        wait_listening(port, proc)
        time.sleep(0.2)
        before = rss_kib(proc.pid)
        for _ in range(connections):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        for s in socks:
            s.recv(200)
        for s in socks:
            s.sendall(b"EHLO client.example\r\n")
        for s in socks:
            data = b""
            while not data.endswith(b"\r\n") or b"250 " not in data:
                chunk = s.recv(2000)
                if not chunk:
                    break
                data += chunk
        time.sleep(0.5)
        after = rss_kib(proc.pid)
        return {"server": server, "connections": connections, "rss_before_kib": before,
                "rss_after_kib": after, "bytes_per_connection": (after - before) * 1024 / connections}
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def ratio_rows(results, against="smtp-sink"):
    """fastsmtpd against `against` for every (workload, generator) both completed."""
    by_key = {(r["workload"], r["generator"], r["server"]): r for r in results if "error" not in r}
    rows = []
    for (workload, generator, server), ours in sorted(by_key.items()):
        theirs = by_key.get((workload, generator, against))
        if server != "fastsmtpd" or theirs is None:
            continue
        rate = ours["msgs_per_sec"] / theirs["msgs_per_sec"] if theirs["msgs_per_sec"] else None
        cpu = (ours["server_cpu_us_per_msg"] / theirs["server_cpu_us_per_msg"]
               if theirs["server_cpu_us_per_msg"] else None)
        rows.append(f"| {workload} | {generator} | {fmt(rate, 2)}x | {fmt(cpu, 2)}x |")
    return rows


def fmt(value, digits=1):
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}".replace(",", " ")


def tls_rows(results):
    """The TLS table: every TLS workload row, with spreads, handshakes and who was busy."""
    rows = []
    for r in results:
        if not is_tls(r["workload"]):
            continue
        desc = f"{r['workload']} {WORKLOADS[r['workload']][0]}"
        if "error" in r:
            rows.append(f"| {desc} | {r['server']} | failed: {r['error'][:200]} | | | | | | | | |")
            continue
        rate, cpu, busy = (r["msgs_per_sec_min_max"], r["server_cpu_us_per_msg_min_max"],
                           r["generator_busy_min_max"])
        server_busy = r.get("server_busy")
        others = (f"{fmt(r['others_cpu0'] * 100, 0)} / {fmt(r['others_cpu1'] * 100, 0)} %"
                  if r.get("others_cpu0") is not None else "n/a")
        rows.append(
            f"| {desc} | {r['server']} | {fmt(r['msgs_per_sec'], 0)} ({fmt(rate[0], 0)}–{fmt(rate[1], 0)}) | "
            f"{fmt(r['server_cpu_us_per_msg'], 1)} ({fmt(cpu[0], 1)}–{fmt(cpu[1], 1)}) | "
            f"{fmt(r['eod_p50_ms'], 3)} | {fmt(r['eod_p99_ms'], 3)} | "
            f"{fmt(r['handshakes_full'], 0)} / {fmt(r['handshakes_resumed'], 0)} | "
            f"{fmt(r['generator_busy'] * 100, 0)} % ({fmt(busy[0] * 100, 0)}–{fmt(busy[1] * 100, 0)}) | "
            f"{fmt(server_busy * 100 if server_busy is not None else None, 0)} % | {others} | "
            f"{fmt(r['peak_rss_kib'] / 1024)} |")
    return rows


def limited_by(r):
    """Which side held a run back: the generator's CPU, the server's CPU, a CPU taken by other
    processes of the shared machine, or neither (medians of the runs)."""
    gen, srv = r.get("generator_busy"), r.get("server_busy")
    if gen is None or srv is None:
        return "n/a"
    cpu0, cpu1 = srv + (r.get("others_cpu0") or 0), gen + (r.get("others_cpu1") or 0)
    if gen >= 0.9 and srv >= 0.9:
        return f"both CPUs full (generator {gen:.0%}, server {srv:.0%} busy)"
    if gen >= 0.9:
        return f"generator CPU ({gen:.0%} busy)"
    if srv >= 0.9:
        return f"server CPU ({srv:.0%} busy)"
    if cpu0 >= 0.9 and cpu0 - srv >= 0.1:
        return f"server's CPU 0 full ({srv:.0%} server, {cpu0 - srv:.0%} other processes)"
    if cpu1 >= 0.9 and cpu1 - gen >= 0.1:
        return f"generator's CPU 1 full ({gen:.0%} generator, {cpu1 - gen:.0%} other processes)"
    return f"no CPU full (server {srv:.0%}, generator {gen:.0%}): waits"


def paired(ours, theirs, key):
    """Ratio ours ÷ theirs of `key` run by run: run i of both was taken in the same round of
    the interleaving, minutes apart at most; median (min, max) of those ratios."""
    ratios = [a[key] / b[key] for a, b in zip(ours["runs"], theirs["runs"])
              if a.get(key) and b.get(key)]
    if not ratios:
        return None, None, None
    return statistics.median(ratios), min(ratios), max(ratios)


def tls_ratio_rows(results):
    """The issue's ratios: W1-TLS ÷ W1 for fastsmtpd, and fastsmtpd ÷ each other TLS server;
    the ratio of the medians, and the median (min–max) of the ratios of runs taken in the same
    round, which a drift of the shared machine between rounds moves less."""
    by_key = {(r["workload"], r["server"]): r for r in results
              if r["generator"] == "smtp-loadgen" and "error" not in r}
    rows = []

    def row(label, compared, ours, theirs, goal, cpu_digits):
        rate = ours["msgs_per_sec"] / theirs["msgs_per_sec"]
        cpu = ours["server_cpu_us_per_msg"] / theirs["server_cpu_us_per_msg"]
        r_med, r_min, r_max = paired(ours, theirs, "msgs_per_sec")
        c_med, c_min, c_max = paired(ours, theirs, "server_cpu_us_per_msg")
        if label == "W1-TLS ÷ W1":
            show = lambda v: f"{fmt(v * 100, 0)} %"
            verdict = (f"goal ≥ 80 %: {'met' if rate >= 0.8 else 'NOT met'} by the medians, "
                       f"{'met' if r_med >= 0.8 else 'NOT met'} by the paired runs")
        else:
            show = lambda v: f"{fmt(v, 2)}x"
            verdict = (f"goal ≥ 3x: {'met' if rate >= 3 and r_med >= 3 else 'NOT met'}"
                       if goal else "")
        rows.append(f"| {label} | {compared} | {show(rate)}; paired {show(r_med)} "
                    f"({show(r_min)}–{show(r_max)}){' — ' + verdict if verdict else ''} | "
                    f"{fmt(cpu, cpu_digits)}x; paired {fmt(c_med, cpu_digits)}x "
                    f"({fmt(c_min, cpu_digits)}–{fmt(c_max, cpu_digits)}) | "
                    f"{limited_by(ours)}; {limited_by(theirs)} |")

    ours, plain = by_key.get(("W1-TLS", "fastsmtpd")), by_key.get(("W1", "fastsmtpd"))
    if ours and plain:
        row("W1-TLS ÷ W1", "fastsmtpd STARTTLS ÷ fastsmtpd plaintext", ours, plain, True, 2)
    for workload in ("W1-TLS", "W2-TLS-resume", "W2-TLS-full"):
        ours = by_key.get((workload, "fastsmtpd"))
        for other in TLS_ONLY_SERVERS:
            theirs = by_key.get((workload, other))
            if ours and theirs:
                row(workload, f"fastsmtpd ÷ {other}", ours, theirs,
                    workload.startswith("W2-TLS") and other == "postfix-tls", 3)
    return rows


def idle_tls(connections, out_dir):
    """benches/idle_rss.py for plaintext, implicit TLS and STARTTLS sessions of fastsmtpd."""
    json_path = os.path.join(out_dir, "idle_tls.json")
    subprocess.run([sys.executable, os.path.join(ROOT, "benches", "idle_rss.py"),
                    "--binary", os.path.join(RELEASE, "fastsmtpd"),
                    "--connections", str(connections), "--modes", "plaintext,tls,starttls",
                    "--json", json_path], check=True, stdout=subprocess.DEVNULL, timeout=1800)
    with open(json_path) as f:
        return json.load(f)


def render(meta, results, idle, idle_by_kind):
    """The markdown report of a run (also from a saved results.json: --from-json)."""
    wait_quiet = meta.get("wait_quiet", 0)
    lines = [
        f"Date {meta['date']}, machine: {meta['machine']}; server on CPU {SERVER_CPU}, "
        f"generator on CPU {CLIENT_CPU}; median of {meta['runs']} runs; {meta['cpu_method']}"
        + (f"; before each run waited up to {wait_quiet:.0f} s for a second with both CPUs "
           f"under {QUIET_THRESHOLD:.0%} busy" if wait_quiet > 0 else "") + ".",
        "",
        "| workload | server | generator | msgs/s | MB/s | server CPU µs/msg | eod p50 ms | eod p99 ms | server peak RSS MiB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if is_tls(r["workload"]):
            continue
        desc = f"{r['workload']} {WORKLOADS[r['workload']][0]}"
        if "error" in r:
            lines.append(f"| {desc} | {r['server']} | {r['generator']} | failed: {r['error']} | | | | | |")
            continue
        lines.append(
            f"| {desc} | {r['server']} | {r['generator']} | {fmt(r['msgs_per_sec'], 0)} | "
            f"{fmt(r['mb_per_sec'])} | {fmt(r['server_cpu_us_per_msg'], 2)} | {fmt(r['eod_p50_ms'], 3)} | "
            f"{fmt(r['eod_p99_ms'], 3)} | {fmt(r['peak_rss_kib'] / 1024)} |")
    tls_table = tls_rows(results)
    if tls_table:
        lines += ["", "TLS (STARTTLS, smtp-loadgen, certificate not verified; ECDSA P-256 "
                  "certificates everywhere): median (min–max) of the runs; handshakes full / "
                  "resumed per run; generator busy = smtp-loadgen's CPU time ÷ its wall time on "
                  "its one CPU; server busy = server CPU ÷ the same wall time; others = the share "
                  "of CPU 0 / CPU 1 taken meanwhile by other processes of the machine (neither "
                  "the server nor the generator); for Postfix the memory column is the PSS summed "
                  "over its processes after a run.", "",
                  "| workload | server | msgs/s | server CPU µs/msg | eod p50 ms | eod p99 ms | "
                  "handshakes full / resumed | generator busy | server busy | others on CPU 0 / 1 | "
                  "server peak RSS MiB |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"] + tls_table
    ratios = ratio_rows(results)
    if ratios:
        lines += ["", "Side by side, from the rows above (fastsmtpd ÷ smtp-sink; the issue's targets: CPU "
                  "≤ 0.8 with smtp-source on W1/W2/W4, ≤ 1/6 on W3/W5; with smtp-loadgen msgs/s ≥ 2 on W1, "
                  "≥ 4 on W3, CPU ≤ 1/3):", "",
                  "| workload | generator | msgs/s ratio | server CPU per message ratio |",
                  "|---|---|---:|---:|"] + ratios
    tls_ratios = tls_ratio_rows(results)
    if tls_ratios:
        lines += ["", "TLS ratios, from the rows above: the ratio of the medians, then the median "
                  "(min–max) of the ratios of the runs taken in the same round (paired); server CPU "
                  "ratio ours ÷ theirs, lower is better; what limited the runs, first ours, then "
                  "theirs:", "",
                  "| workload | compared | msgs/s ratio | server CPU per message ratio | what limited the runs |",
                  "|---|---|---:|---:|---|"] + tls_ratios
    baseline_ratios = ratio_rows(results, against="fastsmtpd-baseline")
    if baseline_ratios:
        lines += ["", f"This build against the baseline ({meta.get('baseline')}), from the rows above "
                  "(fastsmtpd ÷ fastsmtpd-baseline):", "",
                  "| workload | generator | msgs/s ratio | server CPU per message ratio |",
                  "|---|---|---:|---:|"] + baseline_ratios
    if idle:
        lines += ["", "| server | idle connections (after EHLO) | RSS per connection |", "|---|---:|---:|"]
        for r in idle:
            value = "failed: " + r["error"] if "error" in r else f"{r['bytes_per_connection'] / 1024:.2f} KiB"
            lines.append(f"| {r['server']} | {r['connections']} | {value} |")
    if idle_by_kind:
        lines += ["", "Idle sessions by kind (benches/idle_rss.py: fastsmtpd with a certificate, "
                  "one worker, sessions idle after EHLO, RSS before taken after a warm-up):", "",
                  "| session | idle sessions | RSS per session |", "|---|---:|---:|"]
        for r in idle_by_kind:
            if "error" in r:
                lines.append(f"| {r['mode']} | | failed: {r['error']} |")
            else:
                lines.append(f"| {r['mode']} | {r['connections']} | {r['kib_per_connection']:.2f} KiB |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3,
                        help="runs per (server, workload, generator); medians are reported "
                             "(default: %(default)s)")
    parser.add_argument("--workloads", default="W1,W2,W3,W4,W5,W6",
                        help="W1..W6 (plaintext), W1-TLS, W2-TLS (= W2-TLS-resume,W2-TLS-full)")
    parser.add_argument("--servers", default="fastsmtpd,smtp-sink,aiosmtpd,postfix-tls,haraka",
                        help="postfix-tls and haraka run the TLS workloads only; smtp-sink "
                             "and aiosmtpd the plaintext ones only")
    parser.add_argument("--generators", default="smtp-source,smtp-loadgen",
                        help="load generators, comma-separated (default: %(default)s)")
    parser.add_argument("--out", default=os.path.join(TARGET, "compare"),
                        help="output directory for results.md, results.json and the servers' "
                             "files (default: %(default)s)")
    parser.add_argument("--idle", type=int, default=10000,
                        help="idle connections for the RSS measurement (0: skip)")
    parser.add_argument("--idle-servers", default="fastsmtpd,smtp-sink",
                        help="servers whose idle-connection RSS is measured (default: %(default)s)")
    parser.add_argument("--idle-tls", type=int, default=None, metavar="N",
                        help="idle sessions for benches/idle_rss.py (plaintext, implicit TLS, "
                             "STARTTLS); default: 10000 when a TLS workload runs, else 0")
    parser.add_argument("--baseline", metavar="BIN",
                        help="another fastsmtpd binary, measured as server fastsmtpd-baseline")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each run, wait up to this long for a second in which "
                             # argparse %-formats help strings: the percent sign is doubled.
                             f"neither CPU is more than {QUIET_THRESHOLD:.0%}% busy (a shared machine)")
    parser.add_argument("--tls", action="store_true",
                        help="the TLS comparison: --workloads W1,W1-TLS,W2-TLS --servers "
                             "fastsmtpd,postfix-tls,haraka --generators smtp-loadgen --idle 0 "
                             "(idle sessions by kind still measured: --idle-tls)")
    parser.add_argument("--from-json", metavar="FILE",
                        help="measure nothing: print the report of a saved results.json again")
    args = parser.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        saved.setdefault("wait_quiet", args.wait_quiet)
        print(render(saved, saved["results"], saved.get("idle", []), saved.get("idle_by_kind", [])))
        return
    if args.tls:
        args.workloads, args.generators = "W1,W1-TLS,W2-TLS", "smtp-loadgen"
        args.servers, args.idle = "fastsmtpd,postfix-tls,haraka", 0
    global BASELINE, CGROUP2, WAIT_QUIET
    BASELINE = args.baseline
    WAIT_QUIET = args.wait_quiet
    CGROUP2 = find_cgroup2()
    servers_wanted = args.servers.split(",")
    if BASELINE and "fastsmtpd-baseline" not in servers_wanted:
        servers_wanted.append("fastsmtpd-baseline")
    workloads = []
    for name in args.workloads.split(","):
        for workload in ALIASES.get(name, [name]):
            if workload not in WORKLOADS:
                sys.exit(f"compare: unknown workload {workload}")
            workloads.append(workload)
    any_tls = any(is_tls(w) for w in workloads)
    if args.idle_tls is None:
        args.idle_tls = 10000 if any_tls else 0

    def servers_for(workload):
        if is_tls(workload):
            return [s for s in servers_wanted if s in TLS_SERVERS]
        servers = [s for s in servers_wanted if s not in TLS_ONLY_SERVERS]
        if WORKLOADS[workload][4]:  # only fastsmtpd offers CHUNKING
            servers = [s for s in servers if s.startswith("fastsmtpd")]
        return servers

    os.makedirs(args.out, exist_ok=True)
    results = []
    done = set()
    for workload in workloads:
        for generator in args.generators.split(","):
            if (workload, generator) in done:
                continue
            if generator == "smtp-source" and WORKLOADS[workload][5] == 0:
                continue  # smtp-source sends neither BDAT nor STARTTLS
            group = [workload]
            if generator == "smtp-loadgen":
                group += [w for w in workloads if w != workload and
                          (INTERLEAVE_WITH.get(w) == workload or INTERLEAVE_WITH.get(workload) == w)]
            done.update((w, generator) for w in group)
            entries = [(server, w) for w in group for server in servers_for(w)]
            if not entries:
                continue
            print(f"compare: {' + '.join(group)}: {', '.join(s for s, _ in entries)} <- {generator}",
                  file=sys.stderr, flush=True)
            try:
                results += measure_group(entries, generator, args.runs, args.out)
            except (subprocess.SubprocessError, RuntimeError, OSError) as e:
                print(f"compare: {'+'.join(group)} <- {generator} FAILED: {e}", file=sys.stderr)
                results += [{"server": server, "workload": w, "generator": generator,
                             "error": str(e)} for server, w in entries]
    idle = []
    if args.idle > 0:
        for server in args.idle_servers.split(","):
            print(f"compare: idle RSS {server} with {args.idle} connections", file=sys.stderr, flush=True)
            try:
                idle.append(idle_rss(server, args.idle))
            except (RuntimeError, OSError) as e:
                idle.append({"server": server, "connections": args.idle, "error": str(e)})
    idle_by_kind = []
    if args.idle_tls > 0:
        print(f"compare: idle RSS by session kind (benches/idle_rss.py, {args.idle_tls} sessions)",
              file=sys.stderr, flush=True)
        try:
            idle_by_kind = idle_tls(args.idle_tls, args.out)
        except (subprocess.SubprocessError, OSError) as e:
            idle_by_kind = [{"mode": "all", "error": str(e)}]
    meta = {"date": str(datetime.date.today()),
            "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}",
            "runs": args.runs, "cpu_method": cpu_method(), "wait_quiet": WAIT_QUIET,
            "baseline": BASELINE}
    table = render(meta, results, idle, idle_by_kind)
    print(table)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(dict(meta, results=results, idle=idle, idle_by_kind=idle_by_kind), f, indent=2)


if __name__ == "__main__":
    main()
