#!/usr/bin/env python3
"""smtp-loadgen's own CPU per message, two builds side by side.

Usage: loadgen_cpu.py SERVER OLD_LOADGEN NEW_LOADGEN [ROUNDS] [-- LOADGEN FLAGS...]

One fastsmtpd (SERVER, release, one worker thread, pinned to CPU 0) serves every run. Each
round runs OLD then NEW (the order alternates from round to round), each pinned to CPU 1,
closed loop by default (`-c 50 -d 10s -s 1k`). A run's CPU is the generator's user + system
time from wait4 (the process and nothing else), divided by the messages it saw accepted
(its --json totals). Prints each run and the medians as a markdown table.
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_loadgen(binary, port, flags, out_dir, tag):
    json_path = os.path.join(out_dir, f"{tag}.json")
    command = ["taskset", "-c", "1", binary, "--target", f"127.0.0.1:{port}", "--quiet",
               "--json", json_path] + flags
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{tag}: exit {status}: {stderr}")
    with open(json_path) as f:
        totals = json.load(f)["totals"]
    cpu = usage.ru_utime + usage.ru_stime
    accepted = totals["accepted"]
    return {"cpu_s": cpu, "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
            "messages": accepted, "rate": accepted / totals["measured_seconds"],
            "us_per_msg": cpu / accepted * 1e6}


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return
    flags = ["-c", "50", "-d", "10s", "-s", "1k"]
    if "--" in args:
        i = args.index("--")
        args, flags = args[:i], args[i + 1:]
    server, old, new = args[:3]
    rounds = int(args[3]) if len(args) > 3 else 5
    port = free_port()
    command = ["taskset", "-c", "0", server, "--listen", f"127.0.0.1:{port}", "--threads",
               "1", "--max-connections", "20000", "--max-connections-per-ip", "20000"]
    srv = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        results = {"old": [], "new": []}
        with tempfile.TemporaryDirectory() as out_dir:
            for r in range(rounds):
                order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
                for which in order:
                    binary = old if which == "old" else new
                    res = run_loadgen(binary, port, flags, out_dir, f"{which}{r}")
                    results[which].append(res)
                    print(f"round {r} {which}: {res['messages']} msgs, {res['rate']:.0f} msgs/s, "
                          f"cpu {res['cpu_s']:.2f} s (user {res['user_s']:.2f}, sys "
                          f"{res['sys_s']:.2f}), {res['us_per_msg']:.2f} µs/msg", flush=True)
    finally:
        srv.terminate()
        srv.wait()
    print()
    print(f"flags: {' '.join(flags)}; {rounds} rounds, alternated")
    print("| build | runs | median msgs/s | median CPU µs/msg | min..max µs/msg | median user/sys µs/msg |")
    print("|---|---|---|---|---|---|")
    for which in ("old", "new"):
        rs = results[which]
        per = [r["us_per_msg"] for r in rs]
        user = statistics.median(r["user_s"] / r["messages"] * 1e6 for r in rs)
        sys_ = statistics.median(r["sys_s"] / r["messages"] * 1e6 for r in rs)
        print(f"| {which} | {len(rs)} | {statistics.median(r['rate'] for r in rs):.0f} | "
              f"{statistics.median(per):.2f} | {min(per):.2f}..{max(per):.2f} | "
              f"{user:.2f} / {sys_:.2f} |")
    o = statistics.median(r["us_per_msg"] for r in results["old"])
    n = statistics.median(r["us_per_msg"] for r in results["new"])
    print(f"\nnew / old median CPU per message: {n / o:.3f}")


if __name__ == "__main__":
    main()
