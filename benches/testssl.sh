#!/usr/bin/env bash
# testssl.sh against fastsmtpd's STARTTLS and implicit-TLS listeners, with a certificate chain
# a test CA signs (so findings about the server's TLS are not drowned by "self-signed"):
#   apt-get install -y testssl.sh openssl && cargo build --release
#   benches/testssl.sh [OUT_DIR]        (SERVER=path/to/fastsmtpd to scan another build)
# Prints every finding rated LOW or worse per listener; the full outputs go to OUT_DIR.
set -euo pipefail
usage() {
    cat <<'USAGE'
usage: benches/testssl.sh [OUT_DIR]

testssl.sh against fastsmtpd's STARTTLS and implicit-TLS listeners, with a certificate chain
a test CA signs. Prints every finding rated LOW or worse per listener.
Needs: apt-get install -y testssl.sh openssl && cargo build --release

  OUT_DIR     where the certificates and testssl's full outputs go [default: target/testssl]
  -h, --help  print this help

Environment: SERVER=path/to/fastsmtpd scans another build.
USAGE
}
for arg in "$@"; do
    case $arg in
    -h | --help)
        usage
        exit 0
        ;;
    esac
done
if [ $# -gt 1 ] || [[ ${1:-} == -* ]]; then
    usage >&2
    exit 2
fi
cd "$(dirname "$0")/.."
root=$(pwd)
server_bin=${SERVER:-${CARGO_TARGET_DIR:-$root/target}/release/fastsmtpd}
out=${1:-target/testssl}
mkdir -p "$out"
cd "$out"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
    -days 365 -subj "/CN=fastsmtpd test CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key -out leaf.csr \
    -subj "/CN=127.0.0.1" 2>/dev/null
# The leaf names CRL and OCSP addresses, as a real certificate would (testssl rates their
# absence); nothing is served there.
printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
    "crlDistributionPoints=URI:http://127.0.0.1/ca.crl" \
    "authorityInfoAccess=OCSP;URI:http://127.0.0.1/ocsp" >ext.cnf
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 90 \
    -extfile ext.cnf 2>/dev/null
cat leaf.pem ca.pem >chain.pem
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
plain=$(port)
tls=$(port)
"$server_bin" --listen "127.0.0.1:$plain" --listen-tls "127.0.0.1:$tls" \
    --tls-cert chain.pem --tls-key leaf.key --threads 1 --max-connections-per-ip 1000 >server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q listening server.log && break; sleep 0.1; done
# testssl appends to an existing JSON file: start from none.
rm -f starttls.json implicit.json
testssl --quiet --color 0 --add-ca ca.pem --starttls smtp --jsonfile starttls.json \
    "127.0.0.1:$plain" >starttls.txt 2>&1 || true
testssl --quiet --color 0 --add-ca ca.pem --jsonfile implicit.json "127.0.0.1:$tls" \
    >implicit.txt 2>&1 || true
python3 - <<'EOF'
import json
for name in ("starttls", "implicit"):
    findings = json.load(open(f"{name}.json"))
    bad = [f for f in findings if f.get("severity") in ("LOW", "MEDIUM", "HIGH", "CRITICAL", "WARN")]
    print(f"{name}: {len(bad)} finding(s) rated LOW or worse (or WARN)")
    for f in bad:
        print(f"  {f['severity']:8} {f['id']}: {f['finding']}")
EOF
