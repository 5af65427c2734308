#!/usr/bin/env python3
"""Turn a ../shared/bench/run --json file into the tables and chart of docs/performance.md.

    python scripts/bench_report.py bench.json --svg docs/performance.svg > table.md

With --repeat N in the run, every figure is the median of the N measurements.
Standard library only, so it runs anywhere the benchmark does.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict

SERVERS = ["h2serve", "gunicorn", "hypercorn", "granian"]
COLOURS = {"h2serve": "#1f77b4", "gunicorn": "#2ca02c", "hypercorn": "#ff7f0e", "granian": "#7f7f7f"}


def medians(results: list[dict]) -> tuple[dict, dict, list[str]]:
    """{(server, workload): median req/s}, the same for peak RSS, and the workloads in order."""
    rates, rss, order = defaultdict(list), defaultdict(list), []
    for row in results:
        key = (row["server"], row["workload"])
        if row["workload"] not in order:
            order.append(row["workload"])
        if row.get("req_per_s") is not None:
            rates[key].append(row["req_per_s"])
        if row.get("rss_peak_mib") is not None:
            rss[key].append(row["rss_peak_mib"])
    return ({k: statistics.median(v) for k, v in rates.items()},
            {k: statistics.median(v) for k, v in rss.items()}, order)


def markdown(data: dict) -> str:
    rate, rss, workloads = medians(data["results"])
    servers = [s for s in SERVERS if any((s, w) in rate for w in workloads)]
    peers = [s for s in servers if s != "h2serve"]
    lines = ["| workload | " + " | ".join(f"{s} req/s" for s in servers)
             + " | " + " | ".join(f"h2serve / {p}" for p in peers) + " |",
             "|---|" + "---:|" * (len(servers) + len(peers))]
    for workload in workloads:
        cells = [f"{rate[(s, workload)]:,.0f}" if (s, workload) in rate else "-" for s in servers]
        ratios = []
        for peer in peers:
            ours, theirs = rate.get(("h2serve", workload)), rate.get((peer, workload))
            ratios.append(f"{ours / theirs:.2f}x" if ours and theirs else "-")
        lines.append(f"| {workload} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    lines += ["", "| workload | " + " | ".join(f"{s} peak RSS MiB" for s in servers) + " |",
              "|---|" + "---:|" * len(servers)]
    for workload in workloads:
        cells = [f"{rss[(s, workload)]:.0f}" if (s, workload) in rss else "-" for s in servers]
        lines.append(f"| {workload} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _median_of(rows: list[dict], pick) -> float | None:
    values = [v for v in (pick(row) for row in rows) if v is not None]
    return statistics.median(values) if values else None


def _server_table(data: dict, workload: str, header: list[str], row) -> str:
    """One row per server that ran `workload`: row(server, its results) gives
    the cells after the server's name, or None to leave the server out."""
    rows = [r for r in data["results"] if r["workload"] == workload]
    if not rows:
        return ""
    lines = ["| " + " | ".join(["server", *header]) + " |",
             "|---|" + "---:|" * len(header)]
    for server in SERVERS:
        cells = row(server, [r for r in rows if r["server"] == server])
        if cells is not None:
            lines.append(f"| {server} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def burst_table(data: dict) -> str:
    """h2-burst: the small requests during the bulk burst against the same
    client alone (the row's baseline), and the bulk rate reached; medians."""
    def row(server: str, results: list[dict]) -> list[str] | None:
        mine = [r for r in results if r.get("baseline")]
        if not mine:
            return None
        during = _median_of(mine, lambda r: r.get("req_per_s"))
        alone = _median_of(mine, lambda r: r["baseline"].get("req_per_s"))
        p99 = _median_of(mine, lambda r: (r.get("latency_pct_ms") or {}).get("p99"))
        p99_alone = _median_of(mine, lambda r: (r["baseline"].get("latency_pct_ms") or {}).get("p99"))
        bulk = _median_of(mine, lambda r: (r.get("bulk") or {}).get("mib_per_s"))
        target = _median_of(mine, lambda r: (r.get("bulk") or {}).get("target_mib_per_s"))
        kept = f"{during / alone:.2f}x" if during and alone else "-"
        ratio = f"{p99 / p99_alone:.1f}x" if p99 and p99_alone else "-"
        return [f"{during or 0:,.0f} / {alone or 0:,.0f}", kept,
                f"{p99 or 0:.2f} / {p99_alone or 0:.2f}", ratio,
                f"{bulk or 0:.0f} ({target or 0:.0f})"]

    return _server_table(data, "h2-burst", ["small req/s during / alone", "kept",
                                            "small p99 ms during / alone", "p99 ratio",
                                            "bulk MiB/s (target)"], row)


def thousand_table(data: dict) -> str:
    """h2-1k: req/s, against the server's own h2-hello, requests failed, peak RSS."""
    rate, rss, _ = medians(data["results"])

    def row(server: str, results: list[dict]) -> list[str] | None:
        if not results:
            return None
        ours, hello = rate.get((server, "h2-1k")), rate.get((server, "h2-hello"))
        lost = _median_of(results, lambda r: (r.get("requests") or {}).get("total", 0)
                          - (r.get("requests") or {}).get("succeeded", 0))
        share = f"{ours / hello:.2f}x" if ours and hello else "-"
        return [f"{ours or 0:,.0f}", share, f"{lost or 0:,.0f}",
                f"{rss.get((server, 'h2-1k'), 0):.0f}"]

    return _server_table(data, "h2-1k", ["h2-1k req/s", "of its own h2-hello",
                                         "requests not succeeded", "peak RSS MiB"], row)


def svg(data: dict) -> str:
    """Grouped horizontal bars, req/s relative to gunicorn on a log scale."""
    rate, _, workloads = medians(data["results"])
    servers = [s for s in SERVERS if any((s, w) in rate for w in workloads)]
    bar, gap, left, width = 12, 14, 130, 560
    group = bar * len(servers) + gap
    height = 60 + group * len(workloads) + 40
    low, high = -1.0, 1.5                       # 0.1x .. ~32x gunicorn
    scale = width / (high - low)

    def x(ratio: float) -> float:
        return left + (min(max(math.log10(ratio), low), high) - low) * scale

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 200}" height="{height}" '
           'font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="18" font-size="13" font-weight="bold">'
           'req/s relative to gunicorn 27 (log scale; median of the runs)</text>']
    for tick in (0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32):
        tx = x(tick)
        out.append(f'<line x1="{tx:.1f}" y1="30" x2="{tx:.1f}" y2="{height - 35}" stroke="#ddd"/>')
        out.append(f'<text x="{tx:.1f}" y="{height - 22}" text-anchor="middle">{tick:g}x</text>')
    for gi, workload in enumerate(workloads):
        top = 40 + gi * group
        out.append(f'<text x="{left - 8}" y="{top + group / 2:.1f}" text-anchor="end">{workload}</text>')
        base = rate.get(("gunicorn", workload))
        for si, server in enumerate(servers):
            value = rate.get((server, workload))
            if not value or not base:
                continue
            y = top + si * bar
            out.append(f'<rect x="{x(0.1):.1f}" y="{y}" width="{x(value / base) - x(0.1):.1f}" '
                       f'height="{bar - 2}" fill="{COLOURS[server]}"/>')
            out.append(f'<text x="{x(value / base) + 4:.1f}" y="{y + bar - 3}">{value:,.0f}</text>')
    for si, server in enumerate(servers):
        ly = 40 + si * 16
        out.append(f'<rect x="{left + width + 80}" y="{ly}" width="10" height="10" fill="{COLOURS[server]}"/>')
        out.append(f'<text x="{left + width + 95}" y="{ly + 9}">{server}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json_file")
    parser.add_argument("--svg", help="write the chart here")
    args = parser.parse_args()
    with open(args.json_file) as f:
        data = json.load(f)
    print(markdown(data), end="")
    for table in (burst_table(data), thousand_table(data)):
        if table:
            print()
            print(table, end="")
    if args.svg:
        with open(args.svg, "w") as f:
            f.write(svg(data))


if __name__ == "__main__":
    main()
