#!/usr/bin/env python3
"""Invariants of the rendered k8s/ overlays that schemas cannot see.

Usage: invariants.py RENDERED.yaml...   (output of `kubectl kustomize`)
       invariants.py --self-test RENDERED.yaml
Exit 1 and one line per broken rule. --self-test breaks each rule in a copy of
the objects and checks that it is reported (so the checker cannot pass by
checking nothing).
"""

import copy
import sys
import tomllib

import yaml

DRAIN_DEADLINE_SECS = 60  # cluster.drain_deadline_secs's default (relay/src/config/cluster.rs)


def drain_deadline(objs):
    """cluster.drain_deadline_secs of the node config in the ConfigMaps (the default without one)."""
    for o in objs:
        text = o.get("data", {}).get("estafette.toml") if o["kind"] == "ConfigMap" else None
        if text:
            return tomllib.loads(text).get("cluster", {}).get("drain_deadline_secs", DRAIN_DEADLINE_SECS)
    return DRAIN_DEADLINE_SECS


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_specs(objs):
    for o in objs:
        if o["kind"] in ("StatefulSet", "Deployment", "Job"):
            yield o, o["spec"]["template"]


def check(objs):
    problems = []
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}

    for owner, tmpl in pod_specs(objs):
        where = f'{owner["kind"]}/{owner["metadata"]["name"]}'
        spec = tmpl["spec"]
        pod_sc = spec.get("securityContext", {})
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            cw = f'{where} container {c["name"]}'
            sc = c.get("securityContext", {})
            non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
            uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
            if non_root is not True or uid in (None, 0):
                problems.append(f"{cw}: not non-root (runAsNonRoot {non_root}, runAsUser {uid})")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{cw}: root filesystem not read-only")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cw}: privilege escalation allowed")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{cw}: capabilities not all dropped")
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            if seccomp.get("type") != "RuntimeDefault":
                problems.append(f"{cw}: seccomp profile is not RuntimeDefault")
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                p = c.get(probe)
                if p is None:
                    continue
                action = p.get("httpGet") or p.get("tcpSocket") or {}
                port = action.get("port")
                if isinstance(port, str) and port not in ports:
                    problems.append(f"{cw}: {probe} uses port {port!r}, not a container port")
                if isinstance(port, int) and port not in ports.values():
                    problems.append(f"{cw}: {probe} uses port {port}, not a container port")
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes and not any(
                    t["metadata"]["name"] == m["name"] for t in owner["spec"].get("volumeClaimTemplates", [])
                ):
                    problems.append(f"{cw}: mount {m['name']} has no volume")
                if "subPath" in m:
                    problems.append(f"{cw}: mount {m['name']} uses subPath (renewed files would not reach the pod)")
        for v in volumes.values():
            if "configMap" in v and ("ConfigMap", v["configMap"]["name"]) not in names:
                problems.append(f"{where}: volume {v['name']} names a missing ConfigMap {v['configMap']['name']}")
            if "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]["claimName"]
                if ("PersistentVolumeClaim", claim) not in names:
                    problems.append(f"{where}: volume {v['name']} names a missing claim {claim}")

    for sts in by_kind.get("StatefulSet", []):
        where = f'StatefulSet/{sts["metadata"]["name"]}'
        spec = sts["spec"]
        labels = spec["template"]["metadata"]["labels"]
        if not matches(spec["selector"]["matchLabels"], labels):
            problems.append(f"{where}: selector does not select its own pods")
        retention = spec.get("persistentVolumeClaimRetentionPolicy", {})
        if retention.get("whenScaled") != "Retain" or retention.get("whenDeleted") != "Retain":
            problems.append(f"{where}: spool claims are not retained on scale-down and delete")
        if spec.get("podManagementPolicy") != "Parallel":
            problems.append(f"{where}: podManagementPolicy is not Parallel")
        pod = spec["template"]["spec"]
        container = pod["containers"][0]
        pre = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        if "drain" not in pre:
            problems.append(f"{where}: preStop does not run `estafette drain`")
        else:
            wait = int(pre[pre.index("--wait") + 1]) if "--wait" in pre else 90
            grace = pod.get("terminationGracePeriodSeconds", 30)
            deadline = drain_deadline(objs)
            if wait <= deadline:
                problems.append(f"{where}: drain --wait {wait} s is not longer than drain_deadline_secs ({deadline} s)")
            if grace <= max(wait, deadline):
                problems.append(f"{where}: grace period {grace} s is not longer than the drain ({wait} s)")
        if container.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
            problems.append(f"{where}: readiness is not /readyz")
        anti = pod.get("affinity", {}).get("podAntiAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
        if not anti or anti[0].get("topologyKey") != "kubernetes.io/hostname":
            problems.append(f"{where}: no required anti-affinity by host")
        peers = [s for s in by_kind.get("Service", []) if s["metadata"]["name"] == spec.get("serviceName")]
        if not peers:
            problems.append(f"{where}: serviceName {spec.get('serviceName')!r} is not a Service")
        for s in peers:
            if s["spec"].get("clusterIP") != "None":
                problems.append(f"Service/{s['metadata']['name']}: the peers' Service is not headless")
            if s["spec"].get("publishNotReadyAddresses") is not True:
                problems.append(f"Service/{s['metadata']['name']}: does not publish not-ready addresses")
            if not any(p.get("protocol") == "UDP" for p in s["spec"]["ports"]):
                problems.append(f"Service/{s['metadata']['name']}: no UDP port for QUIC")
        pdbs = [p for p in by_kind.get("PodDisruptionBudget", []) if matches(p["spec"]["selector"]["matchLabels"], labels)]
        if not pdbs:
            problems.append(f"{where}: no PodDisruptionBudget selects its pods")
        for p in pdbs:
            if p["spec"].get("maxUnavailable") != 1:
                problems.append(f"PodDisruptionBudget/{p['metadata']['name']}: maxUnavailable is not 1")

    pods = [(o, t) for o, t in pod_specs(objs)]
    for s in by_kind.get("Service", []):
        selected = [(o, t) for o, t in pods if matches(s["spec"].get("selector", {}), t["metadata"]["labels"])]
        if not selected:
            problems.append(f"Service/{s['metadata']['name']}: selects no pod")
        for port in s["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for o, t in selected:
                cports = [p for c in t["spec"]["containers"] for p in c.get("ports", [])]
                if not any(p["name"] == target or p["containerPort"] == target for p in cports):
                    problems.append(
                        f"Service/{s['metadata']['name']}: port {port['name']} targets {target!r}, "
                        f"not a port of {o['kind']}/{o['metadata']['name']}"
                    )
        if s["spec"].get("type") == "LoadBalancer" and s["spec"].get("externalTrafficPolicy") != "Local":
            problems.append(f"Service/{s['metadata']['name']}: LoadBalancer without externalTrafficPolicy Local")

    deny = [n for n in by_kind.get("NetworkPolicy", []) if n["spec"]["podSelector"] == {}]
    if not any(set(n["spec"].get("policyTypes", [])) == {"Ingress", "Egress"} and not n["spec"].get("ingress")
               and not n["spec"].get("egress") for n in deny):
        problems.append("no default-deny NetworkPolicy")
    return problems


def mutations(objs):
    """(description, mutate) pairs, each breaking one rule."""
    def sts(o):
        return next(x for x in o if x["kind"] == "StatefulSet")

    def peers(o):
        return next(x for x in o if x["kind"] == "Service" and x["spec"].get("clusterIP") == "None")

    def c0(o):
        return sts(o)["spec"]["template"]["spec"]["containers"][0]

    yield "root container", lambda o: c0(o)["securityContext"].update(runAsNonRoot=False)
    yield "probe on a missing port", lambda o: c0(o)["readinessProbe"]["httpGet"].update(port="nope")
    yield "peers not publishing", lambda o: peers(o)["spec"].pop("publishNotReadyAddresses")
    yield "PDB selecting nothing", lambda o: next(
        x for x in o if x["kind"] == "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].update(x="y")
    yield "no drain", lambda o: c0(o)["lifecycle"].pop("preStop")
    yield "short drain wait", lambda o: c0(o)["lifecycle"]["preStop"]["exec"]["command"].__setitem__(-1, "30")
    yield "short grace", lambda o: sts(o)["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=30)
    yield "claims deleted", lambda o: sts(o)["spec"]["persistentVolumeClaimRetentionPolicy"].update(whenScaled="Delete")
    yield "service port", lambda o: peers(o)["spec"]["ports"][0].update(targetPort="gone")


def main(argv):
    self_test = "--self-test" in argv
    files = [a for a in argv if a != "--self-test"]
    failed = False
    for f in files:
        with open(f) as fh:
            objs = [o for o in yaml.safe_load_all(fh) if o]
        problems = check(objs)
        for p in problems:
            print(f"{f}: {p}")
        failed |= bool(problems)
        if self_test:
            for what, mutate in mutations(objs):
                broken = copy.deepcopy(objs)
                mutate(broken)
                if not check(broken):
                    print(f"{f}: self-test: breaking '{what}' was not reported")
                    failed = True
        if not problems:
            print(f"{f}: {len(objs)} objects, invariants hold" + (" (self-test passed)" if self_test else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
