#!/usr/bin/env bash
# Builds the Ingress compile benchmark in release mode, runs it and writes
# bench/ingress-compile/RESULTS.md. Extra arguments go to the benchmark, for example
#   bash bench/ingress-compile/run.sh --runs 10
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p svcnet-bench-ingress-compile
exec target/release/svcnet-bench-ingress-compile --results bench/ingress-compile/RESULTS.md "$@"
