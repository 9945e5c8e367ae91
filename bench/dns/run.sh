#!/usr/bin/env bash
# bench/dns: svcnet's cluster DNS against Knot DNS serving the same records (the zone files
# `svcnet dns zone` prints), with dnsperf, in one run. Installs dnsperf and knot when missing
# (Debian/Ubuntu, as root), builds svcnet in release, generates a cluster, runs both servers
# on loopback addresses of their own and writes bench/dns/RESULTS.md.
#
#   bash bench/dns/run.sh                          # defaults: 3 rounds of 10 s per server
#   ROUNDS=5 DURATION=20 CLIENTS=8 bash bench/dns/run.sh
#
# Knot listens on 127.53.0.1:5353, svcnet on 127.53.0.2:5353 (admin 127.53.0.2:9953); pods
# get svcnet's default 127.244/16 and ClusterIPs 127.96/12. Both servers are killed when the
# script ends, fails or is interrupted; the whole run is bounded by `timeout`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CLIENTS="${CLIENTS:-4}"
OUTSTANDING="${OUTSTANDING:-200}"
NAMESPACES="${NAMESPACES:-20}"
PER_NS="${PER_NS:-50}"            # Services per namespace; every tenth is a headless StatefulSet
LAT_QPS="${LAT_QPS:-20000}"       # fixed offered load of the latency (percentile) runs
LAT_DURATION="${LAT_DURATION:-5}"
KNOT_ADDR=127.53.0.1
SVCNET_ADDR=127.53.0.2
PORT=5353

if [ -z "${BENCH_DNS_INNER:-}" ]; then
    # Hard stop: the run takes about (2 * ROUNDS * DURATION + 60) seconds plus the build.
    export BENCH_DNS_INNER=1
    exec timeout --signal=TERM --kill-after=10 1800 bash "$0" "$@"
fi

missing=()
command -v dnsperf >/dev/null 2>&1 || missing+=(dnsperf)
command -v knotd >/dev/null 2>&1 || [ -x /usr/sbin/knotd ] || missing+=(knot)
command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing ${missing[*]}; as root: apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "installing ${missing[*]}" >&2
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
export PATH="$PATH:/usr/sbin"

cargo build --release -p svcnet
svcnet="${CARGO_TARGET_DIR:-$root/target}/release/svcnet"

tmp="$(mktemp -d /tmp/bench-dns.XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the cluster ------------------------------------------------------------------------
mkdir -p "$tmp/manifests"
for ((n = 0; n < NAMESPACES; n++)); do
    ns=$(printf 'team-%02d' "$n")
    {
        printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n' "$ns"
        for ((i = 0; i < PER_NS; i++)); do
            if ((i % 10 == 9)); then
                name=$(printf 'db-%02d' "$i")
                cat <<YAML
---
apiVersion: v1
kind: Service
metadata: {name: $name, namespace: $ns}
spec:
  clusterIP: None
  selector: {app: $name}
  ports: [{name: pg, port: 5432, targetPort: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: $name, namespace: $ns}
spec:
  serviceName: $name
  replicas: 3
  selector: {matchLabels: {app: $name}}
  template:
    metadata: {labels: {app: $name}}
    spec:
      containers: [{name: db, image: postgres:16, ports: [{containerPort: 5432}]}]
YAML
            else
                name=$(printf 'svc-%02d' "$i")
                cat <<YAML
---
apiVersion: v1
kind: Service
metadata: {name: $name, namespace: $ns}
spec:
  selector: {app: $name}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: metrics, port: 9090, targetPort: 9090}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: $name, namespace: $ns}
spec:
  replicas: 1
  selector: {matchLabels: {app: $name}}
  template:
    metadata: {labels: {app: $name}}
    spec:
      containers: [{name: app, image: nginx, ports: [{containerPort: 8080}, {containerPort: 9090}]}]
YAML
            fi
        done
    } >"$tmp/manifests/$ns.yaml"
done

# Each node has a /24 of the pod CIDR (254 pods).
pods=$(( NAMESPACES * (PER_NS - PER_NS / 10) + NAMESPACES * (PER_NS / 10) * 3 ))
nodes=$(( pods / 200 + 1 ))

# --- the zone files, split at $ORIGIN ---------------------------------------------------
"$svcnet" dns zone -f "$tmp/manifests" --dns-pods disabled --dns-upstream none --nodes "$nodes" >"$tmp/all.zone"
mkdir -p "$tmp/zones" "$tmp/knot-db"
awk -v dir="$tmp/zones" '/^\$ORIGIN /{f = dir "/" substr($2, 1, length($2) - 1) ".zone"} {print > f}' "$tmp/all.zone"
records=$(grep -vc '^\$ORIGIN' "$tmp/all.zone")

cat >"$tmp/knot.conf" <<CONF
server:
    listen: $KNOT_ADDR@$PORT
    rundir: $tmp
log:
  - target: stderr
    any: warning
control:
    listen: $tmp/knot.sock
database:
    storage: $tmp/knot-db
template:
  - id: default
    storage: $tmp/zones
    semantic-checks: off
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: cluster.local
    file: cluster.local.zone
  - domain: in-addr.arpa
    file: in-addr.arpa.zone
  - domain: ip6.arpa
    file: ip6.arpa.zone
CONF

knotd -c "$tmp/knot.conf" >"$tmp/knot.log" 2>&1 &
knot_pid=$!
pids+=("$knot_pid")
"$svcnet" up -f "$tmp/manifests" --dns-addr "$SVCNET_ADDR:$PORT" --dns-upstream none \
    --dns-pods disabled --nodes "$nodes" --admin-addr "$SVCNET_ADDR:9953" --log-format json >"$tmp/svcnet.log" 2>&1 &
svcnet_pid=$!
pids+=("$svcnet_pid")

probe=svc-00.team-00.svc.cluster.local
for server in "$KNOT_ADDR" "$SVCNET_ADDR"; do
    for ((i = 0; i < 120; i++)); do
        if [ -n "$(dig +short +time=1 +tries=1 -p "$PORT" "@$server" "$probe" A 2>/dev/null)" ]; then
            break
        fi
        sleep 0.5
    done
    if [ -z "$(dig +short +time=1 +tries=1 -p "$PORT" "@$server" "$probe" A 2>/dev/null)" ]; then
        echo "$server does not answer $probe" >&2
        tail -20 "$tmp/knot.log" "$tmp/svcnet.log" >&2
        exit 1
    fi
done

# svcnet publishes an endpoint once its pod agent is ready: wait for /readyz, then for
# the last headless endpoint, so that both servers hold the same records.
last=$(printf 'db-%02d-2.db-%02d.team-%02d.svc.cluster.local' "$((PER_NS - 1))" "$((PER_NS - 1))" "$((NAMESPACES - 1))")
for ((i = 0; i < 120; i++)); do
    if curl -sf "http://$SVCNET_ADDR:9953/readyz" >/dev/null 2>&1 &&
        [ -n "$(dig +short +time=1 +tries=1 -p "$PORT" "@$SVCNET_ADDR" "$last" A 2>/dev/null)" ]; then
        break
    fi
    sleep 0.5
done
sleep 2

# --- the query mix: per 20 queries, 8 ClusterIP A, 3 SRV, 2 headless A, 2 headless
# endpoint A, 3 PTR, 2 NXDOMAIN; names in a fixed order --------------------------------
: >"$tmp/queries"
ptrs=()
mapfile -t ptrs < <(awk '$4 == "PTR" && $5 ~ /\.svc\.cluster\.local\.$/ && $5 ~ /^svc-/ {print $1}' "$tmp/zones/in-addr.arpa.zone" | head -2000)
p=0
for ((n = 0; n < NAMESPACES; n++)); do
    ns=$(printf 'team-%02d' "$n")
    for ((i = 0; i < PER_NS; i += 10)); do
        s() { printf 'svc-%02d.%s.svc.cluster.local' "$((i + $1))" "$ns"; }
        sts=$(printf 'db-%02d' "$((i + 9))")
        db="$sts.$ns.svc.cluster.local"
        {
            for k in 0 1 2 3 4 5 6 7; do echo "$(s $k) A"; done
            echo "_http._tcp.$(s 0) SRV"
            echo "$(s 1) SRV"
            echo "_pg._tcp.$db SRV"
            echo "$db A"
            echo "$db A"
            echo "$sts-0.$db A"
            echo "$sts-2.$db A"
            for k in 0 1 2; do echo "${ptrs[$(((p + k) % ${#ptrs[@]}))]} PTR"; done
            echo "nope-$i.$ns.svc.cluster.local A"
            echo "svc-$i.nowhere-$n.svc.cluster.local AAAA"
        } >>"$tmp/queries"
        p=$((p + 3))
    done
done
nqueries=$(wc -l <"$tmp/queries")

# --- the same answers from both ---------------------------------------------------------
# compare: asks the first 20 queries of both servers with dig; prints the number of answers
# (status and answer section, case-insensitive) that differ, the first three diffs on stderr
compare() {
    local mismatches=0 qname qtype a b
    while read -r qname qtype; do
        a=$(dig +noall +answer +comments -p "$PORT" "@$KNOT_ADDR" "$qname" "$qtype" | grep -E 'status:|[[:space:]]IN[[:space:]]' | sed -E 's/id: [0-9]+//' | sort)
        b=$(dig +noall +answer +comments -p "$PORT" "@$SVCNET_ADDR" "$qname" "$qtype" | grep -E 'status:|[[:space:]]IN[[:space:]]' | sed -E 's/id: [0-9]+//' | sort)
        if [ "$(echo "$a" | tr 'A-Z' 'a-z')" != "$(echo "$b" | tr 'A-Z' 'a-z')" ]; then
            mismatches=$((mismatches + 1))
            if [ "$mismatches" -le 3 ]; then
                echo "answers differ for $qname $qtype (< knot, > svcnet):" >&2
                diff <(echo "$a") <(echo "$b") >&2 || true
            fi
        fi
    done < <(head -20 "$tmp/queries")
    echo "$mismatches"
}
mismatches=$(compare)

# --- measurements ------------------------------------------------------------------------
threads() { ls "/proc/$1/task" | wc -l; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# run NAME ADDR PID ROUND: one dnsperf run at max rate, appends a TSV line to $tmp/runs
run() {
    local name=$1 addr=$2 pid=$3 round=$4 out="$tmp/perf-$1-$4.txt" t0 t1
    t0=$(cpu_ticks "$pid")
    dnsperf -s "$addr" -p "$PORT" -d "$tmp/queries" -l "$DURATION" -c "$CLIENTS" -q "$OUTSTANDING" >"$out" 2>&1
    t1=$(cpu_ticks "$pid")
    local qps avg sd max lost
    qps=$(awk '/Queries per second:/ {print $4}' "$out")
    avg=$(awk '/Average Latency/ {print $4}' "$out")
    max=$(awk '/Average Latency/ {gsub(/[(),]/, "", $8); print $8}' "$out")
    sd=$(awk '/Latency StdDev/ {print $4}' "$out")
    lost=$(awk '/Queries lost:/ {print $3}' "$out")
    local cores
    cores=$(awk -v d="$((t1 - t0))" -v hz="$hz" -v s="$DURATION" 'BEGIN {printf "%.2f", d / hz / s}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$qps" "$cores" "$avg" "$sd" "$max" "$lost" >>"$tmp/runs"
    echo "round $round $name: $qps qps, server CPU $cores cores, avg $avg s, max $max s, lost $lost" >&2
}

# latency NAME ADDR: a fixed-rate run with per-query output; prints "p50 p99" in ms
latency() {
    local name=$1 addr=$2
    dnsperf -s "$addr" -p "$PORT" -d "$tmp/queries" -l "$LAT_DURATION" -c "$CLIENTS" -Q "$LAT_QPS" -v \
        >"$tmp/lat-$name.txt" 2>&1 || true
    awk '$1 == ">" {print $NF}' "$tmp/lat-$name.txt" | sort -g | awk '
        {v[NR] = $1} END {
            if (NR == 0) {print "n/a n/a 0"; exit}
            i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
            i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
            printf "%.3f %.3f %d\n", v[i50] * 1000, v[i99] * 1000, NR
        }'
}

: >"$tmp/runs"
# warm-up, not reported
dnsperf -s "$KNOT_ADDR" -p "$PORT" -d "$tmp/queries" -l 2 -c "$CLIENTS" >/dev/null 2>&1 || true
dnsperf -s "$SVCNET_ADDR" -p "$PORT" -d "$tmp/queries" -l 2 -c "$CLIENTS" >/dev/null 2>&1 || true
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then
        run knot "$KNOT_ADDR" "$knot_pid" "$r"
        run svcnet "$SVCNET_ADDR" "$svcnet_pid" "$r"
    else
        run svcnet "$SVCNET_ADDR" "$svcnet_pid" "$r"
        run knot "$KNOT_ADDR" "$knot_pid" "$r"
    fi
done
mismatches_after=$(compare)
read -r knot_p50 knot_p99 knot_n < <(latency knot "$KNOT_ADDR")
read -r svcnet_p50 svcnet_p99 svcnet_n < <(latency svcnet "$SVCNET_ADDR")

knot_threads=$(threads "$knot_pid")
svcnet_threads=$(threads "$svcnet_pid")
cpus=$(nproc)
model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
kernel=$(uname -r)
knot_version=$(knotd --version | head -1)
dnsperf_version=$(dnsperf -h 2>&1 | awk '/^Version/ {print $2}')
svcnet_version=$("$svcnet" version 2>/dev/null | head -1)
rev="$(git describe --always --dirty 2>/dev/null || echo unknown)"
date=$(date -u +%Y-%m-%dT%H:%MZ)

# medians over rounds, per server: qps, cores, avg, sd, max
summary() {
    awk -F'\t' -v n="$1" '$1 == n' "$tmp/runs" | sort -t$'\t' -k3,3g | awk -F'\t' -v rounds="$ROUNDS" '
        {q[NR] = $3; c[NR] = $4; a[NR] = $5; s[NR] = $6; m[NR] = $7; l += $8}
        END {k = int((NR + 1) / 2); printf "%.0f %s %s %s %s %d\n", q[k], c[k], a[k], s[k], m[k], l}'
}
read -r kq kc ka ks km kl < <(summary knot)
read -r sq sc sa ss sm sl < <(summary svcnet)
per_core() { awk -v q="$1" -v c="$2" 'BEGIN {if (c > 0) printf "%.0f", q / c; else print "n/a"}'; }
kpc=$(per_core "$kq" "$kc")
spc=$(per_core "$sq" "$sc")
ratio=$(awk -v a="$sq" -v b="$kq" 'BEGIN {printf "%.2f", a / b}')
ratio_pc=$(awk -v a="$spc" -v b="$kpc" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}')
ms() { awk -v s="$1" 'BEGIN {printf "%.3f", s * 1000}'; }
target=85000
met=$(awk -v v="$spc" -v t="$target" 'BEGIN {print (v >= t) ? "met" : "not met"}')

{
    echo "# bench/dns results"
    echo
    echo "Written by \`bash bench/dns/run.sh\` on $date (svcnet $rev)."
    echo
    echo "- machine: $model, $cpus CPUs, Linux $kernel; dnsperf and both servers share the CPUs"
    echo "- versions: $svcnet_version; $knot_version; dnsperf $dnsperf_version"
    echo "- cluster: $NAMESPACES namespaces, $((NAMESPACES * PER_NS)) Services ($((NAMESPACES * PER_NS / 10)) headless StatefulSets of 3), $pods pods on $nodes nodes; $records records from \`svcnet dns zone --dns-pods disabled\`"
    echo "- query file: $nqueries queries (per 20: 8 ClusterIP A, 3 SRV, 2 headless A, 2 headless endpoint A, 3 PTR, 2 NXDOMAIN); answers of the first 20 compared with dig: $mismatches differ before the runs, $mismatches_after after"
    echo "- dnsperf: UDP, -c $CLIENTS -q $OUTSTANDING, no -Q (max rate), $DURATION s per run, $ROUNDS rounds alternating, the median round by QPS shown"
    echo "- threads (from /proc/PID/task at the end): knotd $knot_threads (Knot's defaults: UDP and TCP workers = CPUs, plus background workers), svcnet up $svcnet_threads (tokio multi-thread runtime, workers = CPUs; the pod agents are tasks on it)"
    echo "- per core = QPS / CPU cores the server process used during the run (utime + stime from /proc)"
    echo "- p50/p99: a separate $LAT_DURATION s run per server at a fixed $LAT_QPS QPS offered, from dnsperf -v per-query latencies; the max-rate runs report dnsperf's average, stddev and max"
    echo
    echo "| server | QPS | server CPU (cores) | QPS per core | avg latency (ms) | stddev (ms) | max (ms) | lost (all rounds) | p50 @ $LAT_QPS QPS (ms) | p99 @ $LAT_QPS QPS (ms) |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    echo "| knot | $kq | $kc | $kpc | $(ms "$ka") | $(ms "$ks") | $(ms "$km") | $kl | $knot_p50 | $knot_p99 |"
    echo "| svcnet | $sq | $sc | $spc | $(ms "$sa") | $(ms "$ss") | $(ms "$sm") | $sl | $svcnet_p50 | $svcnet_p99 |"
    echo
    echo "- svcnet / knot: $ratio (QPS), $ratio_pc (QPS per core)"
    echo "- issue reference: 5 x CoreDNS's published 17,000 QPS per core = $target QPS per core: svcnet $spc, $met"
    echo
    echo "Every run (server, round, QPS, cores, avg s, stddev s, max s, lost):"
    echo
    echo '```'
    cat "$tmp/runs"
    echo '```'
} >"$root/bench/dns/RESULTS.md"
cat "$root/bench/dns/RESULTS.md"
