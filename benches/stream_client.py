#!/usr/bin/env python3
"""Streaming clients for benches/run.sh (Python 3.11, stdlib only, raw HTTP/1.1 sockets).

  ttfb  --port P --label L [--requests 200] [--concurrency 1]
        Streaming chat completions over keep-alive connections; prints one JSON line with
        p50/p99 of the time to the first body byte (first chunk) and of the total time.
  hold  --port P --label L --streams N --pids PID[,PID..] [--sim-port S]
        Opens N streams in batches, reads headers + first SSE event of each, holds them while
        draining, and prints the summed VmRSS of PIDs idle (after a warm-up) and with all held.
"""

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
PATH = "/v1/chat/completions"


def request_bytes(port: int, body_file: str) -> bytes:
    body = json.loads(Path(body_file).read_text())
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    data = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Authorization: Bearer sk-bench\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return status, headers


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    rank = max(1, -(-len(s) * p // 100))  # ceil
    return s[int(rank) - 1]


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]):
    """Reads one response body; returns (body, time of the first body byte or None)."""
    first = None
    parts = []
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                break
            chunk = await reader.readexactly(size + 2)
            first = first or time.perf_counter()
            parts.append(chunk[:-2])
    elif "content-length" in headers:
        chunk = await reader.readexactly(int(headers["content-length"]))
        first = time.perf_counter()
        parts.append(chunk)
    else:  # until the connection closes
        while chunk := await reader.read(65536):
            first = first or time.perf_counter()
            parts.append(chunk)
    return b"".join(parts), first


async def ttfb(args) -> None:
    req = request_bytes(args.port, args.body)
    ttfbs, totals, errors = [], [], []
    todo = iter(range(args.requests))

    async def worker() -> None:
        conn = None
        for _ in todo:
            try:
                if conn is None:
                    conn = await asyncio.open_connection(HOST, args.port)
                reader, writer = conn
                t0 = time.perf_counter()
                writer.write(req)
                await writer.drain()
                status, headers = parse_head(await reader.readuntil(b"\r\n\r\n"))
                body, first = await asyncio.wait_for(read_body(reader, headers), 60)
                t1 = time.perf_counter()
                if status != 200 or b"[DONE]" not in body:
                    errors.append(f"status {status}, {len(body)} body bytes")
                    continue
                ttfbs.append((first - t0) * 1000)
                totals.append((t1 - t0) * 1000)
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    conn = None
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
                errors.append(repr(e))
                if conn:
                    conn[1].close()
                conn = None
        if conn:
            conn[1].close()

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    ok = len(ttfbs)
    print(json.dumps({
        "label": args.label, "concurrency": args.concurrency, "ok": ok,
        "errors": len(errors), "first_error": errors[0] if errors else None,
        "ttfb_p50_ms": pct(ttfbs, 50) if ok else None,
        "ttfb_p99_ms": pct(ttfbs, 99) if ok else None,
        "total_p50_ms": pct(totals, 50) if ok else None,
        "total_p99_ms": pct(totals, 99) if ok else None,
    }), flush=True)


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


async def sim_in_flight(port: int | None) -> int | None:
    if port is None:
        return None
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(f"GET /sim/stats HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return json.loads(data.split(b"\r\n\r\n", 1)[1])["in_flight"]


def cpu_ticks(pids: list[int]) -> int:
    """utime + stime of the PIDs, all threads, in clock ticks."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total


class Stream:
    pings = 0  # heartbeat comments read, all streams together

    def __init__(self) -> None:
        self.writer = None
        self.drain = None

    async def open(self, port: int, req: bytes) -> None:
        reader, self.writer = await asyncio.open_connection(HOST, port)
        self.writer.write(req)
        await self.writer.drain()
        status, _ = parse_head(await reader.readuntil(b"\r\n\r\n"))
        if status != 200:
            raise RuntimeError(f"status {status}")
        await reader.readuntil(b"\n\n")  # the first SSE event: the stream is established
        self.drain = asyncio.create_task(self._drain(reader))

    @staticmethod
    async def _drain(reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(65536):
                Stream.pings += data.count(b": ping")
        except OSError:
            pass

    def close(self) -> None:
        if self.drain:
            self.drain.cancel()
        if self.writer:
            self.writer.close()


async def open_many(n: int, batch: int, port: int, req: bytes) -> tuple[list[Stream], list[str]]:
    streams, errors = [], []
    for start in range(0, n, batch):
        group = [Stream() for _ in range(min(batch, n - start))]
        results = await asyncio.gather(
            *(asyncio.wait_for(s.open(port, req), 30) for s in group), return_exceptions=True)
        for s, r in zip(group, results):
            if isinstance(r, BaseException):
                errors.append(repr(r))
                s.close()
            else:
                streams.append(s)
    return streams, errors


async def hold(args) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pids = [int(p) for p in args.pids.split(",") if p]
    req = request_bytes(args.port, args.body)

    warm, _ = await open_many(args.warmup, args.batch, args.port, req)
    for s in warm:
        s.close()
    await asyncio.sleep(args.settle)
    idle = rss_kib(pids)

    t0 = time.perf_counter()
    streams, errors = await open_many(args.streams, args.batch, args.port, req)
    open_s = time.perf_counter() - t0
    await asyncio.sleep(args.settle)
    held = rss_kib(pids)
    upstream_open = await sim_in_flight(args.sim_port)
    lost = sum(1 for s in streams if s.drain.done())  # streams that ended while held

    for s in streams:
        s.close()
    await asyncio.sleep(args.settle)
    after = rss_kib(pids)
    left = await sim_in_flight(args.sim_port)
    deadline = time.monotonic() + 15
    while left and time.monotonic() < deadline:
        await asyncio.sleep(1)
        left = await sim_in_flight(args.sim_port)

    n = len(streams)
    print(json.dumps({
        "label": args.label, "requested": args.streams, "held": n, "errors": len(errors),
        "first_error": errors[0] if errors else None, "ended_while_held": lost,
        "open_seconds": round(open_s, 2), "sim_in_flight_held": upstream_open,
        "sim_in_flight_after_close": left, "rss_idle_kib": idle, "rss_held_kib": held,
        "rss_after_close_kib": after,
        "kib_per_stream": round((held - idle) / n, 2) if n else None,
    }), flush=True)


async def idle(args) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pids = [int(p) for p in args.pids.split(",") if p]
    req = request_bytes(args.port, args.body)

    warm, _ = await open_many(args.warmup, args.batch, args.port, req)
    for s in warm:
        s.close()
    await asyncio.sleep(args.settle)
    rss_idle = rss_kib(pids)

    t0 = time.perf_counter()
    streams, errors = await open_many(args.streams, args.batch, args.port, req)
    open_s = time.perf_counter() - t0
    await asyncio.sleep(args.settle)
    rss_held = rss_kib(pids)
    Stream.pings = 0
    ticks0, wall0 = cpu_ticks(pids), time.perf_counter()
    await asyncio.sleep(args.hold)
    ticks1, wall1 = cpu_ticks(pids), time.perf_counter()
    rss_end = rss_kib(pids)
    pings = Stream.pings
    upstream_open = await sim_in_flight(args.sim_port)
    ended = sum(1 for s in streams if s.drain.done())

    for s in streams:
        s.close()
    await asyncio.sleep(args.settle)
    rss_after = rss_kib(pids)

    n = len(streams)
    hz = os.sysconf("SC_CLK_TCK")
    cpu_s = (ticks1 - ticks0) / hz
    print(json.dumps({
        "label": args.label, "requested": args.streams, "held": n, "errors": len(errors),
        "first_error": errors[0] if errors else None, "ended_while_held": ended,
        "open_seconds": round(open_s, 2), "sim_in_flight_held": upstream_open,
        "hold_seconds": round(wall1 - wall0, 2), "cpu_seconds": round(cpu_s, 2),
        "cpu_pct_of_one_core": round(100 * cpu_s / (wall1 - wall0), 2),
        "heartbeats_received": pings,
        "heartbeats_per_stream": round(pings / n, 2) if n else None,
        "rss_idle_kib": rss_idle, "rss_held_kib": rss_held, "rss_end_of_hold_kib": rss_end,
        "rss_after_close_kib": rss_after,
        "kib_per_stream": round((rss_held - rss_idle) / n, 2) if n else None,
    }), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("ttfb", "hold", "idle"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--label", required=True)
        p.add_argument("--body", default=str(Path(__file__).with_name("chat.json")))
    p = sub.choices["ttfb"]
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=1)
    p = sub.choices["hold"]
    p.add_argument("--streams", type=int, default=8000)
    p.add_argument("--pids", required=True, help="comma-separated; their VmRSS is summed")
    p.add_argument("--sim-port", type=int)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--settle", type=float, default=3.0)
    p = sub.choices["idle"]
    p.add_argument("--streams", type=int, default=9000)
    p.add_argument("--pids", required=True, help="comma-separated; VmRSS and CPU summed")
    p.add_argument("--sim-port", type=int)
    p.add_argument("--hold", type=float, default=60.0, help="seconds of CPU measurement")
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--settle", type=float, default=3.0)
    args = ap.parse_args()
    run = {"ttfb": ttfb, "hold": hold, "idle": idle}[args.cmd]
    asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
