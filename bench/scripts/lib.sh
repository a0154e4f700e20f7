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

# bench_scratch NAME: $work, a new scratch directory (under $BENCH_WORK,
# /tmp by default), and $pids, empty; on exit every pid in $pids is stopped
# and waited for (a relay still writing its spool must not lose its
# directory under it), then $work is removed.
bench_scratch() {
  work=$(mktemp -d "${BENCH_WORK:-/tmp}/$1.XXXXXX")
  pids=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
  rm -rf "$work"
}

# bench_cert DIR: an RSA-2048 self-signed certificate for relay.bench and
# 127.0.0.1 in DIR/cert.pem and DIR/key.pem.
bench_cert() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=relay.bench" \
    -addext "subjectAltName=DNS:relay.bench,IP:127.0.0.1" \
    -keyout "$1/key.pem" -out "$1/cert.pem" >/dev/null 2>&1
}

# Nodes of the bench (they use $work, a scratch directory, and $SINK, the
# sink's port, set by the caller; started nodes' pids are added to $pids).
# node_config DIR ID SMTP [EXTRA_TOML]: EXTRA_TOML lands in [outbound] until
# its first section header.
node_config() {
  mkdir -p "$1"
  cat > "$1/estafette.toml" <<EOF
[node]
hostname = "estafette-$2.bench"
node_id = $2
spool = "spool"
postmaster = "postmaster@sink.test"
[tls]
cert = "$work/cert.pem"
key = "$work/key.pem"
[[listener]]
name = "bench"
address = "127.0.0.1:$3"
tls = "starttls"
require_tls = false
max_sessions = 2000
[[route]]
domain = "*"
host = "127.0.0.1:$SINK"
tls = "none"
[outbound]
max_connections = 20
poll_ms = 50
$4
EOF
}

start() { RUST_LOG=warn "$EST_BIN" serve --config "$1/estafette.toml" > "$1/log" 2>&1 & pids+=($!); echo $!; }

# cluster N [EXTRA_TOML]: N nodes, min_copies = 2 (certificates from
# `estafette pki cluster $work/cluster estafette-0 ...`); prints "port pid..."
# (node 0 first). CLUSTER_KEYS (lines) goes into every node's [cluster]. Node I's admin API listens on loopback, its port in
# $work/cN-I/admin_port.
cluster() {
  local n=$1 extra=${2:-} i members="" ports=() quic=() admin=() pidlist=()
  for i in $(seq 0 $((n - 1))); do ports+=("$(free_port)"); quic+=("$(free_port)"); admin+=("$(free_port)"); done
  for i in $(seq 0 $((n - 1))); do
    members+="[[cluster.member]]
name = \"estafette-$i\"
id = $i
address = \"127.0.0.1:${quic[$i]}\"
"
  done
  for i in $(seq 0 $((n - 1))); do
    node_config "$work/c$n-$i" "$i" "${ports[$i]}" "$extra
[admin]
address = \"127.0.0.1:${admin[$i]}\"
[cluster]
name = \"estafette-$i\"
listen = \"127.0.0.1:${quic[$i]}\"
min_copies = 2
${CLUSTER_KEYS:-}
ca = \"$work/cluster/ca.pem\"
cert = \"$work/cluster/estafette-$i.pem\"
key = \"$work/cluster/estafette-$i.key\"
$members"
    echo "${admin[$i]}" > "$work/c$n-$i/admin_port"
    RUST_LOG=warn "$EST_BIN" serve --config "$work/c$n-$i/estafette.toml" > "$work/c$n-$i/log" 2>&1 &
    pidlist+=($!)
  done
  for i in $(seq 0 $((n - 1))); do wait_port "${ports[$i]}"; done
  echo "${ports[0]} ${pidlist[*]}"
}

ticks() { # summed utime+stime (clock ticks) of the given pids
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}

# The [sink] and [report] tables every bench scenario ends with (DIR: the
# report directory; the sink listens on $SINK).
scenario_tail() {
  cat <<EOF
[sink]
listen = "127.0.0.1:$SINK"
threads = 1
[report]
dir = "$1"
drain_timeout = "300s"
EOF
}

# Runs DIR/scenario.toml (summary in DIR/summary.txt); with PIDS, the relay
# CPU they used goes to DIR/relay_ticks.txt as "ticks ticks_per_second".
run_scenario() { # dir [pids...]
  local dir=$1; shift
  local before=0
  [ $# -eq 0 ] || before=$(ticks "$@")
  "$LOAD_BIN" run "$dir/scenario.toml" -q > "$dir/summary.txt" 2>&1 || { echo "run failed: $dir" >&2; cat "$dir/summary.txt" >&2; }
  [ $# -eq 0 ] || echo "$(( $(ticks "$@") - before )) $(getconf CLK_TCK)" > "$dir/relay_ticks.txt"
}
