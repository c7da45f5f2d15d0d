#!/usr/bin/env python3
"""Turns the raw outputs of benches/run.sh (in DIR) into Markdown tables on stdout."""

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TARGETS = ["direct", "switchyard", "switchyard+log", "nginx", "nginx+log"]


def kv(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split())


def jsonl(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.exists() else []


def f(x, digits=2) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def main() -> None:
    out = Path(sys.argv[1])
    meta = dict(l.split("=", 1) for l in (out / "meta.txt").read_text().splitlines() if "=" in l)
    runs = defaultdict(list)  # (conns, target) -> [row]
    for line in (out / "wrk.txt").read_text().splitlines():
        row = kv(line)
        runs[(int(row["conns"]), row["target"])].append(row)

    print("## Results\n")
    print(f"- started {meta.get('started')}, commit {meta.get('commit')}; {meta.get('cpus')} CPUs "
          f"({meta.get('cpu')}), kernel {meta.get('kernel')}")
    print(f"- nginx {meta.get('nginx')}, wrk {meta.get('wrk')}, Python {meta.get('python')}; "
          f"{meta.get('params')}")
    print("- wrk, proxy and sim share all cores; nothing pinned. Figures are medians over the "
          "repeats; the req/s of each repeat is listed to show the noise.")
    loads = [(k[5:], v) for k, v in meta.items() if k.startswith("load_")]
    print("- other CPU %: share of both CPUs used by processes other than the "
          "load generator, proxies and sim during that run, e.g. a compiler; 0-2 is idle noise.")
    print("- load average (1/5/15 min): " + "; ".join(f"{k} {v}" for k, v in loads))

    print("\n### Non-streaming chat completions (~1.9 KB body, keep-alive, `wrk -t1`)\n")
    print("| conns | target | req/s | p50 ms | p99 ms | non-2xx | socket errors "
          "| req/s per repeat (other CPU %) |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    med = {}
    for conns in sorted({c for c, _ in runs}):
        for target in TARGETS:
            rows = runs.get((conns, target))
            if not rows:
                continue
            rps = statistics.median(float(r["rps"]) for r in rows)
            p50 = statistics.median(int(r["p50_us"]) for r in rows) / 1000
            p99 = statistics.median(int(r["p99_us"]) for r in rows) / 1000
            non2xx = sum(int(r["non2xx"]) for r in rows)
            sock = sum(int(r[k]) for r in rows for k in ("connect", "read", "write", "timeout"))
            med[(conns, target)] = (rps, p50, p99)
            each = ", ".join(f"{float(r['rps']):,.0f} ({r.get('other_cpu', '?')})" for r in rows)
            print(f"| {conns} | {target} | {rps:,.0f} | {f(p50, 3)} | {f(p99, 3)} | {non2xx} "
                  f"| {sock} | {each} |")

    print("\n### Derived (from the medians)\n")
    print("| conns | switchyard / nginx req/s | switchyard+log / nginx+log req/s "
          "| p99 added: switchyard | switchyard+log | nginx | nginx+log |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for conns in sorted({c for c, _ in runs}):
        m = lambda t: med.get((conns, t))
        ratio = lambda a, b: f"{m(a)[0] / m(b)[0]:.2f}" if m(a) and m(b) else "—"
        added = lambda t: f"{m(t)[2] - m('direct')[2]:+.3f} ms" if m(t) and m("direct") else "—"
        print(f"| {conns} | {ratio('switchyard', 'nginx')} | {ratio('switchyard+log', 'nginx+log')} "
              f"| {added('switchyard')} | {added('switchyard+log')} | {added('nginx')} "
              f"| {added('nginx+log')} |")

    streams = jsonl(out / "stream.jsonl")
    if streams:
        print("\n### Streaming: time to first body byte (sim: role event at once, then 20 "
              "content chunks 10 ms apart; keep-alive connections)\n")
        print("| concurrency | target | TTFB p50 ms | TTFB p99 ms | added p50 | added p99 "
              "| total p50 ms | total p99 ms | ok | errors | other CPU % |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        direct = {s["concurrency"]: s for s in streams if s["label"] == "direct"}
        for s in sorted(streams, key=lambda s: s["concurrency"]):
            d = direct.get(s["concurrency"])
            add = lambda k: (f"{s[k] - d[k]:+.3f}" if d and d[k] is not None and s[k] is not None
                             and s["label"] != "direct" else "—")
            print(f"| {s['concurrency']} | {s['label']} | {f(s['ttfb_p50_ms'], 3)} "
                  f"| {f(s['ttfb_p99_ms'], 3)} | {add('ttfb_p50_ms')} | {add('ttfb_p99_ms')} "
                  f"| {f(s['total_p50_ms'], 1)} | {f(s['total_p99_ms'], 1)} | {s['ok']} "
                  f"| {s['errors']} | {s.get('other_cpu', '?')} |")
        errs = [f"{s['label']}: {s['first_error']}" for s in streams if s["first_error"]]
        if errs:
            print("\nFirst errors: " + "; ".join(errs))

    held = jsonl(out / "held.jsonl")
    if held:
        print("\n### Held SSE streams: resident memory of the proxy\n")
        print("| proxy | streams held / asked | open errors | ended early | RSS idle MiB "
              "| RSS held MiB | RSS after close MiB | KiB per stream | sim in flight held / after close |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for h in held:
            print(f"| {h['label']} | {h['held']} / {h['requested']} | {h['errors']} "
                  f"| {h['ended_while_held']} | {h['rss_idle_kib'] / 1024:.1f} "
                  f"| {h['rss_held_kib'] / 1024:.1f} | {h['rss_after_close_kib'] / 1024:.1f} "
                  f"| {f(h['kib_per_stream'], 1)} | {h['sim_in_flight_held']} / "
                  f"{h['sim_in_flight_after_close']} |")
        per = {h["label"]: h["kib_per_stream"] for h in held}
        if per.get("switchyard") and per.get("nginx"):
            print(f"\nswitchyard / nginx memory per held stream: "
                  f"{per['switchyard'] / per['nginx']:.2f}")
        errs = [f"{h['label']}: {h['first_error']}" for h in held if h["first_error"]]
        if errs:
            print("\nFirst errors: " + "; ".join(errs))

    metrics = out / "raw" / "switchyard-metrics.txt"
    if metrics.exists():
        totals = defaultdict(float)
        for line in metrics.read_text().splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in ("switchyard_requests_total", "switchyard_tokens_total",
                        "switchyard_cost_usd_total", "switchyard_context_fill_ratio_count"):
                totals[name] += float(line.rsplit(" ", 1)[1])
        print("\nMetering check (/metrics of the warn-level switchyard after the throughput runs): "
              + ", ".join(f"{k.removeprefix('switchyard_')} {v:,.0f}" for k, v in totals.items()))

    lines = []
    for log in sorted((out / "raw").glob("switchyard*.log")):
        lines += [f"{log.name}: {ANSI.sub('', l)}"
                  for l in log.read_text().splitlines() if l.strip()]
    print(f"\nswitchyard log lines at warn level and stderr ({len(lines)})"
          + (":\n\n```\n" + "\n".join(lines[:10]) + "\n```" if lines else ""))
    errors = [l for log in sorted((out / "raw").glob("nginx*-error.log"))
              for l in log.read_text().splitlines() if "[notice]" not in l and l.strip()]
    print(f"\nnginx error-log lines above notice: {len(errors)}")


if __name__ == "__main__":
    main()
