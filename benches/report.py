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
    if (out / "bookkeeping.txt").exists():
        bookkeeping(out, meta)
        return
    runs = defaultdict(list)  # (conns, target) -> [row]
    for line in (out / "wrk.txt").read_text().splitlines():
        row = kv(line)
        runs[(int(row["conns"]), row["target"])].append(row)

    header(meta)

    print("\n### Non-streaming chat completions (~1.9 KB body, keep-alive, `wrk -t1`)\n")
    med = wrk_table(runs, TARGETS)

    print("\n### Derived (from the medians)\n")
    print("| conns | switchyard / nginx req/s | switchyard+log / nginx+log req/s "
          "| p50 added: switchyard | nginx | p99 added: switchyard | switchyard+log | nginx "
          "| nginx+log |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for conns in sorted({c for c, _ in runs}):
        m = lambda t: med.get((conns, t))
        ratio = lambda a, b: f"{m(a)[0] / m(b)[0]:.2f}" if m(a) and m(b) else "—"
        added = lambda t, i=2: (f"{m(t)[i] - m('direct')[i]:+.3f} ms" if m(t) and m("direct")
                                else "—")
        print(f"| {conns} | {ratio('switchyard', 'nginx')} | {ratio('switchyard+log', 'nginx+log')} "
              f"| {added('switchyard', 1)} | {added('nginx', 1)} "
              f"| {added('switchyard')} | {added('switchyard+log')} | {added('nginx')} "
              f"| {added('nginx+log')} |")

    streamed_throughput(out)

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

    switchyard_logs(out)
    errors = [l for log in sorted((out / "raw").glob("nginx*-error.log"))
              for l in log.read_text().splitlines() if "[notice]" not in l and l.strip()]
    print(f"\nnginx error-log lines above notice: {len(errors)}")


def wrk_table(runs: dict, targets) -> dict:
    """Prints one row per (conns, target) of wrk runs, medians over the repeats; returns the
    medians as (req/s, p50 ms, p99 ms)."""
    print("| conns | target | req/s | p50 ms | p99 ms | non-2xx | socket errors "
          "| req/s per repeat (other CPU %) |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    med = {}
    for conns in sorted({c for c, _ in runs}):
        for target in targets:
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
    return med


def streamed_throughput(out: Path) -> None:
    """The streamed requests' throughput and latency (wrk-stream.txt), if the run had them."""
    path = out / "wrk-stream.txt"
    if not path.exists():
        return
    runs = defaultdict(list)
    for line in path.read_text().splitlines():
        row = kv(line)
        runs[(int(row["conns"]), row["target"])].append(row)
    print("\n### Streamed chat completions (the sim's instant stream: 12 SSE events, ~2.9 KB; "
          "nginx unbuffered)\n")
    med = wrk_table(runs, ("direct", "switchyard", "nginx"))
    print("\n| conns | switchyard / nginx req/s | p50 added: switchyard | nginx "
          "| p99 added: switchyard | nginx |")
    print("|---:|---:|---:|---:|---:|---:|")
    for conns in sorted({c for c, _ in runs}):
        m = lambda t: med.get((conns, t))
        ratio = f"{m('switchyard')[0] / m('nginx')[0]:.2f}" if m("switchyard") and m("nginx") else "—"
        added = lambda t, i: (f"{m(t)[i] - m('direct')[i]:+.3f} ms" if m(t) and m("direct")
                              else "—")
        print(f"| {conns} | {ratio} | {added('switchyard', 1)} | {added('nginx', 1)} "
              f"| {added('switchyard', 2)} | {added('nginx', 2)} |")


def header(meta: dict[str, str]) -> None:
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


def switchyard_logs(out: Path) -> None:
    lines = []
    for log in sorted((out / "raw").glob("switchyard*.log")):
        lines += [f"{log.name}: {ANSI.sub('', l)}"
                  for l in log.read_text().splitlines() if l.strip()]
    print(f"\nswitchyard log lines at warn level and stderr ({len(lines)})"
          + (":\n\n```\n" + "\n".join(lines[:10]) + "\n```" if lines else ""))


def requests_by(metrics: Path, label: str) -> dict[str, float]:
    """switchyard_requests_total summed by one label, from a /metrics exposition."""
    by = defaultdict(float)
    if not metrics.exists():
        return by
    for line in metrics.read_text().splitlines():
        if line.startswith("switchyard_requests_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
            by[labels.get(label, "?")] += float(line.rsplit(" ", 1)[1])
    return by


def bookkeeping(out: Path, meta: dict[str, str]) -> None:
    """`run.sh --bookkeeping`: the same gateway without and with safe-change bookkeeping."""
    hz = int(meta.get("clk_tck", "100"))
    runs = defaultdict(list)  # (conns, target) -> [row], in round order
    for line in (out / "bookkeeping.txt").read_text().splitlines():
        row = kv(line)
        row["cpu_us"] = int(row["cpu_ticks"]) / hz * 1e6 / max(int(row["requests"]), 1)
        runs[(int(row["conns"]), row["target"])].append(row)

    header(meta)
    print("- CPU µs per request: user + system CPU time of that gateway process (all threads, "
          f"clock ticks of 1/{hz} s) during the run, over the requests wrk completed. It is the "
          "cost per request of the gateway itself; req/s is what the whole shared box reached.")
    print("- plain: benches/gateway.toml.tmpl. bookkeeping: the same plus "
          "benches/bookkeeping.toml.tmpl (rollout held at 50 %, one header-only experiment at "
          "50 %, one rule). plain-again: a second plain gateway, the A/A pair that shows the "
          "noise floor. Requests: post-users.lua, one x-user-id per request.")

    for conns in sorted({c for c, _ in runs}):
        print(f"\n### Safe-change bookkeeping, {conns} connections (`wrk -t1 -c{conns} --latency`)\n")
        print("| target | req/s | p50 ms | p99 ms | CPU µs per request | non-2xx | socket errors "
              "| req/s per repeat (other CPU %) |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for target in ("plain", "bookkeeping", "plain-again"):
            rows = runs.get((conns, target))
            if not rows:
                continue
            med = lambda k: statistics.median(float(r[k]) for r in rows)
            sock = sum(int(r[k]) for r in rows for k in ("connect", "read", "write", "timeout"))
            each = ", ".join(f"{float(r['rps']):,.0f} ({r['other_cpu']})" for r in rows)
            print(f"| {target} | {med('rps'):,.0f} | {med('p50_us') / 1000:.3f} "
                  f"| {med('p99_us') / 1000:.3f} | {med('cpu_us'):.1f} "
                  f"| {sum(int(r['non2xx']) for r in rows)} | {sock} | {each} |")

        plain = runs.get((conns, "plain"), [])
        pairs = []  # per round: bookkeeping and plain-again against that round's plain
        for p in plain:
            same = lambda t: next((r for r in runs.get((conns, t), [])
                                   if r["round"] == p["round"]), None)
            pairs.append((p, same("bookkeeping"), same("plain-again")))
        print("\nPer repeat, against the plain gateways of the same round (order: position of "
              "plain / bookkeeping / plain-again in the round). A cost ratio above 1: bookkeeping "
              "is dearer. \"Both plains\": against the mean of plain and plain-again, which halves "
              "the weight of either one's luck.\n")
        print("| round | order | req/s plain | req/s bookkeeping | req/s plain-again "
              "| CPU µs/req plain | CPU µs/req bookkeeping | CPU µs/req plain-again "
              "| cost by CPU: bk / plain | bk / both plains | A/A | "
              "cost by req/s: plain / bk | both plains / bk | A/A |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        ratios = defaultdict(list)
        for p, b, a in pairs:
            # Cost is CPU per request, or the inverse of req/s: a ratio above 1 is dearer.
            cost = {"cpu": lambda r: r["cpu_us"], "rps": lambda r: 1 / float(r["rps"])}
            cells = []
            for kind, c in cost.items():
                both = (c(p) + c(a)) / 2 if a else None
                row = [c(b) / c(p) if b else None, c(b) / both if b and a else None,
                       c(a) / c(p) if a else None]
                for key, v in zip(("plain", "both", "aa"), row):
                    if v is not None:
                        ratios[f"{kind}_{key}"].append(v)
                cells += [f(v, 3) for v in row]
            order = " / ".join(r["order"] if r else "—" for r in (p, b, a))
            rps = [f(float(r["rps"]), 0) if r else "—" for r in (p, b, a)]
            cpu = [f(r["cpu_us"], 1) if r else "—" for r in (p, b, a)]
            print(f"| {p['round']} | {order} | " + " | ".join(rps + cpu + cells) + " |")
        med = lambda k: statistics.median(ratios[k]) if ratios[k] else None
        span = lambda k: (f" (per repeat {min(ratios[k]):.3f}–{max(ratios[k]):.3f})"
                          if ratios[k] else "")
        meds = [f"**{f(med(f'{kind}_{key}'), 3)}**" for kind in ("cpu", "rps")
                for key in ("plain", "both", "aa")]
        print("| **median** | | | | | | | | " + " | ".join(meds) + " |")
        for kind, what in (("cpu", "CPU time per request"), ("rps", "throughput (1 / req/s)")):
            if med(f"{kind}_plain") is not None:
                pct = lambda k: f"{100 * (med(k) - 1):+.1f} %" if med(k) is not None else "—"
                print(f"\nBookkeeping overhead by {what}: {pct(kind + '_plain')} against plain"
                      f"{span(kind + '_plain')}, {pct(kind + '_both')} against both plains"
                      f"{span(kind + '_both')}; the A/A pair (plain-again against plain): "
                      f"{pct(kind + '_aa')}{span(kind + '_aa')}. Target: at most +5 %.")

    bk = out / "raw" / "bookkeeping-metrics.txt"
    if bk.exists():
        print("\nSplit check (/metrics of the bookkeeping gateway after the run; the warm-ups "
              "and the first check request included):")
        for label in ("upstream", "variant"):
            by = requests_by(bk, label)
            total = sum(by.values()) or 1
            print(f"- requests by {label}: " + ", ".join(
                f"{k} {v:,.0f} ({100 * v / total:.1f} %)" for k, v in sorted(by.items())))
        stage = [l for l in bk.read_text().splitlines()
                 if l.startswith(("switchyard_rollout_stage", "switchyard_route_weight"))]
        print("- rollout at the end: " + ("; ".join(f"`{l}`" for l in stage) or "no gauge"))
    switchyard_logs(out)


if __name__ == "__main__":
    main()
