#!/usr/bin/env python3
"""Every rendered overlay's config passes `estafette config check` as each of
its pods would load it: the ConfigMap's estafette.toml with the StatefulSet's
environment (ESTAFETTE_* overrides, $(POD_NAME) expanded for each ordinal).
A name that is neither a listed member nor a StatefulSet pod name
(NAME-ORDINAL, which `[cluster.discover]` accepts) must be refused (exit 2),
which shows that the overrides are applied at all.

Usage: configs.py ESTAFETTE_BINARY RENDERED.yaml...
"""

import os
import re
import subprocess
import sys
import tempfile

import yaml


def pod_env(container, pod_name):
    env, out = {"POD_NAME": pod_name}, {}
    for e in container.get("env", []):
        if "value" in e:
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), e["value"])
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            value = pod_name
        else:
            continue
        env[e["name"]] = value
        out[e["name"]] = value
    return out


def run(binary, text, env):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "estafette.toml")
        with open(path, "w") as f:
            f.write(text)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("ESTAFETTE_")}
        return subprocess.run([binary, "config", "check", path], env={**clean, **env},
                              capture_output=True, text=True)


def main(binary, files):
    failed = False
    for f in files:
        with open(f) as fh:
            objs = [o for o in yaml.safe_load_all(fh) if o]
        sts = next(o for o in objs if o["kind"] == "StatefulSet")
        container = sts["spec"]["template"]["spec"]["containers"][0]
        volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
        cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == volume["configMap"]["name"])
        text = cm["data"]["estafette.toml"]
        name = sts["metadata"]["name"]
        for ordinal in range(sts["spec"]["replicas"]):
            pod = f"{name}-{ordinal}"
            r = run(binary, text, pod_env(container, pod))
            ok = r.returncode == 0
            failed |= not ok
            print(f"{f}: pod {pod}: config check {'OK' if ok else 'FAILED'} {r.stderr.strip()}")
        if any(e["name"] == "ESTAFETTE_CLUSTER__NAME" for e in container.get("env", [])):
            bad = f"{name}-x"
            r = run(binary, text, pod_env(container, bad))
            if r.returncode != 2 or bad not in r.stderr:
                failed = True
                print(f"{f}: pod {bad} (not a member) was not refused: {r.returncode} {r.stderr.strip()}")
            else:
                print(f"{f}: pod {bad} refused as expected: {r.stderr.strip()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
