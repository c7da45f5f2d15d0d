#!/usr/bin/env python3
"""Load for benches/soak.sh (Python 3.11, stdlib only, raw HTTP/1.1 keep-alive sockets).

  soak_client.py --ports P[,P..] --seconds S [--json-workers 6] [--stream-workers 3]
                 [--rate 120] [--out summary.json]

Workers send chat completions (JSON or streaming) round-robin over the gateways' ports, paced
to about --rate requests per second in all, until --seconds pass. Every request must come back
whole: 200 with a complete JSON completion, or a stream that ends with `data: [DONE]`; the kill
switch's fallback (header x-switchyard-fallback) counts as answered. Anything else (a refused
or reset connection, a timeout, another status, a stream cut short) is a lost request, kept
with its time, port and what happened. Prints one JSON summary line (also to --out).
"""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from stream_client import HOST, PATH, parse_head, read_body

TIMEOUT = 30.0


def request_bytes(port: int, body: dict, stream: bool) -> bytes:
    body = dict(body, stream=stream)
    if stream:
        body["stream_options"] = {"include_usage": True}
    data = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Content-Type: application/json\r\nAuthorization: Bearer sk-soak\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


class Tally:
    def __init__(self) -> None:
        self.sent = 0
        self.ok = 0
        self.fallback = 0
        self.streams = 0
        self.lost: list[dict] = []
        self.started = time.time()

    def lose(self, port: int, stream: bool, what: str) -> None:
        self.lost.append({
            "at_s": round(time.time() - self.started, 3), "unix": round(time.time(), 3),
            "port": port, "stream": stream, "what": what[:300],
        })


def complete(status: int, body: bytes, stream: bool) -> str | None:
    """None when the answer is whole; otherwise what is wrong with it."""
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    if stream:
        return None if body.rstrip().endswith(b"data: [DONE]") else f"stream cut: {body[-120:]!r}"
    try:
        ok = isinstance(json.loads(body).get("choices"), list)
    except ValueError:
        ok = False
    return None if ok else f"not a completion: {body[:200]!r}"


async def exchange(conn, req: bytes, stream: bool):
    reader, writer = conn
    writer.write(req)
    await writer.drain()
    status, headers = parse_head(await reader.readuntil(b"\r\n\r\n"))
    body, _ = await read_body(reader, headers)
    return status, headers, body


async def worker(i: int, ports: list[int], stream: bool, pause: float, until: float,
                 body: dict, tally: Tally) -> None:
    port = ports[i % len(ports)]
    req = request_bytes(port, body, stream)
    conn = None
    next_at = time.monotonic()
    while time.monotonic() < until:
        next_at += pause
        tally.sent += 1
        tally.streams += stream
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection(HOST, port), TIMEOUT)
            status, headers, data = await asyncio.wait_for(exchange(conn, req, stream), TIMEOUT)
            wrong = complete(status, data, stream)
            if wrong:
                tally.lose(port, stream, wrong)
            elif "x-switchyard-fallback" in headers:
                tally.fallback += 1
            else:
                tally.ok += 1
            if headers.get("connection", "").lower() == "close":
                conn[1].close()
                conn = None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                asyncio.TimeoutError, ValueError, IndexError) as e:
            tally.lose(port, stream, repr(e))
            if conn:
                conn[1].close()
            conn = None
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            next_at = time.monotonic()  # behind: do not burst to catch up
    if conn:
        conn[1].close()


async def run(args) -> dict:
    ports = [int(p) for p in args.ports.split(",") if p]
    body = json.loads(Path(args.body).read_text())
    workers = args.json_workers + args.stream_workers
    pause = workers / args.rate
    until = time.monotonic() + args.seconds
    tally = Tally()
    jobs = [worker(i, ports, i >= args.json_workers, pause, until, body, tally)
            for i in range(workers)]
    await asyncio.gather(*jobs)
    kinds: dict[str, int] = {}
    for lost in tally.lost:
        kind = lost["what"].split(":")[0].split("(")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return {
        "seconds": args.seconds, "ports": ports, "sent": tally.sent, "ok": tally.ok,
        "fallback": tally.fallback, "streams": tally.streams, "lost": len(tally.lost),
        "lost_by_kind": kinds, "lost_first": tally.lost[:20],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ports", required=True, help="comma-separated gateway ports")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--json-workers", type=int, default=6)
    ap.add_argument("--stream-workers", type=int, default=3)
    ap.add_argument("--rate", type=float, default=120.0, help="requests per second, all workers")
    ap.add_argument("--body", default=str(Path(__file__).with_name("chat.json")))
    ap.add_argument("--out")
    args = ap.parse_args()
    summary = asyncio.run(run(args))
    line = json.dumps(summary)
    if args.out:
        Path(args.out).write_text(line + "\n")
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
