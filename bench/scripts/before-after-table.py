#!/usr/bin/env python3
"""Reads what before-after.sh left under OUT (OUT/before-N and OUT/after-N,
each a side-by-side.sh output) and prints a Markdown table per metric:
median over the rounds, [min - max], and the change after vs before, for
Estafette; and the same for Postfix, which is one binary in every round, so
that its change is the run's noise.

    bench/scripts/before-after-table.py OUT
"""
import json
import pathlib
import statistics
import sys

METRICS = (
    ("e2e msg/s", ("delivery", "msg_per_s"), True),
    ("relay CPU ms/msg", ("target_cpu", "ms_per_msg"), False),
    ("p99 accept ms", ("accept_latency", "p99_ms"), False),
)


def value(report, path):
    v = report
    for k in path:
        v = v.get(k) if isinstance(v, dict) else None
    return v


def reports(out, side, case, relay):
    """One value list per metric over the rounds of one side."""
    found = []
    for f in sorted(out.glob(f"{side}-*/{case}/{relay}-*/report.json")):
        r = json.loads(f.read_text())
        v = r.get("verdict") or {}
        if v.get("lost", 1) or v.get("duplicated", 1) or not r.get("drained"):
            print(f"warning: {f} did not drain, or lost or duplicated messages", file=sys.stderr)
        found.append(r)
    return found


def cell(xs, digits):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-", None
    m = statistics.median(xs)
    return f"{m:,.{digits}f} [{min(xs):,.{digits}f}–{max(xs):,.{digits}f}]", m


def change(before, after, higher_is_better):
    if not before or after is None:
        return "-"
    pct = (after / before - 1) * 100
    worse = pct < 0 if higher_is_better else pct > 0
    return f"{pct:+.1f} %{' (worse)' if worse and abs(pct) >= 0.05 else ''}"


def main():
    out = pathlib.Path(sys.argv[1])
    if (out / "builds.txt").exists():
        print((out / "builds.txt").read_text().strip().replace("\n", "  \n") + "\n")
    cases = sorted({p.name for p in out.glob("before-*/*") if p.is_dir()})
    rounds = len(list(out.glob("before-*/")))
    print(f"{rounds} rounds; median [min–max] over the rounds.\n")
    for name, path, higher in METRICS:
        digits = 0 if higher else 3 if "CPU" in name else 1
        print(f"### {name}\n")
        print("| case | Estafette before | Estafette after | change | Postfix next to before | Postfix next to after | Postfix change (noise) |")
        print("|---|---|---|---|---|---|---|")
        for case in cases:
            eb, mb = cell([value(r, path) for r in reports(out, "before", case, "estafette")], digits)
            ea, ma = cell([value(r, path) for r in reports(out, "after", case, "estafette")], digits)
            pb, nb = cell([value(r, path) for r in reports(out, "before", case, "postfix")], digits)
            pa, na = cell([value(r, path) for r in reports(out, "after", case, "postfix")], digits)
            print(f"| {case} | {eb} | {ea} | {change(mb, ma, higher)} | {pb} | {pa} | {change(nb, na, higher)} |")
        print()
    print("Postfix runs in every round with the same binary: its columns are the Postfix runs next to each")
    print("build's, and its change is what the machine's noise alone moves.")


if __name__ == "__main__":
    main()
