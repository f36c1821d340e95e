#!/usr/bin/env bash
# Hostile-client figures at the scale the hardening issue reported them: builds the release
# binary and runs benches/hostile.py (RSS before/peak/after per scenario, a scrape's latency
# under slowloris and idle connections). Options pass through, e.g. --binary OLD_BINARY to
# measure another build, --only amplification,envelope. Loopback only, every scenario bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p fastsmtpd
exec python3 benches/hostile.py "$@"
