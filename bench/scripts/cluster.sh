#!/usr/bin/env bash
# Replication cost, same machine, same run: estafette-load drives node 0 of
#   single  one node, min_copies = 1,
#   pair    two nodes, min_copies = 2 (every 250 waits for the peer's synced copy),
#   trio    three nodes, min_copies = 2 (copies spread over the two peers),
# alternating REPS times, 10 KB messages, 20 sessions, 100 per connection,
# plain and STARTTLS. Per case: end-to-end msg/s (closed loop, as fast as the
# relay takes them), relay CPU per message summed over every node of the case
# (/proc utime+stime), p99 accept latency at that maximum, and p99 accept
# latency at one common rate, half the two-node cluster's maximum (open
# loop: measured from each message's due time, so queueing shows).
#
#   bench/scripts/cluster.sh [REPS] [MESSAGES]      defaults: 2 20000
#
# Needs the release builds:
#   cargo build --profile bench -p estafette-relay -p estafette-loadtest
# Every node runs on this machine (2 cores): the figures include the peers'
# CPU, as a real cluster on one host would; on separate hosts the origin's
# rate is higher.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${1:-2}; N=${2:-20000}
. bench/scripts/lib.sh
OUT=${OUT:-/var/tmp/estafette-cluster-bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
# BENCH_WORK=/dev/shm puts every spool on tmpfs: fsync costs nothing, what
# is left of the added latency is the replication protocol and the network.
bench_scratch estafette-cb

bench_cert "$work"
"$EST_BIN" pki cluster "$work/cluster" estafette-0 estafette-1 estafette-2 >/dev/null
SINK=$(free_port)

# single: one node.
A=$(free_port); node_config "$work/single" 0 "$A" ""
APID=$(start "$work/single"); pids+=("$APID"); wait_port "$A"

read -r B PAIR_PIDS <<< "$(cluster 2)"
read -r C TRIO_PIDS <<< "$(cluster 3)"
# shellcheck disable=SC2206
pids+=($PAIR_PIDS $TRIO_PIDS)
sleep 3   # the QUIC links come up

run() { # label port tls rep rate pids...
  local label=$1 port=$2 tls=$3 rep=$4 rate=$5; shift 5
  local dir="$OUT/$label-$tls-$rep-$rate"; mkdir -p "$dir"
  local rate_line="" open="false"
  if [ "$rate" != max ]; then rate_line="rate = $rate"; open="true"; fi
  cat > "$dir/scenario.toml" <<EOF
name = "$label $tls #$rep rate $rate"
target = "127.0.0.1:$port"
[load]
sessions = 20
messages = $N
size = "10k"
per_connection = 100
tls = "$tls"
insecure = true
threads = 1
open_loop = $open
$rate_line
$(scenario_tail "$dir")
EOF
  run_scenario "$dir" "$@"
}

echo "Machine: $(nproc) cores, $(uname -r); reps=$REPS messages=$N" | tee "$OUT/machine.txt"
for rep in $(seq 1 "$REPS"); do
  for tls in none starttls; do
    run single "$A" "$tls" "$rep" max "$APID"
    # shellcheck disable=SC2086
    run pair "$B" "$tls" "$rep" max $PAIR_PIDS
    # shellcheck disable=SC2086
    run trio "$C" "$tls" "$rep" max $TRIO_PIDS
  done
done
# One rate for every case: half the two-node cluster's maximum (median over
# reps; the lowest of the three), open loop, so that the latency compared is
# replication's, not queueing past a case's capacity.
for tls in none starttls; do
  half=$(python3 - "$OUT" "$tls" <<'PYEOF'
import json, os, statistics, sys
out, tls = sys.argv[1], sys.argv[2]
v = [json.load(open(os.path.join(out, d, "report.json")))["inject_msg_per_s"]
     for d in os.listdir(out) if d.startswith(f"pair-{tls}-") and d.endswith("-max")
     and os.path.exists(os.path.join(out, d, "report.json"))]
print(int(statistics.median(v) / 2) if v else 100)
PYEOF
)
  for rep in $(seq 1 "$REPS"); do
    run single "$A" "$tls" "$rep" "$half" "$APID"
    # shellcheck disable=SC2086
    run pair "$B" "$tls" "$rep" "$half" $PAIR_PIDS
    # shellcheck disable=SC2086
    run trio "$C" "$tls" "$rep" "$half" $TRIO_PIDS
  done
done
python3 - "$OUT" <<'PYEOF' | tee "$OUT/table.txt"
import json, os, statistics, sys
out = sys.argv[1]
rows = {}
for d in sorted(os.listdir(out)):
    p = os.path.join(out, d, "report.json")
    if not os.path.exists(p):
        continue
    label, tls, rep, rate = d.split("-")
    r = json.load(open(p))
    ticks, hz = open(os.path.join(out, d, "relay_ticks.txt")).read().split()
    accepted = r["counts"]["accepted"] or 1
    r["relay_ms_per_msg"] = int(ticks) / int(hz) * 1000 / accepted
    rows.setdefault((label, tls, rate == "max"), []).append(r)
def med(xs):
    return statistics.median(xs) if xs else float("nan")
def cell(label, tls):
    mx, half = rows.get((label, tls, True), []), rows.get((label, tls, False), [])
    if not mx:
        return None
    return dict(
        e2e=med([(r.get("delivery") or {}).get("msg_per_s", 0) for r in mx]),
        cpu=med([r["relay_ms_per_msg"] for r in mx]),
        p99=med([r["accept_latency"]["p99_ms"] for r in mx]),
        p99_half=med([r["accept_latency"]["p99_ms"] for r in half]),
        rate_half=med([r["setup"]["rate"] or 0 for r in half]),
        lost=sum((r.get("verdict") or {}).get("lost", 0) for r in mx + half),
    )
names = {"single": "1 node, k=1", "pair": "2 nodes, k=2", "trio": "3 nodes, k=2"}
print(f"{'case':<22} {'msg/s e2e':>10} {'vs 1 node':>9} {'relay CPU ms/msg':>17} {'p99 @max':>10} {'p99 @half':>10} {'added':>8} {'lost':>5}")
for tls in ("none", "starttls"):
    base = cell("single", tls)
    if not base:
        continue
    for label in ("single", "pair", "trio"):
        c = cell(label, tls)
        if not c:
            continue
        ratio = c["e2e"] / base["e2e"] if base["e2e"] else 0
        added = c["p99_half"] - base["p99_half"]
        print(f"{names[label] + ' ' + tls:<22} {c['e2e']:>10.0f} {ratio:>9.0%} {c['cpu']:>17.3f} "
              f"{c['p99']:>8.1f}ms {c['p99_half']:>8.2f}ms {added:>6.2f}ms {c['lost']:>5}")
    print(f"  common rate for p99 @half ({tls}): {base['rate_half']:.0f} msg/s, open loop")
PYEOF
