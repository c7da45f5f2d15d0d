#!/usr/bin/env python3
"""The dashboard and the alert rules against a live stack.

Starts two blue/green simulated agents and two gateway replicas from the compose replica config
(deploy/compose/gateway.toml, with loopback addresses and ephemeral ports), sends traffic with a
rollout, an automatic rollback, a kill, a rate-limit burst, a long prompt and a rejected reload,
lets a real Prometheus scrape both admin listeners with deploy/prometheus/alerts.yml loaded,
then evaluates, through Prometheus' HTTP API:

- every query of every panel, annotation and template variable of deploy/grafana/switchyard.json
  (as a range query over the run, as Grafana does), which must return data;
- every alerting rule's expression with its comparisons made `bool`, which must return data
  (the families and labels it reads exist), and the alerts the run provokes, which must fire.

The two replicas share kill switches through a real redis-server (fleet mode, as the compose file
configures it), so the Fleet row's queries return data too. A query on fleet-only families
(switchyard_fleet_*) the gateways do not expose is reported as skipped.

Usage: live_stack.py PATH/TO/switchyard   (bounded: gives up after about two minutes)
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DASHBOARD = os.path.join(ROOT, "deploy/grafana/switchyard.json")
RULES = os.path.join(ROOT, "deploy/prometheus/alerts.yml")
REPLICA_CONFIG = os.path.join(ROOT, "deploy/compose/gateway.toml")
TOKEN = "live-stack-test-token-0123456789"
DEADLINE = time.monotonic() + 150
FLEET = re.compile(r"\bswitchyard_fleet_[a-z_]+")
# The alerts this run provokes; each must be pending or firing at some point.
PROVOKED = [
    "SwitchyardHighErrorRate",
    "SwitchyardContextFill",
    "SwitchyardRolledBack",
    "SwitchyardKillSwitchEngaged",
    "SwitchyardConfigRejected",
    "SwitchyardAlert",
]


def left():
    return max(1.0, DEADLINE - time.monotonic())


def http(method, url, body=None, headers=None, timeout=10):
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=min(timeout, left())) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for_line(path, message, proc):
    """The first JSON log line of `path` whose message is `message`."""
    while time.monotonic() < DEADLINE:
        if proc.poll() is not None:
            raise RuntimeError(f"{path}: process exited with {proc.returncode}")
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("message") == message:
                    return entry
        time.sleep(0.05)
    raise RuntimeError(f"{path}: no {message!r} line")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, binary, tmp):
        self.binary, self.tmp, self.procs = binary, tmp, []

    def spawn(self, name, args, env=None):
        log = os.path.join(self.tmp, f"{name}.log")
        out = open(log, "w", encoding="utf-8")
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})})
        self.procs.append(proc)
        return proc, log

    def sim(self, name):
        proc, log = self.spawn(name, [self.binary, "sim", "--listen", "127.0.0.1:0", "--log-format", "json"])
        return "http://" + wait_for_line(log, "simulated agent listening", proc)["addr"]

    def redis(self):
        port = free_port()
        self.spawn("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"])
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return f"redis://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not listen")

    def gateway(self, name, blue, green, redis):
        text = open(REPLICA_CONFIG, encoding="utf-8").read()
        state = os.path.join(self.tmp, name, "var")
        swaps = [
            ('listen = "0.0.0.0:8080"', 'listen = "127.0.0.1:0"'),
            ('listen = "0.0.0.0:9090"', 'listen = "127.0.0.1:0"'),
            ('state_dir = "/var/lib/switchyard"', f'state_dir = "{state}"'),
            ('"http://sim-blue:7001"', f'"{blue}"'),
            ('"http://sim-green:7001"', f'"{green}"'),
            ('redis_url = "redis://redis:6379"', f'redis_url = "{redis}"'),
            ('namespace = "switchyard"', f'namespace = "switchyard"\ninstance_id = "{name}"'),
        ]
        for old, new in swaps:
            if old not in text:
                raise RuntimeError(f"{REPLICA_CONFIG} no longer has {old}; update this test")
            text = text.replace(old, new)
        os.makedirs(os.path.dirname(state), exist_ok=True)
        path = os.path.join(self.tmp, name, "gateway.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        proc, log = self.spawn(name, [self.binary, "serve", "--config", path, "--log-format", "json"],
                               {"SWITCHYARD_TOKEN_ONCALL": TOKEN, "RUST_LOG": "info,switchyard::access=warn"})
        line = wait_for_line(log, "switchyard serving", proc)
        return {"traffic": "http://" + line["traffic"], "admin": "http://" + line["admin"],
                "admin_addr": line["admin"], "config": path, "text": text}

    def prometheus(self, targets):
        port = free_port()
        config = os.path.join(self.tmp, "prometheus.yml")
        with open(config, "w", encoding="utf-8") as f:
            yaml.safe_dump({
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [RULES],
                "scrape_configs": [{"job_name": "switchyard", "static_configs": [{"targets": targets}]}],
            }, f)
        proc, _ = self.spawn("prometheus", [
            "prometheus", f"--config.file={config}", f"--storage.tsdb.path={self.tmp}/tsdb",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
        ])
        url = f"http://127.0.0.1:{port}"
        while time.monotonic() < DEADLINE:
            if proc.poll() is not None:
                raise RuntimeError("prometheus exited; see its log")
            try:
                if http("GET", url + "/-/ready", timeout=1)[0] == 200:
                    return url
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("prometheus did not become ready")

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def chat(gw, user, stream=False, agent=None, content="Where is my order?"):
    body = {"model": "gpt-4o", "user": user, "messages": [{"role": "user", "content": content}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    headers = {"content-type": "application/json", "x-user-id": user}
    if agent:
        headers["x-agent"] = agent
    return http("POST", gw["traffic"] + "/v1/chat/completions", body, headers)[0]


def anthropic(gw, user):
    body = {"model": "claude-sonnet-4-6", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    return http("POST", gw["traffic"] + "/v1/messages", body,
                {"content-type": "application/json", "x-user-id": user})[0]


def traffic(gateways, stop, counts):
    """Steady traffic from 400 users over both replicas, both routes and both dialects."""
    i = 0
    while not stop.is_set() and time.monotonic() < DEADLINE:
        gw = gateways[i % 2]
        user = f"user-{(i * 7919) % 400}"
        kind = i % 5
        try:
            if kind == 0:
                status = chat(gw, user, stream=True)
            elif kind == 1:
                status = anthropic(gw, user)
            elif kind == 2:
                status = chat(gw, user, agent="research")
            else:
                status = chat(gw, user)
            counts[status] = counts.get(status, 0) + 1
        except OSError:
            counts["error"] = counts.get("error", 0) + 1
        i += 1


def admin(gw, method, path, body=None):
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    return http(method, gw["admin"] + path, body, headers)


def rolled_back(gw):
    status, body = admin(gw, "GET", "/admin/status")
    if status != 200:
        return False
    for route in json.loads(body).get("routes", []):
        if route.get("name") == "support":
            return "rolled" in json.dumps(route.get("rollout") or {})
    return False


def drive(gateways, sims):
    """The events the dashboard and the rules must show."""
    stop, counts = threading.Event(), {}
    workers = [threading.Thread(target=traffic, args=(gateways, stop, counts), daemon=True) for _ in range(6)]
    for w in workers:
        w.start()
    time.sleep(6)
    # Green breaks: the rollout's triggers send every user back to blue.
    http("PATCH", sims["green"] + "/sim/profile", {"error_rate": 1.0, "error_kind": "status500"},
         {"content-type": "application/json"})
    until = time.monotonic() + 20
    while time.monotonic() < until and not all(rolled_back(gw) for gw in gateways):
        time.sleep(0.5)
    for gw in gateways:
        if not rolled_back(gw):
            print(f"note: {gw['admin']} did not roll back by itself in 20 s; rolling back by hand")
            admin(gw, "POST", "/admin/routes/support/rollback", {"reason": "live stack test"})
    time.sleep(2)
    http("POST", sims["green"] + "/sim/profile/healthy")
    # One user over user_requests_per_second at once: 429s counted as shed.
    burst = [threading.Thread(target=chat, args=(gateways[0], "burst-user")) for _ in range(30)]
    for t in burst:
        t.start()
    for t in burst:
        t.join(timeout=15)
    # A prompt of ~105k tokens: above 0.8 of gpt-4o's 128k context window.
    long_prompt = "word " * 84000
    for gw in gateways:
        chat(gw, "long-context", content=long_prompt)
    # A kill and a revive on one replica.
    status, body = admin(gateways[0], "POST", "/admin/routes/research/kill", {"reason": "live stack test"})
    assert status == 200, (status, body)
    time.sleep(4)
    status, body = admin(gateways[0], "DELETE", "/admin/routes/research/kill")
    assert status == 200, (status, body)
    # An applied reload and a rejected one.
    gw = gateways[1]
    with open(gw["config"], "w", encoding="utf-8") as f:
        f.write(gw["text"].replace("[alerts]\n", "[alerts]\nmin_requests = 21\n", 1))
    admin(gw, "POST", "/admin/reload")
    with open(gw["config"], "w", encoding="utf-8") as f:
        f.write("[server\nthis is not toml")
    status, _ = admin(gw, "POST", "/admin/reload")
    assert status != 200, "a broken config was accepted"
    with open(gw["config"], "w", encoding="utf-8") as f:
        f.write(gw["text"])
    admin(gw, "POST", "/admin/reload")
    time.sleep(8)
    stop.set()
    for w in workers:
        w.join(timeout=15)
    print(f"traffic: {json.dumps(counts, sort_keys=True)}")


def substitute(expr):
    return (expr.replace("$__rate_interval", "15s").replace("$__range", "5m")
            .replace("$__interval", "2s").replace("$job", ".*").replace("$route", ".*"))


def range_query(prom, expr, start):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": time.time(), "step": "1"})
    status, body = http("GET", f"{prom}/api/v1/query_range?{params}")
    reply = json.loads(body)
    if status != 200 or reply.get("status") != "success":
        return None, reply.get("error", body[:200])
    return reply["data"]["result"], None


def exposed(prom, family):
    params = urllib.parse.urlencode({"match[]": f'{{__name__=~"{family}(_bucket|_count|_sum)?"}}'})
    status, body = http("GET", f"{prom}/api/v1/series?{params}")
    return status == 200 and bool(json.loads(body)["data"])


def dashboard_queries(dash):
    """(where, expr) for every query the dashboard runs."""
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for a in dash["annotations"]["list"]:
        if "expr" in a:
            yield f"annotation {a['name']!r}", a["expr"]


def check_structure(dash, failures):
    ids, cells = set(), []
    names = {v["name"] for v in dash["templating"]["list"]}
    for panel in dash["panels"]:
        if panel["id"] in ids:
            failures.append(f"panel id {panel['id']} repeated")
        ids.add(panel["id"])
        g = panel["gridPos"]
        if g["x"] < 0 or g["x"] + g["w"] > 24 or g["h"] < 1:
            failures.append(f"panel {panel['title']!r}: gridPos {g} outside the 24-column grid")
        for other in cells:
            if (g["x"] < other["x"] + other["w"] and other["x"] < g["x"] + g["w"]
                    and g["y"] < other["y"] + other["h"] and other["y"] < g["y"] + g["h"]):
                failures.append(f"panel {panel['title']!r} overlaps another at {g}")
        cells.append(g)
        if panel["type"] == "row":
            continue
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            failures.append(f"panel {panel['title']!r}: datasource is not ${{datasource}}")
        refs = [t["refId"] for t in panel.get("targets", [])]
        if not refs or len(refs) != len(set(refs)):
            failures.append(f"panel {panel['title']!r}: targets missing or refIds repeated")
        for target in panel.get("targets", []):
            for var in re.findall(r"\$(\w+)", target["expr"]):
                if not var.startswith("__") and var not in names:
                    failures.append(f"panel {panel['title']!r}: unknown variable ${var}")
    if not dash.get("uid") or dash.get("schemaVersion", 0) < 36:
        failures.append("dashboard uid or schemaVersion missing")


def documented_families(failures, exprs):
    docs = open(os.path.join(ROOT, "docs/metrics.md"), encoding="utf-8").read()
    for where, expr in exprs:
        for fam in re.findall(r"\bswitchyard_[a-z_]+", expr):
            base = re.sub(r"_(bucket|count|sum)$", "", fam)
            if not FLEET.match(base) and f"`{base}`" not in docs:
                failures.append(f"{where}: {base} is not in docs/metrics.md")


def make_bool(expr):
    """`a > 0.5` becomes `a > bool 0.5`: the series the rule reads, whatever their values."""
    return re.sub(r"(>=|<=|==|!=|>|<)(\s*)(?=[-0-9(])", r"\1 bool\2", expr)


def evaluate(prom, start, failures):
    dash = json.load(open(DASHBOARD, encoding="utf-8"))
    check_structure(dash, failures)
    queries = list(dashboard_queries(dash))
    documented_families(failures, queries)
    rules = yaml.safe_load(open(RULES, encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            queries.append((f"rule {rule['alert']}", make_bool(rule["expr"])))
    passed = skipped = 0
    for where, expr in queries:
        fleet = sorted(set(FLEET.findall(expr)))
        missing = [f for f in fleet if not exposed(prom, f)]
        if missing:
            print(f"SKIP {where}: fleet-only {', '.join(missing)} not exposed by these gateways")
            skipped += 1
            continue
        result, error = range_query(prom, substitute(expr), start)
        if error:
            failures.append(f"{where}: {error}\n    {expr}")
        elif not result:
            failures.append(f"{where}: no data\n    {expr}")
        else:
            passed += 1
            print(f"ok   {where}: {len(result)} series")
    for var in dash["templating"]["list"]:
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var.get("definition", ""))
        if var["type"] != "query":
            continue
        if not m:
            failures.append(f"variable {var['name']}: query is not label_values(metric, label)")
            continue
        params = urllib.parse.urlencode({"match[]": m.group(1), "start": start})
        status, body = http("GET", f"{prom}/api/v1/label/{m.group(2)}/values?{params}")
        values = json.loads(body).get("data") if status == 200 else None
        if values:
            passed += 1
            print(f"ok   variable ${var['name']}: {', '.join(values)}")
        else:
            failures.append(f"variable {var['name']}: no values")
    result, error = range_query(prom, 'ALERTS{alertname=~"Switchyard.*"}', start)
    seen = {s["metric"]["alertname"] for s in result or []}
    for name in PROVOKED:
        if name in seen:
            passed += 1
            print(f"ok   alert {name} fired")
        else:
            failures.append(f"alert {name} never fired (seen: {sorted(seen)})")
    return passed, skipped


def main():
    binary = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "target/debug/switchyard")
    if not shutil.which("prometheus"):
        print("prometheus is not installed (apt-get install prometheus)")
        return 1
    if not shutil.which("redis-server"):
        print("redis-server is not installed (apt-get install redis-server): the replicas share state through it")
        return 1
    tmp = tempfile.mkdtemp(prefix="switchyard-live-")
    stack = Stack(binary, tmp)
    failures = []
    try:
        sims = {"blue": stack.sim("sim-blue"), "green": stack.sim("sim-green")}
        redis = stack.redis()
        gateways = [stack.gateway(f"gateway-{n}", sims["blue"], sims["green"], redis) for n in (1, 2)]
        prom = stack.prometheus([g["admin_addr"] for g in gateways])
        start = time.time()
        drive(gateways, sims)
        time.sleep(3)  # the last scrape and rule evaluation
        passed, skipped = evaluate(prom, start, failures)
    except Exception as error:  # report, then fail: the logs below say why
        failures.append(f"stack: {error!r}")
        passed = skipped = 0
    finally:
        stack.stop()
    for failure in failures:
        print(f"FAIL {failure}")
    if failures:
        for name in sorted(os.listdir(tmp)):
            if name.endswith(".log"):
                print(f"--- {name} (last lines)")
                with open(os.path.join(tmp, name), encoding="utf-8", errors="replace") as f:
                    print("".join(f.readlines()[-15:]))
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"live stack: {passed} passed, {len(failures)} failed, {skipped} skipped")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
