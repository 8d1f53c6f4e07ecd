#!/usr/bin/env python3
"""Checks what the Kubernetes schemas cannot, in each example under deploy/kubernetes/.

For every workload running hookfan, against the routes.yaml of the ConfigMap it mounts:
- its probes use the admin port of admin_listen (not loopback), its `webhook` port is listen's;
- terminationGracePeriodSeconds exceeds shutdown_grace;
- the spool volume is mounted at data_dir and is a PersistentVolumeClaim;
- a native sidecar has restartPolicy: Always; the securityContext is restrictive;
- Services and PodDisruptionBudgets select the pods and target a declared port, and an
  Ingress routes to a Service port of the example;
- kustomization.yaml lists every manifest but the *.example.yaml ones;
- `hookfan check` accepts the ConfigMap's routes.yaml, with the values of secret.example.yaml,
  which must give every variable the file needs.

Usage: check_manifests.py HOOKFAN_BINARY [EXAMPLE_DIR...]   (exit 1 on any problem)
"""

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DEFAULTS = {"listen": "0.0.0.0:8080", "admin_listen": "127.0.0.1:9090",
            "data_dir": "./data", "shutdown_grace": "10s"}
CONFIG_DEFAULT = "/etc/hookfan/routes.yaml"
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

problems = []


def problem(where, message):
    problems.append(f"{where}: {message}")


def seconds(duration):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", duration.strip())
    if not m:
        raise ValueError(f"cannot read duration {duration!r}")
    return int(m.group(1)) * units[m.group(2)]


def substitute(text):
    """${VAR:-default} takes its default; ${VAR} a dummy (only the shape matters here)."""
    return VAR.sub(lambda m: m.group(2) if m.group(2) is not None else "dummy", text)


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def hookfan_check(binary, where, routes_text, secret_env):
    """Runs `hookfan check` with the example Secret's values as the environment, and requires
    that Secret to give every variable the file needs (those without a default)."""
    names = {m.group(1) for m in VAR.finditer(routes_text) if m.group(2) is None}
    for name in sorted(names - secret_env.keys()):
        problem(where, f"routes.yaml needs ${{{name}}}, which secret.example.yaml does not give")
    env = {"PATH": os.environ.get("PATH", ""), **secret_env}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(routes_text)
        f.flush()
        out = subprocess.run([binary, "check", "--config", f.name], env=env,
                             capture_output=True, text=True)
    if out.returncode != 0:
        problem(where, f"hookfan check refuses routes.yaml:\n{out.stderr}")
    else:
        print(f"  hookfan check: {where} routes.yaml OK with secret.example.yaml's values")


def check_example(binary, directory):
    docs = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    listed = set(kustomization.get("resources", []))
    files = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
    for name in sorted(files - listed):
        if not name.endswith(".example.yaml"):
            problem(directory.name, f"{name} is not in kustomization.yaml's resources")
    for name in sorted(listed - files):
        problem(directory.name, f"kustomization.yaml lists {name}, which does not exist")
    for name in sorted(listed):
        if name.endswith(".example.yaml"):
            problem(directory.name, f"kustomization.yaml applies the placeholder {name}")

    by_kind = {}
    for name, doc in docs:
        by_kind.setdefault(doc["kind"], []).append((name, doc))
    configmaps = {d["metadata"]["name"]: d for _, d in by_kind.get("ConfigMap", [])}
    claims = {d["metadata"]["name"] for _, d in by_kind.get("PersistentVolumeClaim", [])}

    services = {d["metadata"]["name"]: d for _, d in by_kind.get("Service", [])}
    for iname, ingress in by_kind.get("Ingress", []):
        for rule in ingress["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                svc = services.get(backend["name"])
                port = backend["port"].get("name", backend["port"].get("number"))
                if svc is None:
                    problem(f"{directory.name}/{iname}", f"no Service {backend['name']} in this example")
                elif port not in {p.get("name") for p in svc["spec"]["ports"]} | {p["port"] for p in svc["spec"]["ports"]}:
                    problem(f"{directory.name}/{iname}", f"Service {backend['name']} has no port {port}")

    workloads = [(n, d) for k in ("Deployment", "StatefulSet") for n, d in by_kind.get(k, [])]
    if not workloads:
        problem(directory.name, "no Deployment or StatefulSet")
    for name, workload in workloads:
        where = f"{directory.name}/{name}"
        found_before = len(problems)
        spec = workload["spec"]
        pod = spec["template"]["spec"]
        pod_labels = spec["template"]["metadata"].get("labels", {})
        if spec["selector"]["matchLabels"].items() - pod_labels.items():
            problem(where, "the selector does not match the pod's labels")
        vct = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        sidecars = [(c, True) for c in pod.get("initContainers", []) if "hookfan" in c["image"]]
        mains = [(c, False) for c in pod["containers"] if "hookfan" in c["image"]]
        if len(sidecars + mains) != 1:
            problem(where, "expected exactly one hookfan container")
            continue
        container, is_sidecar = (sidecars + mains)[0]
        if is_sidecar and container.get("restartPolicy") != "Always":
            problem(where, "the hookfan init container needs restartPolicy: Always (native sidecar)")
        pod_sc = pod.get("securityContext", {})
        sc = container.get("securityContext", {})
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            problem(where, "runAsNonRoot is not set")
        if sc.get("readOnlyRootFilesystem") is not True:
            problem(where, "readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problem(where, "allowPrivilegeEscalation is not false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problem(where, "capabilities are not dropped: drop: [ALL]")
        if "limits" not in container.get("resources", {}) or "requests" not in container.get("resources", {}):
            problem(where, "hookfan has no resource requests and limits")

        # The config: HOOKFAN_CONFIG's directory is a ConfigMap volume holding the file.
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        config_path = env.get("HOOKFAN_CONFIG", CONFIG_DEFAULT)
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        config_mount = mounts.get(os.path.dirname(config_path))
        if config_mount is None:
            problem(where, f"nothing is mounted at {os.path.dirname(config_path)} for {config_path}")
            continue
        if config_mount.get("subPath"):
            problem(where, "the ConfigMap is mounted with subPath: its updates would never arrive")
        cm_name = volumes[config_mount["name"]].get("configMap", {}).get("name")
        routes_text = configmaps.get(cm_name, {}).get("data", {}).get(os.path.basename(config_path))
        if routes_text is None:
            problem(where, f"no ConfigMap {cm_name} with {os.path.basename(config_path)} in this example")
            continue
        routes = {**DEFAULTS, **(yaml.safe_load(substitute(routes_text)) or {})}
        secret_env = {}
        for ref in container.get("envFrom", []):
            sname = ref.get("secretRef", {}).get("name")
            for _, d in by_kind.get("Secret", []):
                if d["metadata"]["name"] == sname:
                    secret_env.update(d.get("stringData", {}))
        secret_env.update({k: v for k, v in env.items() if v is not None})
        hookfan_check(binary, f"{directory.name}/ConfigMap {cm_name}", routes_text, secret_env)

        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        admin = routes["admin_listen"]
        if admin == "off" or admin.startswith("127.") or admin.startswith("[::1]"):
            problem(where, f"admin_listen {admin} cannot be reached by the kubelet's probes: use 0.0.0.0:PORT")
        else:
            if ports.get("admin") != port_of(admin):
                problem(where, f"port `admin` is {ports.get('admin')}, admin_listen is {admin}")
        if ports.get("webhook") != port_of(routes["listen"]):
            problem(where, f"port `webhook` is {ports.get('webhook')}, listen is {routes['listen']}")
        probes = [k for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in container]
        for kind in ("readinessProbe", "livenessProbe"):
            if kind not in container:
                problem(where, f"no {kind}")
        for kind in probes:
            port = container[kind].get("httpGet", {}).get("port")
            port = ports.get(port, port)
            if port != port_of(admin):
                problem(where, f"{kind} asks port {port}; admin_listen is {admin}")
            path = container[kind]["httpGet"].get("path")
            if path not in ("/healthz", "/readyz"):
                problem(where, f"{kind} asks {path}, not /healthz or /readyz")

        grace = pod.get("terminationGracePeriodSeconds", 30)
        shutdown = seconds(routes["shutdown_grace"])
        if grace <= shutdown:
            problem(where, f"terminationGracePeriodSeconds {grace} is not longer than shutdown_grace {routes['shutdown_grace']}")

        data_mount = mounts.get(routes["data_dir"])
        if data_mount is None:
            problem(where, f"nothing is mounted at data_dir {routes['data_dir']}")
        else:
            name_ = data_mount["name"]
            pvc = volumes.get(name_, {}).get("persistentVolumeClaim", {}).get("claimName")
            if name_ not in vct and pvc not in claims:
                problem(where, f"data_dir {routes['data_dir']} is not on a PersistentVolumeClaim of this example")
        if len(problems) == found_before:
            print(f"  {where}: probes on admin port {port_of(admin)}, webhook port {port_of(routes['listen'])}, "
                  f"grace {grace}s > shutdown_grace {routes['shutdown_grace']}, spool at {routes['data_dir']} on a PVC")

        for sname, svc in by_kind.get("Service", []):
            selector = svc["spec"].get("selector", {})
            if selector.items() - pod_labels.items():
                continue
            for p in svc["spec"]["ports"]:
                target = p.get("targetPort", p["port"])
                if ports.get(target, target) not in ports.values():
                    problem(f"{directory.name}/{sname}", f"targetPort {target} is not a port of {where}")
                elif ports.get(target, target) == ports.get("admin"):
                    problem(f"{directory.name}/{sname}", "exposes the admin port: only webhook belongs on it")
        if workload["kind"] == "StatefulSet":
            pdbs = [d for _, d in by_kind.get("PodDisruptionBudget", [])
                    if not d["spec"]["selector"]["matchLabels"].items() - pod_labels.items()]
            if not pdbs:
                problem(where, "no PodDisruptionBudget selects these pods")
            if not vct:
                problem(where, "no volumeClaimTemplates")
        if not any(not svc["spec"].get("selector", {}).items() - pod_labels.items()
                   for _, svc in by_kind.get("Service", [])):
            problem(where, "no Service selects these pods")


def main():
    binary = sys.argv[1]
    dirs = [Path(d) for d in sys.argv[2:]] or sorted(p for p in HERE.iterdir() if (p / "kustomization.yaml").exists())
    for directory in dirs:
        print(f"[k8s] {directory.name}")
        check_example(binary, directory)
    for p in problems:
        print(f"[k8s] PROBLEM {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"[k8s] relations OK in {', '.join(d.name for d in dirs)}")


if __name__ == "__main__":
    main()
