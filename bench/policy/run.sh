#!/usr/bin/env bash
# Builds the NetworkPolicy benchmark in release mode, runs it and writes
# bench/policy/RESULTS.md. Extra arguments go to the benchmark (see --help), for example
#   bash bench/policy/run.sh --runs 20
#   bash bench/policy/run.sh --pods 10000 --namespaces 100 --policies 5000
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release -p svcnet-bench-policy
table="$(target/release/svcnet-bench-policy "$@")"
cpu="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
mem="$(free -g 2>/dev/null | awk '/^Mem:/ {print $2}')"
{
  echo "# bench/policy: results"
  echo
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ) with \`bash bench/policy/run.sh $*\` on $(nproc) CPUs (${cpu:-unknown}), ${mem:-?} GiB,"
  echo "a machine shared with other jobs (the max column shows their interference)."
  echo
  echo "$table"
} > bench/policy/RESULTS.md
cat bench/policy/RESULTS.md
