#!/usr/bin/env bash
# Estafette vs stock Postfix, side by side, same machine, same run, same load
# and same sink: estafette-load drives each relay in turn (alternating, REPS
# times) and its sink receives what they relay. Prints one table: inject and
# end-to-end msg/s, the relay's CPU ms per message, p99 acceptance and
# end-to-end latency, the Estafette/Postfix ratio; then Postfix's own
# smtp-source against both relays as a cross-check of the load tool.
#
#   bench/scripts/side-by-side.sh [REPS] [SCALE]
#   defaults: REPS=2, SCALE=1 (multiplies every case's message count)
#   CASES="10k-starttls-20-100 ..." runs only those cases (names as printed)
#
# Cases: 1k, 10k, 100k, 1m x plain/STARTTLS x 1/20 sessions, 100 messages per
# connection; plus 10 KB, 20 sessions, one connection per message, plain and
# STARTTLS (RSA-2048 certificate on both relays).
# Both relays sync before they answer 250 (Estafette always; Postfix fsyncs
# every queue file). Needs root (Postfix; installed from Debian's packages if
# missing) and the release builds:
#   cargo build --profile bench -p estafette-relay -p estafette-loadtest
# Outputs: the table on stdout, and every run's report.json/report.html
# under $OUT (default /var/tmp/estafette-side-by-side/<date>).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${1:-2}; SCALE=${2:-1}
. bench/scripts/lib.sh
[ "$(id -u)" -eq 0 ] || { echo "run as root (private Postfix instance)" >&2; exit 1; }

# --- Postfix from Debian's packages, if missing.
if ! [ -x /usr/sbin/postfix ]; then
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix openssl
fi

OUT=${OUT:-/var/tmp/estafette-side-by-side/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
work=$(mktemp -d /tmp/estafette-sbs.XXXXXX)
chmod 755 "$work"   # Postfix daemons (user postfix) must reach their directories
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # The relay writes its spool until it exits: remove it after.
  for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
  cp "$work/postfix/maillog" "$OUT/postfix-maillog" 2>/dev/null || true
  /usr/sbin/postfix -c "$work/postfix" abort >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

SINK=$(free_port); EST=$(free_port); PF=$(free_port)

# --- One RSA-2048 certificate for both relays.
bench_cert "$work"
chmod 644 "$work/key.pem"

# --- Estafette: one node, one listener (STARTTLS offered, not required),
# catch-all route to the sink.
mkdir -p "$work/estafette"
cat > "$work/estafette/estafette.toml" <<EOF
[node]
hostname = "estafette.bench"
spool = "spool"
[tls]
cert = "$work/cert.pem"
key = "$work/key.pem"
[[listener]]
name = "bench"
address = "127.0.0.1:$EST"
tls = "starttls"
require_tls = false
max_sessions = 2000
[limits]
max_message_size = 25000000
[[route]]
domain = "*"
host = "127.0.0.1:$SINK"
tls = "none"
[outbound]
max_connections = 20
poll_ms = 50
EOF
RUST_LOG=warn "$EST_BIN" serve --config "$work/estafette/estafette.toml" > "$OUT/estafette.log" 2>&1 &
EPID=$!; pids+=($EPID)
wait_port "$EST"

# --- Postfix: a private instance relaying everything to the sink, STARTTLS offered.
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
message_size_limit = 25000000
smtp_tls_security_level = none
smtpd_tls_security_level = may
smtpd_tls_cert_file = $work/cert.pem
smtpd_tls_key_file = $work/key.pem
# TLS session caches, as a tuned Postfix runs (the -resume case uses them).
smtpd_tls_session_cache_database = btree:$P/data/smtpd_scache
smtpd_tls_session_cache_timeout = 3600s
smtp_tls_session_cache_database = btree:$P/data/smtp_scache
maillog_file = $P/maillog
maillog_file_prefixes = /tmp
EOF
sed -n '/^PORT/,$p' relay/tests/e2e_postfix.rs | sed '/^";/,$d' | sed "s/^PORT /127.0.0.1:$PF /" > "$P/master.cf"
# smtpd's TLS needs the TLS manager (PRNG, session cache), as in Debian's master.cf.
echo "tlsmgr    unix  -       -       n       1000?   1       tlsmgr" >> "$P/master.cf"
/usr/sbin/postfix -c "$P" start >"$work/postfix-start.log" 2>&1 || { cat "$work/postfix-start.log" >&2; exit 1; }
wait_port "$PF"
PFPID=$(tr -d ' ' < "$P/queue/pid/master.pid")

# --- Cases: name size tls sessions per_connection messages
count() { python3 -c "import sys; print(max(20, int(float(sys.argv[1]) * float(sys.argv[2]))))" "$1" "$SCALE"; }
cases=()
for size in 1k 10k 100k 1m; do
  case $size in 1k) n=10000;; 10k) n=8000;; 100k) n=2000;; 1m) n=300;; esac
  for tls in none starttls; do
    for s in 20 1; do
      m=$n; [ "$s" = 1 ] && m=$((n / 5))
      cases+=("$size-$tls-$s-100 $size $tls $s 100 $(count "$m")")
    done
  done
done
cases+=("10k-none-20-1 10k none 20 1 $(count 3000)")
cases+=("10k-starttls-20-1 10k starttls 20 1 $(count 3000)")
# The same with TLS session resumption on both sides (estafette-load --resume;
# Estafette's tickets and cache, Postfix's smtpd session cache).
cases+=("10k-starttls-20-1-resume 10k starttls 20 1 $(count 3000) true")

run_case() { # relay port pid name size tls sessions per_conn messages rep [resume]
  local relay=$1 port=$2 pid=$3 name=$4 size=$5 tls=$6 s=$7 pc=$8 n=$9 rep=${10} resume=${11:-false}
  local dir="$OUT/$name/$relay-$rep"
  mkdir -p "$dir"
  cat > "$dir/scenario.toml" <<EOF
name = "$relay $name #$rep"
target = "127.0.0.1:$port"
target_pid = $pid
[load]
sessions = $s
messages = $n
size = "$size"
per_connection = $pc
tls = "$tls"
insecure = true
resume = $resume
threads = 1
$(scenario_tail "$dir")
EOF
  run_scenario "$dir"
}

echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); postfix $(postconf -d -h mail_version 2>/dev/null); reps=$REPS scale=$SCALE" | tee "$OUT/machine.txt"
for rep in $(seq 1 "$REPS"); do
  for c in "${cases[@]}"; do
    read -r name size tls s pc n resume <<<"$c"
    if [ -n "${CASES:-}" ] && ! [[ " $CASES " == *" $name "* ]]; then continue; fi
    run_case estafette "$EST" "$EPID" "$name" "$size" "$tls" "$s" "$pc" "$n" "$rep" "${resume:-false}"
    run_case postfix "$PF" "$PFPID" "$name" "$size" "$tls" "$s" "$pc" "$n" "$rep" "${resume:-false}"
  done
done

# --- Cross-check: Postfix's smtp-source (plain only: it has no TLS) with the
# same 10 KB, 20-session loads, timed from outside, into the same relays;
# the standalone sink receives (and counts) what they relay.
xcheck() { # relay port reuse(yes/no)
  local relay=$1 port=$2 reuse=$3 n; n=$(count 3000)
  local flags=(); [ "$reuse" = yes ] && flags=(-d)
  "$LOAD_BIN" sink --listen "127.0.0.1:$SINK" --threads 1 -q --duration 600s > "$OUT/xcheck-$relay-$reuse.sink" 2>&1 &
  local kp=$!
  wait_port "$SINK"
  local t0 t1; t0=$(date +%s.%N)
  smtp-source -s 20 -m "$n" -l 10240 -f load@estafette-load.test -t rcpt0@sink.test "${flags[@]}" "127.0.0.1:$port" >/dev/null 2>&1 || true
  t1=$(date +%s.%N)
  sleep 3   # let the relay drain before the sink stops
  kill -TERM "$kp"; wait "$kp" || true
  python3 -c "import sys; n,t0,t1=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]); print(f'{n/(t1-t0):.0f}')" "$n" "$t0" "$t1" > "$OUT/xcheck-$relay-$reuse.rate"
}
if [ -z "${CASES:-}" ] || [[ " $CASES " == *" xcheck "* ]]; then
  for reuse in no yes; do
    xcheck estafette "$EST" "$reuse"
    xcheck postfix "$PF" "$reuse"
  done
fi

python3 bench/scripts/side-by-side-table.py "$OUT" | tee "$OUT/table.md"
echo "reports: $OUT"
