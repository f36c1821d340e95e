#!/usr/bin/env python3
"""Send lateness of smtp-loadgen's open loop, before and after (issue 16, item 2).

How late does the generator start each open-loop message relative to its schedule, and so how
much of the corrected latency is the generator's own clock rather than the server? Runs each
smtp-loadgen binary (variant) against one fastsmtpd at each rate (default 200, 2000 and 20000
msgs/s) with -c 4, several times, interleaved (run 1 of every variant, then run 2...) so that a
drift of a shared machine's load hits them alike, and reports medians: send lateness p50/p99/max,
message latency p50/p99 (service time) and corrected (from the intended start), the achieved
rate, and the generator's CPU use (utime+stime over wall time, from wait4). The machine's load
(/proc/loadavg, and the busy share of all CPUs over each run from /proc/stat) is recorded with
the figures: on a shared machine the tails measure the neighbours too.

The baseline is an older smtp-loadgen: `--baseline BIN`, or `--baseline-commit REV` to build
that revision (git worktree in a temporary directory, its own target directory seeded with a
copy of target/release so compiled dependencies are reused, release build).
`--variant LABEL=BIN[,ITEM...]` adds any other binary, with extra flags (`--pace-spin=0`)
or environment variables (`K=V`).

Writes a markdown report (the exact command, machine, load, table) to stdout and into --out
(below a marker line: text above it is kept, so the record's prose survives a re-run), and
every run's figures as JSON next to it (same name, .json).
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# In --out, everything after this line is this script's; the text before it is kept.
MARKER = "<!-- benches/send_lateness.py output below; the text above is kept -->"


def parse_args():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: python3 benches/send_lateness.py --baseline-commit 8e62407 --runs 5",
    )
    p.add_argument("--new", default=os.path.join(ROOT, "target/release/smtp-loadgen"),
                   help="the smtp-loadgen to measure (default: target/release/smtp-loadgen)")
    p.add_argument("--baseline", metavar="BIN", help="an older smtp-loadgen binary (label 'before')")
    p.add_argument("--baseline-commit", metavar="REV",
                   help="build smtp-loadgen at this git revision and use it as 'before'")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL=BIN[,ITEM...]",
                   help="another binary to measure (repeatable); each ITEM is an extra "
                        "smtp-loadgen flag (--pace-spin=0) or an environment variable (K=V)")
    p.add_argument("--server", default=os.path.join(ROOT, "target/release/fastsmtpd"),
                   help="the fastsmtpd binary to load (default: target/release/fastsmtpd)")
    p.add_argument("--rates", default="200,2000,20000", help="msgs/s, comma-separated")
    p.add_argument("--runs", type=int, default=3, help="runs per (rate, variant); medians are shown")
    p.add_argument("--duration", default="5s", help="measured time of each run (smtp-loadgen -d)")
    p.add_argument("--warmup", default="1s", help="warm-up of each run (smtp-loadgen --warmup)")
    p.add_argument("--connections", type=int, default=4, help="smtp-loadgen -c")
    p.add_argument("--priority", choices=["normal", "rt", "both"], default="normal",
                   help="normal: as started; rt: fastsmtpd and smtp-loadgen at SCHED_FIFO "
                        "priority 1 (chrt, needs root): on a shared machine the neighbours' "
                        "ordinary tasks then do not delay their wake-ups, which is what an idle "
                        "machine gives; both: one table each (default: normal)")
    p.add_argument("--pin", action="store_true",
                   help="pin fastsmtpd to CPU 0 (1 worker) and smtp-loadgen to CPU 1 with taskset")
    p.add_argument("--out", default=os.path.join(ROOT, "docs/benchmarks/2026-12-06-send-lateness.md"),
                   help="markdown report to write (and its .json beside it); '-' for stdout only")
    return p.parse_args()


def build_baseline(rev):
    """Builds smtp-loadgen at `rev` in a git worktree of its own; returns the binary's path."""
    base = tempfile.mkdtemp(prefix="lg-baseline-")
    tree = os.path.join(base, "tree")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", tree, rev], check=True)
    try:
        target = os.path.join(base, "target")
        seed = os.path.join(ROOT, "target", "release")
        if os.path.isdir(seed):
            # A copy (never links: cargo rewrites files in place) of this checkout's release
            # directory, so the dependencies compiled there are reused.
            os.makedirs(target)
            subprocess.run(["cp", "-a", seed, target], check=True)
        subprocess.run(["cargo", "build", "--release", "-p", "smtp-loadgen"], cwd=tree, check=True,
                       env=dict(os.environ, CARGO_TARGET_DIR=target))
        binary = os.path.join(base, "binary-smtp-loadgen")
        os.replace(os.path.join(target, "release/smtp-loadgen"), binary)
        shutil.rmtree(target)
        return binary
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree], check=False)


def cpu_busy():
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def start_server(server, pin, rt):
    cmd = [server, "--listen", "127.0.0.1:0"]
    if pin:
        cmd = ["taskset", "-c", "0"] + cmd + ["--threads", "1"]
    if rt:
        cmd = ["chrt", "-f", "1"] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 10
    while time.time() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"listening on (\S+:\d+)", line)
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    sys.exit(f"fastsmtpd did not start: {line!r}")


def run_once(variant, target, rate, args, rt):
    """One smtp-loadgen run; returns its figures."""
    label, binary, env, extra = variant
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False)
    out.close()
    cmd = [binary, "--target", target, "-c", str(args.connections), "--rate", str(rate),
           "-d", args.duration, "--warmup", args.warmup, "-q", "--json", out.name] + extra
    if args.pin:
        cmd = ["taskset", "-c", "1"] + cmd
    if rt:
        cmd = ["chrt", "-f", "1"] + cmd
    busy0, total0 = cpu_busy()
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, **env))
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    busy1, total1 = cpu_busy()
    stderr = proc.stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    try:
        with open(out.name) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        sys.exit(f"{label} at {rate}/s wrote no JSON (exit {code}): {stderr}")
    finally:
        os.unlink(out.name)
    lat = doc["latency"]
    get = lambda stage, field: lat.get(stage, {}).get(field, float("nan"))
    return {
        "variant": label, "rate": rate, "exit": code,
        "lateness_p50_ms": get("send_lateness", "p50_ms"),
        "lateness_p99_ms": get("send_lateness", "p99_ms"),
        "lateness_max_ms": get("send_lateness", "max_ms"),
        "message_p50_ms": get("message", "p50_ms"),
        "message_p99_ms": get("message", "p99_ms"),
        "corrected_p50_ms": get("message_corrected", "p50_ms"),
        "corrected_p99_ms": get("message_corrected", "p99_ms"),
        "achieved": doc["totals"]["msgs_per_sec"],
        # CPU of the generator over its whole life (start, warm-up and drain included).
        "cpu_percent": 100.0 * (usage.ru_utime + usage.ru_stime) / wall,
        "machine_busy_percent": 100.0 * (busy1 - busy0) / max(1, total1 - total0),
        "wall_s": wall,
    }


def measure(args, variants, rates, rt):
    """Every run of every variant at every rate against one server; returns the results and
    the load average before and after."""
    load_before = loadavg()
    server, target = start_server(args.server, args.pin, rt)
    results = []
    try:
        for run in range(args.runs):
            for rate in rates:
                for variant in variants:
                    r = run_once(variant, target, rate, args, rt)
                    r["run"] = run + 1
                    results.append(r)
                    print(f"{'rt' if rt else 'normal'} run {run + 1} {variant[0]:>8} {rate:>6}/s: "
                          f"lateness p50 {r['lateness_p50_ms'] * 1000:.0f} us p99 "
                          f"{r['lateness_p99_ms'] * 1000:.0f} us, cpu {r['cpu_percent']:.0f}%, "
                          f"machine busy {r['machine_busy_percent']:.0f}%", file=sys.stderr)
    finally:
        server.terminate()
        server.wait()
    return results, load_before, loadavg()


def table(results, rates, variants):
    """The markdown table of medians per (rate, variant)."""
    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    us = lambda ms: f"{ms * 1000:.0f}"
    lines = [
        "| rate msgs/s | variant | lateness p50 µs | p99 µs | max µs | message p50 µs | p99 µs "
        "| corrected p50 µs | p99 µs | achieved msgs/s | generator CPU % | machine busy % |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rate in rates:
        for label, *_ in variants:
            rows = [r for r in results if r["rate"] == rate and r["variant"] == label]
            lines.append(
                f"| {rate} | {label} | {us(med(rows, 'lateness_p50_ms'))} | "
                f"{us(med(rows, 'lateness_p99_ms'))} | {us(med(rows, 'lateness_max_ms'))} | "
                f"{us(med(rows, 'message_p50_ms'))} | {us(med(rows, 'message_p99_ms'))} | "
                f"{us(med(rows, 'corrected_p50_ms'))} | {us(med(rows, 'corrected_p99_ms'))} | "
                f"{med(rows, 'achieved'):.0f} | {med(rows, 'cpu_percent'):.1f} | "
                f"{med(rows, 'machine_busy_percent'):.0f} |")
    return lines


def main():
    args = parse_args()
    variants = []
    if args.baseline_commit:
        variants.append(("before", build_baseline(args.baseline_commit), {}, []))
    elif args.baseline:
        variants.append(("before", args.baseline, {}, []))
    for spec in args.variant:
        label, _, rest = spec.partition("=")
        binary, *items = rest.split(",")
        flags = [i for i in items if i.startswith("-")]
        env = dict(i.split("=", 1) for i in items if not i.startswith("-"))
        variants.append((label, binary, env, flags))
    variants.append(("after", args.new, {}, []))
    rates = [int(r) for r in args.rates.split(",")]

    sections = []
    all_results = []
    modes = ["normal", "rt"] if args.priority == "both" else [args.priority]
    for mode in modes:
        results, load_before, load_after = measure(args, variants, rates, mode == "rt")
        all_results.extend(dict(r, priority=mode) for r in results)
        title = ("At SCHED_FIFO priority 1 (`chrt -f 1`, server and generator): what an idle "
                 "machine gives" if mode == "rt" else "At ordinary priority: the machine as it was")
        sections += [f"### {title}", "",
                     f"Load average {load_before} before, {load_after} after.", "",
                     *table(results, rates, variants), ""]
    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu_model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    command = " ".join(shlex.quote(a) for a in ["python3"] + sys.argv)

    def described(binary):
        if args.baseline_commit and binary == variants[0][1]:
            return f"smtp-loadgen built from `{args.baseline_commit}`"
        return f"`{os.path.relpath(binary, ROOT) if binary.startswith(ROOT) else binary}`"

    report = "\n".join([
        f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on "
        f"{cpu_model}, {os.cpu_count()} CPUs, Linux {platform.release()}.",
        "",
        f"Command: `{command}`",
        "",
        f"Each cell: the median of {args.runs} runs of `smtp-loadgen -c {args.connections} "
        f"--rate R -d {args.duration} --warmup {args.warmup}` against one `fastsmtpd --listen "
        f"127.0.0.1:0`{' (pinned: server CPU 0, generator CPU 1)' if args.pin else ''}, "
        "runs interleaved (run 1 of every rate and variant, then run 2...). "
        "Variants: " + ", ".join(f"{l} = {described(b)}" + "".join(f" `{f}`" for f in x)
                                 + (f" with {e}" if e else "") for l, b, e, x in variants)
        + ". Generator CPU: its utime+stime over its wall time (start, warm-up and drain "
        "included); machine busy: all CPUs over the run, from /proc/stat (this run's server "
        "and generator included).",
        "",
        *sections,
    ])
    print(report)
    if args.out != "-":
        # The text above the marker (the record's prose) is kept; what follows is replaced.
        head = ""
        if os.path.exists(args.out):
            with open(args.out) as f:
                text = f.read()
            if MARKER in text:
                head = text[: text.index(MARKER)]
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(head + MARKER + "\n\n" + report)
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            json.dump(all_results, f, indent=1)


if __name__ == "__main__":
    main()
