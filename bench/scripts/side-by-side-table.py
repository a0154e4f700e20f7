#!/usr/bin/env python3
"""Reads the report.json files that side-by-side.sh left under OUT and prints
a Markdown table: medians over the repetitions, Estafette vs Postfix.

    bench/scripts/side-by-side-table.py OUT
"""
import json
import pathlib
import statistics
import sys


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=0):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def load(case_dir, relay):
    reports = []
    for d in sorted(case_dir.glob(f"{relay}-*")):
        f = d / "report.json"
        if f.exists():
            reports.append(json.loads(f.read_text()))
    return reports


def summary(reports):
    def get(path):
        out = []
        for r in reports:
            v = r
            for k in path:
                v = v.get(k) if isinstance(v, dict) else None
            out.append(v)
        return out

    clean = all((r.get("verdict") or {}).get("lost", 1) == 0 and (r.get("verdict") or {}).get("duplicated", 1) == 0
                and r.get("drained") for r in reports)
    return {
        "n": len(reports),
        "inject": median(get(["inject_msg_per_s"])),
        "e2e": median(get(["delivery", "msg_per_s"])),
        "cpu": median(get(["target_cpu", "ms_per_msg"])),
        "p99": median(get(["accept_latency", "p99_ms"])),
        "e2e_p99": median(get(["e2e_latency", "p99_ms"])),
        "tool": median(get(["tool_cpu", "ms_per_msg"])),
        # Cores kept busy by other processes (builds, ...): the run's noise.
        "noise": median([other_cores(r) for r in reports]),
        "clean": clean,
    }


def other_cores(r):
    try:
        secs = r["delivery"]["seconds"]
        other = r["machine_cpu"]["seconds"] - r["target_cpu"]["seconds"] - r["tool_cpu"]["seconds"]
        return max(0.0, other / secs)
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def parts(name):
    """size, tls, sessions, per_conn, and "resume" when the case resumes TLS sessions."""
    size, tls, sessions, per_conn, *rest = name.split("-")
    return size, tls, sessions, per_conn, "-".join(rest)


def order(name):
    size, tls, sessions, per_conn, extra = parts(name)
    sizes = {"1k": 0, "10k": 1, "100k": 2, "1m": 3}
    return (int(per_conn) == 1, sizes.get(size, 9), tls != "none", -int(sessions), extra)


def main():
    out = pathlib.Path(sys.argv[1])
    machine = (out / "machine.txt").read_text().strip() if (out / "machine.txt").exists() else ""
    print(f"{machine}\n")
    flagged = False
    print("| case (size, TLS, sessions, msgs/conn) | Estafette inject / e2e msg/s | Postfix inject / e2e msg/s "
          "| e2e ratio E/P | relay CPU ms/msg E / P | p99 accept ms E / P | p99 e2e ms E / P | load tool CPU ms/msg "
          "| other load, cores E / P |")
    print("|---|---|---|---|---|---|---|---|---|")
    cases = sorted((d for d in out.iterdir() if d.is_dir()), key=lambda d: order(d.name))
    for d in cases:
        e, p = summary(load(d, "estafette")), summary(load(d, "postfix"))
        if not e["n"] or not p["n"]:
            continue
        size, tls, s, pc, extra = parts(d.name)
        ratio = e["e2e"] / p["e2e"] if e["e2e"] and p["e2e"] else None
        flag = "" if e["clean"] and p["clean"] else " ⚠"
        flagged |= bool(flag)
        label = f"{size}, {'STARTTLS' if tls == 'starttls' else 'plain'}, {s}, {pc}{', ' + extra if extra else ''}{flag}"
        print(f"| {label} | {fmt(e['inject'])} / {fmt(e['e2e'])} | {fmt(p['inject'])} / {fmt(p['e2e'])} "
              f"| {fmt(ratio, 1)}× | {fmt(e['cpu'], 3)} / {fmt(p['cpu'], 3)} | {fmt(e['p99'], 1)} / {fmt(p['p99'], 1)} "
              f"| {fmt(e['e2e_p99'], 1)} / {fmt(p['e2e_p99'], 1)} | {fmt(median([e['tool'], p['tool']]), 3)} "
              f"| {fmt(e['noise'], 2)} / {fmt(p['noise'], 2)} |")
    rates = {f.stem: f.read_text().strip() for f in out.glob("xcheck-*.rate")}
    if rates:
        print("\nCross-check, 10 KB plain, 20 sessions: Postfix's smtp-source vs estafette-load, inject msg/s")
        print("(smtp-source timed from outside; `-d` keeps each session's connection)\n")
        print("| relay | load | smtp-source | estafette-load |")
        print("|---|---|---|---|")
        for relay in ("estafette", "postfix"):
            for reuse, case, what in (("no", "10k-none-20-1", "one connection per message"),
                                      ("yes", "10k-none-20-100", "connections reused")):
                ours = summary(load(out / case, relay)) if (out / case).exists() else {"inject": None}
                print(f"| {relay} | {what} | {rates.get(f'xcheck-{relay}-{reuse}', '-')} | {fmt(ours['inject'])} |")
    print("\nOther load: CPU used on the machine by processes other than the relay and estafette-load during")
    print("the run (loopback kernel work not charged to either, and anything else running), in cores.")
    if flagged:
        print("\n⚠: a run did not drain, or lost or duplicated messages (see its report.html).")


if __name__ == "__main__":
    main()
