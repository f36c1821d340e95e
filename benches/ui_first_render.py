#!/usr/bin/env python3
"""The web UI's first list render with many kept messages, in headless Chromium.

Issue 18: "UI: first list render <= 1 s with 100k messages in headless Chromium."

fastsmtpd runs with `--api` (memory store, a budget big enough to keep every message);
smtp-loadgen fills it with MESSAGES messages of SIZE; then, TRIALS times, a fresh browser page
(new context: nothing cached) opens the UI and the time from navigation start to the first
message row in the list is read from the page's own clock (`performance.now()` when the row
is in the DOM, checked by a MutationObserver installed before any script runs). Prints each
trial, the median and the maximum, and the kept count the list's header reports.

Run: benches/ui_first_render.py [--messages 100000] [--size 1k] [--trials 10]
Needs target/release/{fastsmtpd,smtp-loadgen} (or BIN_DIR=...), Python Playwright and
/usr/bin/chromium. Loopback only.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BIN_DIR", os.path.join(ROOT, "target/release"))

# Before the UI's scripts: note the page-clock time at which the first row is in the list.
WATCH = """
window.__firstRow = null;
new MutationObserver((_, obs) => {
  if (window.__firstRow === null && document.querySelector('#list .row')) {
    window.__firstRow = performance.now();
    obs.disconnect();
  }
}).observe(document, {subtree: true, childList: true});
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", default="1k")
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    # Imported here: `--help` answers without Playwright installed.
    from playwright.sync_api import sync_playwright

    smtp, api = free_port(), free_port()
    server = subprocess.Popen(
        [os.path.join(BIN, "fastsmtpd"), "--listen", f"127.0.0.1:{smtp}",
         "--api", f"127.0.0.1:{api}", "--capture-memory", "2GiB"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{api}"
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", smtp), 1).close()
                break
            except OSError:
                time.sleep(0.05)
        subprocess.run(
            [os.path.join(BIN, "smtp-loadgen"), "--target", f"127.0.0.1:{smtp}", "-c", "20",
             "-n", str(args.messages), "-s", args.size, "--to", "user{n}@example.net", "-q"],
            check=True, stdout=subprocess.DEVNULL)
        with urllib.request.urlopen(base + "/api/v1/stats", timeout=30) as r:
            kept = json.load(r)["messages"]
        times = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox"])
            for trial in range(args.trials):
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                page = context.new_page()
                page.add_init_script(WATCH)
                page.goto(base + "/")
                page.wait_for_function("window.__firstRow !== null", timeout=30_000)
                ms = page.evaluate("window.__firstRow")
                times.append(ms)
                print(f"trial {trial + 1}: first row at {ms:.0f} ms")
                context.close()
            browser.close()
        times.sort()
        print(f"{kept} messages kept; first list render over {len(times)} trials: "
              f"median {statistics.median(times):.0f} ms, max {times[-1]:.0f} ms")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    sys.exit(main())
