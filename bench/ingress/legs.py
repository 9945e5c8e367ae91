#!/usr/bin/env python3
"""bench/ingress: where a lone request's time goes, from a system-wide perf trace.

Input (stdin): `perf script -F comm,tid,cpu,time,event,trace` of the events
net:net_dev_xmit, power:cpu_idle and sched:sched_switch, recorded while h2load sends
one request at a time through a proxy on PROXY_CPU to a backend and back.

Every packet on loopback with a payload is sorted into: the client's request (sent by
h2load), the proxy's request upstream and its response to the client (sent on
PROXY_CPU), and the backend's response (sent by `nginx` on another CPU). For each
request whose four packets follow one another, the legs between them are timed; for the
two legs that end on the proxy's CPU, so is what happened there: the CPU waking from idle
(the wake-up IPI of a halted virtual CPU), the switch to the proxy, and the proxy's own
time on the CPU up to its packet (its code and the syscalls up to the send), for the
request and for the response.

Usage: legs.py NAME PROXY_COMM PROXY_CPU  -> one markdown table row (medians, µs)
"""

import bisect
import re
import statistics
import sys

LINE = re.compile(r"\s*(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+(\d+\.\d+):\s+(\S+):\s*(.*)")
PAYLOAD = 66  # ethernet + IPv4 + TCP with timestamps: longer packets carry data


def main():
    name, proxy_comm, proxy_cpu = sys.argv[1], sys.argv[2], int(sys.argv[3])
    packets, idle_exit, switch_in = [], [], []
    for line in sys.stdin:
        m = LINE.match(line)
        if not m:
            continue
        comm, _tid, cpu, t, event, rest = m.groups()
        cpu, t = int(cpu), float(t) * 1e6
        if event == "net:net_dev_xmit":
            n = re.search(r"len=(\d+)", rest)
            if not n or int(n.group(1)) <= PAYLOAD:
                continue
            if comm.startswith("h2load"):
                packets.append(("client", t))
            elif cpu == proxy_cpu:
                packets.append(("proxy", t))
            elif comm.startswith("nginx"):
                packets.append(("backend", t))
        elif cpu == proxy_cpu and event == "power:cpu_idle" and "state=4294967295" in rest:
            idle_exit.append(t)
        elif cpu == proxy_cpu and event == "sched:sched_switch" and f"next_comm={proxy_comm}" in rest:
            switch_in.append(t)
    want = ["client", "proxy", "backend", "proxy", "client"]
    legs = {k: [] for k in ("in", "backend", "out", "client", "trip", "wake", "switch", "own_in", "own_out")}
    for i in range(len(packets) - 4):
        if [p[0] for p in packets[i : i + 5]] != want:
            continue
        t = [p[1] for p in packets[i : i + 5]]
        legs["in"].append(t[1] - t[0])
        legs["backend"].append(t[2] - t[1])
        legs["out"].append(t[3] - t[2])
        legs["client"].append(t[4] - t[3])
        legs["trip"].append(t[4] - t[0])
        for own, start, end in (("own_in", t[0], t[1]), ("own_out", t[2], t[3])):
            j = bisect.bisect_left(idle_exit, start)
            k = bisect.bisect_left(switch_in, start)
            if j < len(idle_exit) and idle_exit[j] < end and k < len(switch_in) and idle_exit[j] <= switch_in[k] < end:
                legs["wake"].append(idle_exit[j] - start)
                legs["switch"].append(switch_in[k] - idle_exit[j])
                legs[own].append(end - switch_in[k])
    med = {k: (f"{statistics.median(v):.1f}" if v else "-") for k, v in legs.items()}
    n = len(legs["trip"])
    print(
        f"| {name} | {n} | {med['trip']} | {med['in']} | {med['backend']} | {med['out']} | {med['client']} "
        f"| {med['wake']} | {med['switch']} | {med['own_in']} | {med['own_out']} |"
    )


if __name__ == "__main__":
    main()
