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

Prints a Markdown table with integer totals and the ratio NEW / BASE.
"""

import argparse
import http.client
import json
import os
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


def config(work: Path, port: int, admin: int, sim: int) -> Path:
    text = (BENCH / "gateway.toml.tmpl").read_text()
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


def total_instructions(out: Path) -> int:
    """Sums `summary:` / `totals:` lines of callgrind output files (one per thread or a single
    file)."""
    total = 0
    for path in out.parent.glob(out.name + "*"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("totals:") or line.startswith("summary:"):
                total += int(line.split()[1])
                break
    if total == 0:
        raise RuntimeError(f"no callgrind totals in {out}*")
    return total


def measure(binary: str, sim_port: int, n: int, stream: bool, work: Path) -> int:
    port, admin = free_port(), free_port()
    cfg = config(work, port, admin, sim_port)
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
    return total_instructions(out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("new")
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=3000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="switchyard-instr-"))
    sim_port = free_port()
    sim = subprocess.Popen(
        [args.new, "sim", "--listen", f"127.0.0.1:{sim_port}", "--profile", "instant"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows = []
    try:
        wait_port(sim_port, sim)
        for kind, stream in (("json", False), ("stream", True)):
            per = {}
            for name, binary in (("base", args.base), ("new", args.new)):
                small = measure(binary, sim_port, args.small, stream, work)
                large = measure(binary, sim_port, args.large, stream, work)
                per[name] = (large - small) // (args.large - args.small)
                print(
                    f"{kind} {name}: {small} ({args.small} requests), {large} ({args.large}) "
                    f"-> {per[name]} per request",
                    file=sys.stderr,
                )
            rows.append((kind, per["base"], per["new"]))
    finally:
        sim.terminate()
        sim.wait()
    print("| request | base instructions | new instructions | new / base |")
    print("|---|---:|---:|---:|")
    for kind, base, new in rows:
        print(f"| {kind} | {base} | {new} | {new / base:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
