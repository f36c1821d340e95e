#!/usr/bin/env python3
"""End-to-end relay benchmark: fastsmtpd's relay against a private Postfix and a private Exim,
same generator, same sink, same run (issue 19, "Measured").

One fastsmtpd sink keeps what arrives in its capture store and serves its API on loopback
(`--api`). Each MTA under test relays to it in turn:

  * fastsmtpd: `--spool DIR --relay-to SINK --dsn off` (the spool durable: group-committed
    fsyncs before each 250);
  * postfix: a private Postfix instance (`postfix -c DIR`: its own main.cf, master.cf, queue
    and data directories under OUT, smtpd on a loopback port, `relayhost =
    [127.0.0.1]:SINKPORT`; its queue files are fsynced before its 250, as always);
  * exim: a private Exim 4 daemon (`exim -C OUT/.../exim.conf -bdf -q30m`: its own
    configuration, spool, logs and pid file under OUT, listening on a loopback port) set up as
    a smarthost relay: every recipient routed by a `manualroute` router (`route_list = *
    127.0.0.1 byname`, `self = send`: the sink is on this host) to an `smtp` transport on the
    sink's port (`allow_localhost`), delivered at once (queue_only off: the process that
    received the message forks and re-executes Exim for its delivery, as a stock Exim does to
    regain root; under `-C` it stays `Debian-exim` and logs `exim user lost privilege for
    using -C option` to its mainlog and paniclog each time, which is expected) with the
    transport's defaults (PIPELINING, and CHUNKING through `hosts_try_chunking = *`).
    Durable as Exim always is: before its 250 it writes the -D (body) file and fsyncs it,
    writes the -H (envelope, headers) file under a temporary name, fsyncs it, renames it and
    fsyncs the spool's input directory, which holds both names (seen with `strace -f` on
    Exim 4.96; Debian's build has no `disable_fsync` option at all). Exim is found in
    `--exim PATH`, else `$FASTSMTPD_EXIM`, else where `.ci/run` unpacks Debian's
    exim4-daemon-light (EXIM_CACHE); it is measured by default when one of those exists.

smtp-loadgen drives each MTA in an open loop with `--delivered-via` (the sink's API): every
message is tagged, its arrival at the sink timed from its intended send time (stage
`delivered`), and messages that never arrive are counted.

For each MTA the script searches its maximum sustained rate: a step at rate R (STEP seconds)
(after a WARMUP, left out of the figures) passes when the generator sustained R (97 % to
105 % of it accepted: more is a catch-up after sends went out late; no send left undone, no
error), every accepted message arrived at the sink within the drain (DRAIN seconds after the
last send: `never delivered` 0) and `delivered` p99 is at most DRAIN seconds: accept rate =
delivery rate, with the queue never more than DRAIN seconds deep. Rates double from START until a step fails (or, when the first one fails, halve down
to MIN_RATE until one passes), then the gap is bisected (BISECT times).
Between steps the script waits until the sink has stopped receiving (the MTA's queue
drained). The MTA's CPU per message is its cgroup v2's usage_usec from the start of the best
passing step (warm-up included) until the sink has stopped receiving, divided by the
messages the sink received meanwhile (every process the MTA forks: Postfix's services,
Exim's per-connection receivers and per-message delivery processes; as benches/compare.py
accounts; from /proc when no cgroup can be made). Then one run at half of the maximum rate
measures `delivered` p50/p99.

The MTA is pinned to CPU 0, the sink and the generator to CPU 1 (taskset; the MTA's forked
processes inherit the pinning). Writes a markdown table to stdout and OUT/results.md,
everything to OUT/results.json.

Needs target/release/{fastsmtpd,smtp-loadgen} (cargo build --release -p fastsmtpd -p
smtp-loadgen), postfix (see /work/shared/DESIGN.md for installing it without starting a
daemon), for Exim an exim4 binary (`.ci/run` unpacks one without installing it; run as root,
Exim works as the user `Debian-exim`, which must exist), taskset, and root for the cgroup
(else CPU comes from /proc).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (helpers: free ports, cgroups, Postfix defaults)

ROOT = compare.ROOT
RELEASE = compare.RELEASE
MTA_CPU = "0"
CLIENT_CPU = "1"
# Where .ci/run unpacks Debian's exim4-daemon-light (`dpkg -x`, not installed).
EXIM_CACHE = "/var/cache/fastsmtpd-ci/exim/root/usr/sbin/exim4"
# The environment variable naming an Exim binary (as for tests/relay_exim.rs).
EXIM_ENV = "FASTSMTPD_EXIM"
# The user Debian's Exim build runs as (compiled in; looked up before any configuration).
EXIM_USER = "Debian-exim"

POSTFIX_MASTER_CF = """\
# service type  private unpriv chroot wakeup maxproc command
{listen} inet n - n - - smtpd
cleanup   unix  n - n -    0 cleanup
qmgr      unix  n - n 300  1 qmgr
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
smtp      unix  - - n -    - smtp
relay     unix  - - n -    - smtp
anvil     unix  - - n -    1 anvil
scache    unix  - - n -    1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def postfix_main_cf(base, port, sink_port):
    d = compare.postconf_default
    return f"""\
# A private Postfix instance for benches/e2e_relay.py: smtpd on 127.0.0.1:{port} only, every
# message relayed to the fastsmtpd sink on 127.0.0.1:{sink_port}. Written and removed by the
# harness.
compatibility_level = 3.6
config_directory = {base}/etc
queue_directory = {base}/queue
data_directory = {base}/data
command_directory = {d("command_directory")}
daemon_directory = {d("daemon_directory")}
shlib_directory = {d("shlib_directory")}
meta_directory = {d("meta_directory")}
mail_owner = {d("mail_owner")}
setgid_group = {d("setgid_group")}
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
myhostname = relay.localhost
mydomain = localhost
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
local_recipient_maps =
alias_maps =
alias_database =
relayhost = [127.0.0.1]:{sink_port}
default_transport = smtp
relay_transport = relay
biff = no
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
# No delay notices or bounces in a benchmark (fastsmtpd runs with --dsn off).
delay_warning_time = 0h
# anvil's per-client limits lifted: every connection comes from 127.0.0.1.
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_client_event_limit_exceptions = 127.0.0.0/8
default_process_limit = 200
"""


def exim_program(explicit=None):
    """Exim's binary: `explicit` (--exim), else $FASTSMTPD_EXIM, else EXIM_CACHE; None when
    none of them names a file."""
    for candidate in (explicit, os.environ.get(EXIM_ENV), EXIM_CACHE):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def exim_conf(base, program, sink_port, user, group):
    """A private Exim as a smarthost relay: everything to the sink, at once, no DNS.

    What is set beyond what the relay needs, and why (everything else is Exim's default):
      * smtp_accept_max = 200 (default 20): the simultaneous SMTP connections (one receiving
        process each). 20 is exactly the generator's default connection count, with no room
        for a reconnect racing a closing process; 200 is the process limit the Postfix
        instance gets (default_process_limit = 200), so both may fork as many receivers.
      * smtp_accept_queue_per_connection = 0 (default 10): by default, from the 11th message
        of one SMTP connection on Exim starts no delivery process and leaves the message to
        the next queue runner (up to 30 minutes with Debian's -q30m): the generator keeps its
        connections for the whole run (--msgs-per-conn 0), so nearly every message would wait
        for it. A smarthost fed by long-lived application connections turns this off, as here:
        every message is delivered when it is received (queue_only stays off).
      * remote_max_parallel = 2 (Exim 4.96's default, written out): the parallel deliveries of
        one message to several hosts. Each generated message has one recipient and one next
        hop, so it does not change anything here; it is not raised.
      * host_lookup / rfc1413_hosts empty: no DNS and no ident callback on loopback;
        tls_advertise_hosts empty: no STARTTLS offered (the generator does not use it), and
        the sink offers none, so the transport sends in clear as Postfix does
        (smtp_tls_security_level = none).
      * a retry section with Debian's default rules (exim4-config), so a deferred message is
        retried as a stock installation would (none is expected).
    The smtp transport keeps its defaults: PIPELINING when offered, CHUNKING/BDAT with
    hosts_try_chunking = *, up to connection_max_messages = 500 per connection.
    """
    return f"""\
# A private Exim for benches/e2e_relay.py: a smarthost relaying everything it receives on
# 127.0.0.1 to the fastsmtpd sink on 127.0.0.1:{sink_port}. Written and removed by the harness.
primary_hostname = relay.localhost
exim_path = {program}
exim_user = {user}
exim_group = {group}
keep_environment =
spool_directory = {base}/spool
log_file_path = {base}/log/%slog
pid_file_path = {base}/exim.pid
local_interfaces = 127.0.0.1
host_lookup =
rfc1413_hosts =
rfc1413_query_timeout = 0s
tls_advertise_hosts =
smtp_accept_max = 200
smtp_accept_queue_per_connection = 0
remote_max_parallel = 2
hostlist relay_from_hosts = 127.0.0.1
acl_smtp_rcpt = acl_check_rcpt

begin acl
acl_check_rcpt:
  accept  hosts = +relay_from_hosts
  deny    message = relay not permitted

begin routers
smarthost:
  driver = manualroute
  route_list = * 127.0.0.1 byname
  # 127.0.0.1 is this host: send to it anyway (the sink listens on another port).
  self = send
  transport = to_sink
  no_more

begin transports
to_sink:
  driver = smtp
  port = {sink_port}
  allow_localhost

begin retry
*   *   F,2h,15m; G,16h,1h,1.5; F,4d,6h
"""


def spawn(command, cpu, cgroup=None, **kwargs):
    pinned = ["taskset", "-c", cpu] + command
    if cgroup:
        pinned = ["sh", "-c", 'echo $$ >"$0/cgroup.procs" && exec "$@"', cgroup] + pinned
    return subprocess.Popen(pinned, **kwargs)


class Sink:
    """The fastsmtpd sink with its capture API, pinned to the client CPU."""

    def __init__(self, out):
        self.port, self.api = compare.free_port(), compare.free_port()
        self.log = open(os.path.join(out, "sink.log"), "wb")
        self.proc = spawn([os.path.join(RELEASE, "fastsmtpd"), "--listen",
                           f"127.0.0.1:{self.port}", "--api", f"127.0.0.1:{self.api}",
                           "--capture-memory", "256MiB", "--threads", "1",
                           "--hostname", "sink.test", "--max-connections-per-ip", "1000"],
                          CLIENT_CPU, stdout=self.log, stderr=self.log)
        compare.wait_listening(self.port, self.proc)

    def url(self):
        return f"http://127.0.0.1:{self.api}"

    def accepted(self):
        with urllib.request.urlopen(f"{self.url()}/api/v1/stats", timeout=5) as r:
            return json.load(r)["accepted_total"]

    def quiet(self, still=1.5, timeout=300.0):
        """Waits until the sink has received nothing for `still` seconds (the MTA drained)."""
        last, since, deadline = self.accepted(), time.time(), time.time() + timeout
        while time.time() < deadline:
            time.sleep(0.25)
            now = self.accepted()
            if now != last:
                last, since = now, time.time()
            elif time.time() - since >= still:
                return
        raise RuntimeError("the sink still receives mail after the timeout")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=15)
        self.log.close()


class Mta:
    """One MTA under test relaying to the sink, pinned to MTA_CPU, in a cgroup of its own."""

    def __init__(self, name, out, sink_port, exim=None):
        self.name, self.out, self.sink_port = name, out, sink_port
        self.exim = exim  # Exim's binary, for name == "exim"
        self.port = compare.free_port()
        self.cgroup = None
        self.proc = None
        self.base = os.path.join(out, f"{name}-{self.port}")
        shutil.rmtree(self.base, ignore_errors=True)
        os.makedirs(self.base)

    def start(self):
        if compare.CGROUP2:
            self.cgroup = os.path.join(compare.CGROUP2, f"e2e-{os.getpid()}-{self.name}")
            os.mkdir(self.cgroup)
        log = open(os.path.join(self.base, "server.log"), "wb")
        if self.name == "fastsmtpd":
            self.proc = spawn([os.path.join(RELEASE, "fastsmtpd"), "--listen",
                               f"127.0.0.1:{self.port}", "--threads", "1",
                               "--max-connections-per-ip", "1000",
                               "--spool", os.path.join(self.base, "spool"),
                               "--relay-to", f"127.0.0.1:{self.sink_port}", "--dsn", "off"],
                              MTA_CPU, self.cgroup, stdout=log, stderr=log)
            self.root_pid = self.proc.pid
            compare.wait_listening(self.port, self.proc)
        elif self.name == "exim":
            self.start_exim(log)
        else:
            etc = os.path.join(self.base, "etc")
            for d in ("etc", "queue", "data"):
                os.makedirs(os.path.join(self.base, d))
            with open(os.path.join(etc, "main.cf"), "w") as f:
                f.write(postfix_main_cf(self.base, self.port, self.sink_port))
            with open(os.path.join(etc, "master.cf"), "w") as f:
                f.write(POSTFIX_MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
            owner = compare.postconf_default("mail_owner")
            shutil.chown(os.path.join(self.base, "data"), owner, owner)
            spawn(["postfix", "-c", etc, "start"], MTA_CPU, self.cgroup,
                  stdout=log, stderr=log).wait(timeout=60)
            pid_file = os.path.join(self.base, "queue", "pid", "master.pid")
            deadline = time.time() + 10
            while not os.path.exists(pid_file) and time.time() < deadline:
                time.sleep(0.05)
            with open(pid_file) as f:
                self.root_pid = int(f.read().split()[0])
            compare.wait_listening(self.port)
        log.close()

    def start_exim(self, log):
        """Exim's daemon in the foreground (`-bdf`, a queue runner every 30 minutes as Debian's
        default), in a session and process group of its own and in the MTA's cgroup."""
        for d in ("spool", "log"):
            os.makedirs(os.path.join(self.base, d))
        command = [self.exim, "-C", os.path.join(self.base, "exim.conf"), "-bdf", "-q30m",
                   "-oX", str(self.port)]
        if os.geteuid() == 0:
            # Exim gives up root for `-C` and works as its user from the start: its
            # directories are that user's; the configuration stays root's (Exim refuses one
            # owned by anyone else), so it is written after the chown. The pid file in OUT,
            # not /run (only root and Exim's user may name one with -oP).
            user = group = EXIM_USER
            try:
                shutil.chown(self.base, user, group)
            except LookupError:
                raise RuntimeError(f"user {EXIM_USER} missing (useradd --system --user-group "
                                   f"{EXIM_USER}, as .ci/run does)")
            for d in ("spool", "log"):
                shutil.chown(os.path.join(self.base, d), user, group)
            command += ["-oP", os.path.join(self.base, "exim.pid")]
        else:
            # An unprivileged Exim runs as its caller and logs to its standard error.
            user, group = str(os.getuid()), str(os.getgid())
        with open(os.path.join(self.base, "exim.conf"), "w") as f:
            f.write(exim_conf(self.base, self.exim, self.sink_port, user, group))
        self.proc = spawn(command, MTA_CPU, self.cgroup, stdout=log, stderr=log,
                          stdin=subprocess.DEVNULL, start_new_session=True)
        self.root_pid = self.proc.pid
        try:
            compare.wait_listening(self.port, self.proc)
        except RuntimeError as e:
            log.flush()
            said = ""
            for name in ("server.log", "log/paniclog", "log/mainlog"):
                try:
                    with open(os.path.join(self.base, name), errors="replace") as f:
                        said += f"--- {name} ---\n" + "".join(f.readlines()[-10:])
                except OSError:
                    pass
            self.stop()  # whatever it started, and its cgroup
            raise RuntimeError(f"Exim ({self.exim}) did not start: {e}\n{said}") from None

    def version(self):
        if self.name == "exim":
            out = subprocess.run([self.exim, "-C", os.path.join(self.base, "exim.conf"), "-bV"],
                                 capture_output=True, text=True).stdout
            words = next((line.split() for line in out.splitlines()
                          if line.startswith("Exim version")), ["Exim", "version", "?"])
            return f"Exim {words[2]}"
        if self.name == "fastsmtpd":
            out = subprocess.run([os.path.join(RELEASE, "fastsmtpd"), "--version"],
                                 capture_output=True, text=True).stdout
            return out.strip()
        return "Postfix " + compare.postconf_default("mail_version")

    def cpu_us(self):
        if self.cgroup:
            with open(os.path.join(self.cgroup, "cpu.stat")) as f:
                for line in f:
                    if line.startswith("usage_usec "):
                        return int(line.split()[1])
        fields = compare.proc_stat(self.root_pid)
        return sum(int(fields[i]) for i in (11, 12, 13, 14)) / compare.TICKS * 1e6

    def stop(self):
        if self.name == "postfix":
            subprocess.run(["postfix", "-c", os.path.join(self.base, "etc"), "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        if self.name == "exim" and self.proc is not None and self.proc.poll() is None:
            # The daemon's orderly stop, to its whole group (receivers and deliveries too);
            # what is left is killed through the cgroup below.
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                pass
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.cgroup:
            deadline = time.time() + 15
            while time.time() < deadline:
                with open(os.path.join(self.cgroup, "cgroup.procs")) as f:
                    left = [int(x) for x in f if x.strip()]
                if not left:
                    break
                if time.time() > deadline - 5:
                    for pid in left:
                        try:
                            os.kill(pid, 9)
                        except OSError:
                            pass
                time.sleep(0.1)
            for _ in range(50):
                try:
                    os.rmdir(self.cgroup)
                    break
                except OSError:
                    time.sleep(0.1)


def loadgen(args, mta, sink, rate, seconds, drain, label):
    out = os.path.join(mta.base, f"{label}.json")
    command = [os.path.join(RELEASE, "smtp-loadgen"), "--target", f"127.0.0.1:{mta.port}",
               "-c", str(args.connections), "-s", args.size, "--rate", str(rate),
               "-d", f"{seconds}s", "--warmup", f"{args.warmup}s", "--delivered-via", sink.url(),
               "--delivered-drain", f"{drain}s", "-q", "--json", out]
    cpu0, sunk0 = mta.cpu_us(), sink.accepted()
    proc = spawn(command, CLIENT_CPU, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=args.warmup + seconds + drain + 120)
    # The MTA's CPU until it has delivered everything of this run (warm-up included), over
    # the messages the sink received meanwhile.
    sink.quiet()
    cpu, sunk = mta.cpu_us() - cpu0, sink.accepted() - sunk0
    try:
        with open(out) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        raise RuntimeError(f"smtp-loadgen failed ({proc.returncode}): {err.decode()[-2000:]}")
    t, d, lat = doc["totals"], doc.get("delivery", {}), doc["latency"].get("delivered", {})
    step = {
        "rate": rate,
        "accepted": t["accepted"],
        "msgs_per_sec": t["msgs_per_sec"],
        "backlog": t["backlog"],
        "errors": sum(t["errors"].values()),
        "arrived": d.get("arrived", 0),
        "never_delivered": d.get("never_delivered", 0),
        "duplicates": d.get("duplicates", 0),
        "delivered_p50_ms": lat.get("p50_ms"),
        "delivered_p99_ms": lat.get("p99_ms"),
        "cpu_us": cpu,
        "relayed": sunk,
        "cpu_us_per_msg": cpu / max(sunk, 1),
    }
    step["passed"] = (0.97 * rate <= step["msgs_per_sec"] <= 1.05 * rate
                      and step["backlog"] == 0 and step["errors"] == 0
                      and step["accepted"] > 0 and step["never_delivered"] == 0
                      and (step["delivered_p99_ms"] or 0) <= drain * 1000)
    print(f"  {mta.name} {label}: {rate} msgs/s offered, {step['msgs_per_sec']:.0f} accepted/s, "
          f"arrived {step['arrived']}/{step['accepted']}, never delivered "
          f"{step['never_delivered']}, delivered p99 {step['delivered_p99_ms']} ms, "
          f"{step['cpu_us_per_msg']:.0f} us CPU/msg -> {'pass' if step['passed'] else 'FAIL'}",
          file=sys.stderr, flush=True)
    return step


def measure(args, name, sink, out):
    mta = Mta(name, out, sink.port, args.exim)
    mta.start()
    try:
        steps, best, failed = [], None, None
        rate = args.start
        while rate <= args.max_rate:
            step = loadgen(args, mta, sink, rate, args.step, args.drain, f"step-{rate}")
            steps.append(step)
            if not step["passed"]:
                failed = rate
                break
            best = step
            rate *= 2
        # The first step failed: halve down to a passing one (or MIN_RATE).
        rate = args.start // 2
        while best is None and rate >= args.min_rate:
            step = loadgen(args, mta, sink, rate, args.step, args.drain, f"step-{rate}")
            steps.append(step)
            if step["passed"]:
                best = step
            else:
                failed = rate
            rate //= 2
        for _ in range(args.bisect if best and failed else 0):
            rate = (best["rate"] + failed) // 2
            if rate in (best["rate"], failed):
                break
            step = loadgen(args, mta, sink, rate, args.step, args.drain, f"step-{rate}")
            steps.append(step)
            if step["passed"]:
                best = step
            else:
                failed = rate
        half = None
        if best:
            half = loadgen(args, mta, sink, max(best["rate"] // 2, 1), args.step, args.drain,
                           "half")
        return {"name": name, "version": mta.version(), "steps": steps, "max": best,
                "half": half, "first_failed_rate": failed}
    finally:
        mta.stop()


def table(results, args):
    lines = [
        "| MTA | max sustained msgs/s | MTA CPU µs/msg at max | delivered p50 ms at half | "
        "delivered p99 ms at half | never delivered at max / duplicates (all steps) |",
        "|---|---|---|---|---|---|",
    ]
    def cell(value):
        return "-" if value is None else f"{value:.2f}"

    for r in results:
        m, h = r["max"], r["half"] or {}
        dups = sum(s["duplicates"] for s in r["steps"])
        never_at_max = m["never_delivered"] if m else "-"
        failed = f" ({r['first_failed_rate']} failed)" if r["first_failed_rate"] else ""
        cpu = f"{m['cpu_us_per_msg']:.0f}" if m else "-"
        rate = m["rate"] if m else "-"
        lines.append(
            f"| {r['version']} | {rate}{failed} | {cpu} | "
            f"{cell(h.get('delivered_p50_ms'))} | {cell(h.get('delivered_p99_ms'))} | "
            f"{never_at_max} / {dups} |")
    ours = next((r for r in results if r["name"] == "fastsmtpd" and r["max"]), None)
    others = [r for r in results if r["name"] != "fastsmtpd" and r["max"]]
    if ours and others:
        lines.append("")
    for r in others if ours else []:
        f, p = ours["max"], r["max"]
        lines.append(f"fastsmtpd ÷ {r['version'].split()[0]}: {f['rate'] / p['rate']:.1f}× the "
                     f"sustained rate, {f['cpu_us_per_msg'] / p['cpu_us_per_msg']:.3f}× "
                     "the CPU per message.")
    lines.append("")
    lines.append(f"Steps of {args.step} s, {args.connections} connections, {args.size} messages, "
                 f"drain {args.drain} s; {compare.cpu_method() if compare.CGROUP2 else 'CPU from /proc'}"
                 f"; MTA on CPU {MTA_CPU}, sink and generator on CPU {CLIENT_CPU}.")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(
        prog="e2e_relay.py",
        description="fastsmtpd's relay vs a private Postfix and a private Exim, end to end "
                    "through a fastsmtpd sink (smtp-loadgen --delivered-via): maximum "
                    "sustained rate, CPU per message, delivered p50/p99 at half of it.")
    parser.add_argument("--out", default="/tmp/e2e-relay", help="output directory")
    parser.add_argument("--mta", action="append", choices=["fastsmtpd", "postfix", "exim"],
                        help="MTA(s) to measure, repeatable, in this order (default: fastsmtpd "
                             "and postfix, then exim when its binary is found)")
    parser.add_argument("--exim", metavar="PATH",
                        help=f"Exim's binary (default: ${EXIM_ENV}, else {EXIM_CACHE})")
    parser.add_argument("--step", type=int, default=5, help="seconds per rate step")
    parser.add_argument("--warmup", type=int, default=2,
                        help="seconds of each step before the measured ones (Postfix forks its "
                             "smtpd processes on demand)")
    parser.add_argument("--drain", type=int, default=2,
                        help="seconds after a step's last send within which every accepted "
                             "message must arrive")
    parser.add_argument("--start", type=int, default=250, help="first rate (msgs/s)")
    parser.add_argument("--max-rate", type=int, default=64000, help="highest rate tried")
    parser.add_argument("--min-rate", type=int, default=8,
                        help="lowest rate tried when the first step fails")
    parser.add_argument("--bisect", type=int, default=2, help="bisections after the doubling")
    parser.add_argument("--connections", type=int, default=20, help="generator connections")
    parser.add_argument("--size", default="1k", help="message size")
    args = parser.parse_args()
    if args.exim and not os.path.isfile(args.exim):
        sys.exit(f"e2e_relay.py: --exim {args.exim}: no such file")
    args.exim = exim_program(args.exim)
    if not args.mta:
        args.mta = ["fastsmtpd", "postfix"] + (["exim"] if args.exim else [])
    if "exim" in args.mta and not args.exim:
        sys.exit(f"e2e_relay.py: no Exim binary: give --exim PATH or set {EXIM_ENV} "
                 f"(.ci/run unpacks one as {EXIM_CACHE})")
    for tool in ("taskset",) + (("postfix",) if "postfix" in args.mta else ()):
        if not shutil.which(tool):
            sys.exit(f"e2e_relay.py: {tool} not found")
    for binary in ("fastsmtpd", "smtp-loadgen"):
        if not os.path.exists(os.path.join(RELEASE, binary)):
            sys.exit(f"e2e_relay.py: build {RELEASE}/{binary} first "
                     "(cargo build --release -p fastsmtpd -p smtp-loadgen)")
    os.makedirs(args.out, exist_ok=True)
    compare.CGROUP2 = compare.find_cgroup2()
    sink = Sink(args.out)
    results = []
    try:
        for name in args.mta:
            results.append(measure(args, name, sink, args.out))
    finally:
        sink.stop()
    md = table(results, args)
    print(md)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
