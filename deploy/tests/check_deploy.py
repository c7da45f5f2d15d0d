#!/usr/bin/env python3
"""Invariants of the deployment files: the Kubernetes base, docker-compose.yml and the Dockerfile.

Each check prints `ok` or `FAIL` with the reason; the last line counts them.
Usage: check_deploy.py PATH/TO/switchyard
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K8S = os.path.join(ROOT, "deploy/kubernetes")
# [server] drain_delay and drain_timeout defaults (docs/deploy.md, draining).
DRAIN_DELAY_S = 5
DRAIN_TIMEOUT_S = 300

results = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    if ok:
        results["passed"] += 1
        print(f"ok   {name}")
    else:
        results["failed"] += 1
        print(f"FAIL {name}{': ' + detail if detail else ''}")


def switchyard_check(binary, text, name):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gateway.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        env = {**os.environ, "SWITCHYARD_TOKEN_ONCALL": "x" * 32, "SWITCHYARD_TOKEN_DASHBOARD": "y" * 32}
        out = subprocess.run([binary, "check", "--config", path], capture_output=True, text=True, env=env, timeout=30)
        check(f"{name} passes switchyard check", out.returncode == 0, out.stderr.strip())


def load_k8s():
    kustomization = yaml.safe_load(open(os.path.join(K8S, "kustomization.yaml"), encoding="utf-8"))
    files = kustomization["resources"]
    on_disk = sorted(f for f in os.listdir(K8S) if f.endswith(".yaml") and f != "kustomization.yaml")
    check("kustomization lists every manifest", sorted(files) == on_disk, f"{sorted(files)} vs {on_disk}")
    docs = []
    for name in files:
        with open(os.path.join(K8S, name), encoding="utf-8") as f:
            docs.extend(d for d in yaml.safe_load_all(f) if d)
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def check_kubernetes(binary):
    objs = load_k8s()
    deploy = objs[("Deployment", "switchyard")]
    pod = deploy["spec"]["template"]["spec"]
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    check("deployment selector matches its pods",
          all(labels.get(k) == v for k, v in deploy["spec"]["selector"]["matchLabels"].items()))
    (container,) = [c for c in pod["containers"] if c["name"] == "switchyard"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    check("liveness probe is GET /health on the traffic port", live["path"] == "/health" and live["port"] == "http")
    check("readiness probe is GET /ready on the traffic port", ready["path"] == "/ready" and ready["port"] == "http")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    check(f"terminationGracePeriodSeconds ({grace}) is above drain_delay + drain_timeout "
          f"({DRAIN_DELAY_S} + {DRAIN_TIMEOUT_S})", grace > DRAIN_DELAY_S + DRAIN_TIMEOUT_S)
    pre = container.get("lifecycle", {}).get("preStop", {})
    slept = pre.get("sleep", {}).get("seconds")
    if slept is None:
        command = " ".join(pre.get("exec", {}).get("command", []))
        m = re.search(r"sleep (\d+)", command)
        slept = int(m.group(1)) if m else None
    check(f"preStop sleeps drain_delay ({DRAIN_DELAY_S} s)", slept == DRAIN_DELAY_S, f"preStop: {pre}")
    args = container["args"]
    config_path = args[args.index("--config") + 1]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_mounts = [m for m in container["volumeMounts"]
                     if "configMap" in volumes[m["name"]] and config_path.startswith(m["mountPath"].rstrip("/") + "/")]
    check("the config file is inside a mounted ConfigMap directory", len(config_mounts) == 1, config_path)
    if config_mounts:
        mount = config_mounts[0]
        check("the ConfigMap is mounted as a directory, not a subPath (subPath never updates)",
              "subPath" not in mount and "subPathExpr" not in mount)
        check("the ConfigMap mount is read-only", mount.get("readOnly") is True)
        cm_name = volumes[mount["name"]]["configMap"]["name"]
        cm = objs.get(("ConfigMap", cm_name))
        key = os.path.relpath(config_path, mount["mountPath"])
        check(f"ConfigMap {cm_name} has {key}", cm is not None and key in cm.get("data", {}))
        if cm and key in cm.get("data", {}):
            text = cm["data"][key]
            switchyard_check(binary, text, f"ConfigMap {cm_name} {key}")
            state = re.search(r'^state_dir = "([^"]+)"', text, re.M)
            check("state_dir is a writable mounted volume",
                  state is not None and any(m["mountPath"] == state.group(1) and not m.get("readOnly") for m in mounts.values()))
            check("traffic and admin listeners bind the pod's interfaces",
                  f'listen = "0.0.0.0:{ports["http"]}"' in text and f'listen = "0.0.0.0:{ports["admin"]}"' in text)
    for env in container.get("env", []):
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            secret = objs.get(("Secret", ref["name"]))
            check(f"secret key {ref['name']}/{ref['key']} exists",
                  secret is not None and ref["key"] in {**secret.get("stringData", {}), **secret.get("data", {})})
    sc = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    check("runs as non-root with a read-only root filesystem",
          sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0 and sc.get("readOnlyRootFilesystem") is True
          and sc.get("allowPrivilegeEscalation") is False)
    service = objs[("Service", "switchyard")]
    check("service selects the gateway pods",
          all(labels.get(k) == v for k, v in service["spec"]["selector"].items()))
    svc_ports = {p["name"]: p for p in service["spec"]["ports"]}
    check("service ports target named container ports",
          all(p["targetPort"] in ports for p in svc_ports.values()))
    pdb = objs[("PodDisruptionBudget", "switchyard")]
    check("PodDisruptionBudget selects the gateway pods and keeps one",
          all(labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items())
          and (pdb["spec"].get("minAvailable", 0) >= 1 or "maxUnavailable" in pdb["spec"]))
    check("PodDisruptionBudget leaves room for a voluntary eviction",
          pdb["spec"].get("minAvailable", 0) < deploy["spec"]["replicas"])
    sm = objs[("ServiceMonitor", "switchyard")]
    service_labels = service["metadata"]["labels"]
    check("ServiceMonitor selects the service",
          all(service_labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items()))
    check("ServiceMonitor scrapes /metrics on the admin port",
          all(e["port"] in svc_ports and svc_ports[e["port"]]["targetPort"] == "admin" and e.get("path", "/metrics") == "/metrics"
              for e in sm["spec"]["endpoints"]))
    check("a Redis Deployment and Service for fleet mode",
          ("Deployment", "switchyard-redis") in objs and ("Service", "switchyard-redis") in objs)


def check_compose(binary):
    path = os.path.join(ROOT, "docker-compose.yml")
    compose = shutil.which("docker-compose")
    if compose:
        out = subprocess.run([compose, "-f", path, "config", "-q"], capture_output=True, text=True, timeout=60, cwd=ROOT)
        check("docker-compose config accepts docker-compose.yml", out.returncode == 0, out.stderr.strip())
    else:
        print("note: docker-compose is not installed; docker-compose.yml is checked with a YAML parser only")
    doc = yaml.safe_load(open(path, encoding="utf-8"))
    services = doc["services"]
    for name in ("gateway-1", "gateway-2", "sim-blue", "sim-green", "redis", "prometheus", "grafana"):
        check(f"compose service {name} exists with a healthcheck", name in services and "healthcheck" in services[name])
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            if isinstance(cond, dict) and cond.get("condition") == "service_healthy":
                check(f"{name} waits for {dep}, which has a healthcheck", "healthcheck" in services.get(dep, {}))
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                check(f"{name} mounts {source} read-only and it exists",
                      volume.endswith(":ro") and os.path.exists(os.path.join(ROOT, source)))
    for name in ("gateway-1", "gateway-2"):
        healthcheck = " ".join(services[name]["healthcheck"]["test"])
        check(f"{name} is health-checked by switchyard healthcheck", "switchyard healthcheck" in healthcheck)
    prom = yaml.safe_load(open(os.path.join(ROOT, "deploy/prometheus/prometheus.yml"), encoding="utf-8"))
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    check("Prometheus scrapes both replicas' admin listeners", sorted(targets) == ["gateway-1:9090", "gateway-2:9090"])
    replica = open(os.path.join(ROOT, "deploy/compose/gateway.toml"), encoding="utf-8").read()
    switchyard_check(binary, replica, "deploy/compose/gateway.toml")
    for sim in ("sim-blue", "sim-green"):
        check(f"the replica config routes to {sim}", f'"http://{sim}:7001"' in replica)


def check_dockerfile(binary):
    text = open(os.path.join(ROOT, "Dockerfile"), encoding="utf-8").read()
    stages = re.findall(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    check("Dockerfile is multi-stage", len(stages) >= 2)
    check("dependencies are built in a layer of their own", "cargo chef cook" in text and text.index("cargo chef cook") < text.index("COPY . .\nARG GIT_COMMIT"))
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    check("the runtime user is not root", bool(users) and users[-1].split(":")[0] not in ("root", "0"))
    check("HEALTHCHECK runs switchyard healthcheck", re.search(r"^HEALTHCHECK .*\n?.*switchyard\", \"healthcheck\"", text, re.M) is not None)
    check("STOPSIGNAL is SIGTERM", re.search(r"^STOPSIGNAL SIGTERM$", text, re.M) is not None)
    check("no curl or wget in the image", "curl" not in text.split("AS runtime")[-1] and "wget" not in text)
    out = subprocess.run(["sh", os.path.join(ROOT, "deploy/docker/container-config.sh"), os.path.join(ROOT, "gateway.toml")],
                         capture_output=True, text=True, timeout=30)
    check("container-config.sh adapts gateway.toml", out.returncode == 0, out.stderr.strip())
    if out.returncode == 0:
        switchyard_check(binary, out.stdout, "the image's default config")
    ignore = open(os.path.join(ROOT, ".dockerignore"), encoding="utf-8").read().split()
    check(".dockerignore keeps target/ and .git/ out of the context", "target/" in ignore and ".git/" in ignore)


def main():
    binary = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "target/debug/switchyard")
    check_kubernetes(binary)
    check_compose(binary)
    check_dockerfile(binary)
    print(f"deploy: {results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
