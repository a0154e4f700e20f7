#!/usr/bin/env bash
# The pair case of cluster.sh on its own, for profiles and A/B runs: two
# nodes with min_copies = 2, estafette-load sends MESSAGES of 10 KB over 20
# plain sessions to node 0. Prints the relay CPU of both nodes, the UDP
# datagrams both sent (/proc/net/snmp: the QUIC links are the only UDP
# here) and the end-to-end rate. With PERF=1, `perf record -g` samples both
# nodes during the run (report in $OUT/perf.data); the Rust code has no
# frame pointers, so PERF_CALLGRAPH="--call-graph dwarf,8192" PERF_FREQ=499
# gives whole stacks (from the unwind tables) at a lower rate.
#
# Node 0's replication figures follow (its `/api/cluster`): the time from
# sending a message's copies to the last ack, and what that added to the
# accept after node 0's own synced write. RATE=N sends N msg/s open loop
# (for the latency at a given rate) instead of as fast as the relay takes.
# The UDP datagrams the kernel dropped for a full receive buffer during the
# run are printed too (each one a QUIC loss to recover); CLUSTER_KEYS sets
# [cluster] keys for the A/B (CLUSTER_KEYS="udp_buffer_bytes = 0": the
# system's default buffer).
#
#   bench/scripts/cluster-pair.sh [MESSAGES]      default 20000
#   ESTAFETTE_BIN=/path/to/other/estafette bench/scripts/cluster-pair.sh
#   RATE=2000 bench/scripts/cluster-pair.sh 20000
#
# Needs the release builds (see cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-20000}
. bench/scripts/lib.sh
OUT=${OUT:-/var/tmp/estafette-cluster-pair/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
bench_scratch estafette-cp

bench_cert "$work"
"$EST_BIN" pki cluster "$work/cluster" estafette-0 estafette-1 >/dev/null
SINK=$(free_port)
read -r PORT PAIR_PIDS <<< "$(cluster 2)"
# shellcheck disable=SC2206
pids+=($PAIR_PIDS)
sleep 3   # the QUIC links come up
cat > "$OUT/scenario.toml" <<EOT
name = "cluster pair"
target = "127.0.0.1:$PORT"
[load]
sessions = 20
messages = $N
size = "10k"
per_connection = 100
tls = "none"
insecure = true
threads = 1
open_loop = $([ -n "${RATE:-}" ] && echo true || echo false)
${RATE:+rate = $RATE}
$(scenario_tail "$OUT")
EOT
udp_out() { awk '/^Udp:/ && $2 ~ /^[0-9]/ {print $5}' /proc/net/snmp; }
udp_dropped() { awk '/^Udp:/ && $2 ~ /^[0-9]/ {print $6}' /proc/net/snmp; }
u0=$(udp_out)
d0=$(udp_dropped)
if [ "${PERF:-0}" = 1 ]; then
  # shellcheck disable=SC2086
  perf record -F "${PERF_FREQ:-1999}" ${PERF_CALLGRAPH:--g} -o "$OUT/perf.data" -p "$(echo $PAIR_PIDS | tr ' ' ,)" -- sleep 100000 >/dev/null 2>&1 &
  perf_pid=$!
  sleep 1
fi
# shellcheck disable=SC2086
run_scenario "$OUT" $PAIR_PIDS
if [ "${PERF:-0}" = 1 ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
u1=$(udp_out)
d1=$(udp_dropped)
curl -sf "http://127.0.0.1:$(cat "$work/c2-0/admin_port")/api/cluster" > "$OUT/cluster-0.json" || echo '{}' > "$OUT/cluster-0.json"
read -r ticks hz < "$OUT/relay_ticks.txt"
python3 - "$OUT" "$N" "$ticks" "$hz" "$((u1 - u0))" "$((d1 - d0))" <<'PYEOF' | tee "$OUT/result.txt"
import json, sys
out, n, ticks, hz, udp, dropped = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                                   int(sys.argv[5]), int(sys.argv[6]))
r = json.load(open(f"{out}/report.json"))
acc = r["counts"]["accepted"] or 1
print(f"messages {n}  accepted {acc}  lost {(r.get('verdict') or {}).get('lost', 0)}")
print(f"e2e {(r.get('delivery') or {}).get('msg_per_s', 0):.0f} msg/s  relay CPU {ticks / hz * 1000 / acc:.3f} ms/msg (both nodes)")
print(f"UDP datagrams sent {udp} ({udp / acc:.2f} per message), {dropped} dropped for a full receive buffer")
lat = r.get("accept_latency") or {}
print(f"accept latency p50 {lat.get('p50_ms', 0):.2f} ms  p99 {lat.get('p99_ms', 0):.2f} ms (client side)")
rep = json.load(open(f"{out}/cluster-0.json")).get("replication") or {}
print(f"node 0 replication: {rep.get('count', 0)} accepts, copies acked p50 {rep.get('p50_ms', 0):.2f} ms "
      f"p99 {rep.get('p99_ms', 0):.2f} ms; added after the local write p50 {rep.get('added_p50_ms', 0):.3f} ms "
      f"p99 {rep.get('added_p99_ms', 0):.3f} ms max {rep.get('added_max_ms', 0):.2f} ms")
PYEOF
