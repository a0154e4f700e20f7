# Shared by the bench scripts (sourced from the repository's root): the
# release binaries, free ports, a listening port's wait, a test certificate.

TARGET=${CARGO_TARGET_DIR:-/var/tmp/estafette-target}
EST_BIN=${ESTAFETTE_BIN:-$TARGET/release/estafette}
LOAD_BIN=${LOAD_BIN:-$TARGET/release/estafette-load}
for b in "$EST_BIN" "$LOAD_BIN"; do
  [ -x "$b" ] || { echo "missing $b: cargo build --profile bench -p estafette-relay -p estafette-loadtest" >&2; exit 1; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 not listening" >&2; exit 1; }

# bench_cert DIR: an RSA-2048 self-signed certificate for relay.bench and
# 127.0.0.1 in DIR/cert.pem and DIR/key.pem.
bench_cert() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=relay.bench" \
    -addext "subjectAltName=DNS:relay.bench,IP:127.0.0.1" \
    -keyout "$1/key.pem" -out "$1/cert.pem" >/dev/null 2>&1
}
