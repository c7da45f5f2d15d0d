#!/usr/bin/env python3
"""Instructions per proxied request, counted by callgrind: deterministic, so two builds can be
compared on this shared, noisy machine where wall-clock figures drift by several percent.

For each gateway binary and each kind of request (a JSON chat completion, a streamed one), the
gateway runs twice under `valgrind --tool=callgrind` in front of the simulator (`switchyard sim
--profile instant`, not instrumented), once serving SMALL requests and once LARGE; the
difference of the two totals divided by LARGE - SMALL is the cost of one request without start
and shutdown. Requests go one at a time on one keep-alive connection, with the access log on
(level info), as in the default deployment.

    python3 benches/instructions.py BASE_BINARY NEW_BINARY [--small 500] [--large 3000]
        [--base-extra FILE] [--new-extra FILE] [--base-http1 ENGINE] [--new-http1 ENGINE]
        [--redis]

`--base-extra` and `--new-extra` append a TOML fragment to that side's config (the same binary
may then be compared with itself under two configs, e.g. fleet mode against one gateway);
`@REDIS_URL@` and `@NAMESPACE@` in a fragment are replaced by the redis-server `--redis`
starts on a free port for the run (not instrumented) and by a namespace new for each gateway
run, so no run reads another's state. `--base-http1` / `--new-http1 builtin` set that side's
`server.http1` (default: the key is left out, so hyper serves, and older builds still start).

Prints a Markdown table with integer totals and the ratio NEW / BASE, then a second one with
the calls to malloc, calloc and realloc per request, read from the same callgrind runs (the
call counts callgrind records for each caller of those functions, summed, differential in the
same way).
"""

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CHAT = (BENCH / "chat.json").read_bytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def config(work: Path, port: int, admin: int, sim: int, extra: str, http1: str = "") -> Path:
    text = (BENCH / "gateway.toml.tmpl").read_text() + "\n" + extra
    if http1:
        text = text.replace("[server]\n", f'[server]\nhttp1 = "{http1}"\n', 1)
    for key, value in {
        "@PORT@": str(port),
        "@ADMIN_PORT@": str(admin),
        "@SIM_PORT@": str(sim),
        "@STATE_DIR@": str(work / "state"),
        "@LEVEL@": "info",
    }.items():
        text = text.replace(key, value)
    path = work / "gateway.toml"
    path.write_text(text)
    return path


def body(stream: bool) -> bytes:
    request = json.loads(CHAT)
    request["stream"] = stream
    if stream:
        request["stream_options"] = {"include_usage": True}
    return json.dumps(request).encode()


def drive(port: int, n: int, stream: bool) -> None:
    payload = body(stream)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for i in range(n):
        headers = {"content-type": "application/json", "x-user-id": f"user-{i % 1000}"}
        conn.request("POST", "/v1/chat/completions", body=payload, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"request {i}: status {response.status}")
    conn.close()


ALLOCATORS = {
    "malloc": "malloc",
    "__libc_malloc": "malloc",
    "calloc": "calloc",
    "__libc_calloc": "calloc",
    "realloc": "realloc",
    "__libc_realloc": "realloc",
    # The binary's own allocator (mimalloc): its entry points from Rust's GlobalAlloc.
    "mi_malloc_aligned": "malloc",
    "mi_zalloc_aligned": "calloc",
    "mi_realloc_aligned": "realloc",
}
NAME = re.compile(r"\((\d+)\)(?:\s+(.*))?")


def allocation_calls(path: Path) -> dict:
    """Calls to each allocator function in one callgrind output file.

    Function names are compressed: `fn=(id) name` or `cfn=(id) name` the first time, `(id)`
    after; a `calls=N ...` line counts N calls to the function of the `cfn=` line before it.
    """
    names = {}
    counts = {kind: 0 for kind in set(ALLOCATORS.values())}
    callee = None
    with path.open(errors="replace") as lines:
        for line in lines:
            if line.startswith("fn=") or line.startswith("cfn="):
                key, _, spec = line.rstrip("\n").partition("=")
                match = NAME.match(spec)
                if match:
                    ident, name = match.groups()
                    if name is not None:
                        names[ident] = name
                    name = names.get(ident, "")
                else:
                    name = spec
                if key == "cfn":
                    # Recursion levels are told apart as `name'2`: the same function.
                    callee = ALLOCATORS.get(name.split("'")[0])
            elif line.startswith("calls="):
                if callee is not None:
                    counts[callee] += int(line[len("calls="):].split()[0])
                callee = None
    return counts


def totals(out: Path) -> tuple:
    """Instructions (the `summary:` / `totals:` lines) and allocation calls, summed over the
    callgrind output files of a run (one per thread or a single file)."""
    total = 0
    allocs = {}
    for path in out.parent.glob(out.name + "*"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("totals:") or line.startswith("summary:"):
                total += int(line.split()[1])
                break
        for kind, calls in allocation_calls(path).items():
            allocs[kind] = allocs.get(kind, 0) + calls
    if total == 0:
        raise RuntimeError(f"no callgrind totals in {out}*")
    return total, allocs


def measure(
    binary: str, sim_port: int, n: int, stream: bool, work: Path, extra: str, http1: str = ""
) -> tuple:
    port, admin = free_port(), free_port()
    extra = extra.replace("@NAMESPACE@", f"bench-{port}")
    cfg = config(work, port, admin, sim_port, extra, http1)
    out = work / f"callgrind.{port}.out"
    proc = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            binary,
            "serve",
            "--config",
            str(cfg),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        drive(port, n, stream)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return totals(out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("new")
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=3000)
    parser.add_argument("--base-extra", type=Path)
    parser.add_argument("--new-extra", type=Path)
    parser.add_argument("--base-http1", default="")
    parser.add_argument("--new-http1", default="")
    parser.add_argument("--redis", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="switchyard-instr-"))
    redis = None
    redis_url = ""
    if args.redis:
        redis_port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no",
             "--dir", str(work)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(redis_port, redis)
        redis_url = f"redis://127.0.0.1:{redis_port}"
    extras = {
        name: path.read_text().replace("@REDIS_URL@", redis_url) if path else ""
        for name, path in (("base", args.base_extra), ("new", args.new_extra))
    }
    sim_port = free_port()
    sim = subprocess.Popen(
        [args.new, "sim", "--listen", f"127.0.0.1:{sim_port}", "--profile", "instant"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows = []
    alloc_rows = []
    try:
        wait_port(sim_port, sim)
        for kind, stream in (("json", False), ("stream", True)):
            per = {}
            per_alloc = {}
            span = args.large - args.small
            for name, binary in (("base", args.base), ("new", args.new)):
                extra = extras[name]
                http1 = args.base_http1 if name == "base" else args.new_http1
                small, small_allocs = measure(
                    binary, sim_port, args.small, stream, work, extra, http1
                )
                large, large_allocs = measure(
                    binary, sim_port, args.large, stream, work, extra, http1
                )
                per[name] = (large - small) // span
                per_alloc[name] = {
                    k: round((large_allocs.get(k, 0) - small_allocs.get(k, 0)) / span)
                    for k in ("malloc", "calloc", "realloc")
                }
                print(
                    f"{kind} {name}: {small} ({args.small} requests), {large} ({args.large}) "
                    f"-> {per[name]} per request; allocation calls {small_allocs} / "
                    f"{large_allocs} -> {per_alloc[name]} per request",
                    file=sys.stderr,
                )
            rows.append((kind, per["base"], per["new"]))
            alloc_rows.append((kind, per_alloc["base"], per_alloc["new"]))
    finally:
        sim.terminate()
        sim.wait()
        if redis is not None:
            redis.terminate()
            redis.wait()
    print("| request | base instructions | new instructions | new / base |")
    print("|---|---:|---:|---:|")
    for kind, base, new in rows:
        print(f"| {kind} | {base} | {new} | {new / base:.4f} |")
    print()
    print("| request | base malloc | base calloc | base realloc | base total "
          "| new malloc | new calloc | new realloc | new total |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind, base, new in alloc_rows:
        cells = []
        for side in (base, new):
            cells += [side["malloc"], side["calloc"], side["realloc"], sum(side.values())]
        print(f"| {kind} | " + " | ".join(str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
