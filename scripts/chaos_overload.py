"""The chaos harness's overload scenario: twice as many sessions as the node
admits, each sending as fast as it can, for a while (see scripts/chaos)."""

import os
import threading
import time

from chaos_parts import Load, Node, Sink, free_port, node_toml, rss_kib, summary


def scenario_overload(bins, out, rounds, rng, seconds):
    """400 closed-loop sessions against `max_sessions = 200`: the sessions
    over the limit get 421 at once, the admitted ones are slowed by the
    spool's group commit (back-pressure), memory stays bounded, and nothing
    acknowledged is lost."""
    sink = Sink(bins, os.path.join(out, "sink"))
    load = Load(bins, os.path.join(out, "load"))
    smtp, admin = free_port(), free_port()
    # One load generator, one address: the per-client limit is lifted so
    # that the listener's own limit is what the extra sessions meet.
    toml = node_toml("overload", 5, smtp, admin, sink.port).replace(
        "max_sessions = 200", "max_sessions = 200\nmax_sessions_per_client = 1000")
    node = Node(bins, os.path.join(out, "node"), "overload", toml)
    sink.start()
    samples, stop = [], threading.Event()
    try:
        node.start(smtp)
        time.sleep(1)
        idle = rss_kib(node.proc.pid)[0]

        def sample():
            t0 = time.time()
            while not stop.is_set():
                samples.append((round(time.time() - t0, 1), rss_kib(node.proc.pid)[0]))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        report = Load.report(load.send(smtp, duration=f"{seconds}s", sessions=400))
        stop.set()
        sampler.join()
        alive = node.proc.poll() is None
        v = load.wait_delivered([sink], timeout=180)
    finally:
        stop.set()
        node.stop()
        sink.stop()
    v = load.verdict([sink]) or v
    counts = report.get("counts", {})
    peak = max((k for _, k in samples), default=0)
    # Flat: the second half of the run peaks no higher than the first half
    # plus 64 MiB (a queue growing without bound would keep climbing).
    half = len(samples) // 2
    first = max((k for _, k in samples[:half]), default=0)
    second = max((k for _, k in samples[half:]), default=0)
    checks = {
        "node alive": alive,
        "sessions over max_sessions refused": counts.get("connect_errors", 0) > 0,
        "accepted some": counts.get("accepted", 0) > 0,
        "peak RSS under idle + 256 MiB": peak - idle < 256 * 1024,
        "RSS flat (second half <= first half + 64 MiB)": second <= first + 64 * 1024,
    }
    ok = all(checks.values()) and v is not None and v["lost"] == 0 and v["duplicate_copies"] == 0
    return {"verdict": summary(v), "checks": checks,
            "load": {k: counts.get(k) for k in ("sent", "accepted", "temp_failed", "perm_failed", "unknown",
                                                 "connections", "connect_errors")},
            "accepted_msg_per_s": round(counts.get("accepted", 0) / seconds, 1),
            "rss_mib": {"idle": round(idle / 1024, 1), "peak": round(peak / 1024, 1),
                        "first_half_peak": round(first / 1024, 1), "second_half_peak": round(second / 1024, 1)},
            "passed": ok}
