#!/usr/bin/env bash
# Compare fastsmtpd with Postfix smtp-sink and aiosmtpd, driven by smtp-source and smtp-loadgen.
# Installs what it needs on a fresh Debian machine, builds in release mode, then runs
# benches/compare.py (options pass through: --runs, --workloads W1,W3, --servers, --generators).
# Results: a markdown table on stdout, target/compare/results.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(nproc)" -lt 2 ]; then
    echo "compare: needs at least 2 CPUs (server and generator are pinned apart)" >&2
    exit 2
fi
if [ ! -x /usr/sbin/smtp-sink ] || [ ! -x /usr/sbin/smtp-source ]; then
    echo "compare: installing postfix (for smtp-sink/smtp-source) without starting a mail daemon" >&2
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
fi
command -v taskset >/dev/null || { apt-get update -qq; apt-get install -y -qq util-linux >/dev/null; }
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
    echo "compare: installing aiosmtpd from PyPI" >&2
    python3 -m pip install -q aiosmtpd
fi
cargo build --release -q -p fastsmtpd -p smtp-loadgen
exec python3 benches/compare.py "$@"
