#!/usr/bin/env bash
# Side by side, same run, same machine: Postfix's smtp-source drives a relay
# that delivers to Postfix's smtp-sink; once through Estafette (release build,
# fsync before every 250), once through a stock Postfix instance. Alternates
# the two REPS times and prints one line per run.
#
#   bench/scripts/relay-vs-postfix.sh [MESSAGES] [SESSIONS] [SIZE_BYTES] [REPS] [REUSE]
#   defaults: 10000 20 10240 2 no  (REUSE=yes: each session keeps its connection, smtp-source -d)
#
# Needs root (Postfix), the Debian packages from scripts/deps, and
# `cargo build --profile bench -p estafette-relay`. Plain SMTP on loopback: the
# STARTTLS cases and the full matrix are in bench/scripts/side-by-side.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-10000}; S=${2:-20}; SIZE=${3:-10240}; REPS=${4:-2}; REUSE=${5:-no}
TARGET=${CARGO_TARGET_DIR:-/var/tmp/estafette-target}
BIN=${ESTAFETTE_BIN:-$TARGET/release/estafette}   # cargo build --profile bench -p estafette-relay
[ -x "$BIN" ] || { echo "build first: cargo build --profile bench -p estafette-relay" >&2; exit 1; }
work=$(mktemp -d /tmp/estafette-bench.XXXXXX)
chmod 755 "$work"   # Postfix daemons (user postfix) must reach their directories
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  /usr/sbin/postfix -c "$work/postfix" abort >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 not listening" >&2; exit 1; }
busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
proc_jiffies() { awk '{print $14+$15}' "/proc/$1/stat"; }
sink_count() { tr '\r' '\n' < "$work/sink.out" | tail -n 1 | sed -n 's/.*mesg=\([0-9]*\).*/\1/p'; }

SINK=$(free_port); EST=$(free_port); PF=$(free_port)
smtp-sink -c -u root "127.0.0.1:$SINK" 1024 > "$work/sink.out" 2>&1 &
pids+=($!)
wait_port "$SINK"

# --- Estafette: one node, plain listener, catch-all route to the sink.
mkdir -p "$work/estafette"
cat > "$work/estafette/estafette.toml" <<EOF
[node]
hostname = "estafette.bench"
spool = "spool"
[[listener]]
name = "plain"
address = "127.0.0.1:$EST"
tls = "none"
max_sessions = 2000
[[route]]
domain = "*"
host = "127.0.0.1:$SINK"
tls = "none"
[outbound]
max_connections = 20
poll_ms = 50
EOF
RUST_LOG=warn "$BIN" serve --config "$work/estafette/estafette.toml" > "$work/estafette.log" 2>&1 &
EPID=$!; pids+=($EPID)
wait_port "$EST"

# --- Postfix: a private instance relaying everything to the sink.
P="$work/postfix"; mkdir -p "$P/queue" "$P/data"; chown postfix "$P/data"
cat > "$P/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $P/queue
data_directory = $P/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.bench
mydestination =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$SINK
smtpd_relay_restrictions = permit_mynetworks, reject
default_destination_concurrency_limit = 20
smtp_tls_security_level = none
maillog_file = $P/maillog
maillog_file_prefixes = /tmp
EOF
sed -n '/^PORT/,$p' relay/tests/e2e_postfix.rs | sed '/^";/,$d' | sed "s/^PORT /127.0.0.1:$PF /" > "$P/master.cf"
/usr/sbin/postfix -c "$P" start >"$work/postfix-start.log" 2>&1 || { cat "$work/postfix-start.log" >&2; exit 1; }
wait_port "$PF"

run_case() { # name port pid-or-empty
  local name=$1 port=$2 pid=${3:-}
  local before; before=$(sink_count); before=${before:-0}
  local b0 p0=0 t0 t1 t2 b1 p1=0
  b0=$(busy_jiffies); [ -n "$pid" ] && p0=$(proc_jiffies "$pid")
  t0=$(date +%s.%N)
  local reuse=(); [ "$REUSE" = yes ] && reuse=(-d)
  smtp-source -s "$S" -m "$N" -l "$SIZE" -r 1 -f sender@src.test -t rcpt@dst.test \
    "${reuse[@]}" "127.0.0.1:$port" > /dev/null 2>&1 || true
  t1=$(date +%s.%N)
  local target=$((before + N)) deadline=$(( $(date +%s) + 600 ))
  while [ "$(sink_count)" -lt "$target" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.05; done
  t2=$(date +%s.%N)
  b1=$(busy_jiffies); [ -n "$pid" ] && p1=$(proc_jiffies "$pid")
  local got=$(( $(sink_count) - before ))
  python3 - "$name" "$N" "$got" "$t0" "$t1" "$t2" "$b0" "$b1" "$p0" "$p1" <<'PY'
import sys, os
name, n, got = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0, t1, t2 = map(float, sys.argv[4:7]); b0, b1, p0, p1 = map(int, sys.argv[7:11])
hz = os.sysconf('SC_CLK_TCK')
relay = f"{(p1-p0)/hz*1000/max(got,1):.2f}" if p1 else "-"
print(f"{name:10} sent={n} delivered={got} inject={n/(t1-t0):8.0f} msg/s  e2e={got/(t2-t0):8.0f} msg/s  "
      f"machine_cpu={(b1-b0)/hz*1000/max(got,1):.2f} ms/msg  relay_cpu={relay} ms/msg")
PY
}

echo "messages=$N sessions=$S size=$SIZE reuse=$REUSE reps=$REPS ($(nproc) cores)"
for r in $(seq 1 "$REPS"); do
  run_case estafette "$EST" "$EPID"
  run_case postfix "$PF"
done
