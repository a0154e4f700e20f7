"""The chaos harness's abuse scenario: hostile SMTP clients while a
well-behaved one sends, the node's RSS sampled (see scripts/chaos)."""

import os
import socket
import subprocess
import threading
import time

from chaos_parts import Load, Node, PeakRss, Sink, free_port, node_toml, rss_kib, summary


class Smtp:
    """A raw SMTP client for abuse: writes what it is told, reads replies."""

    def __init__(self, port, timeout=30, source="127.0.0.66"):
        # Each abuser has its own address, as separate attackers would: the
        # node limits sessions per client address.
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        self.buf = b""

    def reply(self):
        """The next complete reply (all its lines); b'' when the server closed."""
        lines = []
        while True:
            while b"\n" not in self.buf:
                data = self.s.recv(65536)
                if not data:
                    return b"".join(lines)
                self.buf += data
            line, self.buf = self.buf.split(b"\n", 1)
            lines.append(line + b"\n")
            if len(line) < 4 or line[3:4] != b"-":
                return b"".join(lines)

    def send(self, data):
        self.s.sendall(data)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def code(r):
    return r[:3].decode(errors="replace") if r else "closed"


def abuse_flood(port, n, results):
    socks, greet = [], {}
    for _ in range(n):
        try:
            socks.append(Smtp(port, timeout=10, source="127.0.0.66"))
        except OSError:
            greet["connect failed"] = greet.get("connect failed", 0) + 1
    # Greetings are read after every connection is open, so that all of them
    # count against the session limit at once.
    for c in socks:
        try:
            g = code(c.reply())
        except OSError:
            g = "error"
        greet[g] = greet.get(g, 0) + 1
    time.sleep(1)
    for c in socks:
        c.close()
    results["flood"] = {"connections": n, "greetings": greet}


def abuse_slowloris(port, n, seconds, results):
    conns = []
    for _ in range(n):
        try:
            c = Smtp(port, timeout=10, source="127.0.0.67")
            c.reply()
            conns.append(c)
        except OSError:
            pass
    end = time.time() + seconds
    line = b"EHLO slow.example\r\n"
    i = 0
    while time.time() < end and conns:
        for c in list(conns):
            try:
                c.send(line[i % len(line):i % len(line) + 1])
            except OSError:
                conns.remove(c)
        i += 1
        time.sleep(0.5)
    alive = len(conns)
    for c in conns:
        c.close()
    results["slowloris"] = {"sessions": n, "still_open_after_s": seconds, "still_open": alive}


def transaction(c, rcpts=1):
    c.reply()
    c.send(b"EHLO abuse.example\r\n")
    c.reply()
    c.send(b"MAIL FROM:<abuse@abuse.example>\r\n")
    c.reply()
    c.send(b"RCPT TO:<rcpt@sink.test>\r\n")
    c.reply()


def abuse_big_data(port, total, results):
    c = Smtp(port, timeout=120, source="127.0.0.68")
    transaction(c)
    c.send(b"DATA\r\n")
    go = c.reply()
    line = b"X" * 998 + b"\r\n"
    block = b"Subject: big\r\n\r\n" + line * 1024
    sent = 0
    try:
        while sent < total:
            c.send(block)
            sent += len(block)
            block = line * 1024
        c.send(b".\r\n")
        r = c.reply()
    except OSError as e:
        r = f"error {e}".encode()
    c.close()
    results["data_1g"] = {"bytes": sent, "data_reply": code(go), "reply": r.decode(errors="replace").strip()[:120]}


def abuse_huge_header(port, results):
    c = Smtp(port, timeout=60, source="127.0.0.69")
    transaction(c)
    c.send(b"DATA\r\n")
    c.reply()
    c.send(b"Subject: " + b"h" * (8 << 20) + b"\r\n")
    c.send(b"X-A: b\r\n" * 200000 + b"\r\nbody\r\n.\r\n")
    r = c.reply()
    c.close()
    results["huge_header"] = {"reply": r.decode(errors="replace").strip()[:120]}


def abuse_rcpts(port, n, results):
    c = Smtp(port, timeout=60, source="127.0.0.70")
    c.reply()
    c.send(b"EHLO abuse.example\r\n")
    c.reply()
    c.send(b"MAIL FROM:<abuse@abuse.example>\r\n")
    c.reply()
    c.send(b"".join(b"RCPT TO:<r%d@sink.test>\r\n" % i for i in range(n)))
    codes = {}
    for _ in range(n):
        k = code(c.reply())
        codes[k] = codes.get(k, 0) + 1
        if k == "closed":
            break
    c.send(b"RSET\r\nQUIT\r\n")
    c.close()
    results["rcpt_10000"] = codes


def abuse_bytes(port, results):
    c = Smtp(port, timeout=30, source="127.0.0.71")
    c.reply()
    seen = []
    for line in (b"EHLO \x00nul\r\n", b"MAIL FROM:<a\x00b@x.example>\r\n", b"MAIL FROM:<\xff\xfe@x.example>\r\n",
                 b"RCPT TO:<\xc3\x28@sink.test>\r\n", b"\xff\xff\xff\xff\r\n") * 3:
        try:
            c.send(line)
            seen.append(code(c.reply()))
        except OSError:
            seen.append("closed")
            break
    c.close()
    results["nul_and_invalid_utf8"] = seen


def abuse_starttls(port, results):
    # Commands pipelined behind STARTTLS must not be run in plaintext
    # (CVE-2011-0411): anything but a refusal or a closed connection is a hit.
    c = Smtp(port, timeout=30, source="127.0.0.72")
    c.reply()
    c.send(b"EHLO abuse.example\r\n")
    c.reply()
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@abuse.example>\r\nRCPT TO:<r@sink.test>\r\n")
    first = code(c.reply())
    try:
        after = code(c.reply())
    except OSError:
        after = "closed"
    c.close()
    # Garbage where the TLS ClientHello should be.
    g = Smtp(port, timeout=30, source="127.0.0.73")
    g.reply()
    g.send(b"EHLO abuse.example\r\nSTARTTLS\r\n")
    g.reply()
    g.reply()
    g.send(os.urandom(4096))
    try:
        end = code(g.reply())
    except OSError:
        end = "closed"
    g.close()
    results["starttls_injection"] = {"starttls": first, "then": after}
    results["starttls_garbage"] = {"after_garbage": end}


def abuse_node(bins, out, smtp, admin, sink_port):
    """A node with STARTTLS offered (a fresh self-signed certificate)."""
    os.makedirs(out, exist_ok=True)
    cert, key = os.path.join(out, "cert.pem"), os.path.join(out, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    toml = node_toml("abuse", 4, smtp, admin, sink_port).replace('tls = "none"\nmax_sessions = 200',
                                                                   'tls = "starttls"\nrequire_tls = false\nmax_sessions = 200\n'
                                                                   'command_timeout_secs = 20')
    toml += f'\n[tls]\ncert = "{cert}"\nkey = "{key}"\n'
    return Node(bins, os.path.join(out, "node"), "abuse", toml)


def abusers(smtp, data_bytes, results):
    return (
        (abuse_slowloris, (smtp, 50, 8, results)),
        (abuse_flood, (smtp, 300, results)),
        (abuse_big_data, (smtp, data_bytes, results)),
        (abuse_huge_header, (smtp, results)),
        (abuse_rcpts, (smtp, 10000, results)),
        (abuse_bytes, (smtp, results)),
        (abuse_starttls, (smtp, results)),
    )


def rss_breakdown(bins, out, data_bytes):
    """Each abuser alone against a fresh node (RSS does not shrink back
    after a peak, so one node per abuser): its peak RSS above idle, MiB."""
    by = {}
    for f, _ in abusers(0, data_bytes, {}):
        d = os.path.join(out, f.__name__)
        smtp, admin = free_port(), free_port()
        node = abuse_node(bins, d, smtp, admin, free_port())
        sampler = None
        try:
            node.start(smtp)
            time.sleep(1)
            idle = rss_kib(node.proc.pid)[0]
            sampler = PeakRss(node.proc.pid)
            args = dict((g.__name__, a) for g, a in abusers(smtp, data_bytes, {}))[f.__name__]
            try:
                f(*args)
            except OSError:
                pass
            time.sleep(0.5)
            peak = sampler.stop()
            by[f.__name__.removeprefix("abuse_")] = round((peak - idle) / 1024, 1)
        finally:
            if sampler is not None:
                sampler.stop()
            node.stop()
    return by


def scenario_abuse(bins, out, rounds, rng, data_bytes):
    """Hostile clients while a well-behaved one sends; RSS sampled. With
    CHAOS_ABUSE_BREAKDOWN=1, also each abuser alone on a fresh node, for the
    share of the peak each one causes."""
    sink = Sink(bins, os.path.join(out, "sink"))
    load = Load(bins, os.path.join(out, "load"))
    smtp, admin = free_port(), free_port()
    node = abuse_node(bins, out, smtp, admin, sink.port)
    sink.start()
    results, peak = {}, 0
    try:
        node.start(smtp)
        time.sleep(1)
        idle = rss_kib(node.proc.pid)[0]
        base = Load.report(load.send(smtp, duration="4s", sessions=4))
        sampler = PeakRss(node.proc.pid)
        # The well-behaved client is connected before the flood starts (its
        # later connections are retried, as an MTA's would be).
        good = load.send(smtp, duration="6s", sessions=4)
        time.sleep(0.5)

        def guarded(f, *args):
            try:
                f(*args)
            except OSError as e:  # refused or reset: recorded, not a crash
                results[f"{f.__name__}: connection"] = f"{type(e).__name__}: {e}"

        workers = [threading.Thread(target=guarded, args=(f, *a)) for f, a in abusers(smtp, data_bytes, results)]
        for w in workers:
            w.start()
        during = Load.report(good)
        for w in workers:
            w.join(timeout=300)
        peak = sampler.stop()
        alive = node.proc.poll() is None
        after = Load.report(load.send(smtp, messages=200, sessions=4))
        v = load.wait_delivered([sink], timeout=120)
    finally:
        node.stop()
        sink.stop()
    v = load.verdict([sink]) or v
    rate = lambda r: round(r.get("inject_msg_per_s", 0), 1)  # noqa: E731
    checks = {
        "node alive": alive,
        "flood: extra sessions get 421": results.get("flood", {}).get("greetings", {}).get("421", 0) > 0,
        "1 GB DATA refused with 552": results.get("data_1g", {}).get("reply", "").startswith("552"),
        "10,000 RCPT: 1,000 accepted, the rest 452": results.get("rcpt_10000", {}).get("250") == 1000
        and results.get("rcpt_10000", {}).get("452", 0) > 0,
        "huge header refused (5yz)": results.get("huge_header", {}).get("reply", "").startswith("5"),
        "NUL / invalid UTF-8: no 250": "250" not in results.get("nul_and_invalid_utf8", ["250"]),
        "no command run from behind STARTTLS": results.get("starttls_injection", {}).get("then") != "250",
        "well-behaved client served during the abuse": rate(during) > 0,
        "after the abuse: 200 of 200 accepted": after.get("counts", {}).get("accepted") == 200,
        "peak RSS under idle + 256 MiB": peak - idle < 256 * 1024,
    }
    rss = {"idle": round(idle / 1024, 1), "peak": round(peak / 1024, 1)}
    if os.environ.get("CHAOS_ABUSE_BREAKDOWN") == "1":
        rss["alone_above_idle"] = rss_breakdown(bins, os.path.join(out, "alone"), data_bytes)
    return {"verdict": summary(v), "results": results, "checks": checks,
            "rss_mib": rss,
            "good_client_msg_per_s": {"before": rate(base), "during": rate(during), "after": rate(after)},
            "data_bytes": data_bytes,
            "passed": all(checks.values()) and v is not None and v["lost"] == 0}
