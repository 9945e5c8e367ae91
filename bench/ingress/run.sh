#!/usr/bin/env bash
# bench/ingress: svcnet's Ingress controller (`svcnet up`) against nginx (Debian) configured
# with the same 100 routes to the same backend, in one run. Installs wrk, nginx-light and
# nghttp2-client (h2load) when missing (Debian/Ubuntu, as root), builds svcnet in release,
# generates 100 Ingresses, runs both proxies pinned to CPU 0 with taskset (the backend and
# the load generators on CPU 1) and writes bench/ingress/RESULTS.md.
#
#   bash bench/ingress/run.sh                        # defaults: 10 s per measurement
#   DURATION=20 CONNS=64 RATE=4000 bash bench/ingress/run.sh
#   SVCNET=/path/to/svcnet bash bench/ingress/run.sh   # a prebuilt binary
#
# Addresses (loopback only): backend nginx 127.0.0.1:18081; nginx proxy 127.0.0.1:18080
# (HTTP/1.1) and 127.0.0.1:18443 (TLS, h2); svcnet 127.0.0.1:28080 and 127.0.0.1:28443
# (admin 127.0.0.1:29090, DNS off). Every process started here is killed when the script
# ends, fails or is interrupted; the whole run is bounded by `timeout`.
#
# Method:
#  * max rate: wrk (HTTP/1.1, 1 thread, CONNS connections, keep-alive) and h2load (HTTP/2
#    over TLS, ALPN h2, 10 connections x 10 streams) for DURATION seconds each; requests
#    per second and wrk's p50/p99 (--latency), h2load's per-request log for p50/p99.
#  * fixed rate (wrk2 is not in Debian): h2load --rps paces every connection at a fixed
#    request rate for RATE x DURATION requests (-n: with -D, h2load --h1 --rps hangs), over HTTP/1.1 (--h1, cleartext) and HTTP/2 over TLS; its --log-file has
#    one line per request (start, status, microseconds to the end of the response), from
#    which p50/p99/p99.9 are computed here. The offered load (RATE req/s in total) is below
#    both proxies' maximum, so the percentiles compare latency, not queueing at saturation.
#  * steady rate: the same RATE over RATE_CONNS connections from bench/http-rate, which
#    releases every request at its own time (no bursts; latency from when it was due).
#  * CPU per request: user + system CPU time of each proxy's processes over CPU_REQUESTS
#    requests (the figure least disturbed by other load on a shared machine).
#  * every request names one of the 100 hosts and its path (/api/N), rotated per run.
#  * ROUNDS (default 3) alternating rounds, nginx then svcnet; RESULTS.md opens with the
#    round-by-round ratios (summary.py) and their median, then every measurement. The
#    machine's own speed drifts more between rounds than the two proxies differ within
#    one, so only figures of the same round compare.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

DURATION="${DURATION:-10}"
CONNS="${CONNS:-50}"
RATE="${RATE:-5000}"              # fixed-rate runs: total requests per second
RATE_CONNS="${RATE_CONNS:-20}"
CPU_REQUESTS="${CPU_REQUESTS:-200000}"  # requests per CPU-time measurement
ROUTES="${ROUTES:-100}"
ROUNDS="${ROUNDS:-3}"                # alternating nginx/svcnet rounds (max rate, CPU)
SLICES="${SLICES:-16}"               # fixed-rate slices per protocol, order swapped each
SLICE_SECONDS="${SLICE_SECONDS:-4}"  # seconds per fixed-rate slice
LEGS="${LEGS:-1}"                    # 1: trace where a lone request's time goes (perf, root)
BACKEND=127.0.0.1:18081
NGINX_HTTP=127.0.0.1:18080
NGINX_HTTPS=127.0.0.1:18443
SVCNET_HTTP=127.0.0.1:28080
SVCNET_HTTPS=127.0.0.1:28443
SVCNET_ADMIN=127.0.0.1:29090

if [ -z "${BENCH_INGRESS_INNER:-}" ]; then
    export BENCH_INGRESS_INNER=1
    exec timeout --signal=TERM --kill-after=10 2400 bash "$0" "$@"
fi

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
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

# SVCNET=path/to/svcnet uses a binary built beforehand instead of building one.
if [ -z "${SVCNET:-}" ]; then
    cargo build --release -p svcnet
fi
svcnet="${SVCNET:-${CARGO_TARGET_DIR:-$root/target}/release/svcnet}"
# The steady-rate load generator (bench/http-rate), the same way.
if [ -z "${HTTP_RATE:-}" ]; then
    cargo build --release -p svcnet-bench-http-rate
fi
http_rate="${HTTP_RATE:-${CARGO_TARGET_DIR:-$root/target}/release/svcnet-bench-http-rate}"

tmp="$(mktemp -d /tmp/bench-ingress.XXXXXX)"
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

# --- 100 Ingresses, each with its Service and an EndpointSlice on the backend ------------
mkdir -p "$tmp/manifests" "$tmp/state" "$tmp/nginx"
backend_port="${BACKEND##*:}"
{
    for ((i = 0; i < ROUTES; i++)); do
        cat <<YAML
---
apiVersion: v1
kind: Service
metadata: {name: svc-$i}
spec:
  ports: [{name: http, port: 80, targetPort: $backend_port}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-$i-1
  labels: {kubernetes.io/service-name: svc-$i}
addressType: IPv4
ports: [{name: http, port: $backend_port, protocol: TCP}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: ing-$i
  annotations:
    nginx.ingress.kubernetes.io/ssl-redirect: "false"
spec:
  tls: [{hosts: [h$i.bench.test]}]
  rules:
  - host: h$i.bench.test
    http:
      paths:
      - {path: /api/$i, pathType: Prefix, backend: {service: {name: svc-$i, port: {number: 80}}}}
YAML
    done
} >"$tmp/manifests/ingresses.yaml"

# --- nginx: the backend (CPU 1) and the proxy with the same 100 routes (CPU 0) -----------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=bench.test" -addext "subjectAltName=DNS:*.bench.test" \
    -keyout "$tmp/nginx/key.pem" -out "$tmp/nginx/cert.pem" 2>/dev/null

cat >"$tmp/nginx/backend.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx/backend.pid;
error_log $tmp/nginx/backend-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen $BACKEND backlog=4096;
        location / { return 200 "ok\n"; }
    }
}
CONF

{
    cat <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx/proxy.pid;
error_log $tmp/nginx/proxy-error.log warn;
events { worker_connections 4096; }
http {
    access_log $tmp/nginx/access.log;
    keepalive_requests 1000000;
    upstream backend { server $BACKEND; keepalive 128; }
    ssl_certificate $tmp/nginx/cert.pem;
    ssl_certificate_key $tmp/nginx/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$host;
    proxy_set_header X-Real-IP \$remote_addr;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_set_header X-Forwarded-Host \$host;
    proxy_set_header X-Forwarded-Port \$server_port;
    proxy_set_header X-Request-ID \$request_id;
    server {
        listen $NGINX_HTTP default_server backlog=4096;
        listen $NGINX_HTTPS ssl http2 default_server backlog=4096;
        server_name _;
        return 404;
    }
CONF
    for ((i = 0; i < ROUTES; i++)); do
        cat <<CONF
    server {
        listen $NGINX_HTTP;
        listen $NGINX_HTTPS ssl http2;
        server_name h$i.bench.test;
        location /api/$i { proxy_pass http://backend; }
    }
CONF
    done
    echo "}"
} >"$tmp/nginx/proxy.conf"

taskset -c 1 nginx -c "$tmp/nginx/backend.conf" -e "$tmp/nginx/backend-error.log" &
pids+=($!)
taskset -c 0 nginx -c "$tmp/nginx/proxy.conf" -e "$tmp/nginx/proxy-error.log" &
pids+=($!)
nginx_pid=$!

# --- svcnet up (CPU 0), access log on as by default (nginx logs too) --------------------
taskset -c 0 "$svcnet" up -f "$tmp/manifests" --http-addr "$SVCNET_HTTP" \
    --https-addr "$SVCNET_HTTPS" --admin-addr "$SVCNET_ADMIN" --dns-addr none \
    --state-dir "$tmp/state" >"$tmp/svcnet.out" 2>"$tmp/svcnet.log" &
pids+=($!)
svcnet_pid=$!

wait_http() { # URL HOST
    for _ in $(seq 1 200); do
        if curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -H "Host: $2" "$1" | grep -q 200; then
            return 0
        fi
        sleep 0.1
    done
    echo "no 200 from $1 (Host $2)" >&2
    tail -20 "$tmp/svcnet.log" >&2 || true
    exit 1
}
wait_http "http://$BACKEND/" x
wait_http "http://$NGINX_HTTP/api/7" h7.bench.test
wait_http "http://$SVCNET_HTTP/api/7" h7.bench.test

# Both proxies answer the same way.
for target in "$NGINX_HTTP" "$SVCNET_HTTP"; do
    code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -H 'Host: h99.bench.test' "http://$target/api/98")
    [ "$code" = 404 ] || { echo "$target: /api/98 on h99 gave $code, want 404" >&2; exit 1; }
done

percentiles() { # h2load log file -> "p50_ms p99_ms p999_ms count"
    python3 - "$1" <<'PY'
import sys
v = sorted(int(l.split('\t')[2]) for l in open(sys.argv[1]) if l.count('\t') >= 2 and l.split('\t')[1] == '200')
if not v:
    print("- - - 0"); sys.exit()
q = lambda p: v[min(len(v) - 1, int(p * len(v)))] / 1000.0
print(f"{q(0.50):.3f} {q(0.99):.3f} {q(0.999):.3f} {len(v)}")
PY
}

# CPU time the machine's own background work has used (ms): the kernel's DAMON threads
# (kdamond, here paging out cold memory for the VM in stretches of ~4 ms) and the init
# process's threads (pid 1; here the VM's agent). A sched_switch trace showed both
# preempting a running proxy for 1-4 ms at a time: a p99 that jumps in one run is read
# beside this figure, which every run reports as its last column. With it, the steal time
# of the VM's CPUs (the hypervisor running another guest on them).
kdamonds="$(pgrep '^kdamond' | tr '\n' ' ')"
task_ms() { # PID... -> ms of CPU used by all their threads
    local p
    for p in "$@"; do cat /proc/"$p"/task/*/schedstat 2>/dev/null; done |
        awk '{ ns += $1 } END { printf "%.0f", ns / 1e6 }'
}
hz=$(getconf CLK_TCK)
steal_ms() { # time the hypervisor ran something else on this VM's CPUs (ms, all CPUs)
    awk -v hz="$hz" '/^cpu[0-9]/ { t += $9 } END { printf "%.0f", t * 1000 / hz }' /proc/stat
}
machine_ms() { # -> "INIT KDAMOND STEAL" (ms so far)
    # shellcheck disable=SC2086 # a list of pids
    echo "$(task_ms 1) $(task_ms $kdamonds) $(steal_ms)"
}
machine_since() { # what machine_ms gave before -> the cell for the run since
    local a b c d e f
    read -r a b c <<<"$1"
    read -r d e f < <(machine_ms)
    echo "init $((d - a)), kdamond $((e - b)), steal $((f - c)) ms"
}

wrk_run() { # NAME ADDR ROUTE
    local out="$tmp/wrk-$1.txt" m0
    m0=$(machine_ms)
    taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency \
        -H "Host: h$3.bench.test" "http://$2/api/$3" >"$out"
    local rps p50 p99 errs
    rps=$(awk '/Requests\/sec/ {print $2}' "$out")
    p50=$(awk '$1 == "50%" {print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    errs=$(awk '/Non-2xx|Socket errors/ {print}' "$out" | tr '\n' ' ')
    echo "| $1 | HTTP/1.1 wrk max rate | $rps | $p50 | $p99 | ${errs:-none} | $(machine_since "$m0") |"
}

h2_max() { # NAME ADDR ROUTE
    local log="$tmp/h2-$1-$3.log" out="$tmp/h2-$1-$3.txt" m0
    m0=$(machine_ms)
    taskset -c 1 h2load -c10 -m10 -t1 -D "$DURATION" --connect-to="$2" \
        --log-file="$log" "https://h$3.bench.test/api/$3" >"$out" 2>&1
    local rps pct
    rps=$(awk '/^finished in/ {print $4}' "$out" | tr -d ',')
    read -r p50 p99 _ _ < <(percentiles "$log")
    local fail
    fail=$(awk '/^requests:/ {print $0}' "$out")
    echo "| $1 | HTTP/2 TLS h2load max rate | $rps | ${p50}ms | ${p99}ms | $fail | $(machine_since "$m0") |"
}

# One slice at RATE req/s over RATE_CONNS connections, with one of two generators:
#  fixed: h2load --rps, which fires every connection's timer in the same loop turn, so
#         requests leave in bursts of 20-60 every few milliseconds;
#  steady: bench/http-rate, each request released at its own time (RATE evenly spaced
#         per second), latency counted from when it was due.
fixed() { # KIND(fixed|steady) NAME ADDR ROUTE MODE(h1|h2) SLICE -> one row; the log stays
    local kind=$1 name=$2 addr=$3 route=$4 mode=$5 s=$6
    local log="$tmp/$kind-$name-$mode-$s.log" out="$tmp/$kind-$name-$mode-$s.txt"
    local per=$((RATE / RATE_CONNS)) total=$((RATE * SLICE_SECONDS)) m0 url
    m0=$(machine_ms)
    if [ "$mode" = h1 ]; then url="http://h$route.bench.test/api/$route"; else url="https://h$route.bench.test/api/$route"; fi
    if [ "$kind" = steady ]; then
        taskset -c 1 "$http_rate" --connect "$addr" --rate "$RATE" --connections "$RATE_CONNS" \
            --seconds "$SLICE_SECONDS" --log "$log" "$url" >"$out" 2>&1
    elif [ "$mode" = h1 ]; then
        taskset -c 1 h2load --h1 -c"$RATE_CONNS" -t1 --rps="$per" -n "$total" \
            --connect-to="$addr" --log-file="$log" "$url" >"$out" 2>&1
    else
        taskset -c 1 h2load -c"$RATE_CONNS" -t1 --rps="$per" -n "$total" \
            --connect-to="$addr" --log-file="$log" "$url" >"$out" 2>&1
    fi
    local rps
    rps=$(awk '/^finished in/ {print $4}' "$out" | tr -d ',')
    read -r p50 p99 p999 n < <(percentiles "$log")
    echo "| $name | $(fixed_label "$kind" "$mode") | $rps | ${p50}ms | ${p99}ms (p99.9 ${p999}ms) | $n ok | $(machine_since "$m0") |"
}

fixed_label() { # KIND MODE
    if [ "$2" = h1 ]; then echo "HTTP/1.1 $1 $RATE req/s"; else echo "HTTP/2 TLS $1 $RATE req/s"; fi
}

# CPU time a proxy spends per request: user + system ticks of its processes (and their
# children) around a fixed number of requests. Less sensitive than req/s to other load on
# a shared machine.
proxy_pids=()
cpu_ticks() { # PID... -> ticks
    local t=0 p u s
    for p in "$@" $(for q in "$@"; do pgrep -P "$q" || true; done); do
        read -r u s < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null || echo "0 0")
        t=$((t + u + s))
    done
    echo "$t"
}
cpu_per_req() { # NAME ADDR ROUTE MODE(h1|h2) PID
    local n=$((CPU_REQUESTS)) a b out="$tmp/cpu-$1-$4-$3.txt"
    a=$(cpu_ticks "$5")
    if [ "$4" = h1 ]; then
        taskset -c 1 h2load --h1 -c"$CONNS" -t1 -n "$n" --connect-to="$2" \
            "http://h$3.bench.test/api/$3" >"$out" 2>&1
        label="HTTP/1.1 CPU per request"
    else
        taskset -c 1 h2load -c10 -m10 -t1 -n "$n" --connect-to="$2" \
            "https://h$3.bench.test/api/$3" >"$out" 2>&1
        label="HTTP/2 TLS CPU per request"
    fi
    b=$(cpu_ticks "$5")
    local ok
    ok=$(awk '/^status codes:/ {print $3}' "$out")
    local us
    us=$(awk -v t=$((b - a)) -v hz="$(getconf CLK_TCK)" -v n="$n" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
    echo "| $1 | $label | $us us | | | $ok 2xx of $n | |"
}

proxy_addrs() { # NAME -> http, https: the proxy's two listeners
    if [ "$1" = nginx ]; then http=$NGINX_HTTP; https=$NGINX_HTTPS; else http=$SVCNET_HTTP; https=$SVCNET_HTTPS; fi
}

rows=()
slice_rows=()
route=7
for round in $(seq 1 "$ROUNDS"); do
    for name in nginx svcnet; do
        proxy_addrs "$name"
        route=$(( (route + 31) % ROUTES ))
        rows+=("| $round $(wrk_run "$name" "$http" "$route")")
        rows+=("| $round $(h2_max "$name" "$https" "$route")")
        if [ $name = nginx ]; then pid=$nginx_pid; else pid=$svcnet_pid; fi
        rows+=("| $round $(cpu_per_req "$name" "$http" "$route" h1 "$pid")")
        rows+=("| $round $(cpu_per_req "$name" "$https" "$route" h2 "$pid")")
    done
done

# Fixed rate: SLICES short slices per protocol, the two proxies back to back in each,
# the order swapped every slice (nginx first in odd slices), so that the machine's drift
# (which moves a 10 s p99 by tens of percent) hits both alike; then every request of a
# proxy's slices pooled.
for kind in fixed steady; do
    for mode in h1 h2; do
        for s in $(seq 1 "$SLICES"); do
            if (( s % 2 )); then order="nginx svcnet"; else order="svcnet nginx"; fi
            route=$(( (route + 31) % ROUTES ))
            for name in $order; do
                proxy_addrs "$name"
                if [ $mode = h1 ]; then addr=$http; else addr=$https; fi
                slice_rows+=("| $s $(fixed "$kind" "$name" "$addr" "$route" "$mode" "$s")")
            done
        done
        for name in nginx svcnet; do
            cat "$tmp/$kind-$name-$mode"-*.log >"$tmp/pooled-$kind-$name-$mode.log"
            read -r p50 p99 p999 n < <(percentiles "$tmp/pooled-$kind-$name-$mode.log")
            slice_rows+=("| all | $name | $(fixed_label "$kind" "$mode") | pooled | ${p50}ms | ${p99}ms (p99.9 ${p999}ms) | $n ok | |")
        done
    done
done

# Where a lone request's time goes: one connection, one request at a time, traced
# system-wide with perf (pinned to CPU 1, so the proxies' CPU carries nothing else):
# every loopback packet with a payload, CPU 0's idle exits and switches. legs.py times
# the four legs of a round trip and, for the two that end on the proxy's CPU, the wake-up
# of that CPU, the switch to the proxy and the proxy's own time up to its packet.
legs_rows=()
if [ "$LEGS" = 1 ] && command -v perf >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    for mode in h1 h2; do
        for name in nginx svcnet; do
            proxy_addrs "$name"
            if [ $name = nginx ]; then comm=nginx; else comm=svcnet-ingress-; fi
            route=$(( (route + 31) % ROUTES ))
            if [ $mode = h1 ]; then args=(--h1 "--connect-to=$http" "http://h$route.bench.test/api/$route")
            else args=("--connect-to=$https" "https://h$route.bench.test/api/$route"); fi
            taskset -c 1 h2load -c1 -t1 -n 30000 "${args[@]}" >"$tmp/legs-$name-$mode.txt" 2>&1 &
            gen=$!
            sleep 0.5
            taskset -c 1 perf record -q -a -o "$tmp/legs-$name-$mode.data" \
                -e net:net_dev_xmit,power:cpu_idle,sched:sched_switch -- sleep 1 >/dev/null 2>&1 || true
            wait "$gen" || true
            label="HTTP/1.1"; [ $mode = h2 ] && label="HTTP/2 TLS"
            legs_rows+=("$(perf script --ns -i "$tmp/legs-$name-$mode.data" -F comm,tid,cpu,time,event,trace 2>/dev/null \
                | python3 "$root/bench/ingress/legs.py" "$label, $name" "$comm" 0)")
        done
    done
else
    legs_rows+=("| (not measured: needs perf and root; LEGS=$LEGS) | | | | | | | | | | |")
fi

svcnet_version=$("$svcnet" --version 2>/dev/null || echo svcnet)
nginx_version=$(nginx -v 2>&1)
{
    echo "# bench/ingress results"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),"
    echo "$svcnet_version vs $nginx_version. $ROUTES Ingresses / server blocks, one backend (nginx \`return 200\`)."
    echo "Proxies pinned to CPU 0 (one nginx worker; one svcnet ingress worker, as --ingress-workers defaults to the CPUs it may use), backend and"
    echo "load generators on CPU 1. Access logs on for both. Max rate and CPU: ${DURATION}s per row, $ROUNDS rounds, alternating."
    echo "Fixed rate ($RATE req/s over $RATE_CONNS connections), with h2load --rps (bursts) and with bench/http-rate (steady): $SLICES slices of ${SLICE_SECONDS}s per protocol and generator, the proxies back to back, the order swapped every slice."
    echo
    echo "## svcnet / nginx, round by round"
    echo
    printf '%s\n' "${rows[@]}" | python3 "$root/bench/ingress/summary.py"
    echo
    echo "## p99 at a fixed rate, slice by slice"
    echo
    printf '%s\n' "${slice_rows[@]}" | python3 "$root/bench/ingress/summary.py" --slices
    echo
    echo "## Where a lone request's time goes (medians, µs)"
    echo
    echo "One connection, one request at a time. Legs between the four packets of a round trip, then the two legs"
    echo "that end on the proxies' CPU split: idle exit (the halted CPU woken), switch to the proxy, the proxy's own time to its packet."
    echo
    echo "| protocol, proxy | round trips | round trip | client → proxy's request upstream | backend | upstream response → proxy's response | client to its next request | CPU 0 wake-up | switch in | proxy's own time: request | proxy's own time: response |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${legs_rows[@]}"
    echo
    echo "## Every measurement"
    echo
    echo "| round or slice | proxy | run | req/s (CPU rows: CPU time per request) | p50 | p99 | errors | machine's background CPU |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}" "${slice_rows[@]}"
} | tee "$root/bench/ingress/RESULTS.md"
