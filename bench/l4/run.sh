#!/usr/bin/env bash
# bench/l4: svcnet's ClusterIP against haproxy (mode tcp) in front of the same backend, in
# one run. Installs haproxy when missing (Debian/Ubuntu, as root), builds svcnet and the
# benchmark in release, runs it (about a minute) and writes bench/l4/RESULTS.md.
#
#   bash bench/l4/run.sh                 # the defaults: 3 rounds, 1 GiB bulk, 5 s of new connections
#   bash bench/l4/run.sh --rounds 5      # any flag of the benchmark binary (--help lists them)
#
# Everything runs on loopback addresses of its own (127.77/16 backend, 127.78/16 haproxy,
# 127.79/16 ClusterIPs, 127.90.0.x clients). The benchmark kills haproxy and svcnet when it
# ends, fails or is interrupted.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "haproxy is not installed; as root: apt-get update && apt-get install -y haproxy" >&2
        exit 1
    fi
    echo "installing haproxy" >&2
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy
fi
haproxy_bin="$(command -v haproxy || echo /usr/sbin/haproxy)"

cargo build --release -p svcnet -p svcnet-bench-l4

target_dir="${CARGO_TARGET_DIR:-$root/target}"
rev="$(git describe --always --dirty 2>/dev/null || echo unknown)"

# 5 minutes is a hard stop for a run that should take about one; SIGTERM lets the
# benchmark kill its peers before it exits.
exec timeout --signal=TERM --kill-after=10 300 \
    "$target_dir/release/svcnet-bench-l4" \
    --svcnet "$target_dir/release/svcnet" \
    --haproxy "$haproxy_bin" \
    --svcnet-rev "$rev" \
    --results "$root/bench/l4/RESULTS.md" \
    "$@"
