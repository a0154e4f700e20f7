#!/usr/bin/env bash
# Replication cost, same machine, same run: estafette-load drives node 0 of
#   (a) one node, min_copies = 1, and
#   (b) two nodes, min_copies = 2 (every 250 waits for the peer's synced copy),
# alternating REPS times, 10 KB messages, 20 sessions, 100 per connection,
# plain and STARTTLS. Prints end-to-end msg/s, the ratio (b)/(a), and the p99
# acceptance latency of each, from estafette-load's report.json.
#
#   bench/scripts/cluster.sh [REPS] [MESSAGES]      defaults: 2 6000
#
# Needs the release builds:
#   cargo build --profile bench -p estafette-relay -p estafette-loadtest
# Both nodes run on this machine (2 cores): the figure includes the second
# node's CPU, as a real two-node cluster on one host would.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${1:-2}; N=${2:-6000}
TARGET=${CARGO_TARGET_DIR:-/var/tmp/estafette-target}
EST_BIN=${ESTAFETTE_BIN:-$TARGET/release/estafette}
LOAD_BIN=${LOAD_BIN:-$TARGET/release/estafette-load}
for b in "$EST_BIN" "$LOAD_BIN"; do
  [ -x "$b" ] || { echo "missing $b: cargo build --profile bench -p estafette-relay -p estafette-loadtest" >&2; exit 1; }
done
OUT=${OUT:-/var/tmp/estafette-cluster-bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
work=$(mktemp -d /tmp/estafette-cb.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 not listening" >&2; exit 1; }

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=relay.bench" \
  -addext "subjectAltName=DNS:relay.bench,IP:127.0.0.1" \
  -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1
"$EST_BIN" pki cluster "$work/cluster" estafette-0 estafette-1 >/dev/null
SINK=$(free_port)

# node DIR ID SMTP [CLUSTER_TOML]
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

# (a) one node.
A=$(free_port); node_config "$work/single" 0 "$A" ""
APID=$(start "$work/single"); wait_port "$A"

# (b) two nodes, min_copies = 2.
B0=$(free_port); B1=$(free_port); Q0=$(free_port); Q1=$(free_port)
members="[[cluster.member]]
name = \"estafette-0\"
id = 0
address = \"127.0.0.1:$Q0\"
[[cluster.member]]
name = \"estafette-1\"
id = 1
address = \"127.0.0.1:$Q1\""
for i in 0 1; do
  port=$B0; q=$Q0; [ $i = 1 ] && port=$B1 && q=$Q1
  node_config "$work/pair$i" "$i" "$port" "[cluster]
name = \"estafette-$i\"
listen = \"127.0.0.1:$q\"
min_copies = 2
ca = \"$work/cluster/ca.pem\"
cert = \"$work/cluster/estafette-$i.pem\"
key = \"$work/cluster/estafette-$i.key\"
$members"
done
BPID=$(start "$work/pair0"); B1PID=$(start "$work/pair1"); wait_port "$B0"; wait_port "$B1"
sleep 2   # the QUIC links come up

run() { # label port pid tls rep
  local dir="$OUT/$1-$4-$5"; mkdir -p "$dir"
  cat > "$dir/scenario.toml" <<EOF
name = "$1 $4 #$5"
target = "127.0.0.1:$2"
target_pid = $3
[load]
sessions = 20
messages = $N
size = "10k"
per_connection = 100
tls = "$4"
insecure = true
threads = 1
[sink]
listen = "127.0.0.1:$SINK"
threads = 1
[report]
dir = "$dir"
drain_timeout = "300s"
EOF
  "$LOAD_BIN" run "$dir/scenario.toml" -q > "$dir/summary.txt" 2>&1 || { echo "run failed: $dir" >&2; cat "$dir/summary.txt" >&2; }
}

echo "Machine: $(nproc) cores, $(uname -r); reps=$REPS messages=$N" | tee "$OUT/machine.txt"
for rep in $(seq 1 "$REPS"); do
  for tls in none starttls; do
    run single "$A" "$APID" "$tls" "$rep"
    run pair "$B0" "$BPID" "$tls" "$rep"
  done
done
python3 - "$OUT" <<'EOF'
import json, os, statistics, sys
out = sys.argv[1]
rows = {}
for d in sorted(os.listdir(out)):
    p = os.path.join(out, d, "report.json")
    if not os.path.exists(p):
        continue
    label, tls, rep = d.split("-")
    r = json.load(open(p))
    rows.setdefault((label, tls), []).append(r)
def metric(r, path):
    cur = r
    for k in path.split("."):
        cur = cur.get(k) if isinstance(cur, dict) else None
    return cur
def show(label, tls):
    rs = rows.get((label, tls), [])
    if not rs:
        return None
    e2e = statistics.median([metric(r, "delivery.msg_per_s") or 0 for r in rs])
    p99 = statistics.median([metric(r, "accept_latency.p99_ms") or 0 for r in rs])
    lost = sum(metric(r, "verdict.lost") or 0 for r in rs)
    dup = sum(metric(r, "verdict.duplicated") or 0 for r in rs)
    return e2e, p99, lost, dup
print(f"{'case':<16} {'1 node msg/s':>13} {'2 nodes msg/s':>14} {'ratio':>6} {'p99 accept 1/2 (ms)':>22} {'lost':>5} {'dup':>4}")
for tls in ("none", "starttls"):
    a, b = show("single", tls), show("pair", tls)
    if a and b:
        print(f"10k-{tls:<12} {a[0]:>13.0f} {b[0]:>14.0f} {b[0]/a[0] if a[0] else 0:>6.2f} {a[1]:>10.1f} / {b[1]:<9.1f} {a[2]+b[2]:>5} {a[3]+b[3]:>4}")
EOF
