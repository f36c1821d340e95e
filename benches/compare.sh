#!/usr/bin/env bash
# Compare fastsmtpd with Postfix smtp-sink and aiosmtpd, driven by smtp-source and smtp-loadgen;
# with TLS workloads (--tls, or --workloads W1-TLS,W2-TLS) with a private Postfix instance
# (postfix-tls) and Haraka over STARTTLS, driven by smtp-loadgen.
# Installs what it needs on a fresh Debian machine, builds in release mode, then runs
# benches/compare.py (options pass through: --runs, --workloads W1,W3, --servers, --generators,
# --tls). Results: a markdown table on stdout, $CARGO_TARGET_DIR (or target)/compare/results.{md,json}.
set -euo pipefail
usage() {
    cat <<'USAGE'
usage: benches/compare.sh [COMPARE_PY_OPTIONS...]

Compare fastsmtpd with Postfix smtp-sink and aiosmtpd (plaintext W1..W6, driven by
smtp-source and smtp-loadgen), or with a private Postfix instance and Haraka over STARTTLS
(--tls). Installs what it needs on a fresh Debian machine (Postfix without starting a mail
daemon, aiosmtpd from PyPI, swaks, openssl, Haraka from npm for --tls), builds in release
mode, then runs benches/compare.py with the options given. Needs 2 CPUs.
Results: a markdown table on stdout, target/compare/results.{md,json}.
Records: docs/benchmarks/2026-11-29-compare.md, docs/benchmarks/2026-11-30-tls.md

  -h, --help  print this help and compare.py's options (nothing is installed or built)

Examples:
  benches/compare.sh
  benches/compare.sh --workloads W1 --servers fastsmtpd,smtp-sink
  benches/compare.sh --tls --runs 5 --wait-quiet 300

compare.py's options:
USAGE
}
for arg in "$@"; do
    case $arg in
    -h | --help)
        usage
        exec python3 "$(dirname "$0")/compare.py" --help
        ;;
    esac
done
cd "$(dirname "$0")/.."

if [ "$(nproc)" -lt 2 ]; then
    echo "compare: needs at least 2 CPUs (server and generator are pinned apart)" >&2
    exit 2
fi
apt_updated=0
apt_install() {
    [ "$apt_updated" = 1 ] || { apt-get update -qq; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
if [ ! -x /usr/sbin/smtp-sink ] || [ ! -x /usr/sbin/smtp-source ] || [ ! -x /usr/sbin/postfix ]; then
    echo "compare: installing postfix (for smtp-sink/smtp-source and postfix-tls) without starting a mail daemon" >&2
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    apt_install postfix
fi
command -v taskset >/dev/null || apt_install util-linux
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
    echo "compare: installing aiosmtpd from PyPI" >&2
    python3 -m pip install -q aiosmtpd
fi
case " $* " in
*TLS* | *" --tls "*)
    # STARTTLS checks before measuring (swaks), certificates for Postfix and Haraka (openssl).
    command -v swaks >/dev/null || apt_install swaks
    command -v openssl >/dev/null || apt_install openssl
    # Haraka, unless --servers leaves it out.
    if { [[ " $* " != *" --servers"* ]] || [[ " $* " == *haraka* ]]; } && ! command -v haraka >/dev/null; then
        command -v npm >/dev/null || apt_install nodejs npm
        echo "compare: installing Haraka 3 from npm" >&2
        npm install -g -s Haraka@3 >/dev/null
    fi
    ;;
esac
cargo build --release -q -p fastsmtpd -p smtp-loadgen
exec python3 benches/compare.py "$@"
