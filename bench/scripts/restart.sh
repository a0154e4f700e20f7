#!/usr/bin/env bash
# A restart with a full queue, as a new user would meet it: one node, its
# destination down, N queued 1 KB messages (written as accepted, the spool
# never compacted by hand), then
#   clean   SIGTERM (the spool is flushed at close) and start again,
#   crash   SIGKILL (the WAL holds what was not flushed) and start again;
# each time: seconds until the node answers EHLO, until the oldest queued
# message reaches the destination once it is back up and the operator asks
# for it (`estafette queue retry ID`: the retry schedule would say "in an
# hour"), the node's RSS after the restart per queued message, and the
# spool's size on disk.
#
#   bench/scripts/restart.sh [N]      default N = 1000000
#
# Needs the release builds:
#   cargo build --profile bench -p estafette-relay -p estafette-loadtest
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000000}
. bench/scripts/lib.sh
OUT=${OUT:-/var/tmp/estafette-restart-bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
work=$(mktemp -d /var/tmp/estafette-rb.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
PORT=$(free_port); SINK=$(free_port); ADMIN=$(free_port)
cat > "$work/estafette.toml" <<EOF
[node]
hostname = "restart.bench"
node_id = 1
spool = "spool"
[[listener]]
name = "bench"
address = "127.0.0.1:$PORT"
tls = "none"
max_sessions = 2000
[[route]]
domain = "*"
host = "127.0.0.1:$SINK"
tls = "none"
[outbound]
poll_ms = 200
# The destination is down while the queue fills: one attempt, then an hour.
retry_first_secs = 3600
retry_cap_secs = 3600
circuit_threshold = 1000000000
[admin]
address = "127.0.0.1:$ADMIN"
EOF

start() { STARTED=$(date +%s.%N); RUST_LOG=warn "$EST_BIN" serve --config "$work/estafette.toml" >> "$work/log" 2>&1 & NODE=$!; pids+=("$NODE"); }
# Seconds from the node's start until it answers EHLO with 250.
until_ehlo() {
  python3 - "$PORT" "$STARTED" <<'PYEOF'
import socket, sys, time
port, started = int(sys.argv[1]), float(sys.argv[2])
while True:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        f = s.makefile("rb")
        if f.readline().startswith(b"220"):
            s.sendall(b"EHLO bench\r\n")
            line = f.readline()
            while line[3:4] == b"-":
                line = f.readline()
            if line.startswith(b"250"):
                s.sendall(b"QUIT\r\n")
                print(f"{time.time() - started:.3f}")
                break
        s.close()
    except OSError:
        time.sleep(0.02)
PYEOF
}
rss_kib() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }

echo "Machine: $(nproc) cores, $(uname -r); N=$N" | tee "$OUT/machine.txt"
start
until_ehlo > /dev/null
# Fill: the destination is down (nothing listens on $SINK).
"$LOAD_BIN" send --target "127.0.0.1:$PORT" --messages "$N" --sessions 20 --size 1k \
  --per-connection 1000 --to-domain sink.test --json --quiet > "$OUT/fill.json"
python3 -c "import json,sys; c=json.load(open(sys.argv[1]))['counts']; print('filled: sent', c['sent'], 'accepted', c['accepted'])" "$OUT/fill.json" | tee -a "$OUT/result.txt"
sleep 5   # the first attempts (connection refused) are written back

for how in clean crash; do
  if [ "$how" = clean ]; then kill -TERM "$NODE"; else kill -KILL "$NODE"; fi
  while kill -0 "$NODE" 2>/dev/null; do sleep 0.05; done
  spool=$(du -sb "$work/spool" | cut -f1)
  start
  ehlo=$(until_ehlo)
  rss=$(rss_kib "$NODE")
  # The destination comes back: time to the first delivery.
  t0=$(date +%s.%N)
  "$LOAD_BIN" sink --listen "127.0.0.1:$SINK" --received-log "$work/received-$how.log" > "$work/sink-$how.log" 2>&1 &
  SINKPID=$!; pids+=("$SINKPID")
  # The retry schedule says "in an hour": the operator asks for the oldest
  # message now (queue retry), as one would once the destination is back.
  first_id=$("$EST_BIN" queue ls -c "$work/estafette.toml" --limit 1 --json | python3 -c "import json,sys; print(json.load(sys.stdin)['messages'][0]['id'])")
  "$EST_BIN" queue retry -c "$work/estafette.toml" "$first_id" > /dev/null
  while [ ! -s "$work/received-$how.log" ]; do sleep 0.05; done
  first=$(python3 -c "import sys,time; print(f'{time.time() - float(sys.argv[1]):.3f}')" "$t0")
  kill "$SINKPID" 2>/dev/null || true; wait "$SINKPID" 2>/dev/null || true
  printf '%s restart: EHLO after %s s, first delivery %s s after the destination came back, RSS %s MiB (%s bytes per queued message), spool %s MB\n' \
    "$how" "$ehlo" "$first" "$((rss / 1024))" "$(python3 -c "print(round($rss * 1024 / $N))")" "$((spool / 1000000))" | tee -a "$OUT/result.txt"
done
echo "results in $OUT"
