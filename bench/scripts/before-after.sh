#!/usr/bin/env bash
# Two builds of Estafette, same machine, same session, same load: runs
# side-by-side.sh once per round with each relay binary in turn (before,
# after, before, after, ...), so that a slow patch of the machine hits both,
# and prints one table per case: each build's median over the rounds with
# its range, and the change. Postfix runs in every round too and is the
# same binary each time: its spread between rounds is the run's noise.
#
#   bench/scripts/before-after.sh BEFORE_BIN AFTER_BIN [ROUNDS]
#   defaults: ROUNDS=3; CASES defaults to the 10 KB cases
#
# Build the "before" binary in a worktree with the same target directory
# (dependencies are reused; only the workspace's crates are rebuilt):
#   git worktree add /var/tmp/estafette-before REV
#   (cd /var/tmp/estafette-before && cargo build --profile bench -p estafette-relay)
#   cp $CARGO_TARGET_DIR/release/estafette /var/tmp/estafette-before.bin
# Both runs use this checkout's estafette-load and side-by-side.sh. Needs root.
set -euo pipefail
cd "$(dirname "$0")/../.."
BEFORE=${1:?before binary}; AFTER=${2:?after binary}; ROUNDS=${3:-3}
for b in "$BEFORE" "$AFTER"; do [ -x "$b" ] || { echo "missing $b" >&2; exit 1; }; done
export CASES=${CASES:-"10k-none-20-100 10k-none-1-100 10k-starttls-20-100 10k-starttls-1-100 10k-none-20-1 10k-starttls-20-1 10k-starttls-20-1-resume"}
OUT=${OUT:-/var/tmp/estafette-before-after/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
{ echo "before: $BEFORE ($(sha256sum "$BEFORE" | cut -c1-12))"; echo "after: $AFTER ($(sha256sum "$AFTER" | cut -c1-12))"; } > "$OUT/builds.txt"
for r in $(seq 1 "$ROUNDS"); do
  for side in before after; do
    bin=$BEFORE; [ "$side" = after ] && bin=$AFTER
    echo "round $r: $side" >&2
    ESTAFETTE_BIN=$bin OUT="$OUT/$side-$r" bench/scripts/side-by-side.sh 1 > "$OUT/$side-$r.txt" 2>&1 \
      || { echo "side-by-side failed: $OUT/$side-$r.txt" >&2; tail -5 "$OUT/$side-$r.txt" >&2; exit 1; }
  done
done
python3 bench/scripts/before-after-table.py "$OUT" | tee "$OUT/table.md"
echo "reports: $OUT"
