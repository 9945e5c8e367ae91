#!/usr/bin/env bash
# Builds svcnet and the model benchmark in release mode, runs the benchmark and writes
# bench/model/RESULTS.md. Extra arguments go to the benchmark (see --help), for example
#   bash bench/model/run.sh --runs 20
#   bash bench/model/run.sh --services 2000 --namespaces 10 --nodes 50
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release -p svcnet -p svcnet-bench-model
if ! command -v hyperfine >/dev/null 2>&1; then
  echo "note: hyperfine not found (apt-get install hyperfine); timing svcnet with a loop" >&2
fi
exec target/release/svcnet-bench-model --results bench/model/RESULTS.md "$@"
