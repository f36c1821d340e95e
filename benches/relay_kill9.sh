#!/bin/sh
# The relay's kill -9 soak, long form (issue 19): MESSAGES numbered messages sent one by one
# to the relay binary (--spool --relay-to a fastsmtpd keeping .eml files), the relay killed
# with SIGKILL KILLS times at random moments and started again on the same spool; prints
# accepted, kills, missing (must be 0) and duplicates. The short form (400 messages, 4
# kills) runs in CI as tests/relay_kill9.rs; this runs the same test with larger numbers.
#
# Usage: benches/relay_kill9.sh [MESSAGES] [KILLS]   (defaults 100000 and 20)
set -eu
case "${1:-}" in
    -h | --help)
        echo "usage: benches/relay_kill9.sh [MESSAGES] [KILLS]   (defaults 100000 20)"
        echo "runs tests/relay_kill9.rs with FASTSMTPD_SOAK_MESSAGES/KILLS and prints its figures"
        exit 0
        ;;
esac
cd "$(dirname "$0")/.."
FASTSMTPD_SOAK_MESSAGES=${1:-100000} FASTSMTPD_SOAK_KILLS=${2:-20} \
    cargo test --release -p fastsmtpd --test relay_kill9 -- --nocapture 2>&1 |
    grep -E "relay kill -9 soak|test result|panicked|missing"
