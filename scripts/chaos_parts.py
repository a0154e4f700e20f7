"""The chaos harness's parts: processes (nodes, sink, senders) and the verdict.

Used by scripts/chaos (see its help).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=60, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}) before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


class PeakRss:
    """Samples a process's RSS every 50 ms on a thread until stop(); `peak`
    is the highest seen, in KiB."""

    def __init__(self, pid):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid)[0])
            time.sleep(0.05)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak


def rss_kib(pid):
    """(VmRSS, VmHWM) in KiB, or (0, 0) when the process is gone."""
    vals = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    vals[k] = int(v.split()[0])
    except OSError:
        return 0, 0
    return vals.get("VmRSS", 0), vals.get("VmHWM", 0)


class Bins:
    def __init__(self, profile):
        target = os.environ.get("CARGO_TARGET_DIR", "/var/tmp/estafette-target")
        self.estafette = os.path.join(target, profile, "estafette")
        self.load = os.path.join(target, profile, "estafette-load")
        for b in (self.estafette, self.load):
            if not os.access(b, os.X_OK):
                sys.exit(f"chaos: {b} is missing: build it first (cargo build -p estafette-relay -p estafette-loadtest)")


class Node:
    """One `estafette serve` process with its own config, spool and log."""

    def __init__(self, bins, dirpath, name, toml):
        self.bins, self.dir, self.name = bins, dirpath, name
        os.makedirs(dirpath, exist_ok=True)
        self.config = os.path.join(dirpath, "estafette.toml")
        with open(self.config, "w") as f:
            f.write(toml)
        self.proc = None
        self.starts = 0

    def start(self, port):
        self.starts += 1
        log = open(os.path.join(self.dir, f"log.{self.starts}"), "w")
        self.proc = subprocess.Popen(
            [self.bins.estafette, "serve", "--config", self.config],
            cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": "warn", "NO_COLOR": "1"})
        log.close()
        wait_port(port, proc=self.proc)

    def signal(self, sig):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill9(self):
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self):
        if self.proc is not None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()
            self.proc = None

    def status(self):
        """`estafette cluster status --json`, or None when it does not answer."""
        try:
            out = subprocess.run([self.bins.estafette, "cluster", "status", "--config", self.config, "--json"],
                                 cwd=self.dir, capture_output=True, timeout=3)
            return json.loads(out.stdout) if out.returncode == 0 else None
        except (subprocess.TimeoutExpired, ValueError):
            return None


class Sink:
    """estafette-load's sink; each start writes a new received log."""

    def __init__(self, bins, dirpath, reply_mix="", tls=None):
        """`tls`: (cert, key) PEM files to offer STARTTLS with; None: plain."""
        self.bins, self.dir, self.mix, self.tls = bins, dirpath, reply_mix, tls
        self.port = free_port()
        self.proc, self.starts = None, 0
        os.makedirs(dirpath, exist_ok=True)

    def start(self):
        self.starts += 1
        args = [self.bins.load, "sink", "--listen", f"127.0.0.1:{self.port}", "--quiet", "--threads", "1",
                "--received-log", os.path.join(self.dir, f"received.{self.starts}.log")]
        if self.mix:
            args += ["--reply-mix", self.mix]
        if self.tls:
            args += ["--tls", "starttls", "--cert", self.tls[0], "--key", self.tls[1]]
        self.proc = subprocess.Popen(args, stdout=open(os.path.join(self.dir, f"sink.{self.starts}.out"), "w"),
                                     stderr=open(os.path.join(self.dir, "sink.err"), "a"))
        wait_port(self.port, proc=self.proc)

    def counter(self, name):
        """A counter of the summary line the sink prints when it stops
        (`tls dropped`, `4yz`...), summed over its starts."""
        total = 0
        for n in range(1, self.starts + 1):
            try:
                with open(os.path.join(self.dir, f"sink.{n}.out")) as f:
                    line = next((l for l in f if l.startswith("sink: ")), "")
            except OSError:
                continue
            m = re.search(re.escape(name) + r" (\d+)", line)
            total += int(m.group(1)) if m else 0
        return total

    def stop(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class Load:
    """Senders (estafette-load send) writing send logs under one directory."""

    def __init__(self, bins, dirpath):
        self.bins, self.dir, self.n = bins, dirpath, 0
        os.makedirs(dirpath, exist_ok=True)

    def send(self, port, *, duration="3s", sessions=8, size="10k", messages=None, extra=()):
        self.n += 1
        args = [self.bins.load, "send", "--target", f"127.0.0.1:{port}", "--sessions", str(sessions),
                "--size", size, "--per-connection", "20", "--connect-timeout", "2s", "--reply-timeout", "20s",
                "--to-domain", "sink.test", "--threads", "1", "--quiet", "--json",
                "--send-log", os.path.join(self.dir, f"send.{self.n}.log"), *extra]
        args += ["--messages", str(messages)] if messages else ["--duration", duration]
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    @staticmethod
    def report(proc, timeout=300):
        out, err = proc.communicate(timeout=timeout)
        try:
            return json.loads(out)
        except ValueError:
            return {"error": (err or out).strip()[-500:]}

    def verdict(self, sinks):
        sent = os.path.join(self.dir, "sent.all")
        recv = os.path.join(self.dir, "received.all")
        cat(sorted(p for p in ls(self.dir) if os.path.basename(p).startswith("send.")), sent)
        cat([p for s in sinks for p in ls(s.dir) if os.path.basename(p).startswith("received.")], recv)
        out = subprocess.run([self.bins.load, "verify", "--sent", sent, "--received", recv],
                             capture_output=True, text=True)
        try:
            return json.loads(out.stdout)
        except ValueError:
            return None

    def wait_delivered(self, sinks, timeout):
        """Polls the verdict (the sink flushes its log every second) until
        nothing acknowledged is missing, or the timeout."""
        deadline = time.time() + timeout
        v = None
        while time.time() < deadline:
            v = self.verdict(sinks)
            if v is not None and v["lost"] == 0:
                return v
            time.sleep(1)
        return v


def ls(d):
    return [os.path.join(d, f) for f in os.listdir(d)]


def cat(paths, dest):
    with open(dest, "wb") as out:
        for p in paths:
            with open(p, "rb") as f:
                shutil.copyfileobj(f, out)


def node_toml(name, node_id, smtp, admin, sink_port, extra="", route_tls="none"):
    return f"""
[node]
hostname = "{name}.chaos.test"
node_id = {node_id}
spool = "spool"
postmaster = "postmaster@sink.test"
accept_timeout_secs = 10

[[listener]]
name = "plain"
address = "127.0.0.1:{smtp}"
tls = "none"
max_sessions = 200

[[route]]
domain = "sink.test"
host = "127.0.0.1:{sink_port}"
tls = "{route_tls}"

[admin]
address = "127.0.0.1:{admin}"

[outbound]
retry_first_secs = 1
retry_cap_secs = 2
retry_jitter = 0.0
poll_ms = 100
handoff_grace_secs = 2
circuit_threshold = 1000000
{extra}
"""


def summary(v):
    keys = ("sent", "accepted", "delivered", "bounced", "lost", "duplicated", "duplicate_copies")
    return {k: v.get(k) for k in keys} if v else {"error": "no verdict"}


def log_codes(path):
    codes = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2:
                    codes[parts[1]] = codes.get(parts[1], 0) + 1
    except OSError:
        pass
    return codes
