#!/usr/bin/env bash
# Hostile-client figures at the scale the hardening issue reported them: builds the release
# binary and runs benches/hostile.py (RSS before/peak/after per scenario, a scrape's latency
# under slowloris and idle connections). Options pass through, e.g. --binary OLD_BINARY to
# measure another build, --only amplification,envelope. Loopback only, every scenario bounded.
set -euo pipefail
usage() {
    cat <<'USAGE'
usage: benches/hostile.sh [HOSTILE_PY_OPTIONS...]

What one hostile client can make the server hold: builds the release binary and runs
benches/hostile.py (RSS before/peak/after per scenario, a scrape's latency under slowloris
and idle connections). Loopback only, every scenario bounded.
Record: docs/benchmarks/2026-11-29-before-after.md

  -h, --help  print this help and hostile.py's options (nothing is built)

Examples:
  benches/hostile.sh
  benches/hostile.sh --binary OLD_BINARY --only amplification,envelope

hostile.py's options:
USAGE
}
for arg in "$@"; do
    case $arg in
    -h | --help)
        usage
        exec python3 "$(dirname "$0")/hostile.py" --help
        ;;
    esac
done
cd "$(dirname "$0")/.."
cargo build --release -q -p fastsmtpd
exec python3 benches/hostile.py "$@"
