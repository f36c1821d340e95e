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
RELEASE = os.path.join(ROOT, "target", "release")
SERVER_CPU = "0"
CLIENT_CPU = "1"
TICKS = os.sysconf("SC_CLK_TCK")

# name: (description, size, connections, reuse, bdat, smtp-source messages, loadgen messages)
WORKLOADS = {
    "W1": ("1 KiB, 20 connections reused", 1024, 20, True, False, 20000, 100000),
    "W2": ("1 KiB, new connection per message", 1024, 20, False, False, 5000, 10000),
    "W3": ("64 KiB, 20 connections reused", 65536, 20, True, False, 5000, 20000),
    "W4": ("1 KiB, 200 connections reused", 1024, 200, True, False, 20000, 100000),
    "W5": ("1 MiB, 20 connections reused", 1048576, 20, True, False, 500, 2000),
    "W6": ("1 KiB, BDAT pipelined, 8 in flight", 1024, 20, True, True, 0, 300000),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.recv(100)
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


BASELINE = None  # --baseline: the path of another fastsmtpd binary


def has_flag(binary, flag):
    """Whether `binary --help` lists `flag` (older builds lack the newer limits)."""
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10).stdout
    return flag in out


def server_command(name, port):
    if name in ("fastsmtpd", "fastsmtpd-baseline"):
        binary = os.path.join(RELEASE, "fastsmtpd") if name == "fastsmtpd" else BASELINE
        command = [binary, "--listen", f"127.0.0.1:{port}",
                   "--threads", "1", "--max-connections", "20000"]
        # Every generator connects from 127.0.0.1: the per-address cap would refuse the
        # idle-connection measurement's 10 000 sessions.
        if has_flag(binary, "--max-connections-per-ip"):
            command += ["--max-connections-per-ip", "20000"]
        return command
    if name == "smtp-sink":
        # -m: smtp-sink serves at most 256 sessions at once unless told otherwise.
        return ["/usr/sbin/smtp-sink", "-u", "nobody", "-m", "15000", f"127.0.0.1:{port}", "1024"]
    if name == "aiosmtpd":
        return [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                "-c", "aiosmtpd.handlers.Sink"]
    raise ValueError(name)


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_generator(generator, workload, port, out_dir, tag):
    _, size, conns, reuse, bdat, source_n, loadgen_n = WORKLOADS[workload]
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
                 "--json", json_path, "--timeout", "60s"]
    if not reuse:
        cmd += ["--msgs-per-conn", "1"]
    if bdat:
        cmd += ["--bdat", "--inflight", "8"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=600)
    with open(json_path) as f:
        result = json.load(f)
    totals = result["totals"]
    stage = result["latency"].get("bdat" if bdat else "eod", {})
    return {"messages": totals["accepted"], "seconds": totals["measured_seconds"],
            "msgs_per_sec": totals["msgs_per_sec"], "mb_per_sec": totals["mb_per_sec"],
            "eod_p50_ms": stage.get("p50_ms"), "eod_p99_ms": stage.get("p99_ms"),
            "failed": totals["failed"]}


def measure_group(servers, workload, generator, runs, out_dir):
    """Starts every server, then interleaves their runs; returns one result per server."""
    procs = {}
    try:
        for server in servers:
            port = free_port()
            proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + server_command(server, port),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs[server] = (proc, port)
            wait_listening(port, proc)
        samples = {server: [] for server in servers}
        for run in range(runs):
            # Rotate who goes first, so no server always runs right after another.
            order = servers[run % len(servers):] + servers[:run % len(servers)]
            for server in order:
                proc, port = procs[server]
                before = cpu_ticks(proc.pid)
                sample = run_generator(generator, workload, port, out_dir,
                                       f"{server}-{workload}-{generator}-{run}")
                sample["server_cpu_us_per_msg"] = ((cpu_ticks(proc.pid) - before) / TICKS * 1e6
                                                   / max(sample["messages"], 1))
                samples[server].append(sample)
        peaks = {server: peak_rss_kib(proc.pid) for server, (proc, _) in procs.items()}
    finally:
        for proc, _ in procs.values():
            proc.terminate()
        for proc, _ in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    results = []
    for server in servers:
        def median(key):
            values = [s[key] for s in samples[server] if s.get(key) is not None]
            return statistics.median(values) if values else None
        results.append({"server": server, "workload": workload, "generator": generator,
                        "runs": samples[server], "msgs_per_sec": median("msgs_per_sec"),
                        "mb_per_sec": median("mb_per_sec"),
                        "server_cpu_us_per_msg": median("server_cpu_us_per_msg"),
                        "eod_p50_ms": median("eod_p50_ms"), "eod_p99_ms": median("eod_p99_ms"),
                        "peak_rss_kib": peaks[server]})
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workloads", default="W1,W2,W3,W4,W5,W6")
    parser.add_argument("--servers", default="fastsmtpd,smtp-sink,aiosmtpd")
    parser.add_argument("--generators", default="smtp-source,smtp-loadgen")
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "compare"))
    parser.add_argument("--idle", type=int, default=10000,
                        help="idle connections for the RSS measurement (0: skip)")
    parser.add_argument("--idle-servers", default="fastsmtpd,smtp-sink")
    parser.add_argument("--baseline", metavar="BIN",
                        help="another fastsmtpd binary, measured as server fastsmtpd-baseline")
    args = parser.parse_args()
    global BASELINE
    BASELINE = args.baseline
    servers_wanted = args.servers.split(",")
    if BASELINE and "fastsmtpd-baseline" not in servers_wanted:
        servers_wanted.append("fastsmtpd-baseline")
    os.makedirs(args.out, exist_ok=True)
    results = []
    for workload in args.workloads.split(","):
        # Only fastsmtpd offers CHUNKING.
        servers = [s for s in servers_wanted
                   if not WORKLOADS[workload][4] or s.startswith("fastsmtpd")]
        for generator in args.generators.split(","):
            if generator == "smtp-source" and WORKLOADS[workload][4]:
                continue  # smtp-source cannot send BDAT
            print(f"compare: {workload} {','.join(servers)} <- {generator}", file=sys.stderr,
                  flush=True)
            try:
                results += measure_group(servers, workload, generator, args.runs, args.out)
            except (subprocess.SubprocessError, RuntimeError, OSError) as e:
                print(f"compare: {workload} <- {generator} FAILED: {e}", file=sys.stderr)
                results += [{"server": server, "workload": workload, "generator": generator,
                             "error": str(e)} for server in servers]
    idle = []
    if args.idle > 0:
        for server in args.idle_servers.split(","):
            print(f"compare: idle RSS {server} with {args.idle} connections", file=sys.stderr, flush=True)
            try:
                idle.append(idle_rss(server, args.idle))
            except (RuntimeError, OSError) as e:
                idle.append({"server": server, "connections": args.idle, "error": str(e)})
    machine = f"{os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}"
    lines = [
        f"Date {datetime.date.today()}, machine: {machine}; server on CPU {SERVER_CPU}, "
        f"generator on CPU {CLIENT_CPU}; median of {args.runs} runs.",
        "",
        "| workload | server | generator | msgs/s | MB/s | server CPU µs/msg | eod p50 ms | eod p99 ms | server peak RSS MiB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        desc = f"{r['workload']} {WORKLOADS[r['workload']][0]}"
        if "error" in r:
            lines.append(f"| {desc} | {r['server']} | {r['generator']} | failed: {r['error']} | | | | | |")
            continue
        lines.append(
            f"| {desc} | {r['server']} | {r['generator']} | {fmt(r['msgs_per_sec'], 0)} | "
            f"{fmt(r['mb_per_sec'])} | {fmt(r['server_cpu_us_per_msg'], 2)} | {fmt(r['eod_p50_ms'], 3)} | "
            f"{fmt(r['eod_p99_ms'], 3)} | {fmt(r['peak_rss_kib'] / 1024)} |")
    ratios = ratio_rows(results)
    if ratios:
        lines += ["", "Side by side, from the rows above (fastsmtpd ÷ smtp-sink; the issue's targets: CPU "
                  "≤ 0.8 with smtp-source on W1/W2/W4, ≤ 1/6 on W3/W5; with smtp-loadgen msgs/s ≥ 2 on W1, "
                  "≥ 4 on W3, CPU ≤ 1/3):", "",
                  "| workload | generator | msgs/s ratio | server CPU per message ratio |",
                  "|---|---|---:|---:|"] + ratios
    baseline_ratios = ratio_rows(results, against="fastsmtpd-baseline")
    if baseline_ratios:
        lines += ["", f"This build against the baseline ({BASELINE}), from the rows above "
                  "(fastsmtpd ÷ fastsmtpd-baseline):", "",
                  "| workload | generator | msgs/s ratio | server CPU per message ratio |",
                  "|---|---|---:|---:|"] + baseline_ratios
    if idle:
        lines += ["", "| server | idle connections (after EHLO) | RSS per connection |", "|---|---:|---:|"]
        for r in idle:
            value = "failed: " + r["error"] if "error" in r else f"{r['bytes_per_connection'] / 1024:.2f} KiB"
            lines.append(f"| {r['server']} | {r['connections']} | {value} |")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"date": str(datetime.date.today()), "machine": machine, "runs": args.runs,
                   "results": results, "idle": idle}, f, indent=2)


if __name__ == "__main__":
    main()
