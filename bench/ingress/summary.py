#!/usr/bin/env python3
"""bench/ingress: the per-round comparison table of svcnet and nginx.

Reads the measurement rows run.sh prints (`| round | proxy | run | value | p50 | p99 |
errors | machine |`, machine: the CPU the machine's background work used meanwhile) on stdin and writes, per round, svcnet's figure over nginx's for the maximum
rates and both CPU times per request, with the median of the ratios.

With `--slices`, the rows are the fixed-rate slices (`| slice | proxy | run | ... |`, and
`| all | proxy | run | pooled | ... |` for every request of a proxy's slices together):
per slice both p99s and their ratio, then per protocol the median ratio, how many slices
had svcnet's p99 lower, and the pooled p50/p99/p99.9 of each proxy.
"""

import re
import statistics
import sys


def first_number(text):
    m = re.search(r"[0-9]+(?:\.[0-9]+)?", text.replace(",", ""))
    return float(m.group(0)) if m else None


def ms(text):
    """A duration cell (`0.715ms`, `734.00us`, `1.2s`) in milliseconds."""
    m = re.match(r"\s*([0-9.]+)\s*(us|ms|s)\b", text)
    if not m:
        return None
    v = float(m.group(1))
    return {"us": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]


def read_rows(lines):
    rows = {}
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 7 or not (cells[0].isdigit() or cells[0] == "all"):
            continue
        rnd, proxy, run, value, p50, p99 = cells[:6]
        machine = cells[7] if len(cells) > 7 else ""
        rows[(rnd, proxy, run)] = (value, p99, p50, machine)
    return rows


def slices(rows):
    runs = sorted({run for (_, _, run) in rows})
    print("| protocol | slice | svcnet p99 | nginx p99 | svcnet / nginx | machine's background CPU, svcnet / nginx run |")
    print("|---|---|---|---|---|---|")
    summary = []
    for run in runs:
        nums = sorted({int(r) for (r, _, rr) in rows if rr == run and r.isdigit()})
        ratios, lower = [], 0
        for n in nums:
            s, g = rows.get((str(n), "svcnet", run)), rows.get((str(n), "nginx", run))
            sv, gv = (ms(s[1]) if s else None), (ms(g[1]) if g else None)
            if sv is None or gv is None or gv == 0:
                print(f"| {run} | {n} | - | - | - | |")
                continue
            ratios.append(sv / gv)
            lower += sv < gv
            busy = f"{s[3] or '?'} / {g[3] or '?'}"
            print(f"| {run} | {n} | {sv:.3f} ms | {gv:.3f} ms | {sv / gv:.2f}x | {busy} |")
        pooled = {p: rows.get(("all", p, run)) for p in ("svcnet", "nginx")}
        summary.append((run, ratios, lower, len(nums), pooled))
    print()
    print("| protocol | median svcnet / nginx p99 | svcnet lower in | pooled p50 svcnet / nginx | pooled p99 svcnet / nginx |")
    print("|---|---|---|---|---|")
    for run, ratios, lower, n, pooled in summary:
        med = f"**{statistics.median(ratios):.2f}x**" if ratios else "-"
        cells = []
        for i in (2, 1):
            s, g = pooled["svcnet"], pooled["nginx"]
            sv, gv = (ms(s[i]) if s else None), (ms(g[i]) if g else None)
            cells.append(f"{sv:.3f} / {gv:.3f} ms = **{sv / gv:.2f}x**" if sv and gv else "-")
        print(f"| {run} | {med} | {lower} of {n} slices | {cells[0]} | {cells[1]} |")


def rounds_table(rows):
    runs = sorted({run for (_, _, run) in rows})
    rounds = sorted({int(r) for (r, _, _) in rows if r.isdigit()})

    def pick(kind):
        return next((r for r in runs if kind(r)), None)

    h1_max = pick(lambda r: r.startswith("HTTP/1.1") and "max rate" in r)
    h2_max = pick(lambda r: r.startswith("HTTP/2") and "max rate" in r)
    h1_cpu = pick(lambda r: r.startswith("HTTP/1.1") and "CPU" in r)
    h2_cpu = pick(lambda r: r.startswith("HTTP/2") and "CPU" in r)

    def pair(r, run, cell, parse):
        """svcnet's and nginx's figure of `run` in round `r` (cell 0: value, 1: p99)."""
        s, n = rows.get((str(r), "svcnet", run)), rows.get((str(r), "nginx", run))
        return (parse(s[cell]) if s else None, parse(n[cell]) if n else None)

    print(f"| round | {h1_max} | {h2_max} | p99, {h1_max} (the machine's background CPU meanwhile) | {h1_cpu} | {h2_cpu} |")
    print("|---|---|---|---|---|---|")
    ratios = {h1_max: [], h2_max: []}
    lower = 0
    for r in rounds:
        cells = []
        for run in (h1_max, h2_max):
            sv, nv = pair(r, run, 0, first_number)
            if sv and nv:
                ratios[run].append(sv / nv)
                cells.append(f"{sv:,.0f} / {nv:,.0f} = **{sv / nv:.2f}x**")
            else:
                cells.append("-")
        sv, nv = pair(r, h1_max, 1, ms)
        if sv is not None and nv is not None:
            lower += sv < nv
            mark = "lower" if sv < nv else ("equal" if sv == nv else "higher")
            busy = pair(r, h1_max, 3, lambda c: c or "?")
            cells.append(f"{sv:.2f} vs {nv:.2f} ms ({mark}; machine {busy[0]} / {busy[1]})")
        else:
            cells.append("-")
        for run in (h1_cpu, h2_cpu):
            sv, nv = pair(r, run, 0, first_number)
            cells.append(f"{sv} vs {nv} µs" if sv is not None and nv is not None else "-")
        print(f"| {r} | " + " | ".join(cells) + " |")
    med = [f"**{statistics.median(ratios[run]):.2f}x**" if ratios[run] else "-" for run in (h1_max, h2_max)]
    print(f"| median / count | {med[0]} | {med[1]} | svcnet lower in {lower} of {len(rounds)} | | |")


if __name__ == "__main__":
    table = read_rows(sys.stdin)
    if "--slices" in sys.argv[1:]:
        slices(table)
    else:
        rounds_table(table)
