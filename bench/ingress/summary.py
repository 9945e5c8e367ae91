#!/usr/bin/env python3
"""bench/ingress: the per-round comparison table of svcnet and nginx.

Reads the measurement rows run.sh prints (`| round | proxy | run | value | p50 | p99 |
errors |`) on stdin and writes, per round, svcnet's figure over nginx's for the maximum
rates, both p99s at the fixed rate, and both CPU times per request; then the median of
the ratios and how many rounds had the lower p99.
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


rows = {}
for line in sys.stdin:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) < 7 or not cells[0].isdigit():
        continue
    rnd, proxy, run, value, _p50, p99 = cells[:6]
    rows[(int(rnd), proxy, run)] = (value, p99)

runs = sorted({run for (_, _, run) in rows})
rounds = sorted({r for (r, _, _) in rows})


def pick(kind):
    return next((r for r in runs if kind(r)), None)


h1_max = pick(lambda r: r.startswith("HTTP/1.1") and "max rate" in r)
h2_max = pick(lambda r: r.startswith("HTTP/2") and "max rate" in r)
h1_fix = pick(lambda r: r.startswith("HTTP/1.1") and "fixed" in r)
h2_fix = pick(lambda r: r.startswith("HTTP/2") and "fixed" in r)
h1_cpu = pick(lambda r: r.startswith("HTTP/1.1") and "CPU" in r)
h2_cpu = pick(lambda r: r.startswith("HTTP/2") and "CPU" in r)

print(f"| round | {h1_max} | {h2_max} | p99, {h1_fix} | p99, {h2_fix} | {h1_cpu} | {h2_cpu} |")
print("|---|---|---|---|---|---|---|")
ratios = {h1_max: [], h2_max: []}
lower = {h1_fix: 0, h2_fix: 0}
def pair(r, run, cell, parse):
    """svcnet's and nginx's figure of `run` in round `r` (cell 0: value, 1: p99)."""
    s, n = rows.get((r, "svcnet", run)), rows.get((r, "nginx", run))
    return (parse(s[cell]) if s else None, parse(n[cell]) if n else None)


for r in rounds:
    cells = []
    for run in (h1_max, h2_max):
        sv, nv = pair(r, run, 0, first_number)
        if sv and nv:
            ratios[run].append(sv / nv)
            cells.append(f"{sv:,.0f} / {nv:,.0f} = **{sv / nv:.2f}x**")
        else:
            cells.append("-")
    for run in (h1_fix, h2_fix):
        sv, nv = pair(r, run, 1, ms)
        if sv is not None and nv is not None:
            lower[run] += sv < nv
            mark = "lower" if sv < nv else ("equal" if sv == nv else "higher")
            cells.append(f"{sv:.3f} vs {nv:.3f} ms ({mark})")
        else:
            cells.append("-")
    for run in (h1_cpu, h2_cpu):
        sv, nv = pair(r, run, 0, first_number)
        cells.append(f"{sv} vs {nv} µs" if sv is not None and nv is not None else "-")
    print(f"| {r} | " + " | ".join(cells) + " |")
med = [f"**{statistics.median(ratios[run]):.2f}x**" if ratios[run] else "-" for run in (h1_max, h2_max)]
low = [f"svcnet lower in {lower[run]} of {len(rounds)}" for run in (h1_fix, h2_fix)]
print(f"| median / count | {med[0]} | {med[1]} | {low[0]} | {low[1]} | | |")
